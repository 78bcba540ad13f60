//! The clinician web app at `/app`, page by page, against a secured `continuum serve` with
//! Synthea patients: sign-in, patient search, the chart (banner, summary, timeline, trends),
//! who is turned away, and documentation (notes, vitals, problem/allergy/medication lists)
//! landing in the record through the API's write path.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use test_support::clinic;
use test_support::process::{continuum, start};

use serde_json::{Value, json};
use test_support::clinic::{Visitor, clinic, count, fhir_get, fhir_post, resources, token};

#[test]
fn sign_in_search_and_the_chart() {
    let clinic = clinic();
    let origin = &clinic.origin;

    // Nothing without signing in: pages send to the sign-in form, remembering where to.
    let mut anonymous = Visitor::new(origin);
    let page = anonymous.get(&format!("/app/patients/{}", clinic.rosie));
    assert_eq!(page.status, 303);
    let location = page.location.unwrap();
    assert_eq!(location, format!("/app/sign-in?next=/app/patients/{}", clinic.rosie));
    let refused = anonymous.sign_in("doc", "not the password");
    assert_eq!(refused.status, 401);
    refused.assert_has("Wrong username or password.");
    let forged = anonymous.post("/app/sign-in", &[("csrf", "0"), ("username", "doc"), ("password", clinic::PASSWORD)]);
    assert_eq!(forged.status, 403, "a sign-in post without the form's value is refused");

    let mut doc = Visitor::signed_in(origin, "doc");
    assert_eq!(doc.get("/app").location.as_deref(), Some("/app/patients"));

    // Patient search by name, date of birth and MRN.
    let by_name = doc.get("/app/patients?name=Rosie394");
    assert_eq!(by_name.status, 200);
    by_name.assert_has(&format!("href=\"/app/patients/{}\"", clinic.rosie));
    by_name.assert_lacks(&clinic.barry);
    let by_birth = doc.get("/app/patients?birthdate=1913-01-13");
    by_birth.assert_has(&format!("href=\"/app/patients/{}\"", clinic.barry));
    by_birth.assert_lacks(&clinic.rosie);
    let by_mrn = doc.get(&format!("/app/patients?identifier={}", clinic::ROSIE_MRN));
    by_mrn.assert_has(&format!("href=\"/app/patients/{}\"", clinic.rosie));
    let bad_date = doc.get("/app/patients?birthdate=1982-02-30");
    assert_eq!(bad_date.status, 200);
    bad_date.assert_has("real date");

    // Summary with the banner: allergies always visible.
    let summary = doc.get(&format!("/app/patients/{}", clinic.rosie));
    assert_eq!(summary.status, 200);
    for text in
        ["Rosie394 Tiny880 Gutmann970", "1982-03-25", "female", clinic::ROSIE_MRN, "Lisinopril", "Wheat (substance)"]
    {
        summary.assert_has(text);
    }
    summary.assert_lacks("No known allergies");
    for heading in [
        "Active problems",
        "Active medications",
        "Latest vitals",
        "Recent results",
        "Immunizations",
        "Upcoming appointments",
        "Open tasks and referrals",
    ] {
        summary.assert_has(heading);
    }
    summary.assert_has("Body mass index 30+ - obesity (finding)");
    let barry = doc.get(&format!("/app/patients/{}", clinic.barry));
    assert_eq!(barry.status, 200);
    barry.assert_has("Allergies: </strong><span class=\"warn\">Not recorded</span>");
    barry.assert_has("1913-01-13 (85 y at death)");
    barry.assert_has("<strong>Deceased</strong> 1998-11-24");
    // Results outside their range are flagged (Barry's HbA1c of 6.26 % is above 5.7 %).
    barry.assert_has("6.26 % <abbr title=\"high: above the reference range\">(H)</abbr>");
    // Recently opened patients, newest first.
    let search = doc.get("/app/patients");
    let (rosie_at, barry_at) = (search.body.find(&clinic.rosie).unwrap(), search.body.find(&clinic.barry).unwrap());
    assert!(barry_at < rosie_at, "newest first");

    // The timeline: newest first, sources, filters, paging.
    let timeline = doc.get(&format!("/app/patients/{}/timeline", clinic.rosie));
    assert_eq!(timeline.status, 200);
    timeline.assert_has("Encounter: ");
    timeline.assert_has("Immunization: ");
    // Sources: the encounter's provider for the encounter and what was recorded during it.
    timeline.assert_has("Source: TEWKSBURY HOSPITAL");
    timeline.assert_lacks("Source: not recorded");
    let times = timeline.entry_times();
    assert!(times.len() >= 20, "{}", times.len());
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
    let older = timeline.body.split("rel=\"next\"").next().unwrap().rsplit("href=\"").next().unwrap();
    let older = older.split('"').next().unwrap().replace("&amp;", "&");
    let next = doc.get(&older);
    assert_eq!(next.status, 200);
    let next_first = next.entry_times()[0];
    assert!(next_first <= times[times.len() - 1], "the next page is older");
    let only = doc.get(&format!("/app/patients/{}/timeline?type=immunization", clinic.rosie));
    only.assert_has("Immunization: ");
    only.assert_lacks("Encounter: ");
    let period = doc.get(&format!("/app/patients/{}/timeline?from=2019-01-01&to=2019-12-31", clinic.rosie));
    let in_2019: Vec<&str> = period.entry_times().into_iter().map(|t| &t[..4]).collect();
    assert!(!in_2019.is_empty() && in_2019.iter().all(|y| *y == "2019"), "{in_2019:?}");
    let wrong = doc.get(&format!("/app/patients/{}/timeline?from=2019-13-01", clinic.rosie));
    wrong.assert_has("must be a real date");

    // Trends: an SVG chart and a table of the same values, with the reference range.
    let trend = doc.get(&format!("/app/patients/{}/trends?measure=hba1c", clinic.barry));
    assert_eq!(trend.status, 200);
    trend.assert_has("<svg");
    trend.assert_has("Hemoglobin A1c");
    trend.assert_has("<table");
    trend.assert_has("1989-05-15");
    trend.assert_has("5.88");
    trend.assert_has("below 5.7");
    let all = doc.get(&format!("/app/patients/{}/trends", clinic.rosie));
    assert_eq!(all.status, 200);
    all.assert_has("Blood pressure");

    // Every chart page of a patient outside the user's reach is refused (and offers the
    // break-the-glass form), for every page; an administrator does not read charts at all.
    let mut outsider = Visitor::signed_in(origin, "outsider");
    let mut admin = Visitor::signed_in(origin, "it-admin");
    for page in ["", "/timeline", "/trends", "/notes/new", "/vitals", "/lists"] {
        let path = format!("/app/patients/{}{page}", clinic.rosie);
        let refused = outsider.get(&path);
        assert_eq!(refused.status, 403, "{path}");
        refused.assert_lacks("Gutmann970");
        refused.assert_has("break-glass");
        let refused = admin.get(&path);
        assert_eq!(refused.status, 403, "{path}");
        refused.assert_lacks("Gutmann970");
    }
    let found = outsider.get("/app/patients?name=Rosie394");
    found.assert_lacks(&clinic.rosie);
    // Breaking the glass needs a reason, then opens the chart.
    let form = outsider.get(&format!("/app/patients/{}", clinic.rosie));
    let no_reason = outsider.submit(&form, &format!("/app/patients/{}/break-glass", clinic.rosie), &[("reason", " ")]);
    assert_eq!(no_reason.status, 400);
    let glass = outsider.submit(
        &form,
        &format!("/app/patients/{}/break-glass", clinic.rosie),
        &[("reason", "Unconscious in the ED")],
    );
    assert_eq!(glass.status, 303);
    let opened = outsider.get(&format!("/app/patients/{}", clinic.rosie));
    assert_eq!(opened.status, 200);
    opened.assert_has("Lisinopril");
    assert_eq!(doc.get("/app/patients/no-such-patient").status, 404);

    // Each chart page leaves an entry in the audit trail, naming the user and the patient.
    let admin_token = token(&clinic.data, "it-admin");
    std::thread::sleep(std::time::Duration::from_millis(400)); // the auditor's batch
    let trail = fhir_get(&clinic.server.base, &admin_token, &format!("AuditEvent?patient={}&_count=500", clinic.rosie));
    let trail = serde_json::to_string(&trail).unwrap();
    assert!(trail.contains("app=summary") || trail.contains("YXBwPXN1bW1hcnk"), "the summary view is audited");

    // Signing out ends the session.
    let page = doc.get("/app/patients");
    let out = doc.submit(&page, "/app/sign-out", &[]);
    assert_eq!(out.status, 303);
    assert_eq!(doc.get("/app/patients").status, 303, "back to the sign-in form");
}

