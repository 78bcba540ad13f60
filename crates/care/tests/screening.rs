//! PHQ-9 and GAD-7 on a real store: the severity bands at their boundaries, the score
//! Observation (item 9 among its components), the app's path as one transaction, a response
//! written through another door scored by the scorer exactly once (also after a restart, and
//! after a crash that lost its checkpoint), and bad answers refused with nothing written.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use care::screening::scorer::Scorer;
use care::screening::{Instrument, SCORE_SYSTEM, Score, submit};
use serde_json::{Value, json};
use std::sync::Arc;
use store::{JobStore, Records};

struct World {
    _dir: tempfile::TempDir,
    records: Records,
    jobs: Arc<dyn JobStore>,
    patient: String,
}

fn world_with(hook: Option<Arc<dyn store::WriteHook>>) -> World {
    let dir = tempfile::tempdir().unwrap();
    let backend = store_sqlite::SqliteBackend::open(dir.path()).unwrap();
    let jobs: Arc<dyn JobStore> = Arc::new(backend.job_store().unwrap());
    let mut records = Records::new(Arc::new(backend));
    if let Some(hook) = hook {
        records = records.with_hook(hook);
    }
    let patient = records.create(json!({"resourceType": "Patient", "gender": "female"}), None).unwrap();
    let patient = patient.version.unwrap().id;
    World { _dir: dir, records, jobs, patient }
}

fn world() -> World {
    world_with(None)
}

fn all(records: &Records, resource_type: &str) -> Vec<Value> {
    let query = search::query::SearchQuery::parse(Some(resource_type), &[], false).unwrap();
    records
        .search(&query, 1000)
        .unwrap()
        .matches
        .iter()
        .map(|v| serde_json::from_str(v.body.as_deref().unwrap()).unwrap())
        .collect()
}

/// Answers (0–3 each) of `instrument` adding up to `total`, item 9 last.
fn answers_for(instrument: Instrument, total: i64) -> Vec<Option<i64>> {
    let n = instrument.questions().len();
    let mut left = total;
    (0..n)
        .map(|_| {
            let a = left.min(3);
            left -= a;
            Some(a)
        })
        .collect()
}

#[test]
fn severity_bands_change_at_their_boundaries() {
    let band = |instrument, total| {
        let score = Score::of_answers(instrument, &answers_for(instrument, total)).unwrap();
        assert_eq!(score.total, total as u32);
        score.band.code
    };
    let phq9: Vec<(i64, &str)> = vec![
        (0, "none-minimal"),
        (4, "none-minimal"),
        (5, "mild"),
        (9, "mild"),
        (10, "moderate"),
        (14, "moderate"),
        (15, "moderately-severe"),
        (19, "moderately-severe"),
        (20, "severe"),
        (27, "severe"),
    ];
    for (total, code) in phq9 {
        assert_eq!(band(Instrument::Phq9, total), code, "PHQ-9 {total}");
    }
    let gad7: Vec<(i64, &str)> = vec![
        (0, "minimal"),
        (4, "minimal"),
        (5, "mild"),
        (9, "mild"),
        (10, "moderate"),
        (14, "moderate"),
        (15, "severe"),
        (21, "severe"),
    ];
    for (total, code) in gad7 {
        assert_eq!(band(Instrument::Gad7, total), code, "GAD-7 {total}");
    }
}

