//! The patient's problem, allergy and medication lists: what they show, and their edits — add,
//! resolve a problem, inactivate an allergy, discontinue a medication with a reason — each
//! written through the door. "No known allergies" and an active allergy contradict each other:
//! the first is refused while allergies are active, and recording an allergy retires it (in
//! one transaction).

use crate::elements::{concept, first_code, has_code};
use crate::read::{self, may_write};
use crate::{Error, Result};
use access::Access;
use serde_json::{Value, json};

/// A problem-list item (`Condition`).
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The Condition's id.
    pub id: String,
    /// What the problem is.
    pub name: String,
    /// Its clinical status code (`active`, `resolved`…), empty when not recorded.
    pub status: String,
    /// The onset as written, when recorded.
    pub onset: Option<String>,
}

impl Problem {
    /// The view of a Condition.
    pub fn of(condition: &Value) -> Problem {
        Problem {
            id: id_of(condition),
            name: concept(condition.get("code")),
            status: first_code(condition.get("clinicalStatus")).unwrap_or_default().to_string(),
            onset: condition.get("onsetDateTime").and_then(Value::as_str).map(str::to_string),
        }
    }

    /// Whether it is still going on (so it can be resolved).
    pub fn is_active(&self) -> bool {
        matches!(self.status.as_str(), "active" | "recurrence" | "relapse")
    }
}

/// An allergy or intolerance (`AllergyIntolerance`).
#[derive(Debug, Clone, PartialEq)]
pub struct Allergy {
    /// The AllergyIntolerance's id.
    pub id: String,
    /// The substance (or "No known allergies").
    pub substance: String,
    /// Its clinical status code; `active` when not recorded.
    pub status: String,
    /// Its criticality code, empty when not recorded.
    pub criticality: String,
}

impl Allergy {
    /// The view of an AllergyIntolerance.
    pub fn of(allergy: &Value) -> Allergy {
        Allergy {
            id: id_of(allergy),
            substance: concept(allergy.get("code")),
            status: first_code(allergy.get("clinicalStatus")).unwrap_or("active").to_string(),
            criticality: allergy.get("criticality").and_then(Value::as_str).unwrap_or_default().to_string(),
        }
    }

    /// Whether it is active (so it can be inactivated).
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }
}

/// A medication on the list: ordered here (`MedicationRequest`) or recorded as taken
/// (`MedicationStatement`, e.g. from another organization's document, once reconciled).
#[derive(Debug, Clone, PartialEq)]
pub struct Medication {
    /// Whether it is a MedicationStatement (recorded as taken) rather than an order.
    pub statement: bool,
    /// The resource's id.
    pub id: String,
    /// The drug.
    pub name: String,
    /// The first dosage instruction's text, when recorded.
    pub instructions: Option<String>,
    /// Its status code (`active`, `stopped`…), empty when not recorded.
    pub status: String,
    /// Why its status is what it is (the reason it was discontinued), empty when not recorded.
    pub status_reason: String,
}

impl Medication {
    /// The view of a MedicationRequest or MedicationStatement.
    pub fn of(request: &Value) -> Medication {
        Medication {
            statement: request.get("resourceType").and_then(Value::as_str) == Some("MedicationStatement"),
            id: id_of(request),
            name: medication_name(request),
            instructions: request
                .pointer("/dosageInstruction/0/text")
                .or_else(|| request.pointer("/dosage/0/text"))
                .and_then(Value::as_str)
                .map(str::to_string),
            status: request.get("status").and_then(Value::as_str).unwrap_or_default().to_string(),
            status_reason: concept(request.get("statusReason")),
        }
    }

    /// Whether it is an active order (so it can be discontinued).
    pub fn is_active(&self) -> bool {
        self.status == "active" && !self.statement
    }
}

/// The drug of a MedicationRequest or MedicationStatement.
pub fn medication_name(request: &Value) -> String {
    if let Some(concept_) = request.get("medicationCodeableConcept") {
        return concept(Some(concept_));
    }
    request
        .pointer("/medicationReference/display")
        .and_then(Value::as_str)
        .or_else(|| request.pointer("/medicationReference/reference").and_then(Value::as_str))
        .unwrap_or("(medication)")
        .to_string()
}

fn id_of(resource: &Value) -> String {
    resource.get("id").and_then(Value::as_str).unwrap_or_default().to_string()
}

