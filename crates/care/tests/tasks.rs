//! Tasks on a real store behind a secured door: the lifecycle through the service and through
//! the plain write path every door shares (single writes and transaction Bundles), reasons,
//! work lists per user, role, team and organization with their overdue flags and order, and
//! a physician outside the patient's reach seeing none of the patient's Tasks.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use access::{Access, Door};
use care::tasks::{self, Action, NewTask, Priority, Status, WorkList};
use fhir::ErrorClass;
use serde_json::{Value, json};
use std::sync::Arc;
use store::Records;
use time::OffsetDateTime;

struct World {
    _dir: tempfile::TempDir,
    records: Records,
    door: Door,
    authority: Arc<auth::Authority>,
}

fn put(records: &Records, resource: Value) {
    let t = resource["resourceType"].as_str().unwrap().to_string();
    let id = resource["id"].as_str().unwrap().to_string();
    records.update(&t, &id, resource, None).unwrap();
}

fn staff(authority: &auth::Authority, name: &str, org: &str, practitioner: &str, roles: &[&str]) {
    let identity = auth::Identity::Staff {
        roles: vec![if name == "nurse" { auth::Role::Nurse } else { auth::Role::Physician }],
        organizations: vec![org.into()],
        practitioner: Some(practitioner.into()),
        practitioner_roles: roles.iter().map(|r| r.to_string()).collect(),
    };
    authority
        .add_user(auth::NewUser { username: name.into(), identity, password: Some("a long enough password".into()) })
        .unwrap();
}

/// Two organizations; p1 is org-a's patient (with a care team), p2 org-b's. `doc` and
/// `nurse` (with a role) work for org-a, `outsider` for org-b.
fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let backend = store_sqlite::SqliteBackend::open(dir.path()).unwrap();
    let records = Records::new(Arc::new(backend)).with_hook(Arc::new(tasks::TaskLifecycle));
    std::fs::create_dir_all(dir.path().join("auth")).unwrap();
    let (authority, _) =
        store_sqlite::auth::open_authority(&dir.path().join("auth"), auth::AuthConfig::new("http://test.example/fhir"))
            .unwrap();
    let authority = Arc::new(authority);
    let policy = Arc::new(policy::Policy::new(authority.clone(), records.clone()));
    let door = Door::secured(records.clone(), policy, None);
    for (id, name) in [("org-a", "Riverside Clinic"), ("org-b", "Hilltop Practice")] {
        put(&records, json!({"resourceType": "Organization", "id": id, "name": name}));
    }
    for id in ["pr-doc", "pr-nurse", "pr-out"] {
        put(&records, json!({"resourceType": "Practitioner", "id": id}));
    }
    put(
        &records,
        json!({"resourceType": "PractitionerRole", "id": "role-nurse", "practitioner": {"reference": "Practitioner/pr-nurse"},
            "organization": {"reference": "Organization/org-a"}, "code": [{"text": "Diabetes nurse"}]}),
    );
    for (id, org, family) in [("p1", "org-a", "Lopez"), ("p2", "org-b", "Okafor")] {
        put(
            &records,
            json!({"resourceType": "Patient", "id": id, "name": [{"family": family, "given": ["Ana"]}],
                "managingOrganization": {"reference": format!("Organization/{org}")}}),
        );
    }
    put(
        &records,
        json!({"resourceType": "CareTeam", "id": "team-1", "status": "active", "name": "Diabetes team",
            "subject": {"reference": "Patient/p1"},
            "participant": [{"member": {"reference": "Practitioner/pr-nurse"}}]}),
    );
    staff(&authority, "doc", "org-a", "pr-doc", &[]);
    staff(&authority, "nurse", "org-a", "pr-nurse", &["role-nurse"]);
    staff(&authority, "outsider", "org-b", "pr-out", &[]);
    World { _dir: dir, records, door, authority }
}

impl World {
    fn enter(&self, user: &str) -> Access {
        let token = self.authority.mint_token(user, "user/*.cruds", None, 3600).unwrap().access_token;
        let who = self.door.authenticate(Some(&format!("Bearer {token}")), None).unwrap();
        self.door.enter(who)
    }

    fn task(&self, id: &str) -> Value {
        serde_json::from_str(self.records.read("Task", id).unwrap().body.as_deref().unwrap()).unwrap()
    }

    fn sequence(&self) -> i64 {
        self.records.backend().latest_sequence().unwrap()
    }
}

fn new_task(patient: &str, description: &str, owner: &str) -> NewTask {
    NewTask { owner: Some(owner.into()), ..NewTask::new(patient, description) }
}

fn version(task: &Value) -> u64 {
    task["meta"]["versionId"].as_str().unwrap().parse().unwrap()
}

