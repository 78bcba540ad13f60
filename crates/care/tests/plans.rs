//! Shared care plans on a real store behind a secured door: a primary-care physician and a
//! behavioral-health clinician of another organization (on the patient's care team) work one
//! plan; goals' achievement follows the results; concurrent edits get 412; the change history
//! names who changed what and from which organization; a physician outside the patient's reach
//! finds nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use auth::{AuthConfig, Identity, NewUser, Role};
use care::goals::{Achievement, Comparator, NewGoal, TargetDetail};
use care::plans::{self, NewActivity, NewPlan};
use serde_json::{Value, json};
use std::sync::Arc;
use store::Records;

struct World {
    _dir: tempfile::TempDir,
    records: Records,
    door: access::Door,
    authority: Arc<auth::Authority>,
}

const PATIENT: &str = "pat";

fn put(records: &Records, resource: Value) {
    let t = resource["resourceType"].as_str().unwrap().to_string();
    let id = resource["id"].as_str().unwrap().to_string();
    records.update(&t, &id, resource, None).unwrap();
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(store_sqlite::SqliteBackend::open(dir.path()).unwrap());
    let records = Records::new(backend);
    for (id, name) in
        [("org-pcp", "Riverside Primary Care"), ("org-bh", "Harbor Behavioral Health"), ("org-far", "Elsewhere Clinic")]
    {
        put(&records, json!({"resourceType": "Organization", "id": id, "name": name}));
    }
    for id in ["dr-pcp", "dr-bh", "dr-far", "dr-cm"] {
        put(&records, json!({"resourceType": "Practitioner", "id": id, "name": [{"family": id}]}));
    }
    put(
        &records,
        json!({"resourceType": "Patient", "id": PATIENT, "name": [{"family": "Doe"}],
            "managingOrganization": {"reference": "Organization/org-pcp"}}),
    );
    // The behavioral-health clinician of another organization is on the patient's care team.
    put(
        &records,
        json!({"resourceType": "CareTeam", "id": "team", "status": "active",
        "subject": {"reference": format!("Patient/{PATIENT}")},
        "participant": [
            {"member": {"reference": "Practitioner/dr-pcp"}, "onBehalfOf": {"reference": "Organization/org-pcp"}},
            {"member": {"reference": "Practitioner/dr-bh"}, "onBehalfOf": {"reference": "Organization/org-bh"}}
        ]}),
    );
    std::fs::create_dir_all(dir.path().join("auth")).unwrap();
    let (authority, _) =
        store_sqlite::auth::open_authority(&dir.path().join("auth"), AuthConfig::new("http://localhost/fhir")).unwrap();
    let authority = Arc::new(authority);
    for (username, role, org, practitioner) in [
        ("pcp", Role::Physician, "org-pcp", "dr-pcp"),
        ("bh", Role::BehavioralHealthClinician, "org-bh", "dr-bh"),
        ("far", Role::Physician, "org-far", "dr-far"),
        ("cm", Role::CareManager, "org-pcp", "dr-cm"),
    ] {
        let identity = Identity::Staff {
            roles: vec![role],
            organizations: vec![org.into()],
            practitioner: Some(practitioner.into()),
            practitioner_roles: vec![],
        };
        let user =
            NewUser { username: username.into(), identity, password: Some("correct horse battery staple".into()) };
        authority.add_user(user).unwrap();
    }
    let policy = Arc::new(policy::Policy::new(authority.clone(), records.clone()));
    let door = access::Door::secured(records.clone(), policy, None);
    World { _dir: dir, records, door, authority }
}

impl World {
    fn access(&self, user: &str) -> access::Access {
        let token = self.authority.mint_token(user, "user/*.cruds", None, 3600).unwrap().access_token;
        self.door.enter(self.door.authenticate(Some(&format!("Bearer {token}")), None).unwrap())
    }