#[test]
fn documentation_goes_through_the_record_write_path() {
    let clinic = clinic();
    let mut doc = Visitor::signed_in(&clinic.origin, "doc");
    let chart = format!("/app/patients/{}", clinic.rosie);
    let notes_before = count(&clinic, &format!("DocumentReference?patient={}", clinic.rosie));

    // A SOAP note saved as a draft, then signed; linked to the latest encounter.
    let form = doc.get(&format!("{chart}/notes/new?template=soap"));
    assert_eq!(form.status, 200);
    for section in ["Subjective", "Objective", "Assessment", "Plan"] {
        form.assert_has(section);
    }
    let encounter =
        form.body.split("<option value=\"Encounter/").nth(1).unwrap().split('"').next().unwrap().to_string();
    let fields = |action: &'static str, plan: &'static str| {
        vec![
            ("template", "soap".to_string()),
            ("title", "Follow-up: cough".to_string()),
            ("encounter", format!("Encounter/{encounter}")),
            ("section0", "Dry cough for 3 days & no fever".to_string()),
            ("section1", "Lungs clear".to_string()),
            ("section2", "Viral URI".to_string()),
            ("section3", plan.to_string()),
            ("action", action.to_string()),
        ]
    };
    let draft_fields = fields("draft", "Fluids");
    let draft_fields: Vec<(&str, &str)> = draft_fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let saved = doc.submit(&form, &format!("{chart}/notes"), &draft_fields);
    assert_eq!(saved.status, 303, "{}", saved.body);
    let note_path = saved.location.unwrap();
    let note_id = note_path.rsplit('/').next().unwrap().to_string();
    let note: Value = fhir_get(&clinic.server.base, &clinic.doc, &format!("DocumentReference/{note_id}"));
    assert_eq!(note["docStatus"], "preliminary");
    assert_eq!(note["context"]["encounter"][0]["reference"], format!("Encounter/{encounter}"));
    assert_eq!(note["type"]["coding"][0]["code"], "11506-3");
    let editing = doc.get(&note_path);
    editing.assert_has("Sign note");
    editing.assert_has("Dry cough for 3 days &amp; no fever");
    let sign_fields = fields("sign", "Fluids, rest");
    let sign_fields: Vec<(&str, &str)> = sign_fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let signed = doc.submit(&editing, &note_path, &sign_fields);
    assert_eq!(signed.status, 303, "{}", signed.body);
    let shown = doc.get(&note_path);
    shown.assert_has("Signed");
    shown.assert_has("<h3>Plan</h3><p>Fluids, rest</p>");
    shown.assert_has("Amend this note");
    let note: Value = fhir_get(&clinic.server.base, &clinic.doc, &format!("DocumentReference/{note_id}"));
    assert_eq!(note["docStatus"], "final");
    assert!(note["authenticator"].is_object());
    // A signed note is not edited in place.
    let tamper = doc.submit(&shown, &note_path, &sign_fields);
    assert_eq!(tamper.status, 403);
    // Nor through the FHIR API, whatever token: the chart's rule runs inside every write.
    let mut rewritten = note.clone();
    rewritten["description"] = json!("quietly rewritten");
    let (status, answer) =
        fhir_send(&clinic, reqwest::Method::PUT, &format!("DocumentReference/{note_id}"), &rewritten);
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["resourceType"], "OperationOutcome");
    assert_eq!(answer["issue"][0]["code"], "business-rule");
    let mut retired = note.clone();
    retired["status"] = json!("superseded");
    let (status, answer) = fhir_send(&clinic, reqwest::Method::PUT, &format!("DocumentReference/{note_id}"), &retired);
    assert_eq!(status, 422, "superseded only by an amendment: {answer}");
    let unchanged: Value = fhir_get(&clinic.server.base, &clinic.doc, &format!("DocumentReference/{note_id}"));
    assert_eq!((unchanged["docStatus"].as_str(), unchanged["status"].as_str()), (Some("final"), Some("current")));

    // The amendment replaces it; the original is kept, superseded.
    let amend_form = doc.get(&format!("{note_path}/amend"));
    assert_eq!(amend_form.status, 200);
    let mut amend_fields = sign_fields.clone();
    amend_fields.retain(|(k, _)| *k != "encounter" && *k != "action" && *k != "section3");
    amend_fields.push(("section3", "Fluids, rest; return if fever"));
    let no_reason = doc.submit(&amend_form, &format!("{note_path}/amend"), &amend_fields);
    assert_eq!(no_reason.status, 422);
    no_reason.assert_has("The reason is required.");
    amend_fields.push(("reason", "Return precautions added"));
    let amended = doc.submit(&amend_form, &format!("{note_path}/amend"), &amend_fields);
    assert_eq!(amended.status, 303, "{}", amended.body);
    let amendment_path = amended.location.unwrap();
    let amendment_id = amendment_path.rsplit('/').next().unwrap().to_string();
    assert_ne!(amendment_id, note_id);
    let original: Value = fhir_get(&clinic.server.base, &clinic.doc, &format!("DocumentReference/{note_id}"));
    assert_eq!(original["status"], "superseded");
    assert!(
        String::from_utf8_lossy(&base64_decode(original["content"][0]["attachment"]["data"].as_str().unwrap()))
            .contains("Fluids, rest")
    );
    let amendment: Value = fhir_get(&clinic.server.base, &clinic.doc, &format!("DocumentReference/{amendment_id}"));
    assert_eq!(amendment["docStatus"], "amended");
    assert_eq!(amendment["relatesTo"][0]["code"], "replaces");
    assert_eq!(amendment["relatesTo"][0]["target"]["reference"], format!("DocumentReference/{note_id}"));
    doc.get(&note_path).assert_has("Superseded by an amendment");
    doc.get(&amendment_path).assert_has("the original note");
    assert_eq!(count(&clinic, &format!("DocumentReference?patient={}", clinic.rosie)), notes_before + 2);
    // The newest entry of the timeline is the amendment.
    let timeline = doc.get(&format!("{chart}/timeline"));
    let entries = timeline.body.split("<ol class=\"timeline\" id=\"timeline\">").nth(1).unwrap();
    let first = entries.split("<li>").nth(1).unwrap().to_string();
    assert!(first.contains("Note: ") && first.contains(&amendment_id), "{first}");
    // Two clients amending the amendment at once through the API, each from the version it
    // read: exactly one wins, the other is told the note changed (412).
    let read_at = amendment["meta"]["versionId"].as_str().unwrap().to_string();
    let attempts: Vec<_> = (0..2)
        .map(|n| {
            let (base, token, amendment_id, read_at) =
                (clinic.server.base.clone(), clinic.doc.clone(), amendment_id.clone(), read_at.clone());
            let mut original = amendment.clone();
            std::thread::spawn(move || {
                original["status"] = json!("superseded");
                original.as_object_mut().unwrap().remove("meta");
                let mut again = original.clone();
                again.as_object_mut().unwrap().remove("id");
                again["status"] = json!("current");
                again["description"] = json!(format!("second amendment {n}"));
                again["relatesTo"] = json!([{"code": "replaces", "target": {"reference": format!("DocumentReference/{amendment_id}")}}]);
                let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                    {"resource": original, "request": {"method": "PUT", "url": format!("DocumentReference/{amendment_id}"), "ifMatch": format!("W/\"{read_at}\"")}},
                    {"resource": again, "request": {"method": "POST", "url": "DocumentReference"}},
                ]});
                let response = reqwest::blocking::Client::new()
                    .post(format!("{base}/"))
                    .bearer_auth(token)
                    .header("content-type", "application/fhir+json")
                    .body(bundle.to_string())
                    .send()
                    .unwrap();
                response.status().as_u16()
            })
        })
        .collect();
    let mut statuses: Vec<u16> = attempts.into_iter().map(|t| t.join().unwrap()).collect();
    statuses.sort();
    assert!(statuses[0] == 200 && matches!(statuses[1], 409 | 412), "one wins, one is told: {statuses:?}");

    // A behavioral-health progress note is labelled sensitive: written by a behavioral-health
    // clinician (in a new visit), not by a physician, who does not see such records.
    let bh_fields = [
        ("template", "bh"),
        ("title", "BH progress"),
        ("encounter", "new"),
        ("section0", "Mood better"),
        ("action", "sign"),
    ];
    let soap = doc.get(&format!("{chart}/notes/new"));
    soap.assert_lacks("Behavioral-health progress note");
    let bh = doc.get(&format!("{chart}/notes/new?template=bh"));
    assert_eq!(bh.status, 403);
    bh.assert_has("written and read by behavioral-health clinicians");
    let refused = doc.submit(&soap, &format!("{chart}/notes"), &bh_fields);
    assert_eq!(refused.status, 403, "{}", refused.body);
    let mut therapist = Visitor::signed_in(&clinic.origin, "therapist");
    therapist.get(&format!("{chart}/notes/new")).assert_has("Behavioral-health progress note");
    let bh = therapist.get(&format!("{chart}/notes/new?template=bh"));
    let written = therapist.submit(&bh, &format!("{chart}/notes"), &bh_fields);
    assert_eq!(written.status, 303, "{}", written.body);
    let bh_id = written.location.unwrap().rsplit('/').next().unwrap().to_string();
    let therapist_token = token(&clinic.data, "therapist");
    let bh_note: Value = fhir_get(&clinic.server.base, &therapist_token, &format!("DocumentReference/{bh_id}"));
    assert_eq!(bh_note["meta"]["security"][0]["code"], "PSY");
    let visit = bh_note["context"]["encounter"][0]["reference"].as_str().unwrap().to_string();
    let visit: Value = fhir_get(&clinic.server.base, &therapist_token, &visit);
    assert_eq!(visit["subject"]["reference"], format!("Patient/{}", clinic.rosie));

    // Vitals: one transaction, BMI computed, shown as the latest.
    let vitals = doc.get(&format!("{chart}/vitals"));
    let recorded = doc.submit(
        &vitals,
        &format!("{chart}/vitals"),
        &[("systolic", "128"), ("diastolic", "82"), ("weight", "70"), ("height", "175"), ("heart_rate", "64")],
    );
    assert_eq!(recorded.status, 303, "{}", recorded.body);
    doc.get(&recorded.location.unwrap()).assert_has("Vitals saved.");
    let summary = doc.get(&chart);
    summary.assert_has("128/82 mm[Hg]");
    summary.assert_has("22.86 kg/m2");

    // Problem list: add, then resolve.
    let lists = doc.get(&format!("{chart}/lists"));
    let added = doc.submit(
        &lists,
        &format!("{chart}/problems"),
        &[("problem", "Seasonal allergic rhinitis"), ("snomed", "367498001"), ("onset", "2020-04-01")],
    );
    assert_eq!(added.status, 303, "{}", added.body);
    let problems = resources(&fhir_get(
        &clinic.server.base,
        &clinic.doc,
        &format!("Condition?patient={}&code=367498001", clinic.rosie),
    ));
    assert_eq!(problems.len(), 1);
    let problem_id = problems[0]["id"].as_str().unwrap().to_string();
    assert_eq!(problems[0]["clinicalStatus"]["coding"][0]["code"], "active");
    doc.get(&chart).assert_has("Seasonal allergic rhinitis");
    let lists = doc.get(&format!("{chart}/lists"));
    let resolved = doc.submit(&lists, &format!("{chart}/problems/{problem_id}/resolve"), &[]);
    assert_eq!(resolved.status, 303, "{}", resolved.body);
    let problem = fhir_get(&clinic.server.base, &clinic.doc, &format!("Condition/{problem_id}"));
    assert_eq!(problem["clinicalStatus"]["coding"][0]["code"], "resolved");
    doc.get(&chart).assert_lacks("Seasonal allergic rhinitis");

    // Allergy list: the new allergy is in the banner.
    let lists = doc.get(&format!("/app/patients/{}/lists", clinic.barry));
    let allergy = doc.submit(
        &lists,
        &format!("/app/patients/{}/allergies", clinic.barry),
        &[("substance", "Penicillin"), ("reaction", "Hives"), ("criticality", "high")],
    );
    assert_eq!(allergy.status, 303, "{}", allergy.body);
    let banner = doc.get(&format!("/app/patients/{}", clinic.barry));
    banner.assert_has("Penicillin");
    banner.assert_lacks("Not recorded");

    // Medication list: add, then discontinue with a reason.
    let lists = doc.get(&format!("{chart}/lists"));
    let med = doc.submit(
        &lists,
        &format!("{chart}/medications"),
        &[
            ("medication", "Amoxicillin 500 MG Oral Capsule"),
            ("rxnorm", "308182"),
            ("dosage", "1 capsule three times daily"),
        ],
    );
    assert_eq!(med.status, 303, "{}", med.body);
    let meds = resources(&fhir_get(
        &clinic.server.base,
        &clinic.doc,
        &format!("MedicationRequest?patient={}&code=308182", clinic.rosie),
    ));
    assert_eq!(meds.len(), 1);
    let med_id = meds[0]["id"].as_str().unwrap().to_string();
    doc.get(&chart).assert_has("Amoxicillin 500 MG Oral Capsule");
    let lists = doc.get(&format!("{chart}/lists"));
    let no_reason = doc.submit(&lists, &format!("{chart}/medications/{med_id}/discontinue"), &[("reason", "")]);
    assert_eq!(no_reason.status, 422);
    let stopped = doc.submit(&lists, &format!("{chart}/medications/{med_id}/discontinue"), &[("reason", "Rash")]);
    assert_eq!(stopped.status, 303, "{}", stopped.body);
    let med = fhir_get(&clinic.server.base, &clinic.doc, &format!("MedicationRequest/{med_id}"));
    assert_eq!(med["status"], "stopped");
    assert_eq!(med["statusReason"]["text"], "Rash");
    doc.get(&chart).assert_lacks("Amoxicillin 500 MG Oral Capsule");

    // Each write is audited as the user's, like a write through the API.
    let admin = token(&clinic.data, "it-admin");
    let trail = fhir_get(&clinic.server.base, &admin, &format!("AuditEvent?patient={}&_count=500", clinic.rosie));
    let writes: Vec<Value> =
        resources(&trail).into_iter().filter(|e| e["action"] == "C" || e["action"] == "U").collect();
    assert!(writes.iter().any(|e| e["agent"][0]["name"] == "doc" && e["action"] == "C"), "{trail}");
    assert!(
        writes.iter().any(|e| e["agent"][0]["name"] == "doc" && e["action"] == "U"),
        "the signing and the resolving"
    );

    // Writes are the user's: the outsider cannot post into Rosie's chart.
    let mut outsider = Visitor::signed_in(&clinic.origin, "outsider");
    let own = outsider.get("/app/patients");
    let refused = outsider.submit(&own, &format!("{chart}/problems"), &[("problem", "Not theirs to add")]);
    assert_eq!(refused.status, 403);
    assert_eq!(count(&clinic, &format!("Condition?patient={}&code:text=Not theirs", clinic.rosie)), 0);
}