/// The three lists of a patient, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Lists {
    /// Every problem, by onset.
    pub problems: Vec<Problem>,
    /// Every allergy and intolerance.
    pub allergies: Vec<Allergy>,
    /// Every medication: the orders by the date they were ordered, then those recorded as
    /// taken by when.
    pub medications: Vec<Medication>,
}

/// Reads `patient`'s lists (up to 200 items each).
pub fn lists(access: &Access, patient: &str) -> Result<Lists> {
    let p = || ("patient", patient.to_string());
    let problems = read::search(access, "Condition", &[p(), ("_sort", "-onset-date".into())], 200)?;
    let allergies = read::search(access, "AllergyIntolerance", &[p()], 200)?;
    let mut medications = read::search(access, "MedicationRequest", &[p(), ("_sort", "-authoredon".into())], 200)?;
    medications.extend(read::search(access, "MedicationStatement", &[p(), ("_sort", "-effective".into())], 200)?);
    // Items from outside wait for reconciliation off the lists (see `reconcile`).
    let kept = |r: &&Value| !crate::reconcile::is_held_back(r);
    Ok(Lists {
        problems: problems.iter().filter(kept).map(Problem::of).collect(),
        allergies: allergies.iter().filter(kept).map(Allergy::of).collect(),
        medications: medications.iter().filter(kept).map(Medication::of).collect(),
    })
}

/// SNOMED CT "no known allergy" and its narrower "no known drug/food/… allergy" findings.
const NO_KNOWN_ALLERGY: [&str; 5] = ["716186003", "409137002", "429625007", "428607008", "428197003"];

/// Whether an AllergyIntolerance records "no known allergies" rather than an allergy.
pub fn is_no_known_allergy(allergy: &Value) -> bool {
    NO_KNOWN_ALLERGY.iter().any(|code| has_code(allergy.get("code"), "http://snomed.info/sct", code))
}

fn now() -> String {
    store::format_instant(time::OffsetDateTime::now_utc())
}

/// A problem to add to the list.
#[derive(Debug, Clone, PartialEq)]
pub struct NewProblem {
    /// What the problem is, as the clinician wrote it.
    pub text: String,
    /// Its SNOMED CT code, when given.
    pub snomed: Option<String>,
    /// The onset date (`YYYY-MM-DD`), when given.
    pub onset: Option<String>,
}

/// Adds an active, confirmed problem-list item to `patient`'s list.
pub fn add_problem(access: &Access, patient: &str, problem: &NewProblem) -> Result<()> {
    may_write(access, patient)?;
    let mut code = json!({"text": problem.text});
    if let Some(snomed) = &problem.snomed {
        code["coding"] = json!([{"system": "http://snomed.info/sct", "code": snomed, "display": problem.text}]);
    }
    let mut condition = json!({
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item", "display": "Problem List Item"}]}],
        "code": code,
        "subject": {"reference": format!("Patient/{patient}")},
        "recordedDate": now(),
    });
    if let Some(onset) = &problem.onset {
        condition["onsetDateTime"] = json!(onset);
    }
    access.create(condition, None)?;
    Ok(())
}

/// Changes one item of `patient`'s lists: read it through the door, check it is the
/// patient's, change it, write it back with `If-Match` on the version read (a change made
/// meanwhile is not lost).
fn change_item(
    access: &Access,
    patient: &str,
    resource_type: &str,
    item: &str,
    change: impl FnOnce(&mut Value) -> Result<()>,
) -> Result<()> {
    may_write(access, patient)?;
    let mut resource = read::read(access, resource_type, item)?;
    if !policy::patients_of(resource_type, &resource).iter().any(|owner| owner == patient) {
        return Err(Error::NotOnChart);
    }
    change(&mut resource)?;
    read::write_back(access, resource)
}

/// Marks problem `item` of `patient` resolved, now.
pub fn resolve_problem(access: &Access, patient: &str, item: &str) -> Result<()> {
    change_item(access, patient, "Condition", item, |condition| {
        condition["clinicalStatus"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "resolved"}]});
        condition["abatementDateTime"] = json!(now());
        Ok(())
    })
}

/// How bad a reaction to an allergen could be (`AllergyIntolerance.criticality`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Criticality {
    /// `low`.
    Low,
    /// `high`.
    High,
    /// `unable-to-assess`.
    UnableToAssess,
}