    /// A result as a laboratory interface would file it.
    fn result(&self, code: &str, at: &str, value: Value) {
        let mut observation = json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": format!("Patient/{PATIENT}")}, "effectiveDateTime": at});
        match value {
            Value::Number(n) if code == "4548-4" => {
                observation["valueQuantity"] =
                    json!({"value": n, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"})
            }
            other => observation["valueInteger"] = other,
        }
        self.records.create(observation, None).unwrap();
    }

    fn plan(&self, user: &str, id: &str) -> plans::Plan {
        plans::plan(&self.access(user), PATIENT, id).unwrap()
    }
}

fn new_plan() -> NewPlan {
    NewPlan {
        title: "Diabetes and depression".into(),
        description: Some("Shared plan of primary care and behavioral health".into()),
        care_team: Some("team".into()),
        addresses: vec![],
    }
}

fn hba1c_goal(due: &str) -> NewGoal {
    NewGoal {
        description: "HbA1c below 7 %".into(),
        measure: "4548-4".into(),
        detail: TargetDetail::Quantity { comparator: Comparator::Less, value: 7.0, unit: Some("%".into()) },
        due: Some(due.into()),
    }
}

#[test]
fn goal_achievement_follows_the_latest_results() {
    let w = world();
    let pcp = w.access("pcp");
    let id = plans::create_plan(&pcp, PATIENT, &new_plan()).unwrap();
    plans::add_goal(&pcp, PATIENT, &id, 1, &hba1c_goal("2099-12-31")).unwrap();
    let achievement = |w: &World| w.plan("pcp", &id).goals[0].achievement;
    assert_eq!(achievement(&w), None, "no result yet");
    w.result("4548-4", "2026-01-10", json!(8.6));
    assert_eq!(achievement(&w), Some(Achievement::InProgress));
    w.result("4548-4", "2026-03-10", json!(7.9));
    assert_eq!(achievement(&w), Some(Achievement::Improving), "8.6 → 7.9, closer to < 7");
    w.result("4548-4", "2026-05-10", json!(8.3));
    assert_eq!(achievement(&w), Some(Achievement::Worsening), "7.9 → 8.3");
    w.result("4548-4", "2026-07-10", json!(6.8));
    let plan = w.plan("pcp", &id);
    let goal = &plan.goals[0];
    assert_eq!(goal.achievement, Some(Achievement::Achieved));
    assert_eq!(goal.targets[0].latest.as_ref().map(|r| r.text.as_str()), Some("6.8 %"));
    assert_eq!(goal.targets[0].target.due.as_deref(), Some("2099-12-31"));

    // PHQ-9 below 5 by a date now past: 16 then 12 moved the right way, but too late.
    let version = w.plan("pcp", &id).version;
    let phq9 = NewGoal {
        description: "Depression in remission".into(),
        measure: "44261-6".into(),
        detail: TargetDetail::Quantity { comparator: Comparator::Less, value: 5.0, unit: None },
        due: Some("2026-02-01".into()),
    };
    plans::add_goal(&pcp, PATIENT, &id, version, &phq9).unwrap();
    w.result("44261-6", "2026-01-05", json!(16));
    w.result("44261-6", "2026-04-05", json!(12));
    let plan = w.plan("pcp", &id);
    assert_eq!(plan.goals[1].achievement, Some(Achievement::NotAchieved));
    assert_eq!(plan.goals[1].targets[0].latest.as_ref().map(|r| r.value), Some(12.0));
    w.result("44261-6", "2026-06-05", json!(13));
    assert_eq!(w.plan("pcp", &id).goals[1].achievement, Some(Achievement::NoProgress), "past due and worse");
}

#[test]
fn the_team_edits_one_plan_and_a_concurrent_edit_gets_412() {
    let w = world();
    let (pcp, bh) = (w.access("pcp"), w.access("bh"));
    let id = plans::create_plan(&pcp, PATIENT, &new_plan()).unwrap();
    // Both read version 1.
    let (seen_by_pcp, seen_by_bh) = (w.plan("pcp", &id), w.plan("bh", &id));
    assert_eq!((seen_by_pcp.version, seen_by_bh.version), (1, 1));
    plans::set_status(&pcp, PATIENT, &id, seen_by_pcp.version, "on-hold").unwrap();
    let talk = NewActivity::Described { description: "Weekly psychotherapy".into(), status: "not-started".into() };
    let lost = plans::add_activity(&bh, PATIENT, &id, seen_by_bh.version, &talk).unwrap_err();
    assert!(matches!(lost.class().status(), 409 | 412), "{lost:?}");
    let now = w.plan("bh", &id);
    assert_eq!((now.version, now.status.as_str(), now.activities.len()), (2, "on-hold", 0), "the first edit stands");

    // Reread, the clinician of the other organization edits: the care team reaches the plan.
    plans::add_activity(&bh, PATIENT, &id, now.version, &talk).unwrap();
    let plan = w.plan("pcp", &id);
    assert_eq!(plan.activities[0].description, "Weekly psychotherapy");
    plans::set_activity_status(&pcp, PATIENT, &id, plan.version, 0, "in-progress").unwrap();
    let plan = w.plan("pcp", &id);
    assert_eq!(plan.activities[0].status, "in-progress");

    // Two editors at once, both on the version read: exactly one wins.
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let attempts: Vec<_> = [("pcp", "active"), ("bh", "completed")]
        .into_iter()
        .map(|(user, status)| {
            let (access, id, barrier) = (w.access(user), id.clone(), barrier.clone());
            let version = plan.version;
            std::thread::spawn(move || {
                barrier.wait();
                plans::set_status(&access, PATIENT, &id, version, status)
            })
        })
        .collect();
    let results: Vec<_> = attempts.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    let lost = results.into_iter().find_map(Result::err).unwrap();
    assert!(matches!(lost.class().status(), 409 | 412), "{lost:?}");
    assert_eq!(w.plan("pcp", &id).version, plan.version + 1);

    // A care manager of the practice edits the plan too (their role writes plans, not
    // Provenance: the change is kept, its author not recorded).
    let version = w.plan("pcp", &id).version;
    plans::set_status(&w.access("cm"), PATIENT, &id, version, "active").unwrap();
    assert_eq!(w.plan("cm", &id).status, "active");

    // Linked activities: only the patient's requests of the kinds a plan links.
    let request = json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "code": {"text": "Referral to endocrinology"}, "subject": {"reference": format!("Patient/{PATIENT}")}});
    let request = w.records.create(request, None).unwrap().version.unwrap().id;
    let version = w.plan("pcp", &id).version;
    plans::add_activity(&pcp, PATIENT, &id, version, &NewActivity::Linked(format!("ServiceRequest/{request}")))
        .unwrap();
    let plan = w.plan("pcp", &id);
    let linked = plan.activities.iter().find(|a| a.reference.is_some()).unwrap();
    assert_eq!((linked.description.as_str(), linked.status.as_str()), ("Referral to endocrinology", "active"));
    let refused = plans::add_activity(&pcp, PATIENT, &id, plan.version, &NewActivity::Linked("Patient/pat".into()));
    assert_eq!(refused.unwrap_err().class().status(), 400);
    plans::remove_activity(&pcp, PATIENT, &id, plan.version, linked.index).unwrap();
    assert_eq!(w.plan("pcp", &id).activities.len(), 1);
}

