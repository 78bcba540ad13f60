//! The seed's scenario of care coordination, scripted end to end against the real binary
//! through the FHIR API, HL7 v2 over MLLP and the clinician app's pages:
//!
//! a patient with diabetes and depression; her primary-care clinic records an HbA1c and a
//! PHQ-9 of 14 (the app's form); an alert reaches the behavioral-health clinician of another
//! organization (the clinic's rules notify its BH partner); the BH clinician joins the care
//! team (the app's care-team tab) and the plan gets a depression goal; both see each other's
//! notes and scores, and a physician outside the team does not; an ED visit arrives as ADT
//! `A04` over MLLP and the care manager's inbox has the alert within a second; the discharge
//! `A03` creates the follow-up Tasks; a referral to endocrinology goes through every state and
//! closes when the consult note arrives.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};
use test_support::clinic::{PASSWORD, Page, Visitor, resources, token};
use test_support::process::{continuum, start_secured};

const MRN_SYSTEM: &str = "urn:oid:1.2.3.4";

fn add_user(data: &Path, name: &str, role: &str, org: &str, practitioner: &str) {
    let args = ["user", "add", name, "--role", role, "--org", org, "--practitioner", practitioner, "--password-stdin"];
    let out = continuum(data, &args, Some(&format!("{PASSWORD}\n")));
    assert!(out.status.success(), "user add {name}: {}", String::from_utf8_lossy(&out.stderr));
}

fn put(resource: Value) -> Value {
    let url = format!("{}/{}", resource["resourceType"].as_str().unwrap(), resource["id"].as_str().unwrap());
    json!({"resource": resource, "request": {"method": "PUT", "url": url}})
}

fn practitioner(id: &str, family: &str, given: &str) -> Value {
    put(json!({"resourceType": "Practitioner", "id": id, "name": [{"family": family, "given": [given]}]}))
}

/// The directory, the patient and her first care team, loaded before the server starts.
fn seed(data: &Path) {
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        put(json!({"resourceType": "Organization", "id": "riverside", "name": "Riverside Primary Care"})),
        put(json!({"resourceType": "Organization", "id": "harbor", "name": "Harbor Behavioral Health"})),
        put(json!({"resourceType": "Organization", "id": "mercy", "name": "Mercy Hospital"})),
        put(json!({"resourceType": "Organization", "id": "endo", "name": "Lakeside Endocrinology"})),
        put(json!({"resourceType": "Organization", "id": "elsewhere", "name": "Elsewhere Clinic"})),
        practitioner("osler", "Osler", "Anna"),
        practitioner("rogers", "Rogers", "Carl"),
        practitioner("nightingale", "Nightingale", "Flo"),
        practitioner("banting", "Banting", "Fred"),
        practitioner("stranger", "Stranger", "Sam"),
        put(json!({"resourceType": "Patient", "id": "jane", "name": [{"family": "Doe", "given": ["Jane"]}],
            "gender": "female", "birthDate": "1968-05-17",
            "identifier": [{"system": MRN_SYSTEM, "value": "M100"}],
            "managingOrganization": {"reference": "Organization/riverside"},
            "generalPractitioner": [{"reference": "Organization/riverside"}]})),
        put(json!({"resourceType": "Condition", "id": "jane-diabetes",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006", "display": "Diabetes mellitus type 2"}]},
            "subject": {"reference": "Patient/jane"}})),
        put(json!({"resourceType": "Condition", "id": "jane-depression",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "35489007", "display": "Depressive disorder"}]},
            "subject": {"reference": "Patient/jane"}})),
        put(json!({"resourceType": "CareTeam", "id": "jane-team", "status": "active", "name": "Jane's care team",
            "subject": {"reference": "Patient/jane"},
            "participant": [
                {"role": [{"text": "Primary care physician"}], "member": {"reference": "Practitioner/osler"},
                 "onBehalfOf": {"reference": "Organization/riverside"}},
                {"role": [{"text": "Care manager"}], "member": {"reference": "Practitioner/nightingale"},
                 "onBehalfOf": {"reference": "Organization/riverside"}}
            ]})),
    ]});
    let file = data.parent().unwrap().join("seed.json");
    std::fs::write(&file, bundle.to_string()).unwrap();
    let out = continuum(data, &["import", file.to_str().unwrap()], None);
    assert!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));
    add_user(data, "pcp", "physician", "riverside", "osler");
    add_user(data, "manager", "care-manager", "riverside", "nightingale");
    add_user(data, "bh", "behavioral-health-clinician", "harbor", "rogers");
    add_user(data, "endocrinologist", "physician", "endo", "banting");
    add_user(data, "outsider", "physician", "elsewhere", "stranger");
}