#[test]
fn bad_form_input_is_answered_on_the_form_and_nothing_is_stored() {
    let clinic = clinic();
    let mut doc = Visitor::signed_in(&clinic.origin, "doc");
    let chart = format!("/app/patients/{}", clinic.rosie);
    let stored = |clinic: &clinic::Clinic| {
        ["DocumentReference", "Condition", "Observation", "AllergyIntolerance", "MedicationRequest", "Encounter"]
            .map(|t| count(clinic, &format!("{t}?patient={}", clinic.rosie)))
    };
    let before = stored(&clinic);

    // Empty required fields.
    let form = doc.get(&format!("{chart}/notes/new"));
    let empty = doc.submit(
        &form,
        &format!("{chart}/notes"),
        &[("template", "soap"), ("title", ""), ("encounter", "new"), ("action", "sign")],
    );
    assert_eq!(empty.status, 422);
    empty.assert_has("Nothing was saved.");
    empty.assert_has("Title is required.");
    let blank = doc.submit(
        &form,
        &format!("{chart}/notes"),
        &[("template", "soap"), ("title", "Visit"), ("encounter", "new"), ("section0", " "), ("action", "sign")],
    );
    assert_eq!(blank.status, 422);
    blank.assert_has("The note is empty: write at least one section.");
    let lists = doc.get(&format!("{chart}/lists"));
    let nameless = doc.submit(&lists, &format!("{chart}/problems"), &[("problem", "  "), ("onset", "")]);
    assert_eq!(nameless.status, 422);
    nameless.assert_has("The problem is required.");
    let no_substance = doc.submit(&lists, &format!("{chart}/allergies"), &[("substance", ""), ("criticality", "low")]);
    assert_eq!(no_substance.status, 422);
    no_substance.assert_has("The substance is required.");
    let vitals = doc.get(&format!("{chart}/vitals"));
    let nothing = doc.submit(&vitals, &format!("{chart}/vitals"), &[("systolic", ""), ("weight", "")]);
    assert_eq!(nothing.status, 422);

    // Impossible dates and numbers.
    let feb30 = doc.submit(&lists, &format!("{chart}/problems"), &[("problem", "Asthma"), ("onset", "2023-02-30")]);
    assert_eq!(feb30.status, 422);
    feb30.assert_has("The onset date must be a real date (YYYY-MM-DD).");
    feb30.assert_has("value=\"Asthma\"");
    let future = doc.submit(&lists, &format!("{chart}/problems"), &[("problem", "Asthma"), ("onset", "2999-01-01")]);
    assert_eq!(future.status, 422);
    future.assert_has("cannot be in the future");
    let words = doc.submit(&vitals, &format!("{chart}/vitals"), &[("systolic", "high"), ("diastolic", "80")]);
    assert_eq!(words.status, 422);
    words.assert_has("Systolic");
    let half_bp = doc.submit(&vitals, &format!("{chart}/vitals"), &[("systolic", "120"), ("diastolic", "")]);
    assert_eq!(half_bp.status, 422);
    let absurd = doc.submit(&vitals, &format!("{chart}/vitals"), &[("weight", "9000")]);
    assert_eq!(absurd.status, 422);

    // Script tags: refused with a message, and shown back escaped.
    let script = "<script>alert('x')</script>";
    let tagged = doc.submit(&lists, &format!("{chart}/problems"), &[("problem", script), ("onset", "")]);
    assert_eq!(tagged.status, 422);
    tagged.assert_has("The problem must be plain text");
    tagged.assert_has("&lt;script&gt;alert('x')&lt;/script&gt;");
    tagged.assert_lacks(script);
    let note = doc.submit(
        &form,
        &format!("{chart}/notes"),
        &[("template", "soap"), ("title", "Visit"), ("encounter", "new"), ("section0", script), ("action", "sign")],
    );
    assert_eq!(note.status, 422);
    note.assert_has("must be plain text");
    note.assert_lacks(script);
    // A form without its CSRF value, or with another session's, stores nothing.
    let forged = doc.post(&format!("{chart}/problems"), &[("problem", "Asthma")]);
    assert_eq!(forged.status, 403);
    let other = Visitor::signed_in(&clinic.origin, "outsider").get("/app/patients");
    let forged = doc.submit(&other, &format!("{chart}/problems"), &[("problem", "Asthma")]);
    assert_eq!(forged.status, 403);

    assert_eq!(stored(&clinic), before, "nothing was stored");

    // Markup that arrived by another door (the API) is shown as text, not run.
    let condition = json!({"resourceType": "Condition", "subject": {"reference": format!("Patient/{}", clinic.rosie)},
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"text": "<img src=x onerror=alert(1)> & \"quoted\""}});
    fhir_post(&clinic.server.base, &clinic.doc, &condition);
    let summary = doc.get(&chart);
    summary.assert_has("&lt;img src=x onerror=alert(1)&gt; &amp; &quot;quoted&quot;");
    summary.assert_lacks("<img src=x");
}

