//! The clinician app's task inbox and referral dashboard against a secured `continuum serve`
//! (the clinic of `web_pages.rs`): Tasks written through the FHIR API reach their owner's
//! inbox overdue first and marked in words; actions go through the lifecycle (a reason where
//! one is due, the FHIR API refused the same illegal step); a referral shows its age, state
//! and steps; a physician outside the patient's reach sees none of it.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use serde_json::{Value, json};
use test_support::clinic::{self, Visitor, clinic, token};
use test_support::process::continuum;

/// Sends `resource` to `path` of the API with `bearer`: the status and the answer.
fn send(base: &str, bearer: &str, method: reqwest::Method, path: &str, resource: &Value) -> (u16, Value) {
    let url = if path.is_empty() { base.to_string() } else { format!("{base}/{path}") };
    let response = reqwest::blocking::Client::new()
        .request(method, url)
        .bearer_auth(bearer)
        .header("content-type", "application/fhir+json")
        .body(resource.to_string())
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn days_from_now(days: i64) -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::days(days)).date().to_string()
}

#[test]
fn the_task_inbox_and_the_referral_dashboard() {
    let clinic = clinic();
    let (base, origin, rosie) = (&clinic.server.base, &clinic.origin, &clinic.rosie);
    let post = reqwest::Method::POST;

    // A nurse of Rosie's clinic with a Practitioner of her own.
    let admin = token(&clinic.data, "it-admin");
    let (status, practitioner) = send(
        base,
        &admin,
        post.clone(),
        "Practitioner",
        &json!({"resourceType": "Practitioner", "name": [{"family": "Nightingale"}]}),
    );
    assert_eq!(status, 201, "{practitioner}");
    let practitioner = practitioner["id"].as_str().unwrap().to_string();
    continuum(
        &clinic.data,
        &[
            "user",
            "add",
            "carla",
            "--role",
            "nurse",
            "--org",
            &clinic.rosie_org,
            "--practitioner",
            &practitioner,
            "--password-stdin",
        ],
        Some(&format!("{}\n", clinic::PASSWORD)),
    );

    // The physician writes her two Tasks through the FHIR API: one overdue, one stat.
    let task = |description: &str, due: &str, priority: &str| {
        json!({"resourceType": "Task", "status": "requested", "intent": "order", "priority": priority,
            "description": description, "for": {"reference": format!("Patient/{rosie}")},
            "owner": {"reference": format!("Practitioner/{practitioner}")}, "executionPeriod": {"end": due}})
    };
    let (status, late) =
        send(base, &clinic.doc, post.clone(), "Task", &task("Call Rosie about her labs", "2020-01-01", "routine"));
    assert_eq!(status, 201, "{late}");
    let (status, _) =
        send(base, &clinic.doc, post.clone(), "Task", &task("Review wound photo", &days_from_now(7), "stat"));
    assert_eq!(status, 201);
    let late_id = late["id"].as_str().unwrap().to_string();

    let mut carla = Visitor::signed_in(origin, "carla");
    let inbox = carla.get("/app/tasks");
    assert_eq!(inbox.status, 200, "{}", inbox.body);
    inbox.assert_has("href=\"/app/tasks\"");
    inbox.assert_has("href=\"/app/referrals\"");
    inbox.assert_has("My tasks (2 open, 1 overdue)");
    inbox.assert_has("OVERDUE");
    inbox.assert_has("Rosie394");
    let (late_at, stat_at) =
        (inbox.body.find("Call Rosie about her labs").unwrap(), inbox.body.find("Review wound photo").unwrap());
    assert!(late_at < stat_at, "overdue first");
    inbox.assert_has(&format!("/app/patients/{rosie}"));
    // Her organization's list is offered beside her own.
    inbox.assert_has(&format!("/app/tasks?list=organization:{}", clinic.rosie_org));

    // Rejecting needs a reason: said at the top, nothing written.
    let path = format!("/app/tasks/{late_id}");
    let refused = carla.submit(
        &inbox,
        &path,
        &[("version", "1"), ("action", "reject"), ("text", " "), ("back", "/app/tasks?list=mine")],
    );
    assert_eq!(refused.status, 422, "{}", refused.body);
    refused.assert_has("Nothing was saved");
    refused.assert_has("Say why");
    // Accept, with the version shown.
    let accepted =
        carla.submit(&inbox, &path, &[("version", "1"), ("action", "accept"), ("back", "/app/tasks?list=mine")]);
    assert_eq!(accepted.status, 303, "{}", accepted.body);
    let after = carla.get(accepted.location.as_deref().unwrap());
    after.assert_has("Accepted: the task is yours to do.");
    // The same form sent again is stale: the record changed meanwhile.
    let stale =
        carla.submit(&inbox, &path, &[("version", "1"), ("action", "accept"), ("back", "/app/tasks?list=mine")]);
    assert_eq!(stale.status, 409, "{}", stale.body);
    // The FHIR API refuses the illegal step the app does not offer (accepted → completed).
    let mut current = send(base, &clinic.doc, reqwest::Method::GET, &format!("Task/{late_id}"), &Value::Null).1;
    current["status"] = json!("completed");
    let (status, outcome) = send(base, &clinic.doc, reqwest::Method::PUT, &format!("Task/{late_id}"), &current);
    assert_eq!(status, 422, "{outcome}");
    assert_eq!(outcome["issue"][0]["code"], "business-rule");

    // A referral from Rosie's clinic to Barry's hospital, sent 20 days ago.
    let sent = time::OffsetDateTime::now_utc() - time::Duration::days(20);
    let sent = sent.format(&time::format_description::well_known::Rfc3339).unwrap();
    let referral = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:9b1f6d6e-7d3c-4e0e-a7a8-3c1b2f7d4a01", "request": {"method": "POST", "url": "ServiceRequest"},
         "resource": {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
            "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "3457005"}]}],
            "code": {"text": "Endocrinology"}, "subject": {"reference": format!("Patient/{rosie}")}, "authoredOn": sent,
            "performer": [{"reference": "Organization/BARRY_ORG"}]}},
        {"request": {"method": "POST", "url": "Task"},
         "resource": {"resourceType": "Task", "status": "requested", "intent": "order", "authoredOn": sent,
            "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]},
            "focus": {"reference": "urn:uuid:9b1f6d6e-7d3c-4e0e-a7a8-3c1b2f7d4a01"},
            "for": {"reference": format!("Patient/{rosie}")},
            "requester": {"reference": format!("Organization/{}", clinic.rosie_org)},
            "owner": {"reference": "Organization/BARRY_ORG"}}}
    ]});
    // Barry's hospital: the organization of his first encounter's provider.
    let finder = token(&clinic.data, "doc");
    let barry_org = send(
        base,
        &finder,
        reqwest::Method::GET,
        "Organization?name:exact=ANNA%20JAQUES%20HOSPITAL",
        &Value::Null,
    )
    .1["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let referral: Value = serde_json::from_str(&referral.to_string().replace("BARRY_ORG", &barry_org)).unwrap();
    let (status, answer) = send(base, &clinic.doc, post, "", &referral);
    assert_eq!(status, 200, "{answer}");
    let sr = answer["entry"][0]["response"]["location"].as_str().unwrap().split('/').nth(1).unwrap().to_string();

    // The physician sends another from Rosie's chart, through the app's form.
    let mut doc = Visitor::signed_in(origin, "doc");
    let summary = doc.get(&format!("/app/patients/{rosie}"));
    summary.assert_has(&format!("href=\"/app/patients/{rosie}/referrals/new\""));
    let form = doc.get(&format!("/app/patients/{rosie}/referrals/new"));
    assert_eq!(form.status, 200, "{}", form.body);
    form.assert_has("ANNA JAQUES HOSPITAL");
    let send_path = format!("/app/patients/{rosie}/referrals");
    let fields = |service: &'static str| {
        vec![
            ("service", service),
            ("reason", "Palpitations"),
            ("from", clinic.rosie_org.as_str()),
            ("to", barry_org.as_str()),
        ]
    };
    let refused = doc.submit(&form, &send_path, &fields(" "));
    assert_eq!(refused.status, 422, "{}", refused.body);
    refused.assert_has("is required");
    let sent_by_app = doc.submit(&form, &send_path, &fields("Cardiology"));
    assert_eq!(sent_by_app.status, 303, "{}", sent_by_app.body);
    let page = doc.get(sent_by_app.location.as_deref().unwrap());
    page.assert_has("Sent: the receiving organization has it on its work list.");
    page.assert_has("Referral to Cardiology");
    let cardiology = sent_by_app.location.as_deref().unwrap().trim_start_matches("/app/referrals/");
    let cardiology = cardiology.split('?').next().unwrap().to_string();

    // And adds a task for Rosie's clinic from her chart; it lands on the clinic's work list.
    summary.assert_has(&format!("href=\"/app/patients/{rosie}/tasks/new\""));
    let form = doc.get(&format!("/app/patients/{rosie}/tasks/new"));
    assert_eq!(form.status, 200, "{}", form.body);
    let owner = format!("Organization/{}", clinic.rosie_org);
    let task_path = format!("/app/patients/{rosie}/tasks");
    let tomorrow = days_from_now(1);
    let refused = doc.submit(&form, &task_path, &[("description", ""), ("owner", &owner), ("priority", "urgent")]);
    assert_eq!(refused.status, 422, "{}", refused.body);
    refused.assert_has("is required");
    let added = doc.submit(
        &form,
        &task_path,
        &[("description", "Bring the glucose diary"), ("owner", &owner), ("due", &tomorrow), ("priority", "urgent")],
    );
    assert_eq!(added.status, 303, "{}", added.body);
    let clinic_list = carla.get(&format!("/app/tasks?list=organization:{}", clinic.rosie_org));
    clinic_list.assert_has("Bring the glucose diary");
    clinic_list.assert_has("urgent");

    let board = carla.get("/app/referrals");
    assert_eq!(board.status, 200, "{}", board.body);
    board.assert_has("Cardiology</a>");
    board.assert_has("<td>0</td>");
    board.assert_has("Endocrinology");
    board.assert_has("ANNA JAQUES HOSPITAL");
    board.assert_has("<td>20 <strong class=\"abnormal overdue\">OVERDUE</strong></td>");
    board.assert_has("<td>Sent</td>");
    board.assert_has(&format!("href=\"/app/referrals/{sr}\""));
    let none = carla.get("/app/referrals?state=seen");
    none.assert_lacks("Endocrinology</a>");
    let detail = carla.get(&format!("/app/referrals/{sr}"));
    assert_eq!(detail.status, 200, "{}", detail.body);
    detail.assert_has("Referral to Endocrinology");
    detail.assert_has("<h2>Steps</h2>");
    detail.assert_has("20 days");
    // Carla's clinic referred: it may cancel (with a reason), not accept on the hospital's behalf.
    detail.assert_has("Cancel the referral");
    detail.assert_lacks(">Accept</button>");

    // The consult report of the Cardiology referral arrives through the FHIR API: the server's
    // closer completes the referral right behind the commit.
    let report = json!({"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "Cardiology consult"},
        "subject": {"reference": format!("Patient/{rosie}")},
        "basedOn": [{"reference": format!("ServiceRequest/{cardiology}")}]});
    let (status, _) = send(base, &clinic.doc, reqwest::Method::POST, "DiagnosticReport", &report);
    assert_eq!(status, 201);
    let mut closed = Value::Null;
    for _ in 0..100 {
        closed = send(base, &clinic.doc, reqwest::Method::GET, &format!("ServiceRequest/{cardiology}"), &Value::Null).1;
        if closed["status"] == "completed" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(closed["status"], "completed", "closed by the server's follower");
    let page = carla.get(&format!("/app/referrals/{cardiology}"));
    page.assert_has("Report returned (closed)");
    page.assert_has("DiagnosticReport/");

    // A physician outside Rosie's reach sees none of it.
    let mut outsider = Visitor::signed_in(origin, "outsider");
    let theirs = outsider.get("/app/tasks");
    assert_eq!(theirs.status, 200);
    theirs.assert_lacks("Call Rosie");
    theirs.assert_lacks("Rosie394");
    let board = outsider.get("/app/referrals");
    assert_eq!(board.status, 200);
    board.assert_lacks("Endocrinology");
    assert_eq!(outsider.get(&format!("/app/referrals/{sr}")).status, 404);
    let page = outsider.get("/app/tasks");
    let forged =
        outsider.submit(&page, &path, &[("version", "2"), ("action", "start"), ("back", "/app/tasks?list=mine")]);
    assert_eq!(forged.status, 404, "{}", forged.body);
    let still = send(base, &clinic.doc, reqwest::Method::GET, &format!("Task/{late_id}"), &Value::Null).1;
    assert_eq!(still["status"], "accepted", "nothing changed");
    // Nor may they refer Rosie: the form is not shown, and a forged post writes nothing.
    assert_eq!(outsider.get(&format!("/app/patients/{rosie}/referrals/new")).status, 403);
    assert_eq!(outsider.get(&format!("/app/patients/{rosie}/tasks/new")).status, 403);
    let forged = outsider.submit(&page, &task_path, &[("description", "Sneak"), ("owner", "Organization/x")]);
    assert!(matches!(forged.status, 403 | 404), "{}", forged.body);
    let referrals_before =
        send(base, &clinic.doc, reqwest::Method::GET, "ServiceRequest?_summary=count", &Value::Null).1;
    let forged = outsider.submit(&page, &send_path, &[("service", "Anything"), ("to", barry_org.as_str())]);
    assert!(matches!(forged.status, 403 | 404), "{}", forged.body);
    let referrals_after =
        send(base, &clinic.doc, reqwest::Method::GET, "ServiceRequest?_summary=count", &Value::Null).1;
    assert_eq!(referrals_before["total"], referrals_after["total"], "nothing written");
}
