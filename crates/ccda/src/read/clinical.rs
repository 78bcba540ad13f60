//! Problems, allergies, medications, immunizations, results, vital signs, procedures,
//! encounters, and the plain observations of social history and functional / mental status.

use super::data::{self, Interval, concept, fixed, put, put_list, quantity};
use super::xml::{El, attr, child, children, elements, has_template, is, is_null, negated};
use super::{ENTRY, Reader, Section, SectionKind};
use serde_json::{Map, Value, json};

const CONDITION_CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/condition-clinical";
const CONDITION_VER: &str = "http://terminology.hl7.org/CodeSystem/condition-ver-status";
const CONDITION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/condition-category";
const ALLERGY_CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";
const ALLERGY_VER: &str = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification";
const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const SNOMED: &str = "2.16.840.1.113883.6.96";

/// Whether `node` declares the C-CDA entry template `4.{suffix}`.
pub(crate) fn entry_is(node: El<'_>, suffix: &str) -> bool {
    has_template(node, &[&format!("{ENTRY}{suffix}")])
}

/// The acts inside `act`'s `entryRelationship`s.
pub(crate) fn related<'a>(act: El<'a>) -> impl Iterator<Item = El<'a>> {
    children(act, "entryRelationship").filter_map(|r| elements(r).next())
}

/// The acts inside `act`'s `entryRelationship`s of template `4.{suffix}`.
pub(crate) fn related_of<'a, 's>(act: El<'a>, suffix: &'s str) -> impl Iterator<Item = El<'a>> + use<'a, 's> {
    related(act).filter(move |a| entry_is(*a, suffix))
}

/// The `statusCode/@code` of an act.
pub(crate) fn status_code<'a>(act: El<'a>) -> Option<&'a str> {
    child(act, "statusCode").and_then(|s| attr(s, "code"))
}

/// The SNOMED code of an act's `value`, if any.
fn snomed_value<'a>(act: El<'a>) -> Option<&'a str> {
    let value = child(act, "value")?;
    data::codes(value).find(|(system, _)| *system == Some(SNOMED)).map(|(_, code)| code)
}

/// The reference to a resource by its name.
pub(crate) fn reference(url: &str) -> Value {
    json!({ "reference": url })
}

