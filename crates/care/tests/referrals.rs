//! Referrals on a real store behind a secured door: a referral from a primary-care clinic to
//! an endocrinology practice goes through every step and closes when the report arrives
//! through another door (a plain write, a transaction Bundle); the dashboard shows each
//! referral's age and state to both organizations and nothing to an outsider; the aging job
//! raises exactly one follow-up Task per overdue referral however often it runs.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use access::{Access, Door, Who};
use care::referrals::{self, NewReferral, ReferralAging, ReferralCloser, State, Step};
use fhir::ErrorClass;
use serde_json::{Value, json};
use std::sync::Arc;
use store::Records;
use time::OffsetDateTime;

struct World {
    _dir: tempfile::TempDir,
    records: Records,
    door: Door,
    jobs: Arc<dyn store::JobStore>,
    authority: Arc<auth::Authority>,
}

fn put(records: &Records, resource: Value) {
    let t = resource["resourceType"].as_str().unwrap().to_string();
    let id = resource["id"].as_str().unwrap().to_string();
    records.update(&t, &id, resource, None).unwrap();
}

/// The PCP's clinic (`pcp`, whose patient p1 is) and the endocrinology practice (`endo`), and
/// `outsider` of a third organization.
fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(store_sqlite::SqliteBackend::open(dir.path()).unwrap());
    let jobs: Arc<dyn store::JobStore> = Arc::new(backend.job_store().unwrap());
    let records = Records::new(backend).with_hook(Arc::new(care::tasks::TaskLifecycle));
    std::fs::create_dir_all(dir.path().join("auth")).unwrap();
    let (authority, _) =
        store_sqlite::auth::open_authority(&dir.path().join("auth"), auth::AuthConfig::new("http://test.example/fhir"))
            .unwrap();
    let authority = Arc::new(authority);
    let policy = Arc::new(policy::Policy::new(authority.clone(), records.clone()));
    let door = Door::secured(records.clone(), policy, None);
    for (id, name) in
        [("org-pcp", "Riverside Primary Care"), ("org-endo", "Endocrinology Associates"), ("org-x", "Elsewhere")]
    {
        put(&records, json!({"resourceType": "Organization", "id": id, "name": name}));
    }
    for (user, org) in [("pcp", "org-pcp"), ("endo", "org-endo"), ("outsider", "org-x")] {
        put(&records, json!({"resourceType": "Practitioner", "id": format!("pr-{user}")}));
        let identity = auth::Identity::Staff {
            roles: vec![auth::Role::Physician],
            organizations: vec![org.into()],
            practitioner: Some(format!("pr-{user}")),
            practitioner_roles: vec![],
        };
        authority
            .add_user(auth::NewUser {
                username: user.into(),
                identity,
                password: Some("a long enough password".into()),
            })
            .unwrap();
    }
    put(
        &records,
        json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Lopez", "given": ["Ana"]}],
            "managingOrganization": {"reference": "Organization/org-pcp"}}),
    );
    World { _dir: dir, records, door, jobs, authority }
}

impl World {
    fn enter(&self, user: &str) -> Access {
        let token = self.authority.mint_token(user, "user/*.cruds", None, 3600).unwrap().access_token;
        let who = self.door.authenticate(Some(&format!("Bearer {token}")), None).unwrap();
        self.door.enter(who)
    }

    fn read(&self, resource_type: &str, id: &str) -> Value {
        serde_json::from_str(self.records.read(resource_type, id).unwrap().body.as_deref().unwrap()).unwrap()
    }

    fn referral(&self, access: &Access, id: &str) -> referrals::Referral {
        let all = referrals::dashboard(access, None, 14, OffsetDateTime::now_utc()).unwrap();
        all.into_iter().find(|r| r.id == id).expect("on the dashboard")
    }
}

fn to_endocrinology() -> NewReferral {
    NewReferral {
        patient: "p1".into(),
        service: "Endocrinology".into(),
        snomed: Some("394583002".into()),
        reason: Some("HbA1c above target on two drugs".into()),
        from: None,
        to: "org-endo".into(),
    }
}