/// Sends `resource` to `path` of the API as the clinic's physician: the status and the answer.
fn fhir_send(clinic: &clinic::Clinic, method: reqwest::Method, path: &str, resource: &Value) -> (u16, Value) {
    let response = reqwest::blocking::Client::new()
        .request(method, format!("{}/{path}", clinic.server.base))
        .bearer_auth(&clinic.doc)
        .header("content-type", "application/fhir+json")
        .body(resource.to_string())
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}

#[test]
fn roles_second_factor_and_what_the_summary_gathers() {
    let clinic = clinic();
    let base = &clinic.server.base;
    let chart = format!("/app/patients/{}", clinic.rosie);

    // A front desk opens the chart for its own work: demographics and visits, not results,
    // allergies or problems (each left out, and said so), and no clinical forms.
    let mut desk = Visitor::signed_in(&clinic.origin, "desk");
    let summary = desk.get(&chart);
    assert_eq!(summary.status, 200);
    summary.assert_has("Rosie394 Tiny880 Gutmann970");
    summary.assert_has("Allergies: </strong><span class=\"warn\">Not shown to your role</span>");
    summary.assert_has("Not shown to your role.");
    for clinical in ["Lisinopril", "Body mass index 30+", "mm[Hg]"] {
        summary.assert_lacks(clinical);
    }
    let timeline = desk.get(&format!("{chart}/timeline"));
    assert_eq!(timeline.status, 200);
    timeline.assert_has("Encounter: ");
    timeline.assert_lacks("Result: ");
    timeline.assert_has("Not shown to your role: result, report, note, procedure, medication, immunization, document.");
    desk.get(&format!("{chart}/trends?measure=bp")).assert_has("Results are not shown to your role.");
    assert_eq!(desk.get(&format!("{chart}/lists")).status, 403);
    assert_eq!(desk.get(&format!("{chart}/vitals")).status, 403);
    assert_eq!(desk.get(&format!("{chart}/notes/new")).status, 403);

    // A second factor: the password, then the code of the authenticator app.
    clinic::add_user(&clinic.data, "nurse", "nurse", &[&clinic.rosie_org]);
    let printed = String::from_utf8(continuum(&clinic.data, &["user", "totp", "nurse"], None).stdout).unwrap();
    let secret = printed.lines().find_map(|l| l.strip_prefix("secret: ")).unwrap().to_string();
    let mut nurse = Visitor::new(&clinic.origin);
    let step = nurse.sign_in("nurse", clinic::PASSWORD);
    assert_eq!(step.status, 200);
    step.assert_has("Code from your authenticator app");
    let ticket = step.body.split("name=\"ticket\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let csrf = step.csrf();
    let wrong = nurse.post(
        "/app/sign-in/code",
        &[("csrf", &csrf), ("ticket", &ticket), ("next", "/app/patients"), ("code", "000000")],
    );
    assert_eq!(wrong.status, 401);
    let step = nurse.sign_in("nurse", clinic::PASSWORD);
    let ticket = step.body.split("name=\"ticket\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let code = totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_secret(totp_rs::Secret::try_from_base32(&secret).unwrap())
        .build()
        .unwrap()
        .generate_current()
        .to_string();
    let signed_in = nurse.post(
        "/app/sign-in/code",
        &[("csrf", &step.csrf()), ("ticket", &ticket), ("next", "/app/patients"), ("code", &code)],
    );
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert_eq!(nurse.get(&chart).status, 200);
    // A nurse records vitals but does not prescribe.
    let lists = nurse.get(&format!("{chart}/lists"));
    let prescribed =
        nurse.submit(&lists, &format!("{chart}/medications"), &[("medication", "Aspirin 81 MG Oral Tablet")]);
    assert_eq!(prescribed.status, 403);

    // What the summary and banner gather from other doors: an upcoming appointment, an open
    // task and referral, a flag.
    let subject = json!({"reference": format!("Patient/{}", clinic.rosie)});
    let next_year = format!("{}-06-01T09:00:00Z", 2027 + 1);
    fhir_post(
        base,
        &clinic.doc,
        &json!({"resourceType": "Appointment", "status": "booked", "description": "Diabetes review",
        "start": next_year, "end": next_year.replace("09:00", "09:30"),
        "participant": [{"actor": subject.clone(), "status": "accepted"}]}),
    );
    // (Task is outside R4's Patient compartment but holds the patient's data all the same: the
    // policy keeps it in the patient's record, so the physician who reaches Rosie writes it.)
    fhir_post(
        base,
        &clinic.doc,
        &json!({"resourceType": "Task", "status": "requested", "intent": "order",
        "description": "Call back with lab results", "for": subject.clone()}),
    );
    fhir_post(
        base,
        &clinic.doc,
        &json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "code": {"text": "Referral to cardiology"}, "subject": subject.clone()}),
    );
    fhir_post(
        base,
        &clinic.doc,
        &json!({"resourceType": "Flag", "status": "active", "code": {"text": "Fall risk"}, "subject": subject.clone()}),
    );
    let mut doc = Visitor::signed_in(&clinic.origin, "doc");
    let summary = doc.get(&chart);
    for text in [
        "Diabetes review",
        "Task: Call back with lab results",
        "Referral / order: Referral to cardiology",
        "<li>Fall risk</li>",
    ] {
        summary.assert_has(text);
    }
    for page in ["", "/timeline", "/trends", "/notes/new", "/vitals", "/lists"] {
        doc.get(&format!("{chart}{page}")).assert_lacks("<script");
    }

    // Timeline by organization, trends by period.
    let by_org = doc.get(&format!("{chart}/timeline?org=Organization/{}", clinic.rosie_org));
    by_org.assert_has("Source: TEWKSBURY HOSPITAL");
    let sources: Vec<&str> = by_org.body.split("Source: ").skip(1).map(|s| s.split('<').next().unwrap()).collect();
    assert!(!sources.is_empty() && sources.iter().all(|s| *s == "TEWKSBURY HOSPITAL"), "{sources:?}");
    let period = doc.get(&format!("/app/patients/{}/trends?measure=hba1c&from=1990-01-01&to=1992-12-31", clinic.barry));
    let rows = period.body.split("<tbody>").nth(1).unwrap().split("</tbody>").next().unwrap();
    assert_eq!(rows.matches("<tr>").count(), 3, "HbA1c of 1990, 1991 and 1992: {rows}");

    // "No known allergies" only when recorded so; refused while an allergy is active; an
    // allergy recorded later retires it.
    let new = fhir_post(
        base,
        &clinic.doc,
        &json!({"resourceType": "Patient", "name": [{"family": "Newcomer", "given": ["Nia"]}],
        "managingOrganization": {"reference": format!("Organization/{}", clinic.rosie_org)}}),
    );
    let newcomer = format!("/app/patients/{}", new["id"].as_str().unwrap());
    doc.get(&newcomer).assert_has("Allergies: </strong><span class=\"warn\">Not recorded</span>");
    let lists = doc.get(&format!("{newcomer}/lists"));
    assert_eq!(doc.submit(&lists, &format!("{newcomer}/allergies"), &[("no_known", "1")]).status, 303);
    doc.get(&newcomer).assert_has("Allergies: </strong><span>No known allergies</span>");
    let lists = doc.get(&format!("{newcomer}/lists"));
    let peanuts =
        doc.submit(&lists, &format!("{newcomer}/allergies"), &[("substance", "Peanut"), ("criticality", "high")]);
    assert_eq!(peanuts.status, 303, "{}", peanuts.body);
    let banner = doc.get(&newcomer);
    banner.assert_has("Peanut (high criticality)");
    banner.assert_lacks("No known allergies");
    let lists = doc.get(&format!("{newcomer}/lists"));
    let contradiction = doc.submit(&lists, &format!("{newcomer}/allergies"), &[("no_known", "1")]);
    assert_eq!(contradiction.status, 422);
    contradiction.assert_has("inactivate them before recording");
    let allergy = lists.body.split("/allergies/").nth(1).unwrap().split('/').next().unwrap().to_string();
    assert_eq!(doc.submit(&lists, &format!("{newcomer}/allergies/{allergy}/inactivate"), &[]).status, 303);
    doc.get(&newcomer).assert_has("Allergies: </strong><span class=\"warn\">Not recorded</span>");
}