impl Criticality {
    /// The criticality of its FHIR code.
    pub fn from_code(code: &str) -> Option<Criticality> {
        match code {
            "low" => Some(Criticality::Low),
            "high" => Some(Criticality::High),
            "unable-to-assess" => Some(Criticality::UnableToAssess),
            _ => None,
        }
    }

    /// Its FHIR code.
    pub fn code(self) -> &'static str {
        match self {
            Criticality::Low => "low",
            Criticality::High => "high",
            Criticality::UnableToAssess => "unable-to-assess",
        }
    }
}

/// An entry for the allergy list.
#[derive(Debug, Clone, PartialEq)]
pub enum NewAllergy {
    /// "No known allergies".
    NoneKnown,
    /// An allergy or intolerance to a substance.
    Substance {
        /// The substance.
        substance: String,
        /// The reaction it causes, when given.
        reaction: Option<String>,
        /// How bad a reaction could be.
        criticality: Criticality,
    },
}

/// The AllergyIntolerance recording `entry` for `patient`, at `at`.
fn allergy_resource(patient: &str, entry: &NewAllergy, at: &str) -> Value {
    let code = match entry {
        NewAllergy::NoneKnown => {
            json!({"coding": [{"system": "http://snomed.info/sct", "code": "716186003", "display": "No known allergy"}], "text": "No known allergies"})
        }
        NewAllergy::Substance { substance, .. } => json!({"text": substance}),
    };
    let mut allergy = json!({
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "code": "confirmed"}]},
        "code": code,
        "patient": {"reference": format!("Patient/{patient}")},
        "recordedDate": at,
    });
    if let NewAllergy::Substance { reaction, criticality, .. } = entry {
        allergy["criticality"] = json!(criticality.code());
        if let Some(reaction) = reaction {
            allergy["reaction"] = json!([{"manifestation": [{"text": reaction}]}]);
        }
    }
    allergy
}

/// What recording `entry` does, given the patient's active allergies: the resource to create,
/// and the "no known allergies" entries it retires — or [`Error::AllergiesActive`] when
/// "no known allergies" contradicts an active allergy.
fn allergy_writes(entry: &NewAllergy, active: Vec<Value>) -> Result<Vec<Value>> {
    let (none_known, allergies): (Vec<Value>, Vec<Value>) = active.into_iter().partition(is_no_known_allergy);
    match entry {
        NewAllergy::NoneKnown if !allergies.is_empty() => Err(Error::AllergiesActive),
        NewAllergy::NoneKnown => Ok(Vec::new()),
        NewAllergy::Substance { .. } => Ok(none_known),
    }
}

/// An AllergyIntolerance's `clinicalStatus` once it no longer applies.
fn inactive_allergy_status() -> Value {
    json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "inactive"}]})
}

/// Records `entry` on `patient`'s allergy list: refused ([`Error::AllergiesActive`]) for "no
/// known allergies" while allergies are active; an allergy retires a "no known allergies"
/// entry in the same transaction.
pub fn add_allergy(access: &Access, patient: &str, entry: &NewAllergy) -> Result<()> {
    let active = read::search(
        access,
        "AllergyIntolerance",
        &[("patient", patient.to_string()), ("clinical-status", "active".into())],
        100,
    )?;
    let retire = allergy_writes(entry, active)?;
    may_write(access, patient)?;
    let allergy = allergy_resource(patient, entry, &now());
    if retire.is_empty() {
        access.create(allergy, None)?;
        return Ok(());
    }
    let mut entries = vec![json!({"resource": allergy, "request": {"method": "POST", "url": "AllergyIntolerance"}})];
    for mut old in retire {
        old["clinicalStatus"] = inactive_allergy_status();
        entries.push(read::update_entry(old));
    }
    access
        .transaction_for(json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}), Some(patient))?;
    Ok(())
}

/// Marks allergy `item` of `patient` inactive.
pub fn inactivate_allergy(access: &Access, patient: &str, item: &str) -> Result<()> {
    change_item(access, patient, "AllergyIntolerance", item, |allergy| {
        allergy["clinicalStatus"] = inactive_allergy_status();
        Ok(())
    })
}