#[test]
fn a_referral_goes_through_every_step_and_closes_when_the_report_arrives_through_another_door() {
    let world = world();
    let pcp = world.enter("pcp");
    let sent = referrals::send(&pcp, &to_endocrinology()).unwrap();
    // (A caller's reach is computed when they come through the door, as on every request.)
    let endo = world.enter("endo");
    let sr = world.read("ServiceRequest", &sent.service_request);
    assert!(referrals::is_referral(&sr));
    assert_eq!(sr["performer"][0]["reference"], "Organization/org-endo");
    let task = world.read("Task", &sent.task);
    assert_eq!(task["owner"]["reference"], "Organization/org-endo");
    assert_eq!(task["requester"]["reference"], "Organization/org-pcp");
    assert_eq!(task["focus"]["reference"], format!("ServiceRequest/{}", sent.service_request));

    // Both organizations see it on their dashboard.
    for access in [&pcp, &endo] {
        let shown = world.referral(access, &sent.service_request);
        assert_eq!(shown.state, State::Sent);
        assert_eq!(shown.age_days, 0);
        assert!(!shown.overdue);
        assert_eq!(shown.service, "Endocrinology");
        assert_eq!(shown.to.as_ref().unwrap().1, "Endocrinology Associates");
        assert_eq!(shown.from.as_ref().unwrap().1, "Riverside Primary Care");
        assert_eq!(shown.patient_name.as_deref(), Some("Ana Lopez"));
    }
    // The receiving side's steps are not the referring side's to take.
    let refused = referrals::step(&pcp, &sent.task, 1, &Step::Accept).unwrap_err();
    assert_eq!(refused.class(), ErrorClass::Forbidden);
    let refused = referrals::step(&endo, &sent.task, 1, &Step::Schedule).unwrap_err();
    assert_eq!(refused.class(), ErrorClass::BusinessRule, "accepted before scheduled");

    let mut version = 1;
    for (step, state) in [
        (Step::Receive, State::Received),
        (Step::Accept, State::Accepted),
        (Step::Schedule, State::Scheduled),
        (Step::Seen, State::Seen),
    ] {
        version = referrals::step(&endo, &sent.task, version, &step).unwrap();
        let shown = world.referral(&pcp, &sent.service_request);
        assert_eq!(shown.state, state, "{step:?}");
        let only = referrals::dashboard(&pcp, Some(state), 14, OffsetDateTime::now_utc()).unwrap();
        assert_eq!(only.len(), 1, "the filter by state finds it");
        assert!(referrals::dashboard(&pcp, Some(State::Sent), 14, OffsetDateTime::now_utc()).unwrap().is_empty());
    }
    assert_eq!(world.read("Task", &sent.task)["status"], "in-progress");

    // The consult report arrives through another door: a plain write (as HL7 ORU would).
    // A preliminary one closes nothing; the final one does.
    let closer = ReferralCloser::new(world.door.clone(), world.jobs.clone());
    closer.catch_up().unwrap();
    let report = |status: &str| {
        json!({"resourceType": "DiagnosticReport", "status": status, "code": {"text": "Endocrinology consult"},
            "subject": {"reference": "Patient/p1"}, "issued": "2026-12-01T10:00:00Z",
            "basedOn": [{"reference": format!("ServiceRequest/{}", sent.service_request)}]})
    };
    world.records.create(report("preliminary"), None).unwrap();
    assert_eq!(closer.catch_up().unwrap().closed, 0);
    assert_eq!(world.referral(&pcp, &sent.service_request).state, State::Seen, "a preliminary report closes nothing");
    world.records.create(report("final"), None).unwrap();
    // The dashboard computes it closed at once; the follower then closes the record.
    assert_eq!(world.referral(&pcp, &sent.service_request).state, State::Closed);
    let pass = closer.catch_up().unwrap();
    assert_eq!(pass.closed, 1);
    assert_eq!(world.read("ServiceRequest", &sent.service_request)["status"], "completed");
    let task = world.read("Task", &sent.task);
    assert_eq!(task["status"], "completed");
    assert_eq!(task["businessStatus"]["coding"][0]["code"], "report-returned");
    assert_eq!(closer.catch_up().unwrap().closed, 0, "a report is followed once");

    // The detail page's steps, in order.
    let detail = referrals::detail(&pcp, &sent.service_request, 14, OffsetDateTime::now_utc()).unwrap();
    let steps: Vec<State> = detail.steps.iter().map(|s| s.state).collect();
    assert_eq!(steps, [State::Sent, State::Received, State::Accepted, State::Scheduled, State::Seen, State::Closed]);
    assert_eq!(detail.reports.len(), 1, "the final report only");
    assert!(detail.reports[0].0.starts_with("DiagnosticReport/"));

    // A second referral, closed by a consult note in a transaction Bundle while its Task was
    // still only requested: the follower walks the Task's lifecycle to completed.
    let second = referrals::send(&pcp, &to_endocrinology()).unwrap();
    let note = json!({"resourceType": "DocumentReference", "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11488-4", "display": "Consult note"}]},
        "subject": {"reference": "Patient/p1"},
        "context": {"related": [{"reference": format!("ServiceRequest/{}", second.service_request)}]},
        "content": [{"attachment": {"contentType": "text/plain", "data": "Q29uc3VsdA=="}}]});
    world
        .records
        .process_bundle(json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": note, "request": {"method": "POST", "url": "DocumentReference"}}]}))
        .unwrap();
    assert_eq!(closer.catch_up().unwrap().closed, 1);
    assert_eq!(world.read("Task", &second.task)["status"], "completed");
    assert_eq!(world.read("ServiceRequest", &second.service_request)["status"], "completed");
    let history = world
        .records
        .history(&store::HistoryQuery {
            resource_type: Some("Task".into()),
            id: Some(second.task.clone()),
            count: 10,
            ..store::HistoryQuery::default()
        })
        .unwrap();
    assert_eq!(history.len(), 4, "requested, accepted, in-progress, completed: every step legal");

    // Declined, with its reason.
    let third = referrals::send(&pcp, &to_endocrinology()).unwrap();
    let no_reason = referrals::step(&endo, &third.task, 1, &Step::Decline(" ".into())).unwrap_err();
    assert_eq!(no_reason.class(), ErrorClass::Invalid);
    referrals::step(&endo, &third.task, 1, &Step::Decline("No capacity until March".into())).unwrap();
    let shown = world.referral(&pcp, &third.service_request);
    assert_eq!((shown.state, shown.status_reason.as_deref()), (State::Declined, Some("No capacity until March")));
    assert_eq!(referrals::step(&endo, &third.task, 2, &Step::Accept).unwrap_err().class(), ErrorClass::BusinessRule);
}