#[test]
fn without_access_control_there_is_no_app() {
    // `serve --no-auth` (benchmarks, test rigs) has no users to sign in: it serves no app.
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"), &[]);
    let origin = server.base.trim_end_matches("/fhir");
    let mut visitor = Visitor::new(origin);
    assert_eq!(visitor.get("/app/sign-in").status, 404);
    assert_eq!(visitor.get("/app/patients").status, 404);
}

#[test]
fn chart_pages_are_not_shown_unaudited() {
    let clinic = clinic();
    let mut doc = Visitor::signed_in(&clinic.origin, "doc");
    let chart = format!("/app/patients/{}", clinic.rosie);
    assert_eq!(doc.get(&chart).status, 200);
    // The audit table refuses inserts: the chart is not shown (its view could not be recorded).
    let db = rusqlite::Connection::open(clinic.data.join(store_sqlite::DATABASE_FILE)).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    db.execute_batch(
        "CREATE TRIGGER audit_blocked BEFORE INSERT ON audit_event BEGIN SELECT RAISE(ABORT, 'blocked'); END",
    )
    .unwrap();
    let refused = doc.get(&chart);
    assert_eq!(refused.status, 503);
    refused.assert_has("audit trail is unavailable");
    refused.assert_lacks("Gutmann970");
    assert_eq!(doc.get(&format!("{chart}/timeline")).status, 503);
    db.execute_batch("DROP TRIGGER audit_blocked").unwrap();
    let shown = doc.get(&chart);
    assert_eq!(shown.status, 200, "recovered");
    shown.assert_has("Gutmann970");
}

/// The repository's root (for the test documents and the CDA schema).
fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The name the reconciliation page gives the incoming item `Type/id` (as the HTML has it).
fn incoming_name(page: &clinic::Page, patient: &str, item: &str) -> String {
    let action = format!("action=\"/app/patients/{patient}/reconcile/{item}\"");
    let at = page.body.find(&action).unwrap_or_else(|| panic!("{item} is on the page:\n{}", page.body));
    let row = page.body[..at].rfind("<th scope=\"row\">").unwrap() + "<th scope=\"row\">".len();
    page.body[row..at].split("<br>").next().unwrap().to_string()
}