#[test]
fn the_change_history_names_who_and_from_which_organization() {
    let w = world();
    let (pcp, bh) = (w.access("pcp"), w.access("bh"));
    let id = plans::create_plan(&pcp, PATIENT, &new_plan()).unwrap();
    let goal = NewGoal {
        description: "PHQ-9 below 5".into(),
        measure: "44261-6".into(),
        detail: TargetDetail::Quantity { comparator: Comparator::Less, value: 5.0, unit: None },
        due: Some("2026-09-30".into()),
    };
    let goal_id = plans::add_goal(&bh, PATIENT, &id, 1, &goal).unwrap();
    plans::set_status(&pcp, PATIENT, &id, 2, "on-hold").unwrap();
    plans::set_goal_status(&bh, PATIENT, &id, &goal_id, 1, "on-hold").unwrap();
    // And a version written through the FHIR API without a Provenance.
    let mut raw: Value =
        serde_json::from_str(w.records.read("CarePlan", &id).unwrap().body.as_deref().unwrap()).unwrap();
    raw["status"] = json!("active");
    w.records.update("CarePlan", &id, raw, Some(3)).unwrap();

    let history = w.plan("pcp", &id).history;
    let rows: Vec<(Vec<String>, Option<&str>, Option<&str>)> =
        history.iter().map(|c| (c.what.clone(), c.who.as_deref(), c.organization.as_deref())).collect();
    assert_eq!(rows.len(), 5, "{rows:#?}");
    assert_eq!(
        rows[0],
        (vec!["Plan status on-hold → active".to_string()], None, None),
        "written elsewhere: who unknown"
    );
    assert_eq!(
        rows[1],
        (vec!["Goal “PHQ-9 below 5” active → on-hold".to_string()], Some("bh"), Some("Harbor Behavioral Health"))
    );
    assert_eq!(
        rows[2],
        (vec!["Plan status active → on-hold".to_string()], Some("pcp"), Some("Riverside Primary Care"))
    );
    // The goal and the plan's reference to it: one edit, one row.
    assert_eq!(rows[3].1, Some("bh"));
    assert_eq!(rows[3].2, Some("Harbor Behavioral Health"));
    assert!(rows[3].0.contains(&"1 goal(s) added".to_string()), "{:?}", rows[3].0);
    assert!(
        rows[3].0.contains(&"Goal added: “PHQ-9 below 5” (target PHQ-9 total score < 5 by 2026-09-30)".to_string()),
        "{:?}",
        rows[3].0
    );
    assert_eq!(
        rows[4],
        (
            vec!["Plan “Diabetes and depression” created (active)".to_string()],
            Some("pcp"),
            Some("Riverside Primary Care")
        )
    );
}

#[test]
fn a_physician_outside_the_patients_reach_finds_nothing() {
    let w = world();
    let pcp = w.access("pcp");
    let id = plans::create_plan(&pcp, PATIENT, &new_plan()).unwrap();
    let far = w.access("far");
    let error = plans::plan(&far, PATIENT, &id).unwrap_err();
    assert_eq!(error.class().status(), 404, "{error:?}");
    let edit = plans::set_status(&far, PATIENT, &id, 1, "revoked").unwrap_err();
    assert_eq!(edit.class().status(), 404, "{edit:?}");
    assert!(plans::plans(&far, PATIENT).unwrap_or_default().is_empty());
    let start = plans::create_plan(&far, PATIENT, &new_plan());
    assert!(start.is_err(), "nor may they start one");
    assert_eq!(plans::plans(&pcp, PATIENT).unwrap().len(), 1);
    assert_eq!(w.plan("pcp", &id).status, "active", "nothing changed");
    // The plan's id under another patient is not found either.
    assert_eq!(plans::plan(&pcp, "someone-else", &id).unwrap_err().class().status(), 404);
}