fn days_ago(days: i64) -> String {
    store::format_instant(OffsetDateTime::now_utc() - time::Duration::days(days))
}

/// A referral written as another system would, sent `days` ago.
fn old_referral(records: &Records, days: i64, status: &str) -> String {
    let sr = records
        .create(
            json!({"resourceType": "ServiceRequest", "status": status, "intent": "order",
                "category": [{"coding": [{"system": referrals::SNOMED, "code": referrals::REFERRAL_CATEGORY}]}],
                "code": {"text": "Cardiology"}, "subject": {"reference": "Patient/p1"}, "authoredOn": days_ago(days),
                "performer": [{"reference": "Organization/org-endo"}]}),
            None,
        )
        .unwrap()
        .version
        .unwrap()
        .id;
    records
        .create(
            json!({"resourceType": "Task", "status": "requested", "intent": "order", "authoredOn": days_ago(days),
                "code": {"coding": [{"system": referrals::TASK_CODE_SYSTEM, "code": "fulfill"}]},
                "focus": {"reference": format!("ServiceRequest/{sr}")}, "for": {"reference": "Patient/p1"},
                "requester": {"reference": "Organization/org-pcp"}, "owner": {"reference": "Organization/org-endo"}}),
            None,
        )
        .unwrap();
    sr
}

fn follow_ups(records: &Records, sr: &str) -> Vec<Value> {
    let params = vec![("identifier".to_string(), format!("{}|{sr}", referrals::FOLLOW_UP_SYSTEM))];
    let query = search::query::SearchQuery::parse(Some("Task"), &params, false).unwrap();
    let page = records.search(&query, 10).unwrap();
    page.matches.iter().map(|v| serde_json::from_str(v.body.as_deref().unwrap()).unwrap()).collect()
}

