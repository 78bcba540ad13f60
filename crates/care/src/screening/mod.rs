//! Behavioral-health screening: the PHQ-9 and GAD-7 as `Questionnaire` resources (data files
//! beside this module, loaded at start with a conditional create on their `url`), answered as
//! `QuestionnaireResponse`s and **scored on write** into an Observation:
//!
//! - category `survey`, code the instrument's total (LOINC 44261-6 for the PHQ-9, 70274-6 for
//!   the GAD-7), `valueInteger` the total, `interpretation` the severity band (a code of
//!   [`SEVERITY_SYSTEM`] with its text), for the PHQ-9 a `component` with item 9 (44260-8,
//!   thoughts of self-harm) as `valueInteger`, `derivedFrom` the response, `subject`,
//!   `encounter` when the response has one, `effectiveDateTime` when it was answered;
//! - `identifier` [`SCORE_SYSTEM`]`|QuestionnaireResponse/{id}`: one score per response, so a
//!   score is written by a conditional create on it and never twice.
//!
//! Two ways in: [`submit`] (the clinician app) writes the response and its score in **one
//! transaction** through the caller's door, and refuses bad answers (an item unanswered, a
//! value outside 0–3) before anything is written; a response written through any other door
//! (the FHIR API, an import) is scored by the [`scorer::Scorer`] right behind the commits.
//! The rules on the score (alerts for PHQ-9 ≥ 10, a rising score, item 9 > 0) read the
//! Observation; they are not made here.

pub mod scorer;

use crate::{Error, Result};
use access::Access;
use serde_json::{Value, json};
use std::sync::OnceLock;

/// The identifier system of a score: its value is `QuestionnaireResponse/{id}` of the response
/// scored.
pub const SCORE_SYSTEM: &str = "urn:continuum:screening-score";
/// The code system of the severity bands in `Observation.interpretation`.
pub const SEVERITY_SYSTEM: &str = "urn:continuum:screening-severity";
/// LOINC.
const LOINC: &str = "http://loinc.org";
/// LOINC's answers shared by both instruments (answer list LL358-3), scoring 0 to 3.
pub const ANSWERS: [(&str, &str); 4] = [
    ("LA6568-5", "Not at all"),
    ("LA6569-3", "Several days"),
    ("LA6570-1", "More than half the days"),
    ("LA6571-9", "Nearly every day"),
];
/// The PHQ-9's item 9 (thoughts that you would be better off dead or of hurting yourself).
pub const PHQ9_ITEM_9: &str = "44260-8";

/// A screening instrument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instrument {
    /// Patient Health Questionnaire, 9 items (depression), total 0–27.
    Phq9,
    /// Generalized Anxiety Disorder scale, 7 items, total 0–21.
    Gad7,
}

/// One question of an instrument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// Its `linkId`, which is its LOINC code.
    pub code: String,
    /// The question as asked.
    pub text: String,
}

/// A severity band of a total score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Band {
    /// Its code in [`SEVERITY_SYSTEM`].
    pub code: &'static str,
    /// As read by a clinician.
    pub display: &'static str,
}

impl Instrument {
    /// Both instruments.
    pub const ALL: [Instrument; 2] = [Instrument::Phq9, Instrument::Gad7];