fn without_meta(mut task: Value) -> Value {
    task.as_object_mut().unwrap().remove("meta");
    task
}

#[test]
fn the_lifecycle_holds_through_the_service_and_every_door() {
    let world = world();
    let doc = world.enter("doc");

    // requested → accepted → in-progress → completed, each with If-Match on the version read.
    let id = tasks::create(&doc, &new_task("p1", "Call back with lab results", "PractitionerRole/role-nurse")).unwrap();
    assert_eq!(world.task(&id)["status"], "requested");
    assert_eq!(world.task(&id)["requester"]["reference"], "Practitioner/pr-doc");
    let v = tasks::act(&doc, &id, 1, &Action::Accept).unwrap();
    assert_eq!((v, world.task(&id)["status"].clone()), (2, json!("accepted")));
    let stale = tasks::act(&doc, &id, 1, &Action::Start).unwrap_err();
    assert_eq!(stale.class(), ErrorClass::PreconditionFailed, "the version read is stale: {stale}");
    let again = tasks::act(&doc, &id, 1, &Action::Accept).unwrap_err();
    assert_eq!(again.class(), ErrorClass::PreconditionFailed, "a decision taken twice: the record changed");
    let v = tasks::act(&doc, &id, v, &Action::Start).unwrap();
    assert_eq!(world.task(&id)["status"], "in-progress");
    assert!(world.task(&id)["executionPeriod"]["start"].is_string());
    tasks::act(&doc, &id, v, &Action::Complete(Some("Results given by phone".into()))).unwrap();
    let done = world.task(&id);
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][0]["valueString"], "Results given by phone");

    // Rejected, cancelled and failed need a reason.
    let id = tasks::create(&doc, &new_task("p1", "Check feet", "Practitioner/pr-nurse")).unwrap();
    let no_reason = tasks::act(&doc, &id, 1, &Action::Reject("  ".into())).unwrap_err();
    assert_eq!(no_reason.class(), ErrorClass::Invalid);
    tasks::act(&doc, &id, 1, &Action::Reject("Not a nursing task".into())).unwrap();
    assert_eq!(world.task(&id)["status"], "rejected");
    assert_eq!(world.task(&id)["statusReason"]["text"], "Not a nursing task");
    let refused = tasks::act(&doc, &id, 2, &Action::Accept).unwrap_err();
    assert_eq!(refused.class(), ErrorClass::BusinessRule, "a rejected Task stays rejected");

    let id = tasks::create(&doc, &new_task("p1", "Book eye exam", "Organization/org-a")).unwrap();
    tasks::act(&doc, &id, 1, &Action::Cancel("Done elsewhere".into())).unwrap();
    assert_eq!(world.task(&id)["status"], "cancelled");
    let id = tasks::create(&doc, &new_task("p1", "Fax the letter", "Organization/org-a")).unwrap();
    assert_eq!(
        tasks::act(&doc, &id, 1, &Action::Complete(None)).unwrap_err().class(),
        ErrorClass::BusinessRule,
        "requested → completed skips the owner's acceptance"
    );
    let v = tasks::act(&doc, &id, 1, &Action::Accept).unwrap();
    let v = tasks::act(&doc, &id, v, &Action::Start).unwrap();
    assert_eq!(tasks::act(&doc, &id, v, &Action::Fail(String::new())).unwrap_err().class(), ErrorClass::Invalid);
    tasks::act(&doc, &id, v, &Action::Fail("The fax line is down".into())).unwrap();
    assert_eq!(world.task(&id)["status"], "failed");

    // The plain write path every door shares: an illegal change is refused, nothing written.
    let task = world.task(&id);
    let mut revived = without_meta(task.clone());
    revived["status"] = json!("in-progress");
    let before = world.sequence();
    let refused = world.records.update("Task", &id, revived.clone(), None).unwrap_err();
    assert_eq!(refused.kind().class(), ErrorClass::BusinessRule, "{refused}");
    assert!(refused.to_string().contains("`failed` to `in-progress`"), "{refused}");
    assert_eq!(world.sequence(), before, "nothing written");
    // Through the caller's door too (as the FHIR API's PUT does).
    let refused = doc.update("Task", &id, revived, Some(version(&task))).unwrap_err();
    assert_eq!(refused.class(), ErrorClass::BusinessRule);
    // A transaction Bundle rolls back whole: its other entry is not written either.
    let fresh = tasks::create(&doc, &new_task("p1", "Renew prescription", "Practitioner/pr-doc")).unwrap();
    let mut skipping = without_meta(world.task(&fresh));
    skipping["status"] = json!("completed");
    let before = world.sequence();
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "note"},
            "subject": {"reference": "Patient/p1"}}, "request": {"method": "POST", "url": "Observation"}},
        {"resource": skipping, "request": {"method": "PUT", "url": format!("Task/{fresh}")}},
    ]});
    let refused = world.records.process_bundle(bundle.clone()).unwrap_err();
    assert_eq!(refused.kind().class(), ErrorClass::BusinessRule, "{refused}");
    let refused = doc.transaction(bundle).unwrap_err();
    assert_eq!(refused.class(), ErrorClass::BusinessRule);
    assert_eq!(world.sequence(), before, "nothing of the Bundle written");
    assert_eq!(world.task(&fresh)["status"], "requested");
    // A reason is required on every door.
    let mut cancelled = without_meta(world.task(&fresh));
    cancelled["status"] = json!("cancelled");
    let refused = world.records.update("Task", &fresh, cancelled.clone(), None).unwrap_err();
    assert!(refused.to_string().contains("statusReason"), "{refused}");
    cancelled["statusReason"] = json!({"text": "Patient stopped the drug"});
    world.records.update("Task", &fresh, cancelled, None).unwrap();
}