/// `GET {origin}{path}` signed in as `user` through the app's form, with the answer's headers
/// (the test client keeps no headers but `Location`).
fn download(origin: &str, user: &str, path: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let http = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let cookies = |response: &reqwest::blocking::Response| -> Vec<String> {
        response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_string())
            .filter(|c| !c.ends_with('='))
            .collect()
    };
    let form = http.get(format!("{origin}/app/sign-in")).send().unwrap();
    let jar = cookies(&form);
    let body = form.text().unwrap();
    let at = body.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = body[at..at + 32].to_string();
    let signed = http
        .post(format!("{origin}/app/sign-in"))
        .header("cookie", jar.join("; "))
        .form(&[("csrf", csrf.as_str()), ("next", "/app/patients"), ("username", user), ("password", clinic::PASSWORD)])
        .send()
        .unwrap();
    assert_eq!(signed.status(), 303);
    let mut jar = jar;
    for cookie in cookies(&signed) {
        let name = cookie.split('=').next().unwrap().to_string();
        jar.retain(|c| !c.starts_with(&format!("{name}=")));
        jar.push(cookie);
    }
    let answer = http.get(format!("{origin}{path}")).header("cookie", jar.join("; ")).send().unwrap();
    let (status, headers) = (answer.status().as_u16(), answer.headers().clone());
    (status, headers, answer.bytes().unwrap().to_vec())
}

/// Validates `xml` against the CDA R2 + SDTC schema with xmllint (which CI installs: the test
/// fails without it).
fn schema_valid(xml: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("document.xml");
    std::fs::write(&file, xml).unwrap();
    let schema = repo().join("testdata/ccda/cda-schema-sdtc/infrastructure/cda/CDA_SDTC.xsd");
    let out = std::process::Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&schema)
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("xmllint could not be run ({e}): install it (apt-get install -y libxml2-utils)"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim_end().ends_with(" validates"), "schema validation failed:\n{stderr}");
}

#[test]
fn imported_items_are_reconciled_and_documents_are_made_from_the_chart() {
    let clinic = clinic();
    let (base, origin, barry) = (&clinic.server.base, &clinic.origin, &clinic.barry);
    let chart = format!("/app/patients/{barry}");

    // A C-CDA document imported for Barry: its problems, allergies and medications wait for
    // reconciliation. Barry carries the document's patient identifier (his SSN in CCD_1), so
    // `continuum import` files it to him as `$ccda-import?patient=` would. (Through the API,
    // a staff user's import is refused as yet: the Provenance the importer writes names no
    // patient, so the policy cannot place it in a record the user may write.)
    let (status, mut patient) = fhir_send(&clinic, reqwest::Method::GET, &format!("Patient/{barry}"), &Value::Null);
    assert_eq!(status, 200);
    let ssn = json!({"system": "http://hl7.org/fhir/sid/us-ssn", "value": "444222222"});
    match patient["identifier"].as_array_mut() {
        Some(identifiers) => identifiers.push(ssn),
        None => patient["identifier"] = json!([ssn]),
    }
    let (status, _) = fhir_send(&clinic, reqwest::Method::PUT, &format!("Patient/{barry}"), &patient);
    assert_eq!(status, 200);
    let document = repo().join("testdata/ccda/hl7-c-cda-examples/CCD_1.xml");
    continuum(&clinic.data, &["import", document.to_str().unwrap()], None);
    let mut pending = Vec::new();
    for kind in ["Condition", "AllergyIntolerance", "MedicationStatement", "MedicationRequest"] {
        let query = format!("{kind}?patient={barry}&_tag=urn:continuum:reconciliation|pending");
        for item in resources(&fhir_get(base, &clinic.doc, &query)) {
            pending.push(format!("{kind}/{}", item["id"].as_str().unwrap()));
        }
    }
    let of_type = |t: &str| -> Vec<String> {
        pending.iter().filter(|p| p.starts_with(&format!("{t}/"))).cloned().collect::<Vec<_>>()
    };
    let (conditions, allergies) = (of_type("Condition"), of_type("AllergyIntolerance"));
    assert!(conditions.len() >= 2 && allergies.len() == 2, "{pending:?}");

    // The chart links to reconciliation with the count; the held items are not on it yet.
    let mut doc = Visitor::signed_in(origin, "doc");
    let summary = doc.get(&chart);
    assert_eq!(summary.status, 200);
    summary.assert_has(&format!("href=\"{chart}/reconcile\">{} incoming items to reconcile", pending.len()));
    summary.assert_has("Allergies: </strong><span class=\"warn\">Not recorded</span>");

    // The page: every incoming item with its codes and three actions, beside the chart's lists.
    let page = doc.get(&format!("{chart}/reconcile"));
    assert_eq!(page.status, 200);
    for heading in ["Problems", "Allergies and intolerances", "Medications", "Incoming (", "On the chart ("] {
        page.assert_has(heading);
    }
    for item in &pending {
        page.assert_has(&format!("action=\"{chart}/reconcile/{item}\""));
    }
    page.assert_has("<th scope=\"col\">Codes</th>");
    page.assert_has("http://snomed.info/sct|");
    page.assert_has("<label for=\"into-Condition-");
    let accepted = incoming_name(&page, barry, &conditions[0]);
    let rejected = incoming_name(&page, barry, &conditions[1]);
    let lists = doc.get(&format!("{chart}/lists"));
    lists.assert_lacks(&accepted);
    lists.assert_lacks(&rejected);

    // Accept one: it joins the problem list.
    let done = doc.submit(&page, &format!("{chart}/reconcile/{}", conditions[0]), &[("decision", "accept")]);
    assert_eq!(done.status, 303, "{}", done.body);
    let location = done.location.unwrap();
    assert_eq!(location, format!("{chart}/reconcile?done=accepted"));
    let page = doc.get(&location);
    page.assert_has("Accepted: the item is now on the chart");
    page.assert_lacks(&format!("action=\"{chart}/reconcile/{}\"", conditions[0]));
    // Reject another: it stays off.
    let done = doc.submit(&page, &format!("{chart}/reconcile/{}", conditions[1]), &[("decision", "reject")]);
    assert_eq!(done.location.as_deref(), Some(format!("{chart}/reconcile?done=rejected").as_str()));
    let lists = doc.get(&format!("{chart}/lists"));
    lists.assert_has(&accepted);
    lists.assert_lacks(&rejected);
    let condition = fhir_get(base, &clinic.doc, &conditions[1]);
    assert_eq!(condition["verificationStatus"]["coding"][0]["code"], "entered-in-error");

    // Merge: the second allergy into the first, once that one is accepted (the select offers
    // the chart's allergies).
    let page = doc.get(&format!("{chart}/reconcile"));
    let done = doc.submit(&page, &format!("{chart}/reconcile/{}", allergies[0]), &[("decision", "accept")]);
    assert_eq!(done.status, 303);
    let page = doc.get(&format!("{chart}/reconcile"));
    let kept_id = allergies[0].trim_start_matches("AllergyIntolerance/");
    page.assert_has(&format!("<option value=\"{kept_id}\">"));
    let done =
        doc.submit(&page, &format!("{chart}/reconcile/{}", allergies[1]), &[("decision", "merge"), ("into", kept_id)]);
    assert_eq!(done.location.as_deref(), Some(format!("{chart}/reconcile?done=merged").as_str()));
    doc.get(done.location.as_deref().unwrap()).assert_has("Merged:");
    let merged = fhir_get(base, &clinic.doc, &allergies[1]);
    assert_eq!(merged["extension"][0]["valueReference"]["reference"], allergies[0].as_str());
    // A decision twice, or a made-up one, changes nothing.
    let again = doc.submit(&page, &format!("{chart}/reconcile/{}", allergies[1]), &[("decision", "accept")]);
    assert_eq!(again.status, 404);
    let odd = doc.submit(&page, &format!("{chart}/reconcile/{}", conditions[0]), &[("decision", "maybe")]);
    assert_eq!(odd.status, 400);
    let summary = doc.get(&chart);
    let left = pending.len() - 4;
    assert!(left > 0, "CCD_1 has medications too: {pending:?}");
    summary.assert_has(&format!(">{left} incoming item"));

    // Download CCD: an attachment of XML, a ClinicalDocument, valid against the CDA schema.
    let (status, headers, ccd) = download(origin, "doc", &format!("{chart}/ccd"));
    assert_eq!(status, 200);
    assert!(headers["content-type"].to_str().unwrap().starts_with("application/xml"));
    assert_eq!(headers["content-disposition"].to_str().unwrap(), format!("attachment; filename=\"ccd-{barry}.xml\""));
    let text = String::from_utf8(ccd.clone()).unwrap();
    let parsed = roxmltree::Document::parse(&text).unwrap();
    assert_eq!(parsed.root_element().tag_name().name(), "ClinicalDocument");
    schema_valid(&ccd);
    summary.assert_has(&format!("href=\"{chart}/ccd\""));

    // Send referral document: a referral note kept on the record as an outgoing document (its
    // Binary is Barry's by its securityContext, written by those who write his documents).
    summary.assert_has(&format!("action=\"{chart}/referral-document\""));
    let sent = doc.submit(&summary, &format!("{chart}/referral-document"), &[]);
    assert_eq!(sent.status, 303, "{}", sent.body);
    let location = sent.location.unwrap();
    let reference = location.split("?sent=").nth(1).unwrap().to_string();
    let shown = doc.get(&location);
    shown.assert_has("kept on it as an outgoing document");
    shown.assert_has("not yet built");
    shown.assert_has(&format!("href=\"{chart}/documents/{reference}\""));
    let found = resources(&fhir_get(
        base,
        &clinic.doc,
        &format!("DocumentReference?patient={barry}&type=http://loinc.org|57133-1"),
    ));
    assert_eq!(found.len(), 1);
    let document = &found[0];
    assert_eq!(document["id"], reference.as_str());
    assert_eq!(document["status"], "current");
    assert_eq!(document["content"][0]["format"]["code"], "urn:hl7-org:sdwg:ccda-structuredBody:2.1");
    let binary = document["content"][0]["attachment"]["url"].as_str().unwrap();
    assert!(binary.starts_with("Binary/"), "{binary}");
    let (status, headers, note) = download(origin, "doc", &format!("{chart}/documents/{reference}"));
    assert_eq!(status, 200);
    assert!(headers["content-disposition"].to_str().unwrap().starts_with("attachment; filename=\"referral-"));
    let note = String::from_utf8(note).unwrap();
    assert_eq!(roxmltree::Document::parse(&note).unwrap().root_element().tag_name().name(), "ClinicalDocument");
    assert!(note.contains("57133-1"));

    // Who may not open Barry is refused on every new route, and nothing is written.
    let mut outsider = Visitor::signed_in(origin, "outsider");
    let closed = outsider.get(&chart);
    assert_eq!(closed.status, 403);
    for path in [format!("{chart}/ccd"), format!("{chart}/reconcile"), format!("{chart}/documents/{reference}")] {
        let refused = outsider.get(&path);
        assert_eq!(refused.status, 403, "{path}");
        refused.assert_lacks("Wolf");
        refused.assert_lacks("ClinicalDocument");
    }
    let refused = outsider.submit(&closed, &format!("{chart}/referral-document"), &[]);
    assert_eq!(refused.status, 403);
    let decided = [&conditions[0], &conditions[1], &allergies[0], &allergies[1]];
    let waiting = pending.iter().find(|p| !decided.contains(p)).expect("CCD_1 leaves items waiting");
    let refused = outsider.submit(&closed, &format!("{chart}/reconcile/{waiting}"), &[("decision", "reject")]);
    assert_eq!(refused.status, 403, "{waiting}");
    let tags = fhir_get(base, &clinic.doc, waiting)["meta"]["tag"].clone();
    assert!(tags.as_array().unwrap().iter().any(|t| t["code"] == "pending"), "{tags}");
    let refused = outsider.submit(&closed, &format!("{chart}/reconcile/{}", conditions[0]), &[("decision", "reject")]);
    assert_eq!(refused.status, 403);
    let (status, _, body) = download(origin, "outsider", &format!("{chart}/ccd"));
    assert_eq!(status, 403);
    assert!(!String::from_utf8_lossy(&body).contains("ClinicalDocument"));
    let found = resources(&fhir_get(
        base,
        &clinic.doc,
        &format!("DocumentReference?patient={barry}&type=http://loinc.org|57133-1"),
    ));
    assert_eq!(found.len(), 1, "the outsider's post filed nothing");
    assert_eq!(fhir_get(base, &clinic.doc, &conditions[0])["verificationStatus"]["coding"][0]["code"], "confirmed");
}