    /// Its name in an address (`phq-9`, `gad-7`).
    pub fn key(self) -> &'static str {
        match self {
            Instrument::Phq9 => "phq-9",
            Instrument::Gad7 => "gad-7",
        }
    }

    /// The instrument of its key.
    pub fn from_key(key: &str) -> Option<Instrument> {
        Instrument::ALL.into_iter().find(|i| i.key() == key)
    }

    /// Its name on a page.
    pub fn label(self) -> &'static str {
        match self {
            Instrument::Phq9 => "PHQ-9",
            Instrument::Gad7 => "GAD-7",
        }
    }

    /// The `Questionnaire` resource (as loaded at start).
    pub fn questionnaire(self) -> &'static Value {
        static PHQ9: OnceLock<Value> = OnceLock::new();
        static GAD7: OnceLock<Value> = OnceLock::new();
        let (cell, text) = match self {
            Instrument::Phq9 => (&PHQ9, include_str!("phq-9.json")),
            Instrument::Gad7 => (&GAD7, include_str!("gad-7.json")),
        };
        // The files are part of the source and checked by the tests: never unreadable.
        cell.get_or_init(|| serde_json::from_str(text).unwrap_or(Value::Null))
    }

    /// Its canonical `url`.
    pub fn url(self) -> &'static str {
        self.questionnaire().get("url").and_then(Value::as_str).unwrap_or_default()
    }

    /// The instrument a response's `questionnaire` (a canonical, maybe with `|version`) names.
    pub fn of_canonical(canonical: &str) -> Option<Instrument> {
        let url = canonical.split('|').next().unwrap_or(canonical);
        Instrument::ALL.into_iter().find(|i| i.url() == url)
    }

    /// Its questions, in order.
    pub fn questions(self) -> Vec<Question> {
        self.questionnaire()
            .get("item")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|item| Question {
                code: item.get("linkId").and_then(Value::as_str).unwrap_or_default().to_string(),
                text: item.get("text").and_then(Value::as_str).unwrap_or_default().to_string(),
            })
            .collect()
    }

    /// The LOINC code and display of its total score.
    pub fn total_code(self) -> (&'static str, &'static str) {
        match self {
            Instrument::Phq9 => ("44261-6", "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]"),
            Instrument::Gad7 => ("70274-6", "Generalized anxiety disorder 7 item (GAD-7) total score [Reported.PHQ]"),
        }
    }

    /// The severity band of a total: PHQ-9 0–4 none-minimal, 5–9 mild, 10–14 moderate, 15–19
    /// moderately severe, 20–27 severe; GAD-7 0–4 minimal, 5–9 mild, 10–14 moderate, 15–21
    /// severe.
    pub fn band(self, total: u32) -> Band {
        let band = |code, display| Band { code, display };
        match (self, total) {
            (Instrument::Phq9, 0..=4) => band("none-minimal", "None-minimal depression"),
            (Instrument::Phq9, 5..=9) => band("mild", "Mild depression"),
            (Instrument::Phq9, 10..=14) => band("moderate", "Moderate depression"),
            (Instrument::Phq9, 15..=19) => band("moderately-severe", "Moderately severe depression"),
            (Instrument::Phq9, _) => band("severe", "Severe depression"),
            (Instrument::Gad7, 0..=4) => band("minimal", "Minimal anxiety"),
            (Instrument::Gad7, 5..=9) => band("mild", "Mild anxiety"),
            (Instrument::Gad7, 10..=14) => band("moderate", "Moderate anxiety"),
            (Instrument::Gad7, _) => band("severe", "Severe anxiety"),
        }
    }
}

/// A scored response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Score {
    /// The instrument.
    pub instrument: Instrument,
    /// Each item's score (0–3), in the questionnaire's order.
    pub items: Vec<u32>,
    /// Their sum.
    pub total: u32,
    /// The band of the total.
    pub band: Band,
}

impl Score {
    /// Scores one answer (0–3) per question, in order: refused when an item is unanswered or
    /// outside 0–3 (the text names the item, never the value).
    pub fn of_answers(instrument: Instrument, answers: &[Option<i64>]) -> Result<Score> {
        let questions = instrument.questions();
        if answers.len() > questions.len() {
            return Err(Error::Invalid(format!("the {} has {} items", instrument.label(), questions.len())));
        }
        let mut items = Vec::with_capacity(questions.len());
        for n in 0..questions.len() {
            match answers.get(n).copied().flatten() {
                None => {
                    return Err(Error::Invalid(format!("{} item {} is not answered", instrument.label(), n + 1)));
                }
                Some(value @ 0..=3) => items.push(value as u32),
                Some(_) => {
                    return Err(Error::Invalid(format!(
                        "{} item {} must be answered 0 to 3",
                        instrument.label(),
                        n + 1
                    )));
                }
            }
        }
        let total = items.iter().sum();
        Ok(Score { instrument, items, total, band: instrument.band(total) })
    }