/// A medication to add to the list.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMedication {
    /// The drug, as the clinician wrote it.
    pub name: String,
    /// Its RxNorm code, when given.
    pub rxnorm: Option<String>,
    /// The dosage instructions, when given.
    pub instructions: Option<String>,
    /// Who ordered it (`Practitioner/…`), when known.
    pub requester: Option<String>,
}

/// Adds an active medication to `patient`'s list (a MedicationRequest, intent `order`).
pub fn add_medication(access: &Access, patient: &str, medication: &NewMedication) -> Result<()> {
    may_write(access, patient)?;
    let mut code = json!({"text": medication.name});
    if let Some(rxnorm) = &medication.rxnorm {
        code["coding"] = json!([{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": rxnorm, "display": medication.name}]);
    }
    let mut request = json!({
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": code,
        "subject": {"reference": format!("Patient/{patient}")},
        "authoredOn": now(),
    });
    if let Some(instructions) = &medication.instructions {
        request["dosageInstruction"] = json!([{"text": instructions}]);
    }
    if let Some(requester) = &medication.requester {
        request["requester"] = json!({"reference": requester});
    }
    access.create(request, None)?;
    Ok(())
}

/// Stops active medication `item` of `patient`, with the reason (else
/// [`Error::MedicationNotActive`]).
pub fn discontinue_medication(access: &Access, patient: &str, item: &str, reason: &str) -> Result<()> {
    change_item(access, patient, "MedicationRequest", item, |request| {
        if request.get("status").and_then(Value::as_str) != Some("active") {
            return Err(Error::MedicationNotActive);
        }
        request["status"] = json!("stopped");
        request["statusReason"] = json!({"text": reason});
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allergy(code: Option<&str>, text: &str) -> Value {
        let mut a = json!({"resourceType": "AllergyIntolerance", "id": text, "code": {"text": text}});
        if let Some(code) = code {
            a["code"]["coding"] = json!([{"system": "http://snomed.info/sct", "code": code}]);
        }
        a
    }

    #[test]
    fn no_known_allergies_are_refused_while_allergies_are_active() {
        let none_known = allergy(Some("409137002"), "No known drug allergy");
        let peanuts = allergy(None, "Peanuts");
        assert!(is_no_known_allergy(&none_known));
        assert!(!is_no_known_allergy(&peanuts));
        let refused = allergy_writes(&NewAllergy::NoneKnown, vec![none_known.clone(), peanuts.clone()]);
        assert!(matches!(refused, Err(Error::AllergiesActive)));
        assert_eq!(refused.unwrap_err().class(), fhir::ErrorClass::BusinessRule);
        assert_eq!(allergy_writes(&NewAllergy::NoneKnown, vec![none_known.clone()]).unwrap(), Vec::<Value>::new());
    }

    #[test]
    fn an_allergy_retires_no_known_allergies() {
        let none_known = allergy(Some("716186003"), "No known allergies");
        let peanuts = allergy(None, "Peanuts");
        let entry = NewAllergy::Substance { substance: "Latex".into(), reaction: None, criticality: Criticality::High };
        let retired = allergy_writes(&entry, vec![none_known.clone(), peanuts]).unwrap();
        assert_eq!(retired, vec![none_known]);
        let written = allergy_resource("p1", &entry, "2026-01-02T00:00:00Z");
        assert_eq!(written["criticality"], "high");
        assert!(written.get("reaction").is_none());
        let none = allergy_resource("p1", &NewAllergy::NoneKnown, "2026-01-02T00:00:00Z");
        assert!(is_no_known_allergy(&none));
        assert!(none.get("criticality").is_none());
    }

    #[test]
    fn list_views_read_status_and_names() {
        let condition = json!({"id": "c1", "code": {"coding": [{"display": "Asthma"}]},
            "clinicalStatus": {"coding": [{"code": "relapse"}]}, "onsetDateTime": "2020-01-01"});
        let problem = Problem::of(&condition);
        assert_eq!((problem.name.as_str(), problem.is_active()), ("Asthma", true));
        let allergy = Allergy::of(&json!({"id": "a1", "code": {"text": "Latex"}}));
        assert!(allergy.is_active());
        let request = json!({"id": "m1", "status": "stopped", "medicationReference": {"display": "Metformin"},
            "statusReason": {"text": "nausea"}});
        let medication = Medication::of(&request);
        assert_eq!((medication.name.as_str(), medication.status_reason.as_str()), ("Metformin", "nausea"));
        assert!(!medication.is_active());
    }
}
