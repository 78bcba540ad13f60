//! Plan of treatment (planned acts, encounters, procedures, observations, supplies,
//! immunizations, medications; instructions), goals and health concerns.
//!
//! Decisions:
//! - Every planned entry except medications becomes a ServiceRequest of intent `plan` (the
//!   C-CDA on FHIR guidance's choice for planned acts, whatever their moodCode); a Planned
//!   Medication Activity (4.42) becomes a MedicationRequest of intent `plan`.
//! - An Instruction (4.20) becomes a CommunicationRequest: it is something to be told to the
//!   patient (its narrative or code text is the payload, its code the category), not a service
//!   to be performed.
//! - A Nutrition Recommendation (4.130) and a Planned Intervention Act (4.146, Care Plan) are
//!   planned acts too: ServiceRequests; so are the planned entries a Planned Intervention Act
//!   groups (in its `entryRelationship`s), each its own ServiceRequest.

use super::clinical::{entry_is, reference, related_of, status_code, title_case};
use super::data::{self, Interval, concept, fixed, put, put_list};
use super::xml::{El, attr, child, negated};
use super::{Reader, Section};
use serde_json::{Map, Value, json};

/// The planned-entry templates mapped (4.x suffixes).
const PLANNED: [&str; 10] = ["39", "40", "41", "42", "43", "44", "120", "20", "130", "146"];

/// Whether `act` is a planned entry this reader maps.
pub(crate) fn is_planned(act: El<'_>) -> bool {
    PLANNED.iter().any(|s| entry_is(act, s))
}