    /// Scores a `QuestionnaireResponse` of `instrument`: each question found by its `linkId`
    /// (the LOINC code, or `/code` as some form tools write it; groups are looked into), its
    /// answer a LOINC answer code of [`ANSWERS`] or an integer 0–3.
    pub fn of_response(instrument: Instrument, response: &Value) -> Result<Score> {
        let mut flat = Vec::new();
        flatten(response.get("item"), &mut flat);
        let answers: Vec<Option<i64>> = instrument
            .questions()
            .iter()
            .map(|q| {
                let item = flat.iter().find(|i| {
                    let link = i.get("linkId").and_then(Value::as_str).unwrap_or_default();
                    link == q.code || link.strip_prefix('/') == Some(q.code.as_str())
                })?;
                let answer = item.pointer("/answer/0")?;
                if let Some(n) = answer.get("valueInteger").and_then(Value::as_i64) {
                    return Some(n);
                }
                let code = answer.pointer("/valueCoding/code").and_then(Value::as_str)?;
                // An answer that is no answer of the list scores as out of range.
                Some(ANSWERS.iter().position(|(c, _)| *c == code).map_or(-1, |p| p as i64))
            })
            .collect();
        Score::of_answers(instrument, &answers)
    }

    /// The PHQ-9's item 9 (`None` for the GAD-7).
    pub fn item_9(&self) -> Option<u32> {
        (self.instrument == Instrument::Phq9).then(|| self.items.get(8).copied()).flatten()
    }
}

fn flatten<'v>(items: Option<&'v Value>, out: &mut Vec<&'v Value>) {
    for item in items.and_then(Value::as_array).into_iter().flatten() {
        out.push(item);
        flatten(item.get("item"), out);
        for answer in item.get("answer").and_then(Value::as_array).into_iter().flatten() {
            flatten(answer.get("item"), out);
        }
    }
}

/// The `QuestionnaireResponse` of answers already scored.
pub fn response_resource(
    score: &Score,
    patient: &str,
    encounter: Option<&str>,
    author: Option<&str>,
    at: &str,
) -> Value {
    let items: Vec<Value> = score
        .instrument
        .questions()
        .iter()
        .zip(&score.items)
        .map(|(q, value)| {
            let (code, display) = ANSWERS[*value as usize];
            json!({"linkId": q.code, "text": q.text,
                "answer": [{"valueCoding": {"system": LOINC, "code": code, "display": display}}]})
        })
        .collect();
    let mut response = json!({
        "resourceType": "QuestionnaireResponse",
        "questionnaire": score.instrument.url(),
        "status": "completed",
        "subject": {"reference": format!("Patient/{patient}")},
        "authored": at,
        "item": items,
    });
    if let Some(encounter) = encounter {
        response["encounter"] = json!({"reference": encounter});
    }
    if let Some(author) = author {
        response["author"] = json!({"reference": author});
    }
    response
}

/// The Observation recording `score` of the response `response` (its `Type/id`, or the
/// `urn:uuid:` of its transaction entry, which the transaction rewrites to its id).
pub fn score_observation(
    score: &Score,
    response: &str,
    patient: &str,
    encounter: Option<&str>,
    performer: Option<&str>,
    at: &str,
) -> Value {
    let (code, display) = score.instrument.total_code();
    let mut observation = json!({
        "resourceType": "Observation",
        "identifier": [{"system": SCORE_SYSTEM, "value": response}],
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "survey", "display": "Survey"}]}],
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": format!("{} total score", score.instrument.label())},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": at,
        "valueInteger": score.total,
        "interpretation": [{"coding": [{"system": SEVERITY_SYSTEM, "code": score.band.code, "display": score.band.display}], "text": score.band.display}],
        "derivedFrom": [{"reference": response}],
    });
    if let Some(encounter) = encounter {
        observation["encounter"] = json!({"reference": encounter});
    }
    if let Some(performer) = performer {
        observation["performer"] = json!([{"reference": performer}]);
    }
    if let Some(item_9) = score.item_9() {
        observation["component"] = json!([{
            "code": {"coding": [{"system": LOINC, "code": PHQ9_ITEM_9, "display": "Thoughts that you would be better off dead, or of hurting yourself in some way"}]},
            "valueInteger": item_9,
        }]);
    }
    observation
}