#[test]
fn every_change_of_status_is_decided_by_the_table_on_the_write_path() {
    let world = world();
    let mut legal = 0;
    for from in Status::ALL {
        for to in Status::ALL {
            let mut task = json!({"resourceType": "Task", "status": from.code(), "intent": "order",
                "for": {"reference": "Patient/p1"}});
            if from.needs_reason() {
                task["statusReason"] = json!({"text": "why"});
            }
            let created = world.records.create(task.clone(), None).unwrap().version.unwrap();
            task["id"] = json!(created.id);
            task["status"] = json!(to.code());
            task["statusReason"] = json!({"text": "because"});
            let written = world.records.update("Task", &created.id, task, None);
            assert_eq!(written.is_ok(), tasks::allowed(from, to), "{} → {}: {written:?}", from.code(), to.code());
            if let Err(refused) = &written {
                assert_eq!(refused.kind().class(), ErrorClass::BusinessRule, "{refused}");
            }
            legal += usize::from(written.is_ok());
        }
    }
    // The brief's lifecycle among them.
    use Status::*;
    for (from, to) in [
        (Requested, Accepted),
        (Requested, Rejected),
        (Accepted, InProgress),
        (InProgress, Completed),
        (InProgress, Cancelled),
        (InProgress, Failed),
    ] {
        assert!(tasks::allowed(from, to));
    }
    assert!(legal > 12 && legal < 144, "{legal}");
}

fn due(days: i64) -> String {
    (OffsetDateTime::now_utc() + time::Duration::days(days)).date().to_string()
}