/// A request's status (`request-status`) from an act's `statusCode`.
fn request_status(act: El<'_>) -> &'static str {
    match status_code(act) {
        Some("completed") => "completed",
        Some("cancelled" | "aborted" | "obsolete") => "revoked",
        Some("new") => "draft",
        Some("suspended" | "held") => "on-hold",
        Some("nullified") => "entered-in-error",
        _ => "active",
    }
}

impl Reader {
    /// A planned entry of the plan of treatment.
    pub(crate) fn planned(&mut self, section: &Section<'_>, index: usize, act: El<'_>) {
        let narrative = &section.narrative;
        if entry_is(act, "42") {
            self.medication(section, index, act, true);
            return;
        }
        if entry_is(act, "20") {
            self.instruction(section, index, act);
            return;
        }
        let code_el = if entry_is(act, "120") {
            super::xml::path(act, &["consumable", "manufacturedProduct", "manufacturedMaterial", "code"])
        } else if entry_is(act, "43") {
            let product = child(act, "product").and_then(|p| child(p, "manufacturedProduct"));
            product
                .and_then(|p| child(p, "manufacturedMaterial").or_else(|| child(p, "manufacturedLabeledDrug")))
                .and_then(|m| child(m, "code"))
                .or_else(|| child(act, "code"))
        } else {
            child(act, "code")
        };
        let Some(code) = code_el.and_then(|c| concept(c, narrative)) else {
            self.warn(section, index, "a planned entry without a code is not mapped");
            return;
        };
        let mut r = self.base("ServiceRequest", act);
        r.insert("status".into(), Value::String(request_status(act).into()));
        r.insert("intent".into(), Value::String("plan".into()));
        let priority = child(act, "priorityCode").and_then(|p| attr(p, "code")).and_then(|p| match p {
            "R" => Some("routine"),
            "UR" => Some("urgent"),
            "A" => Some("asap"),
            "S" | "EM" => Some("stat"),
            _ => None,
        });
        put(&mut r, "priority", priority.map(|p| Value::String(p.into())));
        if negated(act) {
            r.insert("doNotPerform".into(), Value::Bool(true));
        }
        r.insert("code".into(), code);
        r.insert("subject".into(), self.patient_ref());
        if let Some(et) = child(act, "effectiveTime") {
            Interval::of(et).set_choice(&mut r, "occurrence", true);
        }
        let (author, time) = self.author(act);
        put(&mut r, "authoredOn", time.map(Value::String));
        let requester = author.filter(|u| self.is_a(u, &["Practitioner", "Organization", "Device"]));
        put(&mut r, "requester", requester.map(|u| reference(&u)));
        let performers = self.performers(act);
        let performers: Vec<Value> = self
            .refs(performers, &["Practitioner", "Organization", "Device", "Patient"])
            .iter()
            .map(|u| reference(u))
            .collect();
        put_list(&mut r, "performer", performers);
        let reasons: Vec<Value> =
            related_of(act, "19").filter_map(|i| child(i, "value")).filter_map(|v| concept(v, narrative)).collect();
        put_list(&mut r, "reasonCode", reasons);
        put_list(
            &mut r,
            "bodySite",
            super::xml::children(act, "targetSiteCode").filter_map(|c| concept(c, narrative)).collect(),
        );
        self.add(r, section.kind);
        if entry_is(act, "146") {
            // A Care Plan's planned intervention: the planned entries it groups are requests too.
            for nested in super::clinical::related(act).filter(|a| is_planned(*a) && !entry_is(*a, "146")) {
                self.planned(section, index, nested);
            }
        }
    }

    /// An Instruction (4.20) as a CommunicationRequest (see the module's decisions).
    fn instruction(&mut self, section: &Section<'_>, index: usize, act: El<'_>) {
        let narrative = &section.narrative;
        let code = child(act, "code").and_then(|c| concept(c, narrative));
        let text = child(act, "text").and_then(|t| narrative.text(t)).or_else(|| {
            let code = code.as_ref()?;
            code.get("text").or_else(|| code.pointer("/coding/0/display")).and_then(Value::as_str).map(str::to_owned)
        });
        let Some(text) = text else {
            self.warn(section, index, "an Instruction without text is not mapped");
            return;
        };
        let mut r = self.base("CommunicationRequest", act);
        r.insert("status".into(), Value::String(request_status(act).into()));
        put_list(&mut r, "category", code.into_iter().collect());
        if negated(act) {
            r.insert("doNotPerform".into(), Value::Bool(true));
        }
        r.insert("subject".into(), self.patient_ref());
        r.insert("payload".into(), json!([{ "contentString": text }]));
        let (author, time) = self.author(act);
        put(&mut r, "authoredOn", time.map(Value::String));
        let requester = author.filter(|u| self.is_a(u, &["Practitioner", "Organization", "Device"]));
        put(&mut r, "requester", requester.map(|u| reference(&u)));
        self.add(r, section.kind);
    }

    /// A Goal Observation (4.121) as a Goal.
    pub(crate) fn goal(&mut self, section: &Section<'_>, index: usize, obs: El<'_>) {
        let narrative = &section.narrative;
        let code = child(obs, "code").and_then(|c| concept(c, narrative));
        let value = child(obs, "value");
        let value_concept = value.and_then(|v| concept(v, narrative).filter(|_| data_is_coded(v)));
        let description = code
            .clone()
            .or_else(|| value_concept.clone())
            .or_else(|| child(obs, "text").and_then(|t| narrative.text(t)).map(|t| json!({ "text": t })));
        let Some(description) = description else {
            self.warn(section, index, "a Goal Observation without a code, a value or a text is not mapped");
            return;
        };
        let mut r = self.base("Goal", obs);
        let lifecycle = match status_code(obs) {
            Some("completed") => "completed",
            Some("cancelled" | "aborted") => "cancelled",
            Some("suspended" | "held") => "on-hold",
            Some("new") => "proposed",
            Some("nullified") => "entered-in-error",
            _ => "active",
        };
        r.insert("lifecycleStatus".into(), Value::String(lifecycle.into()));
        r.insert("description".into(), description);
        r.insert("subject".into(), self.patient_ref());
        let when = child(obs, "effectiveTime").map(Interval::of).unwrap_or_default();
        put(&mut r, "startDate", when.low.as_deref().map(data::date_only).map(Value::String));
        let due = when.high.clone().or_else(|| when.value.clone()).map(|d| data::date_only(&d));
        let mut target = Map::new();
        if let Some(value) = value {
            let detail = match super::xml::xsi_type(value) {
                Some("PQ") => data::quantity(value).map(|q| ("detailQuantity", q)),
                Some("IVL_PQ") => data::quantity(value)
                    .map(|q| ("detailQuantity", q))
                    .or_else(|| data::range(value).map(|q| ("detailRange", q))),
                Some("INT") => {
                    attr(value, "value").and_then(|v| v.parse::<i32>().ok()).map(|v| ("detailInteger", json!(v)))
                }
                Some("ST") => narrative.text(value).map(|s| ("detailString", Value::String(s))),
                _ if code.is_some() => value_concept.clone().map(|c| ("detailCodeableConcept", c)),
                _ => None,
            };
            if let Some((name, detail)) = detail {
                // gol-1: a target with a detail says what it measures.
                if let Some(measure) = code.clone() {
                    target.insert("measure".into(), measure);
                    target.insert(name.into(), detail);
                }
            }
        }
        put(&mut target, "dueDate", due.map(Value::String));
        if !target.is_empty() {
            r.insert("target".into(), json!([Value::Object(target)]));
        }
        let (author, _) = self.author(obs);
        let expressed = author.filter(|u| self.is_a(u, &["Practitioner", "Patient"]));
        put(&mut r, "expressedBy", expressed.map(|u| reference(&u)));
        self.add(r, section.kind);
    }

    /// A Health Concern Act (4.132) as a Condition of category health-concern: its code is the
    /// contained Problem Observation's value, else the act's code.
    pub(crate) fn health_concern(&mut self, section: &Section<'_>, index: usize, act: El<'_>) {
        let narrative = &section.narrative;
        let problem = related_of(act, "4").next();
        let code = problem
            .and_then(|p| child(p, "value"))
            .and_then(|v| concept(v, narrative))
            .or_else(|| child(act, "code").and_then(|c| concept(c, narrative)));
        let Some(code) = code else {
            self.warn(section, index, "a Health Concern Act without a code is not mapped");
            return;
        };
        let mut r = self.base("Condition", act);
        let clinical = match status_code(act) {
            Some("active") => Some("active"),
            Some("suspended") => Some("inactive"),
            Some("completed") => Some("resolved"),
            _ => None,
        };
        if let Some(c) = clinical {
            r.insert(
                "clinicalStatus".into(),
                fixed("http://terminology.hl7.org/CodeSystem/condition-clinical", c, &title_case(c)),
            );
        }
        r.insert(
            "category".into(),
            json!([fixed(
                "http://hl7.org/fhir/us/core/CodeSystem/condition-category",
                "health-concern",
                "Health Concern"
            )]),
        );
        r.insert("code".into(), code);
        r.insert("subject".into(), self.patient_ref());
        let when = problem.or(Some(act)).and_then(|a| child(a, "effectiveTime")).map(Interval::of).unwrap_or_default();
        put(&mut r, "onsetDateTime", when.start().map(Value::String));
        if clinical != Some("active") {
            put(&mut r, "abatementDateTime", when.high.clone().map(Value::String));
        }
        let (author, time) = self.author(act);
        put(&mut r, "recordedDate", time.map(Value::String));
        let recorder = author.filter(|u| self.is_a(u, &["Practitioner", "Patient"]));
        put(&mut r, "recorder", recorder.map(|u| reference(&u)));
        self.add(r, section.kind);
    }
}

/// Whether a `value` carries a code (CD-like).
fn data_is_coded(value: El<'_>) -> bool {
    matches!(super::xml::xsi_type(value), Some("CD" | "CE" | "CV" | "CO" | "CS") | None)
}