/// An Observation's status from an act's `statusCode`.
pub(crate) fn observation_status(act: El<'_>) -> &'static str {
    match status_code(act) {
        Some("active") => "preliminary",
        Some("aborted" | "cancelled") => "cancelled",
        Some("nullified") => "entered-in-error",
        Some("new" | "held" | "suspended") => "registered",
        _ => "final",
    }
}

impl Reader {
    /// A Problem Concern Act (4.3), Hospital Admission (4.34) / Discharge (4.33) Diagnosis, or a
    /// bare Problem Observation (4.4): one Condition per Problem Observation.
    pub(crate) fn problems(&mut self, section: &Section<'_>, index: usize, act: El<'_>) {
        if entry_is(act, "4") && is(act, "observation") {
            self.condition(section, index, act, None);
            return;
        }
        let observations: Vec<El<'_>> = related_of(act, "4").collect();
        if observations.is_empty() {
            self.warn(section, index, "a problem concern act without a Problem Observation is not mapped");
        }
        for obs in observations {
            self.condition(section, index, obs, Some(act));
        }
    }

    /// One Problem Observation as a Condition.
    ///
    /// A negated Problem Observation whose value names no particular problem (no code, or SNOMED
    /// 55607006 "Problem") says "no known problems": following the same convention as for
    /// allergies, it is one Condition coded SNOMED 160245001 "No current problems or
    /// disability", confirmed.
    fn condition(&mut self, section: &Section<'_>, index: usize, obs: El<'_>, concern: Option<El<'_>>) {
        let value = child(obs, "value");
        let generic = value.is_none_or(|v| data::codes(v).next().is_none() || snomed_value(obs) == Some("55607006"));
        let no_known = negated(obs) && generic;
        let code = if no_known {
            Some(fixed("http://snomed.info/sct", "160245001", "No current problems or disability"))
        } else {
            value.and_then(|v| concept(v, &section.narrative))
        };
        let Some(code) = code else {
            self.warn(section, index, "a Problem Observation without a problem code (value) is not mapped");
            return;
        };
        let mut r = self.base("Condition", obs);
        let when = child(obs, "effectiveTime").map(Interval::of).unwrap_or_default();
        let status_obs = related_of(obs, "6").next();
        let mut clinical = status_obs.and_then(snomed_value).and_then(|c| match c {
            "55561003" => Some("active"),
            "73425007" => Some("inactive"),
            "413322009" => Some("resolved"),
            _ => None,
        });
        if clinical.is_none() {
            clinical = if when.high.is_some() {
                Some("resolved")
            } else {
                concern.and_then(status_code).and_then(|s| match s {
                    "active" => Some("active"),
                    "suspended" => Some("inactive"),
                    "completed" => Some("resolved"),
                    _ => None,
                })
            };
        }
        // con-3: a problem-list item has a clinical status; with nothing saying otherwise, active.
        let c = clinical.unwrap_or("active");
        r.insert("clinicalStatus".into(), fixed(CONDITION_CLINICAL, c, &title_case(c)));
        let ver = if negated(obs) && !no_known { ("refuted", "Refuted") } else { ("confirmed", "Confirmed") };
        r.insert("verificationStatus".into(), fixed(CONDITION_VER, ver.0, ver.1));
        let diagnosis = section.diagnoses || concern.is_some_and(|c| entry_is(c, "33") || entry_is(c, "34"));
        let category = if diagnosis {
            fixed(CONDITION_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis")
        } else {
            fixed(CONDITION_CATEGORY, "problem-list-item", "Problem List Item")
        };
        r.insert("category".into(), json!([category]));
        r.insert("code".into(), code);
        r.insert("subject".into(), self.patient_ref());
        put(&mut r, "onsetDateTime", when.start().map(Value::String));
        put(&mut r, "abatementDateTime", when.high.clone().map(Value::String));
        let (mut recorder, mut recorded) = self.author(obs);
        if recorder.is_none()
            && let Some(concern) = concern
        {
            let (who, time) = self.author(concern);
            recorder = who;
            recorded = recorded.or(time);
        }
        put(&mut r, "recordedDate", recorded.map(Value::String));
        let recorder = recorder.filter(|u| self.is_a(u, &["Practitioner", "Patient"]));
        put(&mut r, "recorder", recorder.map(|u| reference(&u)));
        self.add(r, section.kind);
    }

    /// An Allergy Concern Act (4.30) or a bare Allergy-Intolerance Observation (4.7).
    pub(crate) fn allergies(&mut self, section: &Section<'_>, index: usize, act: El<'_>) {
        if entry_is(act, "7") && is(act, "observation") {
            self.allergy(section, index, act, None);
            return;
        }
        let observations: Vec<El<'_>> = related_of(act, "7").collect();
        if observations.is_empty() {
            self.warn(
                section,
                index,
                "an allergy concern act without an Allergy-Intolerance Observation is not mapped",
            );
        }
        for obs in observations {
            self.allergy(section, index, obs, Some(act));
        }
    }

    /// One Allergy-Intolerance Observation as an AllergyIntolerance.
    ///
    /// "No known allergies" — the observation negated (`negationInd="true"`) with no substance
    /// (a null `playingEntity` code), or its value one of the codes below with no substance —
    /// follows the FHIR / US Core convention: it is not an allergy but one AllergyIntolerance
    /// whose code is the negation (SNOMED 716186003 "No known allergy"; 409137002 "No known drug
    /// allergy", 429625007 "No known food allergy", 428607008 "No known environmental allergy"
    /// when the observation's value says which kind), verified (`confirmed`), active, without
    /// reactions. A negated observation that names a substance is that substance's allergy,
    /// `refuted`.
    fn allergy(&mut self, section: &Section<'_>, index: usize, obs: El<'_>, concern: Option<El<'_>>) {
        let narrative = &section.narrative;
        let substance = children(obs, "participant")
            .filter_map(|p| child(p, "participantRole"))
            .filter_map(|r| child(r, "playingEntity"))
            .find_map(|e| child(e, "code"))
            .and_then(|c| concept(c, narrative));
        let kind = snomed_value(obs);
        let (allergy_type, category) = match kind {
            Some("419199007") => (Some("allergy"), None),
            Some("416098002") => (Some("allergy"), Some("medication")),
            Some("414285001") => (Some("allergy"), Some("food")),
            Some("426232007") => (Some("allergy"), Some("environment")),
            Some("59037007") => (Some("intolerance"), Some("medication")),
            Some("235719002") => (Some("intolerance"), Some("food")),
            Some("419511003") => (None, Some("medication")),
            Some("418471000") => (None, Some("food")),
            Some("418038007" | "420134006") => (None, None),
            _ => (None, None),
        };
        // "No known allergies" stated as the value itself (not negated), with no substance.
        let stated = matches!(kind, Some("716186003" | "409137002" | "429625007" | "428607008"));
        let no_known = (negated(obs) || stated) && substance.as_ref().is_none_or(|s| s.get("coding").is_none());
        let mut r = self.base("AllergyIntolerance", obs);
        let when = child(obs, "effectiveTime").map(Interval::of).unwrap_or_default();
        let status_obs = related_of(obs, "28").next();
        let mut clinical = status_obs.and_then(snomed_value).and_then(|c| match c {
            "55561003" => Some("active"),
            "73425007" => Some("inactive"),
            "413322009" => Some("resolved"),
            _ => None,
        });
        if clinical.is_none() {
            clinical = if when.high.is_some() && !no_known {
                Some("resolved")
            } else {
                match concern.and_then(status_code) {
                    Some("suspended" | "aborted") => Some("inactive"),
                    Some("completed") if !no_known => Some("resolved"),
                    _ => Some("active"),
                }
            };
        }
        if let Some(c) = clinical {
            r.insert("clinicalStatus".into(), fixed(ALLERGY_CLINICAL, c, &title_case(c)));
        }
        let ver = if negated(obs) && !no_known { ("refuted", "Refuted") } else { ("confirmed", "Confirmed") };
        r.insert("verificationStatus".into(), fixed(ALLERGY_VER, ver.0, ver.1));
        if no_known {
            let (code, display) = match kind {
                Some("416098002" | "59037007" | "419511003" | "409137002") => ("409137002", "No known drug allergy"),
                Some("414285001" | "235719002" | "418471000" | "429625007") => ("429625007", "No known food allergy"),
                Some("426232007" | "428607008") => ("428607008", "No known environmental allergy"),
                _ => ("716186003", "No known allergy"),
            };
            r.insert("code".into(), fixed("http://snomed.info/sct", code, display));
        } else {
            let Some(substance) = substance else {
                self.warn(section, index, "an Allergy-Intolerance Observation without a substance code is not mapped");
                return;
            };
            put(&mut r, "type", allergy_type.map(|t| Value::String(t.into())));
            put(&mut r, "category", category.map(|c| json!([c])));
            if let Some(crit) =
                related_of(obs, "145").next().and_then(|c| child(c, "value")).and_then(|v| attr(v, "code"))
            {
                let criticality = match crit {
                    "CRITL" => Some("low"),
                    "CRITH" => Some("high"),
                    "CRITU" => Some("unable-to-assess"),
                    _ => None,
                };
                put(&mut r, "criticality", criticality.map(|c| Value::String(c.into())));
            }
            r.insert("code".into(), substance);
        }
        r.insert("patient".into(), self.patient_ref());
        if !no_known {
            put(&mut r, "onsetDateTime", when.start().map(Value::String));
        }
        let (mut recorder, mut recorded) = self.author(obs);
        if recorder.is_none()
            && let Some(concern) = concern
        {
            let (who, time) = self.author(concern);
            recorder = who;
            recorded = recorded.or(time);
        }
        put(&mut r, "recordedDate", recorded.map(Value::String));
        let recorder = recorder.filter(|u| self.is_a(u, &["Practitioner", "Patient"]));
        put(&mut r, "recorder", recorder.map(|u| reference(&u)));
        if !no_known {
            let mut reactions = Vec::new();
            for reaction in related_of(obs, "9") {
                if negated(reaction) {
                    continue;
                }
                let Some(manifestation) = child(reaction, "value").and_then(|v| concept(v, narrative)) else {
                    continue;
                };
                let mut x = Map::new();
                x.insert("manifestation".into(), json!([manifestation]));
                let onset = child(reaction, "effectiveTime").map(Interval::of).and_then(|i| i.start());
                put(&mut x, "onset", onset.map(Value::String));
                let severity = related_of(reaction, "8").next().and_then(snomed_value).and_then(|s| match s {
                    "255604002" => Some("mild"),
                    "6736007" => Some("moderate"),
                    "24484000" => Some("severe"),
                    _ => None,
                });
                put(&mut x, "severity", severity.map(|s| Value::String(s.into())));
                reactions.push(Value::Object(x));
            }
            put_list(&mut r, "reaction", reactions);
        }
        self.add(r, section.kind);
    }

    /// A Medication Activity (4.16), or the Discharge (4.35) / Admission (4.36) Medication act
    /// around Medication Activities.
    pub(crate) fn medications(&mut self, section: &Section<'_>, index: usize, act: El<'_>) {
        if entry_is(act, "16") && is(act, "substanceAdministration") {
            self.medication(section, index, act, false);
            return;
        }
        let activities: Vec<El<'_>> = related_of(act, "16").collect();
        if activities.is_empty() {
            self.warn(section, index, "a medication act without a Medication Activity is not mapped");
        }
        for activity in activities {
            self.medication(section, index, activity, false);
        }
    }

    /// A Medication Activity as a MedicationStatement (moodCode EVN) or a MedicationRequest
    /// (moodCode INT/RQO: intent `order`; a Planned Medication Activity, `planned`: intent `plan`).
    pub(crate) fn medication(&mut self, section: &Section<'_>, index: usize, act: El<'_>, planned: bool) {
        let narrative = &section.narrative;
        let Some(medication) = path_code(act, &["consumable", "manufacturedProduct", "manufacturedMaterial", "code"])
            .and_then(|c| concept(c, narrative))
        else {
            self.warn(section, index, "a medication without a drug code (manufacturedMaterial/code) is not mapped");
            return;
        };
        let request = planned || matches!(attr(act, "moodCode"), Some("INT" | "RQO" | "PRMS" | "PRP"));
        let mut r = self.base(if request { "MedicationRequest" } else { "MedicationStatement" }, act);
        let status = status_code(act);
        if request {
            let s = match status {
                Some("active") => "active",
                Some("completed") => "completed",
                Some("aborted") => "stopped",
                Some("cancelled") => "cancelled",
                Some("suspended" | "held") => "on-hold",
                Some("new") => "draft",
                Some("nullified") => "entered-in-error",
                _ if planned => "active",
                _ => "unknown",
            };
            r.insert("status".into(), Value::String(s.into()));
            r.insert("intent".into(), Value::String(if planned { "plan" } else { "order" }.into()));
            if negated(act) {
                r.insert("doNotPerform".into(), Value::Bool(true));
            }
        } else {
            let s = if negated(act) {
                "not-taken"
            } else {
                match status {
                    Some("active") => "active",
                    Some("completed") => "completed",
                    Some("aborted" | "cancelled") => "stopped",
                    Some("suspended" | "held") => "on-hold",
                    Some("new") => "intended",
                    Some("nullified") => "entered-in-error",
                    _ => "unknown",
                }
            };
            r.insert("status".into(), Value::String(s.into()));
        }
        r.insert("medicationCodeableConcept".into(), medication);
        r.insert("subject".into(), self.patient_ref());
        // Dosage.
        let mut dosage = Map::new();
        if let Some(text) = child(act, "text").and_then(|t| narrative.text(t)) {
            dosage.insert("text".into(), Value::String(text));
        }
        let mut timing_repeat = Map::new();
        let mut bounds = None;
        for et in children(act, "effectiveTime") {
            match super::xml::xsi_type(et) {
                Some("PIVL_TS") => {
                    if let Some(period) = child(et, "period")
                        && let Some(value) = attr(period, "value").and_then(data::decimal)
                        && let Some(unit) = attr(period, "unit").and_then(unit_of_time)
                    {
                        timing_repeat.insert("frequency".into(), json!(1));
                        timing_repeat.insert("period".into(), value);
                        timing_repeat.insert("periodUnit".into(), Value::String(unit.into()));
                    }
                }
                Some("EIVL_TS") => {
                    if let Some(event) = child(et, "event").and_then(|e| attr(e, "code")).filter(|c| event_timing(c)) {
                        timing_repeat.insert("when".into(), json!([event]));
                    }
                }
                _ if bounds.is_none() => bounds = Some(Interval::of(et)),
                _ => {}
            }
        }
        let bounds = bounds.unwrap_or_default();
        if request {
            if let Some(p) = bounds.period() {
                timing_repeat.insert("boundsPeriod".into(), p);
            }
        } else {
            bounds.set_choice(&mut r, "effective", false);
        }
        if !timing_repeat.is_empty() {
            dosage.insert("timing".into(), json!({ "repeat": Value::Object(timing_repeat) }));
        }
        put(&mut dosage, "route", child(act, "routeCode").and_then(|c| concept(c, narrative)));
        put(&mut dosage, "site", child(act, "approachSiteCode").and_then(|c| concept(c, narrative)));
        if let Some(dose) = child(act, "doseQuantity") {
            if let Some(q) = quantity(dose) {
                dosage.insert("doseAndRate".into(), json!([{ "doseQuantity": q }]));
            } else if let Some(range) = data::range(dose) {
                dosage.insert("doseAndRate".into(), json!([{ "doseRange": range }]));
            }
        }
        let (author, time) = self.author(act);
        if request {
            put(&mut r, "authoredOn", time.map(Value::String));
            let author = author.filter(|u| self.is_a(u, &["Practitioner", "Organization", "Device", "Patient"]));
            put(&mut r, "requester", author.map(|u| reference(&u)));
            if !dosage.is_empty() {
                r.insert("dosageInstruction".into(), json!([Value::Object(dosage)]));
            }
        } else {
            put(&mut r, "dateAsserted", time.map(Value::String));
            let author = author.filter(|u| self.is_a(u, &["Practitioner", "Organization", "Patient"]));
            put(&mut r, "informationSource", author.map(|u| reference(&u)));
            if !dosage.is_empty() {
                r.insert("dosage".into(), json!([Value::Object(dosage)]));
            }
        }
        let reasons: Vec<Value> =
            related_of(act, "19").filter_map(|i| child(i, "value")).filter_map(|v| concept(v, narrative)).collect();
        put_list(&mut r, "reasonCode", reasons);
        self.add(r, section.kind);
    }

    /// An Immunization Activity (4.52) as an Immunization.
    pub(crate) fn immunization(&mut self, section: &Section<'_>, index: usize, act: El<'_>) {
        let narrative = &section.narrative;
        let material = super::xml::path(act, &["consumable", "manufacturedProduct", "manufacturedMaterial"]);
        let Some(vaccine) = material.and_then(|m| child(m, "code")).and_then(|c| concept(c, narrative)) else {
            self.warn(section, index, "an immunization without a vaccine code is not mapped");
            return;
        };
        let Some(when) = children(act, "effectiveTime").next().map(Interval::of).and_then(|i| i.start()) else {
            self.warn(section, index, "an immunization without a date (effectiveTime) is not mapped");
            return;
        };
        let mut r = self.base("Immunization", act);
        let not_done = negated(act) || matches!(status_code(act), Some("cancelled" | "aborted"));
        let status = if status_code(act) == Some("nullified") {
            "entered-in-error"
        } else if not_done {
            "not-done"
        } else {
            "completed"
        };
        r.insert("status".into(), Value::String(status.into()));
        if not_done {
            let reason = related_of(act, "53").find_map(|o| child(o, "code")).and_then(|c| concept(c, narrative));
            put(&mut r, "statusReason", reason);
        }
        r.insert("vaccineCode".into(), vaccine);
        r.insert("patient".into(), self.patient_ref());
        r.insert("occurrenceDateTime".into(), Value::String(when));
        r.insert("primarySource".into(), Value::Bool(true));
        if let Some(lot) = material.and_then(|m| child(m, "lotNumberText")).and_then(super::xml::text_of) {
            r.insert("lotNumber".into(), Value::String(lot));
        }
        if let Some(maker) = super::xml::path(act, &["consumable", "manufacturedProduct", "manufacturerOrganization"])
            .and_then(|o| self.organization(o))
        {
            r.insert("manufacturer".into(), reference(&maker));
        }
        put(&mut r, "site", child(act, "approachSiteCode").and_then(|c| concept(c, narrative)));
        put(&mut r, "route", child(act, "routeCode").and_then(|c| concept(c, narrative)));
        put(&mut r, "doseQuantity", child(act, "doseQuantity").and_then(quantity));
        let performers = self.performers(act);
        let performers: Vec<Value> = self
            .refs(performers, &["Practitioner", "Organization"])
            .iter()
            .map(|u| json!({ "actor": reference(u) }))
            .collect();
        put_list(&mut r, "performer", performers);
        self.add(r, section.kind);
    }

    /// A Result Organizer (4.1): a DiagnosticReport and an Observation per component; or a bare
    /// Result Observation (4.2).
    pub(crate) fn results(&mut self, section: &Section<'_>, index: usize, act: El<'_>) {
        let lab =
            || json!({"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory", "display": "Laboratory"}]});
        if is(act, "observation") {
            self.observation(section, index, act, vec![lab()]);
            return;
        }
        let Some(code) = child(act, "code").and_then(|c| concept(c, &section.narrative)) else {
            self.warn(section, index, "a Result Organizer without a code is not mapped (nor its observations)");
            return;
        };
        let mut results = Vec::new();
        for obs in self.components(section, index, act) {
            if let Some(url) = self.observation(section, index, obs, vec![lab()]) {
                results.push(reference(&url));
            }
        }
        let mut r = self.base("DiagnosticReport", act);
        let status = match status_code(act) {
            Some("active") => "preliminary",
            Some("aborted" | "cancelled") => "cancelled",
            Some("nullified") => "entered-in-error",
            Some("new" | "held" | "suspended") => "registered",
            _ => "final",
        };
        r.insert("status".into(), Value::String(status.into()));
        r.insert(
            "category".into(),
            json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB", "display": "Laboratory"}]}]),
        );
        r.insert("code".into(), code);
        r.insert("subject".into(), self.patient_ref());
        if let Some(et) = child(act, "effectiveTime") {
            Interval::of(et).set_choice(&mut r, "effective", true);
        }
        let mut performers = self.performers(act);
        if let (Some(author), _) = self.author(act)
            && !performers.contains(&author)
        {
            performers.push(author);
        }
        let performers = self.refs(performers, &["Practitioner", "Organization"]);
        put_list(&mut r, "performer", performers.iter().map(|u| reference(u)).collect());
        put_list(&mut r, "result", results);
        self.add(r, section.kind);
    }

    /// The observations of an organizer's components; a warning for each other component.
    pub(crate) fn components<'a>(&mut self, section: &Section<'_>, index: usize, organizer: El<'a>) -> Vec<El<'a>> {
        let mut out = Vec::new();
        for component in children(organizer, "component") {
            match elements(component).find(|e| !is(*e, "sequenceNumber") && !is(*e, "seperatableInd")) {
                Some(obs) if is(obs, "observation") => out.push(obs),
                Some(other) => {
                    let what = other.tag_name().name().to_owned();
                    self.warn(section, index, format!("a component of the organizer (a {what}) is not mapped"));
                }
                None => {}
            }
        }
        out
    }

    /// A Vital Signs Organizer (4.26: no resource of its own) or a bare Vital Sign Observation.
    pub(crate) fn vital_signs(&mut self, section: &Section<'_>, index: usize, act: El<'_>) {
        let category =
            || json!({"coding": [{"system": OBSERVATION_CATEGORY, "code": "vital-signs", "display": "Vital Signs"}]});
        if is(act, "observation") {
            self.observation(section, index, act, vec![category()]);
            return;
        }
        let mut any = false;
        for obs in self.components(section, index, act) {
            any = true;
            self.observation(section, index, obs, vec![category()]);
        }
        if !any {
            self.warn(section, index, "a Vital Signs Organizer without observations");
        }
    }

    /// An observation of social history, functional or mental status, with its section's
    /// category.
    pub(crate) fn plain_observation(&mut self, section: &Section<'_>, index: usize, obs: El<'_>) {
        let cat = |code: &str, display: &str| json!({"coding": [{"system": OBSERVATION_CATEGORY, "code": code, "display": display}]});
        let us_core = |code: &str, display: &str| json!({"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-category", "code": code, "display": display}]});
        let categories = match section.kind {
            Some(SectionKind::SocialHistory) => vec![cat("social-history", "Social History")],
            Some(SectionKind::FunctionalStatus) => {
                vec![cat("survey", "Survey"), us_core("functional-status", "Functional Status")]
            }
            Some(SectionKind::MentalStatus) => {
                vec![cat("survey", "Survey"), us_core("cognitive-status", "Cognitive Status")]
            }
            _ => vec![cat("exam", "Exam")],
        };
        self.observation(section, index, obs, categories);
    }

    /// One observation as an Observation of `categories`; `None` (and a warning) when it has no
    /// code, or is negated.
    pub(crate) fn observation(
        &mut self,
        section: &Section<'_>,
        index: usize,
        obs: El<'_>,
        categories: Vec<Value>,
    ) -> Option<String> {
        let narrative = &section.narrative;
        let value_el = child(obs, "value");
        let Some(code) = child(obs, "code").and_then(|c| concept(c, narrative)) else {
            let what = if value_el.is_some() { "without a code" } else { "without a code and without a value" };
            self.warn(section, index, format!("an observation {what} is not mapped"));
            return None;
        };
        if negated(obs) {
            self.warn(
                section,
                index,
                "a negated observation (negationInd) is not mapped: FHIR has no negated Observation",
            );
            return None;
        }
        let mut r = self.base("Observation", obs);
        r.insert("status".into(), Value::String(observation_status(obs).into()));
        r.insert("category".into(), Value::Array(categories));
        r.insert("code".into(), code);
        r.insert("subject".into(), self.patient_ref());
        if let Some(et) = child(obs, "effectiveTime") {
            Interval::of(et).set_choice(&mut r, "effective", true);
        }
        let mut performers = self.performers(obs);
        if let (Some(author), _) = self.author(obs)
            && !performers.contains(&author)
        {
            performers.push(author);
        }
        let performers = self.refs(performers, &["Practitioner", "Organization", "Patient"]);
        put_list(&mut r, "performer", performers.iter().map(|u| reference(u)).collect());
        if let Some(value) = value_el
            && let Some((name, v)) = data::observation_value(value, narrative)
        {
            r.insert(name.into(), v);
        }
        let interpretation: Vec<Value> =
            children(obs, "interpretationCode").filter_map(|c| concept(c, narrative)).collect();
        put_list(&mut r, "interpretation", interpretation);
        put(&mut r, "method", child(obs, "methodCode").and_then(|c| concept(c, narrative)));
        put(&mut r, "bodySite", child(obs, "targetSiteCode").and_then(|c| concept(c, narrative)));
        let mut ranges = Vec::new();
        for range in children(obs, "referenceRange").filter_map(|r| child(r, "observationRange")) {
            let mut x = Map::new();
            if let Some(v) = child(range, "value") {
                if let Some(low) = child(v, "low").and_then(quantity) {
                    x.insert("low".into(), low);
                }
                if let Some(high) = child(v, "high").and_then(quantity) {
                    x.insert("high".into(), high);
                }
            }
            put(&mut x, "text", child(range, "text").and_then(|t| narrative.text(t)).map(Value::String));
            if !x.is_empty() {
                ranges.push(Value::Object(x));
            }
        }
        put_list(&mut r, "referenceRange", ranges);
        Some(self.add(r, section.kind))
    }

    /// A Procedure Activity Procedure (4.14), Observation (4.13) or Act (4.12) as a Procedure.
    pub(crate) fn procedure(&mut self, section: &Section<'_>, index: usize, act: El<'_>) {
        let narrative = &section.narrative;
        let Some(code) = child(act, "code").and_then(|c| concept(c, narrative)) else {
            self.warn(section, index, "a procedure without a code is not mapped");
            return;
        };
        let mut r = self.base("Procedure", act);
        let status = if negated(act) {
            "not-done"
        } else {
            match status_code(act) {
                Some("completed") => "completed",
                Some("active") => "in-progress",
                Some("aborted") => "stopped",
                Some("cancelled") => "not-done",
                Some("new" | "held") => "preparation",
                Some("suspended") => "on-hold",
                Some("nullified") => "entered-in-error",
                _ => "unknown",
            }
        };
        r.insert("status".into(), Value::String(status.into()));
        r.insert("code".into(), code);
        r.insert("subject".into(), self.patient_ref());
        if let Some(et) = child(act, "effectiveTime") {
            Interval::of(et).set_choice(&mut r, "performed", true);
        }
        let performers = self.performers(act);
        let performers: Vec<Value> = self
            .refs(performers, &["Practitioner", "Organization", "Device", "Patient"])
            .iter()
            .map(|u| json!({ "actor": reference(u) }))
            .collect();
        put_list(&mut r, "performer", performers);
        let sites: Vec<Value> = children(act, "targetSiteCode").filter_map(|c| concept(c, narrative)).collect();
        put_list(&mut r, "bodySite", sites);
        let reasons: Vec<Value> =
            related_of(act, "19").filter_map(|i| child(i, "value")).filter_map(|v| concept(v, narrative)).collect();
        put_list(&mut r, "reasonCode", reasons);
        self.add(r, section.kind);
    }

    /// An Encounter Activity (4.49) as an Encounter.
    pub(crate) fn encounter(&mut self, section: &Section<'_>, _index: usize, act: El<'_>) {
        let narrative = &section.narrative;
        let mut r = self.base("Encounter", act);
        let status = match status_code(act) {
            Some("active") => "in-progress",
            Some("cancelled" | "aborted") => "cancelled",
            Some("new") => "planned",
            Some("nullified") => "entered-in-error",
            _ => "finished",
        };
        r.insert("status".into(), Value::String(status.into()));
        let code_el = child(act, "code");
        let class = code_el.and_then(|c| {
            std::iter::once(c)
                .chain(children(c, "translation"))
                .find(|t| attr(*t, "codeSystem") == Some("2.16.840.1.113883.5.4"))
        });
        let class = match class.and_then(|c| attr(c, "code")) {
            Some(code) => {
                let mut c = Map::new();
                c.insert("system".into(), Value::String("http://terminology.hl7.org/CodeSystem/v3-ActCode".into()));
                c.insert("code".into(), Value::String(code.into()));
                if let Some(d) = class.and_then(|c| attr(c, "displayName")) {
                    c.insert("display".into(), Value::String(data::collapse(d)));
                }
                Value::Object(c)
            }
            None => {
                json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"})
            }
        };
        r.insert("class".into(), class);
        put_list(&mut r, "type", code_el.and_then(|c| concept(c, narrative)).into_iter().collect());
        r.insert("subject".into(), self.patient_ref());
        let participants = self.performers(act);
        let participants: Vec<Value> =
            self.refs(participants, &["Practitioner"]).iter().map(|u| json!({ "individual": reference(u) })).collect();
        put_list(&mut r, "participant", participants);
        put(&mut r, "period", child(act, "effectiveTime").map(Interval::of).and_then(|i| i.period()));
        let mut reasons = Vec::new();
        for diagnosis in related_of(act, "80") {
            reasons.extend(
                related_of(diagnosis, "4").filter_map(|o| child(o, "value")).filter_map(|v| concept(v, narrative)),
            );
        }
        reasons.extend(related_of(act, "19").filter_map(|i| child(i, "value")).filter_map(|v| concept(v, narrative)));
        put_list(&mut r, "reasonCode", reasons);
        let mut locations = Vec::new();
        for role in children(act, "participant")
            .filter(|p| attr(*p, "typeCode") == Some("LOC"))
            .filter_map(|p| child(p, "participantRole"))
        {
            if let Some(url) = self.location(role, narrative) {
                locations.push(json!({ "location": reference(&url) }));
            }
        }
        put_list(&mut r, "location", locations);
        self.add(r, section.kind);
    }
}

/// The element at a path, if it is not null.
fn path_code<'a>(act: El<'a>, names: &[&str]) -> Option<El<'a>> {
    super::xml::path(act, names)
        .filter(|c| !is_null(*c) || child(*c, "originalText").is_some() || child(*c, "translation").is_some())
}

/// A UCUM time unit as a FHIR UnitsOfTime code.
fn unit_of_time(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "s",
        "min" => "min",
        "h" | "hr" => "h",
        "d" => "d",
        "wk" => "wk",
        "mo" => "mo",
        "a" => "a",
        _ => return None,
    })
}

/// Whether a v3 TimingEvent code is one of FHIR's EventTiming codes.
fn event_timing(code: &str) -> bool {
    matches!(
        code,
        "HS" | "WAKE" | "C" | "CM" | "CD" | "CV" | "AC" | "ACM" | "ACD" | "ACV" | "PC" | "PCM" | "PCD" | "PCV"
    )
}

/// `active` → `Active`.
pub(crate) fn title_case(code: &str) -> String {
    let mut chars = code.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