#[test]
fn work_lists_per_user_role_team_and_organization_with_overdue_flags_in_order() {
    let world = world();
    let doc = world.enter("doc");
    let make = |description: &str, owner: &str, due_in: Option<i64>, priority: Priority| {
        let task =
            NewTask { owner: Some(owner.into()), due: due_in.map(due), priority, ..NewTask::new("p1", description) };
        tasks::create(&doc, &task).unwrap()
    };
    let late = make("Late call", "Practitioner/pr-nurse", Some(-1), Priority::Routine);
    let stat = make("Stat review", "PractitionerRole/role-nurse", Some(10), Priority::Stat);
    let team = make("Team huddle", "CareTeam/team-1", Some(-30), Priority::Urgent);
    let org = make("Clinic recall", "Organization/org-a", None, Priority::Asap);
    let soon = make("Soon", "Practitioner/pr-nurse", Some(1), Priority::Routine);
    let today = make("Today", "Practitioner/pr-nurse", Some(0), Priority::Routine);
    // A finished Task is on no list, overdue or not.
    let finished = make("Finished", "Practitioner/pr-nurse", Some(-5), Priority::Stat);
    tasks::act(&doc, &finished, 1, &Action::Cancel("not needed".into())).unwrap();

    let nurse = world.enter("nurse");
    let now = OffsetDateTime::now_utc();
    let mine = tasks::work_list(&nurse, &WorkList::Mine, now).unwrap();
    let order: Vec<&str> = mine.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(order, [late.as_str(), stat.as_str(), today.as_str(), soon.as_str()], "overdue, priority, due");
    let flags: Vec<bool> = mine.iter().map(|i| i.overdue).collect();
    assert_eq!(flags, [true, false, false, false], "due today is not overdue yet");
    assert_eq!(mine[0].patient, "p1");
    assert_eq!(mine[0].patient_name.as_deref(), Some("Ana Lopez"));
    assert_eq!(mine[0].description, "Late call");
    assert_eq!(mine[1].priority, Priority::Stat);
    assert_eq!(mine[0].due.as_deref(), Some(due(-1).as_str()));

    let role = tasks::work_list(&nurse, &WorkList::Role("role-nurse".into()), now).unwrap();
    assert_eq!(role.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), [stat.as_str()]);
    let teams = tasks::work_list(&nurse, &WorkList::Team("team-1".into()), now).unwrap();
    assert_eq!(teams.iter().map(|i| (i.id.as_str(), i.overdue)).collect::<Vec<_>>(), [(team.as_str(), true)]);
    let clinic = tasks::work_list(&nurse, &WorkList::Organization("org-a".into()), now).unwrap();
    assert_eq!(clinic.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), [org.as_str()]);

    // The lists the nurse may choose, with their names.
    let choices = tasks::work_lists(&nurse).unwrap();
    let labels: Vec<(String, &str)> = choices.iter().map(|c| (c.list.key(), c.label.as_str())).collect();
    assert_eq!(
        labels,
        [
            ("mine".to_string(), "My tasks"),
            ("role:role-nurse".to_string(), "Diabetes nurse"),
            ("team:team-1".to_string(), "Diabetes team"),
            ("organization:org-a".to_string(), "Riverside Clinic"),
        ]
    );
    // Someone else's role or team is not a list of the doctor's.
    for list in
        [WorkList::Role("role-nurse".into()), WorkList::Team("team-1".into()), WorkList::Organization("org-b".into())]
    {
        let refused = tasks::work_list(&doc, &list, now).unwrap_err();
        assert_eq!(refused.class(), ErrorClass::Forbidden, "{list:?}");
    }
    assert!(tasks::work_list(&doc, &WorkList::Mine, now).unwrap().is_empty(), "nothing is the doctor's own");

    // Accepting takes a Task off nobody's list; completing does.
    let v = tasks::act(&nurse, &late, mine[0].version, &Action::Accept).unwrap();
    let v = tasks::act(&nurse, &late, v, &Action::Start).unwrap();
    assert!(tasks::work_list(&nurse, &WorkList::Mine, now).unwrap().iter().any(|i| i.id == late && i.overdue));
    tasks::act(&nurse, &late, v, &Action::Complete(None)).unwrap();
    assert!(!tasks::work_list(&nurse, &WorkList::Mine, now).unwrap().iter().any(|i| i.id == late));
}

#[test]
fn a_physician_outside_the_patients_reach_sees_none_of_the_patients_tasks() {
    let world = world();
    let doc = world.enter("doc");
    // p1's Tasks, some even owned by the outsider and their organization.
    let theirs =
        tasks::create(&doc, &new_task("p1", "Ana Lopez: call about HIV result", "Practitioner/pr-out")).unwrap();
    let org_b = tasks::create(&doc, &new_task("p1", "Ana Lopez: send records", "Organization/org-b")).unwrap();
    // A Task of p2, who is in the outsider's reach.
    let own = world
        .records
        .create(
            json!({"resourceType": "Task", "status": "requested", "intent": "order", "description": "Recall",
                "for": {"reference": "Patient/p2"}, "owner": {"reference": "Organization/org-b"}}),
            None,
        )
        .unwrap()
        .version
        .unwrap()
        .id;

    let outsider = world.enter("outsider");
    let now = OffsetDateTime::now_utc();
    assert!(tasks::work_list(&outsider, &WorkList::Mine, now).unwrap().is_empty());
    let org_list = tasks::work_list(&outsider, &WorkList::Organization("org-b".into()), now).unwrap();
    assert_eq!(org_list.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), [own.as_str()], "only p2's");
    for id in [&theirs, &org_b] {
        let hidden = outsider.read("Task", id).unwrap_err();
        assert_eq!(hidden.class(), ErrorClass::NotFound, "as if it did not exist");
        assert_eq!(tasks::item(&outsider, id, now).unwrap_err().class(), ErrorClass::NotFound);
        let refused = tasks::act(&outsider, id, 1, &Action::Accept).unwrap_err();
        assert_eq!(refused.class(), ErrorClass::NotFound);
        assert_eq!(world.task(id)["status"], "requested", "nothing changed");
    }
    let params = vec![("owner".to_string(), "Practitioner/pr-out,Organization/org-b".to_string())];
    let query = search::query::SearchQuery::parse(Some("Task"), &params, false).unwrap();
    let page = outsider.search(query, &params, 100, store::audit::Subtype::SearchType).unwrap();
    let found: Vec<&str> = page.matches.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(found, [own.as_str()], "the search is narrowed to the outsider's patients");
    // Nor can the outsider write a Task for p1.
    let refused = tasks::create(&outsider, &new_task("p1", "Sneak", "Organization/org-b")).unwrap_err();
    assert!(matches!(refused.class(), ErrorClass::Forbidden | ErrorClass::NotFound), "{refused:?}");
}