fn get(base: &str, token: &str, path: &str) -> (u16, Value) {
    let response = reqwest::blocking::Client::new().get(format!("{base}/{path}")).bearer_auth(token).send().unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn post(base: &str, token: &str, resource: &Value) -> Value {
    let kind = resource["resourceType"].as_str().unwrap();
    let response = reqwest::blocking::Client::new()
        .post(format!("{base}/{kind}"))
        .bearer_auth(token)
        .header("content-type", "application/fhir+json")
        .body(resource.to_string())
        .send()
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().unwrap();
    assert!((200..300).contains(&status), "POST {kind}: {status} {body}");
    body
}

/// Polls `check` every 20 ms for up to `within`; how long it took.
fn within(what: &str, within: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < within {
        if check() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("not within {within:?}: {what}");
}

fn mllp(address: &str, message: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.write_all(&hl7v2::mllp::frame(message.as_bytes()).unwrap()).unwrap();
    let mut decoder = hl7v2::mllp::Decoder::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = stream.read(&mut buffer).unwrap();
        assert!(n > 0, "connection closed without an ACK");
        if let Some(frame) = decoder.decode(&buffer[..n]).into_iter().next() {
            return String::from_utf8(frame.unwrap()).unwrap();
        }
    }
}

fn adt(event: &str, control: &str, class: &str) -> String {
    format!(
        "MSH|^~\\&|MERCY|MERCY|CONT|CONT|20261208120000+0000||ADT^{event}^ADT_A01|{control}|P|2.5.1\r\
         EVN|{event}\rPID|1||M100^^^GHH&1.2.3.4&ISO^MR||Doe^Jane||19680517|F\r\
         PV1|1|{class}|ED^1^A||||||||||||||||V-ED-1^^^GHH&1.2.3.4&ISO^VN\r"
    )
}

fn alert_events(base: &str, token: &str, recipient: &str) -> Vec<String> {
    let (status, bundle) = get(base, token, &format!("Communication?recipient={recipient}&category=alert"));
    assert_eq!(status, 200, "{bundle}");
    resources(&bundle)
        .iter()
        .map(|c| c["reasonCode"][0]["coding"][0]["code"].as_str().unwrap_or("").to_string())
        .collect()
}

fn page_has(page: &Page, text: &str) -> bool {
    page.body.contains(text)
}

fn sign_note(visitor: &mut Visitor, patient: &str, title: &str, text: &str) {
    let chart = format!("/app/patients/{patient}");
    let form = visitor.get(&format!("{chart}/notes/new?template=soap"));
    assert_eq!(form.status, 200, "{}", form.body);
    let fields = [
        ("template", "soap"),
        ("title", title),
        ("encounter", "new"),
        ("section0", text),
        ("section1", "Stable"),
        ("section2", "As discussed"),
        ("section3", "Follow up"),
        ("action", "sign"),
    ];
    let signed = visitor.submit(&form, &format!("{chart}/notes"), &fields);
    assert_eq!(signed.status, 303, "{}", signed.body);
}

#[test]
fn diabetes_and_depression_across_three_organizations() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    seed(&data);
    let rules = dir.path().join("alert-rules.json");
    std::fs::write(
        &rules,
        r#"{"rules": [
            {"organization": "riverside", "events": []},
            {"organization": "riverside", "events": ["depression-screen-positive"], "notify": ["Organization/harbor"]}
        ]}"#,
    )
    .unwrap();
    let server = start_secured(
        &data,
        &[
            "--rate-limit",
            "0",
            "--sign-in-per-minute",
            "0",
            "--mllp",
            "127.0.0.1:0",
            "--alert-rules",
            rules.to_str().unwrap(),
        ],
    );
    let base = server.base.clone();
    let origin = base.trim_end_matches("/fhir").to_string();
    let (pcp, manager, bh, outsider, endo) = (
        token(&data, "pcp"),
        token(&data, "manager"),
        token(&data, "bh"),
        token(&data, "outsider"),
        token(&data, "endocrinologist"),
    );
    // Before anything happens the BH clinician of the other organization cannot open her record.
    assert_eq!(get(&base, &bh, "Patient/jane").0, 404);

    // 1. The primary-care clinic records an HbA1c (API) and a PHQ-9 of 14 (the app's form).
    let now = store::format_instant(time::OffsetDateTime::now_utc());
    post(
        &base,
        &pcp,
        &json!({"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4", "display": "Hemoglobin A1c"}]},
            "subject": {"reference": "Patient/jane"}, "effectiveDateTime": now,
            "valueQuantity": {"value": 9.1, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
            "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "H"}]}]}),
    );
    let mut anna = Visitor::signed_in(&origin, "pcp");
    let screening = "/app/patients/jane/screening";
    let form = anna.get(screening);
    assert_eq!(form.status, 200, "{}", form.body);
    let answers = [
        ("instrument", "phq-9"),
        ("item1", "2"),
        ("item2", "2"),
        ("item3", "2"),
        ("item4", "2"),
        ("item5", "2"),
        ("item6", "1"),
        ("item7", "1"),
        ("item8", "2"),
        ("item9", "0"),
    ];
    let scored = anna.submit(&form, screening, &answers);
    assert_eq!(scored.status, 303, "{}", scored.body);
    assert!(page_has(&anna.get(scored.location.as_deref().unwrap()), "<strong>14</strong>"));

    // 2. The alert reaches the BH clinician of Harbor (the clinic's rules notify its partner):
    // in Harbor's inbox, and now she may open the chart.
    within("the BH partner is told of the positive screen", Duration::from_secs(5), || {
        alert_events(&base, &bh, "Organization/harbor").contains(&"depression-screen-positive".to_string())
    });
    let mut carl = Visitor::signed_in(&origin, "bh");
    let inbox = carl.get("/app/alerts");
    assert!(page_has(&inbox, "Positive depression screen"), "{}", inbox.body);
    assert!(page_has(&inbox, "unread"));
    assert_eq!(get(&base, &bh, "Patient/jane").0, 200);
    // The team's own members were told too (the care manager), of the abnormal HbA1c as well.
    within("the care manager is told", Duration::from_secs(5), || {
        let events = alert_events(&base, &manager, "Practitioner/nightingale");
        events.contains(&"depression-screen-positive".to_string()) && events.contains(&"abnormal-result".to_string())
    });

    // 3. The BH clinician joins the care team (the app's care-team tab).
    let team = carl.get("/app/patients/jane/care-team");
    assert_eq!(team.status, 200, "{}", team.body);
    let joined = carl.submit(
        &team,
        "/app/patients/jane/care-team",
        &[
            ("member", "Practitioner/rogers"),
            ("role", "Behavioral health clinician"),
            ("organization", "Organization/harbor"),
        ],
    );
    assert_eq!(joined.status, 303, "{}", joined.body);
    let team = carl.get("/app/patients/jane/care-team");
    assert!(page_has(&team, "Rogers") && page_has(&team, "Harbor Behavioral Health"), "{}", team.body);

    // 4. The plan gets a depression goal: the PCP starts the shared plan, the BH clinician adds
    // the goal (PHQ-9 < 5), which reads the latest score.
    let plans = "/app/patients/jane/care-plans";
    let list = anna.get(plans);
    let made = anna.submit(&list, plans, &[("title", "Diabetes and depression"), ("care_team", "")]);
    assert_eq!(made.status, 303, "{}", made.body);
    let plan_path = made.location.unwrap();
    let plan = carl.get(&plan_path);
    assert_eq!(plan.status, 200, "{}", plan.body);
    let goal = carl.submit(
        &plan,
        &format!("{plan_path}/goals"),
        &[
            ("version", "1"),
            ("goal_description", "Depression in remission"),
            ("measure", "44261-6"),
            ("comparator", "<"),
            ("target", "5"),
            ("due", "2027-06-30"),
        ],
    );
    assert_eq!(goal.status, 303, "{}", goal.body);
    let plan = anna.get(&plan_path);
    assert!(page_has(&plan, "Depression in remission") && page_has(&plan, "<td>14"), "{}", plan.body);

    // 5. Both see each other's notes and scores; a physician outside the team does not.
    sign_note(&mut anna, "jane", "Diabetes follow-up", "Sugars high; discussed mood");
    sign_note(&mut carl, "jane", "Therapy intake", "Low mood for months");
    for (who, token) in [("PCP", &pcp), ("BH", &bh)] {
        let (status, notes) = get(&base, token, "DocumentReference?patient=jane");
        assert_eq!(status, 200);
        let titles: Vec<String> =
            resources(&notes).iter().filter_map(|n| n["description"].as_str().map(str::to_string)).collect();
        let all = notes.to_string();
        assert!(all.contains("Diabetes follow-up") && all.contains("Therapy intake"), "{who} sees both: {titles:?}");
        let (_, scores) = get(&base, token, "Observation?patient=jane&code=http://loinc.org|44261-6");
        assert_eq!(resources(&scores).len(), 1, "{who} sees the score");
    }
    assert_eq!(get(&base, &outsider, "Patient/jane").0, 404);
    let (status, notes) = get(&base, &outsider, "DocumentReference?patient=jane");
    assert!(status == 404 || (status == 200 && resources(&notes).is_empty()), "{status} {notes}");
    let mut sam = Visitor::signed_in(&origin, "outsider");
    assert_eq!(sam.get("/app/patients/jane/care-team").status, 403);

    // 6. An ED visit arrives as ADT A04 over MLLP: the care manager's inbox has it within 1 s.
    let ack = mllp(server.mllp(), &adt("A04", "ED-1", "E"));
    assert!(ack.contains("MSA|AA|ED-1"), "{ack}");
    let took = within("the ED visit alert", Duration::from_secs(1), || {
        alert_events(&base, &manager, "Practitioner/nightingale").contains(&"ed-visit".to_string())
    });
    eprintln!("ADT A04 acknowledged → care manager's alert: {took:?}");
    let mut flo = Visitor::signed_in(&origin, "manager");
    assert!(page_has(&flo.get("/app/alerts"), "Emergency department visit"));

    // 7. The discharge (A03) creates the follow-up Tasks for the practice.
    let ack = mllp(server.mllp(), &adt("A03", "ED-2", "E"));
    assert!(ack.contains("MSA|AA|ED-2"), "{ack}");
    within("the follow-up Tasks", Duration::from_secs(5), || {
        let (_, tasks) = get(&base, &manager, "Task?patient=jane&owner=Organization/riverside");
        let codes: Vec<String> = resources(&tasks)
            .iter()
            .filter_map(|t| t["code"]["coding"][0]["code"].as_str().map(str::to_string))
            .collect();
        codes.contains(&"call".to_string()) && codes.contains(&"visit".to_string())
    });
    let discharges = flo.get("/app/discharges");
    assert!(page_has(&discharges, "Emergency department"), "{}", discharges.body);

    // 8. A referral to endocrinology goes through every state and closes when the consult note
    // arrives.
    let form = anna.get("/app/patients/jane/referrals/new");
    assert_eq!(form.status, 200, "{}", form.body);
    let sent = anna.submit(
        &form,
        "/app/patients/jane/referrals",
        &[("service", "Endocrinology"), ("reason", "HbA1c 9.1 %"), ("from", "riverside"), ("to", "endo")],
    );
    assert_eq!(sent.status, 303, "{}", sent.body);
    let referral = sent.location.unwrap().trim_start_matches("/app/referrals/").split('?').next().unwrap().to_string();
    let mut fred = Visitor::signed_in(&origin, "endocrinologist");
    for step in ["receive", "accept", "schedule", "seen"] {
        let (_, tasks) = get(&base, &endo, &format!("Task?focus=ServiceRequest/{referral}"));
        let task = resources(&tasks).into_iter().find(|t| t["code"]["coding"][0]["code"] == "fulfill").unwrap();
        let page = fred.get(&format!("/app/referrals/{referral}"));
        assert_eq!(page.status, 200, "{}", page.body);
        let done = fred.submit(
            &page,
            &format!("/app/referrals/{referral}/steps"),
            &[
                ("task", task["id"].as_str().unwrap()),
                ("version", task["meta"]["versionId"].as_str().unwrap()),
                ("step", step),
            ],
        );
        assert_eq!(done.status, 303, "{step}: {}", done.body);
    }
    let consult = json!({"resourceType": "DocumentReference", "status": "current", "docStatus": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11488-4", "display": "Consult note"}]},
        "subject": {"reference": "Patient/jane"}, "date": now,
        "context": {"related": [{"reference": format!("ServiceRequest/{referral}")}]},
        "content": [{"attachment": {"contentType": "text/plain", "data": "U3RhcnQgR0xQLTEgYWdvbmlzdC4="}}]});
    post(&base, &endo, &consult);
    within("the referral closes", Duration::from_secs(15), || {
        get(&base, &pcp, &format!("ServiceRequest/{referral}")).1["status"] == "completed"
    });
    let dashboard = anna.get("/app/referrals");
    assert_eq!(dashboard.status, 200);
    let detail = anna.get(&format!("/app/referrals/{referral}"));
    assert!(page_has(&detail, "Report returned (closed)"), "{}", detail.body);
    for step in ["Received", "Accepted", "Scheduled", "Seen"] {
        assert!(page_has(&detail, step), "the steps name {step}");
    }
    let (_, tasks) = get(&base, &endo, &format!("Task?focus=ServiceRequest/{referral}"));
    let fulfil = resources(&tasks).into_iter().find(|t| t["code"]["coding"][0]["code"] == "fulfill").unwrap();
    assert_eq!(fulfil["status"], "completed");
}