#[test]
fn overdue_referrals_raise_exactly_one_follow_up_task_and_the_dashboard_shows_age_and_state() {
    let world = world();
    let overdue = old_referral(&world.records, 20, "active");
    let recent = old_referral(&world.records, 3, "active");
    let finished = old_referral(&world.records, 30, "completed");

    let pcp = world.enter("pcp");
    let now = OffsetDateTime::now_utc();
    let board = referrals::dashboard(&pcp, None, 14, now).unwrap();
    let row = |id: &str| board.iter().find(|r| r.id == id).unwrap();
    assert_eq!((row(&overdue).age_days, row(&overdue).state, row(&overdue).overdue), (20, State::Sent, true));
    assert_eq!((row(&recent).age_days, row(&recent).overdue), (3, false));
    assert_eq!((row(&finished).state, row(&finished).overdue), (State::Closed, false));
    // A shorter overdue age makes the recent one overdue too.
    assert!(referrals::dashboard(&pcp, None, 2, now).unwrap().iter().find(|r| r.id == recent).unwrap().overdue);

    // The closer runs from the start, as `continuum serve` starts it.
    let closer = ReferralCloser::new(world.door.clone(), world.jobs.clone());
    closer.catch_up().unwrap();
    let aging = ReferralAging::new(world.door.clone(), 14, std::time::Duration::from_secs(3600));
    let first = aging.run_once().unwrap();
    assert_eq!((first.overdue, first.raised), (1, 1));
    let second = aging.run_once().unwrap();
    assert_eq!((second.overdue, second.raised), (1, 0), "run twice, raised once");
    let job = world.door.enter(Who::Job(referrals::JOB));
    assert_eq!(referrals::raise_overdue(&job, 14, now).unwrap().raised, 0);
    let raised = follow_ups(&world.records, &overdue);
    assert_eq!(raised.len(), 1);
    let follow_up = &raised[0];
    assert_eq!(follow_up["owner"]["reference"], "Organization/org-pcp", "the referring organization's");
    assert_eq!(follow_up["focus"]["reference"], format!("ServiceRequest/{overdue}"));
    assert_eq!(follow_up["for"]["reference"], "Patient/p1");
    assert_eq!(follow_up["code"]["coding"][0]["code"], referrals::FOLLOW_UP_CODE);
    assert_eq!(follow_up["status"], "requested");
    assert!(follow_ups(&world.records, &recent).is_empty() && follow_ups(&world.records, &finished).is_empty());

    // It is on the referring organization's work list, and on the referral's detail page.
    let list = care::tasks::work_list(&pcp, &care::tasks::WorkList::Organization("org-pcp".into()), now).unwrap();
    assert!(list.iter().any(|i| i.description.starts_with("Follow up overdue referral: Cardiology (20 days open)")));
    let detail = referrals::detail(&pcp, &overdue, 14, now).unwrap();
    assert_eq!(detail.follow_ups.len(), 1);
    assert!(detail.referral.overdue);

    // When the report comes back, the follow-up is no longer needed.
    world
        .records
        .create(
            json!({"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "Cardiology consult"},
                "subject": {"reference": "Patient/p1"},
                "basedOn": [{"reference": format!("ServiceRequest/{overdue}")}]}),
            None,
        )
        .unwrap();
    assert_eq!(closer.catch_up().unwrap().closed, 1);
    let after = follow_ups(&world.records, &overdue);
    assert_eq!(after[0]["status"], "cancelled");
    assert_eq!(aging.run_once().unwrap().overdue, 0, "closed: overdue no more");
}

#[test]
fn an_outsider_sees_no_referral() {
    let world = world();
    let pcp = world.enter("pcp");
    let sent = referrals::send(&pcp, &to_endocrinology()).unwrap();
    let outsider = world.enter("outsider");
    assert!(referrals::dashboard(&outsider, None, 14, OffsetDateTime::now_utc()).unwrap().is_empty());
    let hidden = referrals::detail(&outsider, &sent.service_request, 14, OffsetDateTime::now_utc()).unwrap_err();
    assert_eq!(hidden.class(), ErrorClass::NotFound);
    let refused = referrals::step(&outsider, &sent.task, 1, &Step::Accept).unwrap_err();
    assert_eq!(refused.class(), ErrorClass::NotFound);
    // Nor may anyone refer on behalf of an organization not theirs.
    let mut forged = to_endocrinology();
    forged.from = Some("org-x".into());
    assert_eq!(referrals::send(&pcp, &forged).unwrap_err().class(), ErrorClass::Forbidden);
}

#[test]
fn a_closer_far_behind_catches_up_in_commit_order() {
    let world = world();
    let closer = ReferralCloser::new(world.door.clone(), world.jobs.clone());
    closer.catch_up().unwrap();
    let pcp = world.enter("pcp");
    let sent = referrals::send(&pcp, &to_endocrinology()).unwrap();
    // Many writes of other types, then the report, then more: the closer was not running.
    let many = |from: usize| -> Vec<Value> {
        (from..from + 1500)
            .map(|n| {
                json!({"resourceType": "Observation", "id": format!("obs-{n}"), "status": "final",
                    "code": {"text": "glucose"}, "subject": {"reference": "Patient/p1"}})
            })
            .collect()
    };
    world.records.load(many(0)).unwrap();
    world
        .records
        .create(
            json!({"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "Endocrinology consult"},
                "subject": {"reference": "Patient/p1"},
                "basedOn": [{"reference": format!("ServiceRequest/{}", sent.service_request)}]}),
            None,
        )
        .unwrap();
    world.records.load(many(1500)).unwrap();
    let pass = closer.catch_up().unwrap();
    assert_eq!((pass.read, pass.closed), (1, 1), "each report read once");
    assert_eq!(world.read("Task", &sent.task)["status"], "completed");
    assert_eq!(closer.catch_up().unwrap(), referrals::Pass::default(), "nothing left behind");
}