/// The conditional-create criteria finding the score of the response `response`
/// (`QuestionnaireResponse/{id}`).
pub fn score_criteria(response: &str) -> String {
    format!("identifier={SCORE_SYSTEM}|{response}")
}

/// What [`submit`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The QuestionnaireResponse's id.
    pub response: String,
    /// The score Observation's id.
    pub observation: String,
    /// The score.
    pub score: Score,
}

/// Records `patient`'s answers to `instrument` (one per question, in order, each 0–3; the
/// encounter `Encounter/{id}` when given): the QuestionnaireResponse and its score
/// Observation written in one transaction through the caller's door. Bad answers are refused
/// ([`Error::Invalid`]) and nothing is written.
pub fn submit(
    access: &Access,
    patient: &str,
    instrument: Instrument,
    answers: &[Option<i64>],
    encounter: Option<&str>,
) -> Result<Submitted> {
    if !fhir::reference::is_id(patient) {
        return Err(Error::NotFound);
    }
    if let Some(encounter) = encounter
        && !encounter.strip_prefix("Encounter/").is_some_and(fhir::reference::is_id)
    {
        return Err(Error::Invalid("the encounter must be Encounter/{id}".into()));
    }
    let score = Score::of_answers(instrument, answers)?;
    let author = access.caller().and_then(|c| c.principal.fhir_user());
    let at = store::format_instant(time::OffsetDateTime::now_utc());
    let urn = format!("urn:uuid:{}", uuid::Uuid::new_v4());
    let response = response_resource(&score, patient, encounter, author.as_deref(), &at);
    let observation = score_observation(&score, &urn, patient, encounter, author.as_deref(), &at);
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": urn, "resource": response, "request": {"method": "POST", "url": "QuestionnaireResponse"}},
        {"resource": observation, "request": {"method": "POST", "url": "Observation"}},
    ]});
    let answer = access.transaction_for(bundle, Some(patient))?;
    let id_at = |n: usize| -> Result<String> {
        answer
            .pointer(&format!("/entry/{n}/response/location"))
            .and_then(Value::as_str)
            .and_then(|l| l.split('/').nth(1))
            .map(str::to_string)
            .ok_or_else(|| Error::Store(store::Error::Storage("a transaction answered without a location".into())))
    };
    Ok(Submitted { response: id_at(0)?, observation: id_at(1)?, score })
}

/// Loads both Questionnaires (a conditional create on each `url`: an existing one is left as
/// it is). Run as a job of the server at start; returns how many were created.
pub fn load_questionnaires(access: &Access) -> Result<usize> {
    let mut created = 0;
    for instrument in Instrument::ALL {
        let outcome = access.create(instrument.questionnaire().clone(), Some(&format!("url={}", instrument.url())))?;
        if outcome.kind == store::WriteKind::Created {
            created += 1;
        }
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_questionnaires_hold_the_loinc_items_in_order() {
        let codes = |i: Instrument| i.questions().into_iter().map(|q| q.code).collect::<Vec<_>>();
        assert_eq!(
            codes(Instrument::Phq9),
            ["44250-9", "44255-8", "44259-0", "44254-1", "44251-7", "44258-2", "44252-5", "44253-3", "44260-8"]
        );
        assert_eq!(
            codes(Instrument::Gad7),
            ["69725-0", "68509-9", "69733-4", "69734-2", "69735-9", "69689-8", "69736-7"]
        );
        for instrument in Instrument::ALL {
            let q = instrument.questionnaire();
            let errors: Vec<_> =
                fhir::validate(q).into_iter().filter(|i| i.severity == fhir::Severity::Error).collect();
            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(Instrument::of_canonical(&format!("{}|1", instrument.url())), Some(instrument));
        }
    }
}