#[test]
fn the_score_observation_carries_total_band_item_9_and_its_response() {
    let w = world();
    let access = access::Door::open(w.records.clone()).enter(access::Who::Anyone);
    let encounter = w
        .records
        .create(
            json!({"resourceType": "Encounter", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": format!("Patient/{}", w.patient)}}),
            None,
        )
        .unwrap()
        .version
        .unwrap()
        .id;
    // Items 1–8 answered 1 and 2 alternately… and item 9 "more than half the days" (2): 14.
    let answers: Vec<Option<i64>> =
        vec![Some(2), Some(1), Some(2), Some(1), Some(2), Some(1), Some(2), Some(1), Some(2)];
    let encounter_ref = format!("Encounter/{encounter}");
    let done = submit(&access, &w.patient, Instrument::Phq9, &answers, Some(&encounter_ref)).unwrap();
    assert_eq!((done.score.total, done.score.band.code), (14, "moderate"));
    let observation = w.records.read("Observation", &done.observation).unwrap();
    let o: Value = serde_json::from_str(observation.body.as_deref().unwrap()).unwrap();
    assert_eq!(o["category"][0]["coding"][0]["code"], "survey");
    assert_eq!(o["code"]["coding"][0]["code"], "44261-6");
    assert_eq!(o["valueInteger"], 14);
    assert_eq!(o["interpretation"][0]["coding"][0]["code"], "moderate");
    assert_eq!(o["interpretation"][0]["text"], "Moderate depression");
    assert_eq!(o["component"][0]["code"]["coding"][0]["code"], "44260-8");
    assert_eq!(o["component"][0]["valueInteger"], 2);
    let response_ref = format!("QuestionnaireResponse/{}", done.response);
    assert_eq!(o["derivedFrom"][0]["reference"], response_ref.as_str());
    assert_eq!(o["identifier"][0]["system"], SCORE_SYSTEM);
    assert_eq!(o["identifier"][0]["value"], response_ref.as_str(), "keyed on the response");
    assert_eq!(o["subject"]["reference"], format!("Patient/{}", w.patient));
    assert_eq!(o["encounter"]["reference"], encounter_ref.as_str());
    assert!(o["effectiveDateTime"].is_string());
    let response = all(&w.records, "QuestionnaireResponse");
    assert_eq!(response.len(), 1);
    assert_eq!(response[0]["questionnaire"], Instrument::Phq9.url());
    assert_eq!(response[0]["item"][8]["answer"][0]["valueCoding"]["code"], "LA6570-1");

    // The GAD-7 has no item 9.
    let gad = submit(&access, &w.patient, Instrument::Gad7, &answers_for(Instrument::Gad7, 15), None).unwrap();
    let o: Value =
        serde_json::from_str(w.records.read("Observation", &gad.observation).unwrap().body.as_deref().unwrap())
            .unwrap();
    assert_eq!((o["code"]["coding"][0]["code"].as_str(), o["valueInteger"].as_i64()), (Some("70274-6"), Some(15)));
    assert!(o.get("component").is_none() && o.get("encounter").is_none());
}

/// Refuses every Observation write (a rule that fails inside the write's transaction).
struct RefuseObservations;

impl store::WriteHook for RefuseObservations {
    fn wants(&self, resource_type: &str) -> bool {
        resource_type == "Observation"
    }

    fn written(
        &self,
        _tx: &mut dyn store::Transaction,
        _previous: Option<&store::ResourceVersion>,
        _new: &store::NewVersion<'_>,
        _sequence: i64,
    ) -> store::Result<()> {
        Err(store::Error::Forbidden("no observations today".into()))
    }
}

#[test]
fn the_app_writes_response_and_score_in_one_transaction() {
    let w = world_with(Some(Arc::new(RefuseObservations)));
    let access = access::Door::open(w.records.clone()).enter(access::Who::Anyone);
    let refused = submit(&access, &w.patient, Instrument::Phq9, &answers_for(Instrument::Phq9, 12), None);
    assert!(refused.is_err(), "the score could not be written");
    assert!(all(&w.records, "QuestionnaireResponse").is_empty(), "so neither was the response: one transaction");
    assert!(all(&w.records, "Observation").is_empty());
}

#[test]
fn bad_answers_are_refused_and_nothing_is_written() {
    let w = world();
    let access = access::Door::open(w.records.clone()).enter(access::Who::Anyone);
    let mut missing = answers_for(Instrument::Phq9, 10);
    missing[3] = None;
    let mut too_high = answers_for(Instrument::Phq9, 10);
    too_high[8] = Some(4);
    let mut negative = answers_for(Instrument::Gad7, 3);
    negative[0] = Some(-1);
    let too_many = vec![Some(0); 10];
    for (instrument, answers, says) in [
        (Instrument::Phq9, missing, "PHQ-9 item 4 is not answered"),
        (Instrument::Phq9, too_high, "PHQ-9 item 9 must be answered 0 to 3"),
        (Instrument::Gad7, negative, "GAD-7 item 1 must be answered 0 to 3"),
        (Instrument::Phq9, too_many, "the PHQ-9 has 9 items"),
    ] {
        let error = submit(&access, &w.patient, instrument, &answers, None).unwrap_err();
        assert_eq!(error.class().status(), 400, "{error}");
        assert_eq!(error.to_string(), says);
    }
    let error = submit(&access, &w.patient, Instrument::Phq9, &answers_for(Instrument::Phq9, 3), Some("Patient/x"))
        .unwrap_err();
    assert_eq!(error.class().status(), 400);
    assert!(all(&w.records, "QuestionnaireResponse").is_empty());
    assert!(all(&w.records, "Observation").is_empty());
}

/// A PHQ-9 response as a form tool would post it through the FHIR API.
fn posted_response(patient: &str, answer_codes: &[&str]) -> Value {
    let items: Vec<Value> = Instrument::Phq9
        .questions()
        .iter()
        .zip(answer_codes)
        .map(|(q, code)| {
            json!({"linkId": format!("/{}", q.code), "answer": [{"valueCoding": {"system": "http://loinc.org", "code": code}}]})
        })
        .collect();
    json!({"resourceType": "QuestionnaireResponse", "questionnaire": format!("{}|1", Instrument::Phq9.url()),
        "status": "completed", "subject": {"reference": format!("Patient/{patient}")},
        "authored": "2026-03-01T10:00:00Z", "item": [{"linkId": "panel", "item": items}]})
}

#[test]
fn a_response_from_another_door_is_scored_exactly_once_across_restarts() {
    let w = world();
    let door = access::Door::open(w.records.clone());
    let codes =
        ["LA6571-9", "LA6571-9", "LA6570-1", "LA6569-3", "LA6568-5", "LA6568-5", "LA6568-5", "LA6568-5", "LA6569-3"];
    let posted = w.records.create(posted_response(&w.patient, &codes), None).unwrap().version.unwrap().id;
    // One that cannot be scored (an item unanswered), and one still in progress: left alone.
    w.records.create(posted_response(&w.patient, &codes[..8]), None).unwrap();
    let mut draft = posted_response(&w.patient, &codes);
    draft["status"] = json!("in-progress");
    w.records.create(draft, None).unwrap();
    // And one the app wrote, already scored in its own transaction.
    let app =
        submit(&door.enter(access::Who::Anyone), &w.patient, Instrument::Phq9, &answers_for(Instrument::Phq9, 6), None)
            .unwrap();

    let scorer = Scorer::new(door.clone(), w.jobs.clone());
    let pass = scorer.catch_up().unwrap();
    assert_eq!((pass.read, pass.scored, pass.already, pass.unscorable), (4, 1, 1, 1), "{pass:?}");
    let scores = all(&w.records, "Observation");
    assert_eq!(scores.len(), 2, "the posted response's score and the app's, no more");
    let posted_ref = format!("QuestionnaireResponse/{posted}");
    let score = scores.iter().find(|o| o["identifier"][0]["value"] == posted_ref.as_str()).unwrap();
    assert_eq!((score["valueInteger"].as_i64(), score["component"][0]["valueInteger"].as_i64()), (Some(10), Some(1)));
    assert_eq!(score["effectiveDateTime"], "2026-03-01T10:00:00Z");
    assert!(
        scores.iter().any(|o| o["derivedFrom"][0]["reference"] == format!("QuestionnaireResponse/{}", app.response))
    );

    // A restart reads on from the checkpoint: nothing again.
    let restarted = Scorer::new(door.clone(), w.jobs.clone());
    assert_eq!(restarted.catch_up().unwrap().read, 0);
    // A crash that lost the checkpoint after the score was written: read again, not written twice.
    w.jobs.remove_job("screening-checkpoint").unwrap();
    let after_crash = Scorer::new(door.clone(), w.jobs.clone());
    let pass = after_crash.catch_up().unwrap();
    assert_eq!((pass.read, pass.scored, pass.already), (4, 0, 2), "{pass:?}");
    assert_eq!(all(&w.records, "Observation").len(), 2);

    // The posted response corrected (item 1 "not at all"): its score follows, still one.
    let mut corrected: Value =
        serde_json::from_str(w.records.read("QuestionnaireResponse", &posted).unwrap().body.as_deref().unwrap())
            .unwrap();
    corrected["item"][0]["item"][0]["answer"][0]["valueCoding"]["code"] = json!("LA6568-5");
    corrected["status"] = json!("amended");
    w.records.update("QuestionnaireResponse", &posted, corrected, Some(1)).unwrap();
    let pass = after_crash.catch_up().unwrap();
    assert_eq!((pass.read, pass.rescored, pass.scored), (1, 1, 0), "{pass:?}");
    let scores = all(&w.records, "Observation");
    assert_eq!(scores.len(), 2);
    let score = scores.iter().find(|o| o["identifier"][0]["value"] == posted_ref.as_str()).unwrap();
    assert_eq!((score["valueInteger"].as_i64(), score["status"].as_str()), (Some(7), Some("amended")));
    assert_eq!(score["interpretation"][0]["coding"][0]["code"], "mild");

    // Written while the scorer runs on its thread: scored behind the commit.
    after_crash.start().unwrap();
    let later = w.records.create(posted_response(&w.patient, &codes), None).unwrap().version.unwrap().id;
    let mut found = 0;
    for _ in 0..100 {
        found = all(&w.records, "Observation")
            .iter()
            .filter(|o| o["identifier"][0]["value"] == format!("QuestionnaireResponse/{later}"))
            .count();
        if found > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    after_crash.stop();
    assert_eq!(found, 1);
}

#[test]
fn the_questionnaires_are_loaded_once() {
    let w = world();
    let access = access::Door::open(w.records.clone()).enter(access::Who::Job("screening"));
    assert_eq!(care::screening::load_questionnaires(&access).unwrap(), 2);
    assert_eq!(care::screening::load_questionnaires(&access).unwrap(), 0, "a conditional create on each url");
    assert_eq!(all(&w.records, "Questionnaire").len(), 2);
}