#[test]
fn registration_staff_review_possible_duplicates() {
    let clinic = clinic();
    let (base, origin, rosie) = (&clinic.server.base, &clinic.origin, &clinic.rosie);
    // Rosie registered again: a typo in her given name, no SSN, no MRN, no phone, another
    // street, a digit of her birth date mistyped (probably her, not certainly).
    let mut again = fhir_get(base, &clinic.doc, &format!("Patient/{rosie}"));
    for field in ["id", "meta", "text", "identifier", "link", "telecom"] {
        again.as_object_mut().unwrap().remove(field);
    }
    let given = again["name"][0]["given"][0].as_str().unwrap().to_string();
    again["name"][0]["given"][0] = json!(format!("{given}e"));
    again["address"][0]["line"] = json!(["99 Elsewhere Road"]);
    // And one digit of her birth date keyed wrong.
    let born = again["birthDate"].as_str().unwrap().to_string();
    let last = if born.ends_with('1') { '2' } else { '1' };
    again["birthDate"] = json!(format!("{}{last}", &born[..born.len() - 1]));
    let created = fhir_post(base, &clinic.doc, &again);
    let copy = created["id"].as_str().unwrap().to_string();

    // The pair reaches the registration desk's work list.
    let mut desk = Visitor::signed_in(origin, "desk");
    let mut page = desk.get("/app/duplicates");
    for _ in 0..100 {
        if page.body.contains(&copy) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        page = desk.get("/app/duplicates");
    }
    assert_eq!(page.status, 200);
    page.assert_has("Possible duplicate records");
    // Rosie's record is the desk's to see; the copy names no organization of theirs yet, so
    // only its comparison is shown.
    page.assert_has(&format!("/app/patients/{rosie}"));
    page.assert_has(&format!("Patient/{copy}: outside your reach"));
    page.assert_lacks(&format!("{given}e"));
    page.assert_has("How the fields agree");
    page.assert_has("<th scope=\"row\">birth-date</th><td>similar</td>");
    page.assert_has("Merge B into A");
    // Physicians do not review duplicates; the nav offers the list only to those who do.
    let mut doc = Visitor::signed_in(origin, "doc");
    assert_eq!(doc.get("/app/duplicates").status, 403);
    doc.get("/app/patients").assert_lacks("href=\"/app/duplicates\"");
    desk.get("/app/patients").assert_has("href=\"/app/duplicates\"");

    // Not a match: remembered, and the pair leaves the list.
    let pair = page.body.split("name=\"pair\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    assert!(pair.contains(&copy) && pair.contains(rosie.as_str()), "{pair}");
    let done = desk.submit(&page, "/app/duplicates", &[("pair", &pair), ("decision", "not-a-match")]);
    assert_eq!(done.status, 303, "{}", done.body);
    let after = desk.get(done.location.as_deref().unwrap());
    after.assert_has("Marked not a match");
    after.assert_lacks(&format!("value=\"{pair}\""));
}

#[test]
fn care_plans_and_the_phq9_form() {
    let clinic = clinic();
    let (base, origin, rosie) = (&clinic.server.base, &clinic.origin, &clinic.rosie);
    let mut doc = Visitor::signed_in(origin, "doc");
    let plans = format!("/app/patients/{rosie}/care-plans");

    // Start a plan (plain text only), then it is shown with its history.
    let list = doc.get(&plans);
    assert_eq!(list.status, 200);
    list.assert_has("Start a shared care plan");
    list.assert_has(&format!("href=\"{plans}\""));
    let refused = doc.submit(&list, &plans, &[("title", "<script>alert(1)</script>"), ("care_team", "")]);
    assert_eq!(refused.status, 422);
    refused.assert_has("must be plain text");
    refused.assert_lacks("<script>alert(1)");
    // One of her active problems is what the plan addresses.
    let address = list.body.split("name=\"address-").nth(1).unwrap().split('"').next().unwrap().to_string();
    let address_field = format!("address-{address}");
    let made = doc.submit(
        &list,
        &plans,
        &[("title", "Diabetes & depression"), ("description", "Shared plan"), ("care_team", ""), (&address_field, "1")],
    );
    assert_eq!(made.status, 303, "{}", made.body);
    let plan_path = made.location.unwrap();
    let plan_id = plan_path.rsplit('/').next().unwrap().to_string();
    let page = doc.get(&plan_path);
    assert_eq!(page.status, 200);
    page.assert_has("Diabetes &amp; depression");
    page.assert_has("No goal yet.");
    page.assert_has("Change history");
    page.assert_has("<td>doc</td>");
    page.assert_has("created (active)");
    let stored = fhir_get(base, &clinic.doc, &format!("CarePlan/{plan_id}"));
    assert_eq!((stored["intent"].as_str(), stored["status"].as_str()), (Some("plan"), Some("active")));
    assert_eq!(stored["addresses"][0]["reference"], format!("Condition/{address}"));
    page.assert_has("<dt>Addresses</dt>");

    // A goal: bad input is answered on the form, nothing stored; then a PHQ-9 target.
    let goal = |target: &'static str| {
        vec![
            ("version", "1"),
            ("goal_description", "Depression in remission"),
            ("measure", "44261-6"),
            ("comparator", "<"),
            ("target", target),
            ("due", "2099-12-31"),
        ]
    };
    let bad = doc.submit(&page, &format!("{plan_path}/goals"), &goal("five"));
    assert_eq!(bad.status, 422);
    bad.assert_has("The target must be a number.");
    assert_eq!(fhir_get(base, &clinic.doc, &format!("CarePlan/{plan_id}"))["meta"]["versionId"], "1");
    let added = doc.submit(&page, &format!("{plan_path}/goals"), &goal("5"));
    assert_eq!(added.status, 303, "{}", added.body);
    let page = doc.get(&plan_path);
    page.assert_has("Depression in remission");
    page.assert_has("PHQ-9 total score &lt; 5");
    page.assert_has("2099-12-31");
    // An edit on the version shown before the goal was added: the record changed meanwhile.
    let stale = doc.submit(&page, &format!("{plan_path}/status"), &[("version", "1"), ("status", "on-hold")]);
    assert_eq!(stale.status, 409);
    stale.assert_has("changed while you were working");
    let on_hold = doc.submit(&page, &format!("{plan_path}/status"), &[("version", "2"), ("status", "on-hold")]);
    assert_eq!(on_hold.status, 303);
    let activity = doc.submit(
        &page,
        &format!("{plan_path}/activities"),
        &[
            ("version", "3"),
            ("activity_description", "Weekly therapy"),
            ("activity_status", "scheduled"),
            ("request", ""),
        ],
    );
    assert_eq!(activity.status, 303, "{}", activity.body);

    // The PHQ-9 form: nine questions; a missing answer is refused, nothing stored.
    let screening = format!("/app/patients/{rosie}/screening");
    let form = doc.get(&screening);
    assert_eq!(form.status, 200);
    form.assert_has("Little interest or pleasure in doing things");
    form.assert_has("name=\"item9\"");
    let scores_before = count(&clinic, &format!("Observation?patient={rosie}&code=http://loinc.org|44261-6"));
    let encounter =
        form.body.split("<option value=\"Encounter/").nth(1).unwrap().split('"').next().unwrap().to_string();
    let encounter = format!("Encounter/{encounter}");
    let mut answers = vec![("instrument", "phq-9"), ("encounter", encounter.as_str())];
    let items = ["item1", "item2", "item3", "item4", "item5", "item6", "item7", "item8", "item9"];
    let values = ["2", "2", "2", "2", "2", "1", "1", "1", "1"];
    answers.extend(items.iter().zip(values).filter(|(i, _)| **i != "item3").map(|(i, v)| (*i, v)));
    let missing = doc.submit(&form, &screening, &answers);
    assert_eq!(missing.status, 422);
    missing.assert_has("PHQ-9 item 3 is not answered");
    assert_eq!(count(&clinic, &format!("Observation?patient={rosie}&code=http://loinc.org|44261-6")), scores_before);
    answers.push(("item3", "2"));
    let scored = doc.submit(&form, &screening, &answers);
    assert_eq!(scored.status, 303, "{}", scored.body);
    let shown = doc.get(scored.location.as_deref().unwrap());
    shown.assert_has("PHQ-9 total score: <strong>14</strong> — Moderate depression");
    shown.assert_has("Item 9 (thoughts of self-harm) answered 1");
    assert_eq!(
        count(&clinic, &format!("Observation?patient={rosie}&code=http://loinc.org|44261-6")),
        scores_before + 1
    );
    let score_id = scored.location.as_deref().unwrap().rsplit("score=").next().unwrap().to_string();
    let score = fhir_get(base, &clinic.doc, &format!("Observation/{score_id}"));
    assert_eq!(score["encounter"]["reference"], encounter.as_str());
    assert_eq!(score["component"][0]["valueInteger"], 1);
    // The goal reads the new score; the trend lists it.
    let page = doc.get(&plan_path);
    page.assert_has("<td>14<span class=\"muted\">");
    page.assert_has("Weekly therapy");
    doc.get(&format!("/app/patients/{rosie}/trends?measure=phq9")).assert_has("PHQ-9 total score");

    // A response posted through the FHIR API is scored by the server too.
    let items: Vec<Value> = [
        "44250-9", "44255-8", "44259-0", "44254-1", "44251-7", "44258-2", "44252-5", "44253-3", "44260-8",
    ]
    .iter()
    .map(
        |code| json!({"linkId": code, "answer": [{"valueCoding": {"system": "http://loinc.org", "code": "LA6569-3"}}]}),
    )
    .collect();
    let response = fhir_post(
        base,
        &clinic.doc,
        &json!({"resourceType": "QuestionnaireResponse", "questionnaire": "urn:continuum:questionnaire:phq-9",
            "status": "completed", "subject": {"reference": format!("Patient/{rosie}")}, "item": items}),
    );
    let key =
        format!("identifier=urn:continuum:screening-score|QuestionnaireResponse/{}", response["id"].as_str().unwrap());
    let mut found = Vec::new();
    for _ in 0..100 {
        found = resources(&fhir_get(base, &clinic.doc, &format!("Observation?{key}")));
        if !found.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(found.len(), 1, "scored once");
    assert_eq!(found[0]["valueInteger"], 9);

    // A physician outside the patient's reach sees neither the plan nor the form.
    let mut outsider = Visitor::signed_in(origin, "outsider");
    for path in [plan_path.as_str(), plans.as_str(), screening.as_str()] {
        let refused = outsider.get(path);
        assert_eq!(refused.status, 403, "{path}");
        refused.assert_lacks("Depression in remission");
    }
}
