//! The coded entries, one FHIR resource each (C-CDA R2.1 entry templates).
//!
//! Every function writes one `<entry>` (or a component of one) whose `text` and
//! `originalText` point at the narrative row `row` and its first cell `row` + `n`.

use super::Ctx;
use super::fhir::{self, arr, s};
use super::values::{Fixed, act_code, loinc, number_text, snomed};
use super::xml::Xml;
use serde_json::Value;

const EXT_2014: Option<&str> = Some("2014-06-09");
const EXT_2015: Option<&str> = Some("2015-08-01");
const CONCERN: Fixed = act_code("CONC", "Concern");

/// The ID of the first cell of narrative row `row` (what `originalText` points at).
pub(crate) fn cell(row: &str) -> String {
    format!("{row}n")
}

fn entry_open(w: &mut Xml) {
    w.raw("<entry typeCode=\"DRIV\">");
}

fn entry_close(w: &mut Xml) {
    w.raw("</entry>");
}

/// Onset and abatement of a Condition (FHIR strings).
pub(crate) fn condition_dates(c: &Value) -> (Option<&str>, Option<&str>) {
    let onset = s(c, "onsetDateTime").or_else(|| c.get("onsetPeriod").and_then(|p| s(p, "start")));
    let abated = s(c, "abatementDateTime")
        .or_else(|| c.get("abatementPeriod").and_then(|p| s(p, "end")))
        .or_else(|| c.get("abatementPeriod").and_then(|p| s(p, "start")));
    (onset, abated)
}

/// The clinical status code of a Condition or AllergyIntolerance.
pub(crate) fn clinical_status(r: &Value) -> Option<&str> {
    r.get("clinicalStatus").and_then(fhir::first_code)
}

fn concern_status(r: &Value, ended: bool) -> &'static str {
    match clinical_status(r) {
        Some("active" | "recurrence" | "relapse") => "active",
        Some(_) => "completed",
        None if ended => "completed",
        None => "active",
    }
}

/// A concern's effectiveTime: `low`, and `high` (`UNK` when unknown) once it is completed.
fn concern_time(w: &mut Xml, low: Option<&str>, status: &str, high: Option<&str>) {
    w.open("effectiveTime", &[]);
    w.ts("low", low);
    if status == "completed" {
        w.ts("high", high);
    }
    w.close("effectiveTime");
}

/// Author Participation: who (a Reference: a Practitioner or Organization of the chart, else
/// its display) recorded or ordered a thing, and when; nothing when neither is known.
fn author(w: &mut Xml, index: &fhir::Index<'_>, when: Option<&str>, who: Option<&Value>) {
    let Some(who) = who else { return };
    let target = index.resolve(who);
    let display = s(who, "display");
    if target.is_none() && display.is_none() {
        return;
    }
    w.raw("<author typeCode=\"AUT\">");
    w.template("2.16.840.1.113883.10.20.22.4.119", None);
    w.ts("time", when);
    w.raw("<assignedAuthor>");
    match target {
        Some(t) => w.ids(arr(t, "identifier"), &fhir::key(t)),
        None => w.empty("id", &[("nullFlavor", "NI")]),
    }
    let is_org = target.is_some_and(|t| s(t, "resourceType") == Some("Organization"))
        || s(who, "reference").is_some_and(|r| r.starts_with("Organization"));
    let name = target.and_then(|t| {
        s(t, "name").map(str::to_owned).or_else(|| {
            let n = super::values::person_name(arr(t, "name"));
            (!n.is_empty()).then_some(n)
        })
    });
    let name = name.or_else(|| display.map(str::to_owned)).unwrap_or_default();
    if is_org {
        w.raw("<representedOrganization>");
        w.leaf("name", &[], &name);
        w.raw("</representedOrganization>");
    } else {
        w.raw("<assignedPerson>");
        match target {
            Some(t) if !arr(t, "name").is_empty() => w.names(arr(t, "name")),
            _ => w.leaf("name", &[], &name),
        }
        w.raw("</assignedPerson>");
    }
    w.raw("</assignedAuthor></author>");
}

/// Indications (V2) of a resource's `reasonCode`s and `reasonReference`s; a reason that is
/// a resource of the chart gets that resource's entry id (so it points at its entry).
fn indications(w: &mut Xml, index: &fhir::Index<'_>, r: &Value) {
    let key = fhir::key(r);
    for (i, reason) in arr(r, "reasonCode").iter().enumerate() {
        indication(w, &format!("{key}/reason/{i}"), Some(reason));
    }
    for reference in arr(r, "reasonReference") {
        if let Some(target) = index.resolve(reference) {
            indication(w, &fhir::key(target), target.get("code"));
        }
    }
}

fn indication(w: &mut Xml, id: &str, value: Option<&Value>) {
    w.raw("<entryRelationship typeCode=\"RSON\"><observation classCode=\"OBS\" moodCode=\"EVN\">");
    w.template("2.16.840.1.113883.10.20.22.4.19", EXT_2014);
    w.entry_id(id);
    w.fixed("code", None, &snomed("404684003", "Clinical finding (finding)"));
    w.status("completed");
    w.cd("value", Some("CD"), value, None);
    w.raw("</observation></entryRelationship>");
}

/// Problem Concern Act (V3) with its Problem Observation.
pub(crate) fn problem_concern(ctx: &mut Ctx<'_>, c: &Value, row: &str) {
    let w = &mut ctx.w;
    let key = fhir::key(c);
    let (onset, abated) = condition_dates(c);
    let status = concern_status(c, abated.is_some());
    entry_open(w);
    w.raw("<act classCode=\"ACT\" moodCode=\"EVN\">");
    w.template("2.16.840.1.113883.10.20.22.4.3", EXT_2015);
    w.entry_id(&format!("{key}/concern"));
    w.fixed("code", None, &CONCERN);
    w.status(status);
    let noted = s(c, "recordedDate").or(onset);
    concern_time(w, noted, status, abated);
    w.raw("<entryRelationship typeCode=\"SUBJ\">");
    problem_observation(w, &ctx.index, c, row);
    w.raw("</entryRelationship></act>");
    entry_close(w);
}

/// Problem Observation (V3) with its Problem Status.
pub(crate) fn problem_observation(w: &mut Xml, index: &fhir::Index<'_>, c: &Value, row: &str) {
    let key = fhir::key(c);
    let (onset, abated) = condition_dates(c);
    let refuted = c.get("verificationStatus").and_then(fhir::first_code).is_some_and(|v| v == "refuted");
    if refuted {
        w.raw("<observation classCode=\"OBS\" moodCode=\"EVN\" negationInd=\"true\">");
    } else {
        w.raw("<observation classCode=\"OBS\" moodCode=\"EVN\">");
    }
    w.template("2.16.840.1.113883.10.20.22.4.4", EXT_2015);
    w.entry_id(&key);
    let (problem, problem_loinc) = if fhir::has_category(c, "encounter-diagnosis") {
        (snomed("282291009", "Diagnosis"), loinc("29308-4", "Diagnosis"))
    } else {
        (snomed("55607006", "Problem"), loinc("75326-9", "Problem"))
    };
    coded_with_translation(w, "code", &problem, &problem_loinc);
    w.text_ref(row);
    w.status("completed");
    // A problem no longer active has a high, `UNK` when its end is not known.
    let ended = abated.is_some() || matches!(clinical_status(c), Some("inactive" | "remission" | "resolved"));
    w.open("effectiveTime", &[]);
    w.ts("low", onset);
    if ended {
        w.ts("high", abated);
    }
    w.close("effectiveTime");
    w.cd("value", Some("CD"), c.get("code"), Some(&cell(row)));
    author(w, index, s(c, "recordedDate"), c.get("recorder").or_else(|| c.get("asserter")));
    let status = match clinical_status(c) {
        Some("active" | "recurrence" | "relapse") => Some(snomed("55561003", "Active")),
        Some("inactive" | "remission") => Some(snomed("73425007", "Inactive")),
        Some("resolved") => Some(snomed("413322009", "Resolved")),
        _ => None,
    };
    if let Some(st) = status {
        w.raw("<entryRelationship typeCode=\"REFR\"><observation classCode=\"OBS\" moodCode=\"EVN\">");
        w.template("2.16.840.1.113883.10.20.22.4.6", Some("2019-06-20"));
        w.entry_id(&format!("{key}/status"));
        w.fixed("code", None, &loinc("33999-4", "Status"));
        w.status("completed");
        w.fixed("value", Some("CD"), &st);
        w.raw("</observation></entryRelationship>");
    }
    w.raw("</observation>");
}

fn coded_with_translation(w: &mut Xml, name: &str, code: &Fixed, translation: &Fixed) {
    w.open(
        name,
        &[
            ("code", code.code),
            ("codeSystem", code.system),
            ("codeSystemName", code.system_name),
            ("displayName", code.display),
        ],
    );
    w.fixed("translation", None, translation);
    w.close(name);
}

/// Hospital Discharge Diagnosis (V3) around a Problem Observation.
pub(crate) fn discharge_diagnosis(ctx: &mut Ctx<'_>, c: &Value, row: &str) {
    let w = &mut ctx.w;
    let key = fhir::key(c);
    entry_open(w);
    w.raw("<act classCode=\"ACT\" moodCode=\"EVN\">");
    w.template("2.16.840.1.113883.10.20.22.4.33", EXT_2015);
    w.entry_id(&format!("{key}/discharge-diagnosis"));
    w.fixed("code", None, &loinc("11535-2", "Hospital discharge diagnosis"));
    w.raw("<entryRelationship typeCode=\"SUBJ\" inversionInd=\"false\">");
    problem_observation(w, &ctx.index, c, row);
    w.raw("</entryRelationship></act>");
    entry_close(w);
}

/// The SNOMED codes of "no known allergy" statements, with what they negate.
fn no_known_allergy(a: &Value) -> Option<Fixed> {
    let code = a.get("code")?;
    let sct = Some("http://snomed.info/sct");
    if fhir::has_code(code, sct, "716186003") {
        Some(snomed("419199007", "Allergy to substance (disorder)"))
    } else if fhir::has_code(code, sct, "409137002") {
        Some(snomed("416098002", "Allergy to drug (disorder)"))
    } else if fhir::has_code(code, sct, "429625007") {
        Some(snomed("414285001", "Allergy to food (disorder)"))
    } else if fhir::has_code(code, sct, "428607008") {
        Some(snomed("426232007", "Environmental allergy (disorder)"))
    } else {
        None
    }
}

fn allergy_type(a: &Value) -> Fixed {
    let intolerance = s(a, "type") == Some("intolerance");
    let category = arr(a, "category").first().and_then(Value::as_str);
    match (intolerance, category) {
        (false, Some("medication")) => snomed("416098002", "Allergy to drug (disorder)"),
        (true, Some("medication")) => snomed("59037007", "Intolerance to drug (disorder)"),
        (false, Some("food")) => snomed("414285001", "Allergy to food (disorder)"),
        (true, Some("food")) => snomed("235719002", "Intolerance to food (disorder)"),
        (false, Some("environment")) => snomed("426232007", "Environmental allergy (disorder)"),
        (false, _) => snomed("419199007", "Allergy to substance (disorder)"),
        (true, _) => snomed("418038007", "Propensity to adverse reactions to substance (disorder)"),
    }
}

/// Allergy Concern Act (V3) with its Allergy-Intolerance Observation (V2): the substance,
/// reactions with their severity, criticality; "no known allergy" as the negated
/// observation.
pub(crate) fn allergy_concern(ctx: &mut Ctx<'_>, a: &Value, row: &str) {
    let w = &mut ctx.w;
    let key = fhir::key(a);
    let onset = s(a, "onsetDateTime").or_else(|| a.get("onsetPeriod").and_then(|p| s(p, "start")));
    let recorded = s(a, "recordedDate").or(onset);
    let status = concern_status(a, false);
    let negated = no_known_allergy(a);
    entry_open(w);
    w.raw("<act classCode=\"ACT\" moodCode=\"EVN\">");
    w.template("2.16.840.1.113883.10.20.22.4.30", EXT_2015);
    w.entry_id(&format!("{key}/concern"));
    w.fixed("code", None, &CONCERN);
    w.status(status);
    concern_time(w, recorded, status, None);
    w.raw("<entryRelationship typeCode=\"SUBJ\">");
    if negated.is_some() {
        w.raw("<observation classCode=\"OBS\" moodCode=\"EVN\" negationInd=\"true\">");
    } else {
        w.raw("<observation classCode=\"OBS\" moodCode=\"EVN\">");
    }
    w.template("2.16.840.1.113883.10.20.22.4.7", EXT_2014);
    w.entry_id(&key);
    w.fixed("code", None, &act_code("ASSERTION", "Assertion"));
    w.text_ref(row);
    w.status("completed");
    // The allergy's onset; when it is not known, `low` is UNK (CONF:1098-31538): the date it
    // was recorded is the concern's, not the onset.
    w.ivl("effectiveTime", false, onset, None);
    let name_cell = cell(row);
    match &negated {
        Some(kind) => w.fixed("value", Some("CD"), kind),
        None => w.fixed("value", Some("CD"), &allergy_type(a)),
    }
    author(w, &ctx.index, s(a, "recordedDate"), a.get("recorder").or_else(|| a.get("asserter")));
    w.raw("<participant typeCode=\"CSM\"><participantRole classCode=\"MANU\"><playingEntity classCode=\"MMAT\">");
    match &negated {
        Some(_) => w.empty("code", &[("nullFlavor", "NA")]),
        None => w.cd("code", None, a.get("code"), Some(&name_cell)),
    }
    w.raw("</playingEntity></participantRole></participant>");
    let criticality = match s(a, "criticality") {
        Some("low") => Some(("CRITL", "Low Criticality")),
        Some("high") => Some(("CRITH", "High Criticality")),
        Some("unable-to-assess") => Some(("CRITU", "Unable to Assess Criticality")),
        _ => None,
    };
    if let Some((code, display)) = criticality {
        w.raw("<entryRelationship typeCode=\"SUBJ\" inversionInd=\"true\"><observation classCode=\"OBS\" moodCode=\"EVN\">");
        w.template("2.16.840.1.113883.10.20.22.4.145", None);
        w.fixed("code", None, &act_code("CRIT", "Criticality"));
        w.status("completed");
        w.empty(
            "value",
            &[
                ("xsi:type", "CD"),
                ("code", code),
                ("codeSystem", "2.16.840.1.113883.5.1063"),
                ("codeSystemName", "HL7ObservationValue"),
                ("displayName", display),
            ],
        );
        w.raw("</observation></entryRelationship>");
    }
    for (i, reaction) in arr(a, "reaction").iter().enumerate() {
        for (j, m) in arr(reaction, "manifestation").iter().enumerate() {
            w.raw("<entryRelationship typeCode=\"MFST\" inversionInd=\"true\"><observation classCode=\"OBS\" moodCode=\"EVN\">");
            w.template("2.16.840.1.113883.10.20.22.4.9", EXT_2014);
            w.entry_id(&format!("{key}/reaction/{i}/{j}"));
            w.fixed("code", None, &act_code("ASSERTION", "Assertion"));
            w.status("completed");
            if let Some(onset) = s(reaction, "onset") {
                w.ivl("effectiveTime", false, Some(onset), None);
            }
            w.cd("value", Some("CD"), Some(m), None);
            let severity = match s(reaction, "severity") {
                Some("mild") => Some(snomed("255604002", "Mild (qualifier value)")),
                Some("moderate") => Some(snomed("6736007", "Moderate (severity modifier) (qualifier value)")),
                Some("severe") => Some(snomed("24484000", "Severe (severity modifier) (qualifier value)")),
                _ => None,
            };
            if let Some(sev) = severity {
                w.raw("<entryRelationship typeCode=\"SUBJ\" inversionInd=\"true\"><observation classCode=\"OBS\" moodCode=\"EVN\">");
                w.template("2.16.840.1.113883.10.20.22.4.8", EXT_2014);
                w.fixed("code", None, &act_code("SEV", "Severity Observation"));
                w.status("completed");
                w.fixed("value", Some("CD"), &sev);
                w.raw("</observation></entryRelationship>");
            }
            w.raw("</observation></entryRelationship>");
        }
    }
    w.raw("</observation></entryRelationship></act>");
    entry_close(w);
}

/// The medication of a MedicationRequest or MedicationStatement (its CodeableConcept).
pub(crate) fn medication_code<'a>(ctx: &Ctx<'a>, m: &'a Value) -> Option<&'a Value> {
    m.get("medicationCodeableConcept")
        .or_else(|| m.get("medicationReference").and_then(|r| ctx.index.resolve(r)).and_then(|med| med.get("code")))
}

/// The first dosage of a medication resource.
pub(crate) fn dosage(m: &Value) -> Option<&Value> {
    arr(m, "dosageInstruction").first().or_else(|| arr(m, "dosage").first())
}

/// Start and end of a medication resource (FHIR strings).
pub(crate) fn medication_dates(m: &Value) -> (Option<&str>, Option<&str>) {
    if s(m, "resourceType") == Some("MedicationStatement") {
        if let Some(d) = s(m, "effectiveDateTime") {
            return (Some(d), None);
        }
        let p = m.get("effectivePeriod");
        return (p.and_then(|p| s(p, "start")), p.and_then(|p| s(p, "end")));
    }
    let validity = m.get("dispenseRequest").and_then(|d| d.get("validityPeriod"));
    (validity.and_then(|p| s(p, "start")).or_else(|| s(m, "authoredOn")), validity.and_then(|p| s(p, "end")))
}

/// Medication Activity (V2) from a MedicationRequest (`INT`) or MedicationStatement (`EVN`).
pub(crate) fn medication_activity<'a>(ctx: &mut Ctx<'a>, m: &'a Value, row: &str) {
    let code = medication_code(ctx, m);
    let w = &mut ctx.w;
    let statement = s(m, "resourceType") == Some("MedicationStatement");
    let mood = if statement { "EVN" } else { "INT" };
    w.open("substanceAdministration", &[("classCode", "SBADM"), ("moodCode", mood)]);
    w.template("2.16.840.1.113883.10.20.22.4.16", EXT_2014);
    w.entry_id(&fhir::key(m));
    w.text_ref(row);
    let status = match s(m, "status") {
        Some("active") => "active",
        Some("stopped") => "aborted",
        Some("cancelled" | "not-taken") => "cancelled",
        Some("on-hold") => "suspended",
        Some("entered-in-error") => "nullified",
        Some("draft" | "intended") => "new",
        _ => "completed",
    };
    w.status(status);
    let (start, end) = medication_dates(m);
    w.ivl("effectiveTime", true, start, end);
    let dose = dosage(m);
    if let Some(repeat) = dose.and_then(|d| d.get("timing")).and_then(|t| t.get("repeat")) {
        let period = repeat.get("period").and_then(Value::as_f64);
        let frequency = repeat.get("frequency").and_then(Value::as_f64).unwrap_or(1.0);
        let unit = match s(repeat, "periodUnit") {
            Some(u @ ("s" | "min" | "h" | "d" | "wk" | "mo" | "a")) => Some(u),
            _ => None,
        };
        if let (Some(p), Some(u)) = (period, unit)
            && p > 0.0
            && frequency > 0.0
        {
            let every = format!("{}", p / frequency);
            w.raw("<effectiveTime xsi:type=\"PIVL_TS\" institutionSpecified=\"true\" operator=\"A\">");
            w.empty("period", &[("value", &every), ("unit", u)]);
            w.raw("</effectiveTime>");
        }
    }
    if let Some(route) = dose.and_then(|d| d.get("route")) {
        w.cd("routeCode", None, Some(route), None);
    }
    if let Some(q) = dose.and_then(|d| arr(d, "doseAndRate").first()).and_then(|dr| dr.get("doseQuantity")) {
        w.pq("doseQuantity", false, q);
    }
    w.raw("<consumable><manufacturedProduct classCode=\"MANU\">");
    w.template("2.16.840.1.113883.10.20.22.4.23", EXT_2014);
    w.raw("<manufacturedMaterial>");
    w.cd("code", None, code, Some(&cell(row)));
    w.raw("</manufacturedMaterial></manufacturedProduct></consumable>");
    let (when, who) = if statement {
        (s(m, "dateAsserted"), m.get("informationSource"))
    } else {
        (s(m, "authoredOn"), m.get("requester"))
    };
    author(w, &ctx.index, when, who);
    indications(w, &ctx.index, m);
    w.close("substanceAdministration");
}

/// A Medication Activity as a section entry.
pub(crate) fn medication_entry<'a>(ctx: &mut Ctx<'a>, m: &'a Value, row: &str) {
    entry_open(&mut ctx.w);
    medication_activity(ctx, m, row);
    entry_close(&mut ctx.w);
}

/// Discharge Medication (V3) around a Medication Activity.
pub(crate) fn discharge_medication<'a>(ctx: &mut Ctx<'a>, m: &'a Value, row: &str) {
    let w = &mut ctx.w;
    entry_open(w);
    w.raw("<act classCode=\"ACT\" moodCode=\"EVN\">");
    w.template("2.16.840.1.113883.10.20.22.4.35", Some("2016-03-01"));
    w.entry_id(&format!("{}/discharge-medication", fhir::key(m)));
    coded_with_translation(
        w,
        "code",
        &loinc("10183-2", "Hospital discharge medication"),
        &loinc("75311-1", "Discharge medications Narrative"),
    );
    let active = matches!(s(m, "status"), Some("active" | "on-hold" | "draft" | "intended"));
    w.status(if active { "active" } else { "completed" });
    let (start, end) = medication_dates(m);
    w.ivl("effectiveTime", false, start, end);
    w.raw("<entryRelationship typeCode=\"SUBJ\">");
    medication_activity(ctx, m, row);
    ctx.w.raw("</entryRelationship></act>");
    entry_close(&mut ctx.w);
}

/// Immunization Activity (V3).
pub(crate) fn immunization(ctx: &mut Ctx<'_>, i: &Value, row: &str) {
    let w = &mut ctx.w;
    let negated = s(i, "status") == Some("not-done");
    entry_open(w);
    w.open(
        "substanceAdministration",
        &[("classCode", "SBADM"), ("moodCode", "EVN"), ("negationInd", if negated { "true" } else { "false" })],
    );
    w.template("2.16.840.1.113883.10.20.22.4.52", EXT_2015);
    w.entry_id(&fhir::key(i));
    w.text_ref(row);
    w.status(if s(i, "status") == Some("entered-in-error") { "nullified" } else { "completed" });
    let when = s(i, "occurrenceDateTime");
    match when.and_then(fhir::ts) {
        Some(v) => w.empty("effectiveTime", &[("value", &v)]),
        None => w.empty("effectiveTime", &[("nullFlavor", "UNK")]),
    }
    if let Some(route) = i.get("route") {
        w.cd("routeCode", None, Some(route), None);
    }
    if let Some(q) = i.get("doseQuantity") {
        w.pq("doseQuantity", false, q);
    }
    w.raw("<consumable><manufacturedProduct classCode=\"MANU\">");
    w.template("2.16.840.1.113883.10.20.22.4.54", EXT_2014);
    w.raw("<manufacturedMaterial>");
    w.cd("code", None, i.get("vaccineCode"), Some(&cell(row)));
    if let Some(lot) = s(i, "lotNumber") {
        w.leaf("lotNumberText", &[], lot);
    }
    w.raw("</manufacturedMaterial>");
    if let Some(name) = i.get("manufacturer").and_then(|m| s(m, "display")) {
        w.raw("<manufacturerOrganization>");
        w.leaf("name", &[], name);
        w.raw("</manufacturerOrganization>");
    }
    w.raw("</manufacturedProduct></consumable>");
    let performer = arr(i, "performer").first().and_then(|p| p.get("actor"));
    author(w, &ctx.index, s(i, "recorded").or(when), performer);
    w.close("substanceAdministration");
    entry_close(w);
}

/// The effective time of an Observation (its start) as a FHIR string.
pub(crate) fn observation_time(o: &Value) -> Option<&str> {
    s(o, "effectiveDateTime")
        .or_else(|| s(o, "effectiveInstant"))
        .or_else(|| o.get("effectivePeriod").and_then(|p| s(p, "start")))
        .or_else(|| s(o, "issued"))
}

/// `<value>` of an Observation (or one of its components).
pub(crate) fn value(w: &mut Xml, o: &Value) {
    if let Some(q) = o.get("valueQuantity") {
        w.pq("value", true, q);
    } else if let Some(cc) = o.get("valueCodeableConcept") {
        w.cd("value", Some("CD"), Some(cc), None);
    } else if let Some(t) = s(o, "valueString") {
        w.leaf("value", &[("xsi:type", "ST")], t);
    } else if let Some(b) = o.get("valueBoolean").and_then(Value::as_bool) {
        w.empty("value", &[("xsi:type", "BL"), ("value", if b { "true" } else { "false" })]);
    } else if let Some(n) = o.get("valueInteger").and_then(number_text) {
        w.empty("value", &[("xsi:type", "INT"), ("value", &n)]);
    } else if let Some(d) = s(o, "valueDateTime").and_then(fhir::ts) {
        w.empty("value", &[("xsi:type", "TS"), ("value", &d)]);
    } else if let Some(r) = o.get("valueRange") {
        w.open("value", &[("xsi:type", "IVL_PQ")]);
        if let Some(low) = r.get("low") {
            w.pq("low", false, low);
        }
        if let Some(high) = r.get("high") {
            w.pq("high", false, high);
        }
        w.close("value");
    } else if let Some(p) = o.get("valuePeriod") {
        w.ivl("value", true, s(p, "start"), s(p, "end"));
    } else {
        w.empty("value", &[("xsi:type", "CD"), ("nullFlavor", "NI")]);
    }
}

/// What a person reads for the value of an Observation (or component).
pub(crate) fn value_text(o: &Value) -> String {
    fn quantity(q: &Value) -> String {
        let v = q.get("value").and_then(number_text).unwrap_or_default();
        match s(q, "unit").or_else(|| s(q, "code")) {
            Some(u) => format!("{v} {u}"),
            None => v,
        }
    }
    if let Some(q) = o.get("valueQuantity") {
        quantity(q)
    } else if let Some(cc) = o.get("valueCodeableConcept") {
        fhir::cc_text(cc)
    } else if let Some(t) = s(o, "valueString") {
        t.to_owned()
    } else if let Some(b) = o.get("valueBoolean").and_then(Value::as_bool) {
        b.to_string()
    } else if let Some(n) = o.get("valueInteger").and_then(number_text) {
        n
    } else if let Some(d) = s(o, "valueDateTime") {
        d.to_owned()
    } else if let Some(r) = o.get("valueRange") {
        format!(
            "{} - {}",
            r.get("low").map(quantity).unwrap_or_default(),
            r.get("high").map(quantity).unwrap_or_default()
        )
    } else {
        String::new()
    }
}

/// The reference ranges of an Observation, for people.
pub(crate) fn range_text(o: &Value) -> String {
    arr(o, "referenceRange")
        .iter()
        .map(|r| {
            if let Some(t) = s(r, "text") {
                return t.to_owned();
            }
            let q = |k: &str| r.get(k).and_then(|q| q.get("value")).and_then(number_text).unwrap_or_default();
            format!("{} - {}", q("low"), q("high"))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn interpretations_and_ranges(w: &mut Xml, o: &Value, ranges: bool) {
    for i in arr(o, "interpretation") {
        w.cd("interpretationCode", None, Some(i), None);
    }
    if !ranges {
        return;
    }
    for r in arr(o, "referenceRange") {
        let (low, high, text) = (r.get("low"), r.get("high"), s(r, "text"));
        if low.is_none() && high.is_none() && text.is_none() {
            continue;
        }
        w.raw("<referenceRange><observationRange>");
        if let Some(t) = text {
            w.leaf("text", &[], t);
        }
        if low.is_some() || high.is_some() {
            w.open("value", &[("xsi:type", "IVL_PQ")]);
            if let Some(l) = low {
                w.pq("low", false, l);
            }
            if let Some(h) = high {
                w.pq("high", false, h);
            }
            w.close("value");
        }
        w.raw("</observationRange></referenceRange>");
    }
}

fn result_status(o: &Value) -> &'static str {
    match s(o, "status") {
        Some("registered" | "preliminary") => "active",
        Some("cancelled") => "cancelled",
        Some("entered-in-error") => "nullified",
        _ => "completed",
    }
}

/// A Result Organizer (V3) of `report` (or of a lone Observation) over `results`, whose
/// narrative rows are `rows` (in order).
pub(crate) fn result_organizer(ctx: &mut Ctx<'_>, report: Option<&Value>, results: &[&Value], rows: &[String]) {
    let w = &mut ctx.w;
    let Some(first) = results.first() else {
        return;
    };
    entry_open(w);
    let head = report.unwrap_or(first);
    w.open("organizer", &[("classCode", if report.is_some() { "BATTERY" } else { "CLUSTER" }), ("moodCode", "EVN")]);
    w.template("2.16.840.1.113883.10.20.22.4.1", EXT_2015);
    match report {
        Some(r) => w.entry_id(&fhir::key(r)),
        None => w.entry_id(&format!("{}/organizer", fhir::key(first))),
    }
    w.cd("code", None, head.get("code"), None);
    w.status(match s(head, "status") {
        Some("registered" | "partial" | "preliminary") => "active",
        Some("cancelled") => "cancelled",
        Some("entered-in-error") => "nullified",
        _ => "completed",
    });
    let start = observation_time(head);
    let end = head.get("effectivePeriod").and_then(|p| s(p, "end")).or(start);
    w.ivl("effectiveTime", false, start, end);
    for (o, row) in results.iter().zip(rows) {
        w.raw("<component><observation classCode=\"OBS\" moodCode=\"EVN\">");
        w.template("2.16.840.1.113883.10.20.22.4.2", EXT_2015);
        w.entry_id(&fhir::key(o));
        w.cd("code", None, o.get("code"), Some(&cell(row)));
        w.text_ref(row);
        w.status(result_status(o));
        w.ts("effectiveTime", observation_time(o));
        value(w, o);
        interpretations_and_ranges(w, o, true);
        w.raw("</observation></component>");
    }
    w.close("organizer");
    entry_close(w);
}

/// One vital sign: an Observation with a value, or one component of a panel.
pub(crate) struct Vital<'a> {
    /// The Observation.
    pub(crate) obs: &'a Value,
    /// The component written, when the Observation is a panel of components.
    pub(crate) component: Option<usize>,
}

impl<'a> Vital<'a> {
    /// What holds the code and value.
    pub(crate) fn source(&self) -> &'a Value {
        match self.component {
            Some(i) => arr(self.obs, "component").get(i).unwrap_or(self.obs),
            None => self.obs,
        }
    }
}

/// A Vital Signs Organizer (V3) of vital signs taken at `time`.
pub(crate) fn vital_signs_organizer(ctx: &mut Ctx<'_>, time: Option<&str>, vitals: &[Vital<'_>], rows: &[String]) {
    let w = &mut ctx.w;
    let Some(first) = vitals.first() else {
        return;
    };
    entry_open(w);
    w.raw("<organizer classCode=\"CLUSTER\" moodCode=\"EVN\">");
    w.template("2.16.840.1.113883.10.20.22.4.26", EXT_2015);
    w.entry_id(&format!("{}/vital-signs", fhir::key(first.obs)));
    coded_with_translation(
        w,
        "code",
        &snomed("46680005", "Vital signs"),
        &loinc(
            "74728-7",
            "Vital signs, weight, height, head circumference, oximetry, BMI, and BSA panel - HL7.CCDA.r2.1",
        ),
    );
    w.status("completed");
    w.ivl("effectiveTime", false, time, time);
    for (v, row) in vitals.iter().zip(rows) {
        let src = v.source();
        w.raw("<component><observation classCode=\"OBS\" moodCode=\"EVN\">");
        w.template("2.16.840.1.113883.10.20.22.4.27", EXT_2014);
        match v.component {
            Some(i) => w.entry_id(&format!("{}/component/{i}", fhir::key(v.obs))),
            None => w.entry_id(&fhir::key(v.obs)),
        }
        w.cd("code", None, src.get("code"), Some(&cell(row)));
        w.text_ref(row);
        w.status(result_status(v.obs));
        w.ts("effectiveTime", observation_time(v.obs));
        value(w, src);
        interpretations_and_ranges(w, src, false);
        w.raw("</observation></component>");
    }
    w.raw("</organizer>");
    entry_close(w);
}

/// Smoking Status (V2) for LOINC 72166-2, else a Social History Observation (V3).
pub(crate) fn social_observation(ctx: &mut Ctx<'_>, o: &Value, row: &str) {
    let w = &mut ctx.w;
    let smoking = o.get("code").is_some_and(|c| fhir::has_code(c, Some("http://loinc.org"), "72166-2"));
    entry_open(w);
    w.raw("<observation classCode=\"OBS\" moodCode=\"EVN\">");
    if smoking {
        w.template("2.16.840.1.113883.10.20.22.4.78", EXT_2014);
        w.entry_id(&fhir::key(o));
        w.open(
            "code",
            &[
                ("code", "72166-2"),
                ("codeSystem", "2.16.840.1.113883.6.1"),
                ("codeSystemName", "LOINC"),
                ("displayName", "Tobacco smoking status"),
            ],
        );
        w.raw("<originalText><reference value=\"#");
        w.text(&cell(row));
        w.raw("\"/></originalText>");
        w.close("code");
    } else {
        w.template("2.16.840.1.113883.10.20.22.4.38", EXT_2015);
        w.entry_id(&fhir::key(o));
        w.cd("code", None, o.get("code"), Some(&cell(row)));
    }
    w.text_ref(row);
    w.status("completed");
    w.ts("effectiveTime", observation_time(o));
    value(w, o);
    w.raw("</observation>");
    entry_close(w);
}

/// Birth Sex Observation from the US Core birth sex extension's code.
pub(crate) fn birth_sex(ctx: &mut Ctx<'_>, code: &str, row: &str) {
    let w = &mut ctx.w;
    entry_open(w);
    w.raw("<observation classCode=\"OBS\" moodCode=\"EVN\">");
    w.template("2.16.840.1.113883.10.20.22.4.200", Some("2016-06-01"));
    w.entry_id(&format!("{}/birth-sex", fhir::key(ctx.chart.patient)));
    w.fixed("code", None, &loinc("76689-9", "Sex assigned at birth"));
    w.text_ref(row);
    w.status("completed");
    match code {
        "M" | "F" => w.empty(
            "value",
            &[
                ("xsi:type", "CD"),
                ("code", code),
                ("codeSystem", "2.16.840.1.113883.5.1"),
                ("codeSystemName", "AdministrativeGender"),
                ("displayName", if code == "M" { "Male" } else { "Female" }),
            ],
        ),
        _ => w.empty("value", &[("xsi:type", "CD"), ("nullFlavor", "UNK")]),
    }
    w.raw("</observation>");
    entry_close(w);
}

/// Start and end of a Procedure (FHIR strings).
pub(crate) fn procedure_dates(p: &Value) -> (Option<&str>, Option<&str>) {
    if let Some(d) = s(p, "performedDateTime") {
        return (Some(d), None);
    }
    let period = p.get("performedPeriod");
    (period.and_then(|x| s(x, "start")), period.and_then(|x| s(x, "end")))
}

/// Procedure Activity Procedure (V2).
pub(crate) fn procedure(ctx: &mut Ctx<'_>, p: &Value, row: &str) {
    let w = &mut ctx.w;
    let status = s(p, "status");
    entry_open(w);
    if status == Some("not-done") {
        w.raw("<procedure classCode=\"PROC\" moodCode=\"EVN\" negationInd=\"true\">");
    } else {
        w.raw("<procedure classCode=\"PROC\" moodCode=\"EVN\">");
    }
    w.template("2.16.840.1.113883.10.20.22.4.14", EXT_2014);
    w.entry_id(&fhir::key(p));
    w.cd("code", None, p.get("code"), Some(&cell(row)));
    w.text_ref(row);
    w.status(match status {
        Some("in-progress" | "preparation") => "active",
        Some("stopped") => "aborted",
        Some("not-done") => "cancelled",
        Some("entered-in-error") => "nullified",
        Some("on-hold") => "suspended",
        _ => "completed",
    });
    match procedure_dates(p) {
        (Some(start), None) if s(p, "performedDateTime").is_some() => {
            w.ts("effectiveTime", Some(start));
        }
        (None, None) => w.empty("effectiveTime", &[("nullFlavor", "UNK")]),
        (start, end) => w.ivl("effectiveTime", false, start, end),
    }
    for site in arr(p, "bodySite") {
        w.cd("targetSiteCode", None, Some(site), None);
    }
    let who = p
        .get("recorder")
        .or_else(|| p.get("asserter"))
        .or_else(|| arr(p, "performer").first().and_then(|x| x.get("actor")));
    author(w, &ctx.index, procedure_dates(p).0, who);
    indications(w, &ctx.index, p);
    w.raw("</procedure>");
    entry_close(w);
}

/// Encounter Activity (V3).
pub(crate) fn encounter(ctx: &mut Ctx<'_>, e: &Value, row: &str) {
    let w = &mut ctx.w;
    entry_open(w);
    w.raw("<encounter classCode=\"ENC\" moodCode=\"EVN\">");
    w.template("2.16.840.1.113883.10.20.22.4.49", EXT_2015);
    w.entry_id(&fhir::key(e));
    let class_cc;
    let code = match arr(e, "type").first() {
        Some(t) => Some(t),
        None => {
            class_cc = e.get("class").map(|c| serde_json::json!({ "coding": [c] }));
            class_cc.as_ref()
        }
    };
    w.cd("code", None, code, Some(&cell(row)));
    w.text_ref(row);
    let period = e.get("period");
    w.ivl("effectiveTime", false, period.and_then(|p| s(p, "start")), period.and_then(|p| s(p, "end")));
    let place = arr(e, "location").iter().find_map(|l| l.get("location").and_then(|r| s(r, "display")));
    if let Some(name) = place {
        // Service Delivery Location: the place by name (its type is not known).
        w.raw("<participant typeCode=\"LOC\"><participantRole classCode=\"SDLOC\">");
        w.template("2.16.840.1.113883.10.20.22.4.32", None);
        w.empty("code", &[("nullFlavor", "NI")]);
        w.raw("<playingEntity classCode=\"PLC\">");
        w.leaf("name", &[], name);
        w.raw("</playingEntity></participantRole></participant>");
    }
    indications(w, &ctx.index, e);
    w.raw("</encounter>");
    entry_close(w);
}

/// Planned Act (V2) for a CarePlan activity (`id` = its entry id extension).
pub(crate) fn planned_act(ctx: &mut Ctx<'_>, id: &str, code: Option<&Value>, when: Option<&str>, row: &str) {
    let w = &mut ctx.w;
    entry_open(w);
    w.raw("<act classCode=\"ACT\" moodCode=\"INT\">");
    w.template("2.16.840.1.113883.10.20.22.4.39", EXT_2014);
    w.entry_id(id);
    w.cd("code", None, code, Some(&cell(row)));
    w.text_ref(row);
    w.status("active");
    if let Some(v) = when.and_then(fhir::ts) {
        w.empty("effectiveTime", &[("value", &v)]);
    }
    w.raw("</act>");
    entry_close(w);
}

/// Planned Procedure (V2) for a ServiceRequest.
pub(crate) fn planned_procedure(ctx: &mut Ctx<'_>, r: &Value, row: &str) {
    let w = &mut ctx.w;
    entry_open(w);
    w.raw("<procedure classCode=\"PROC\" moodCode=\"RQO\">");
    w.template("2.16.840.1.113883.10.20.22.4.41", EXT_2014);
    w.entry_id(&fhir::key(r));
    w.cd("code", None, r.get("code"), Some(&cell(row)));
    w.text_ref(row);
    w.status("active");
    let when =
        s(r, "occurrenceDateTime").or_else(|| r.get("occurrencePeriod").and_then(|p| s(p, "start"))).and_then(fhir::ts);
    if let Some(v) = when {
        w.empty("effectiveTime", &[("value", &v)]);
    }
    w.raw("</procedure>");
    entry_close(w);
}

/// Planned Medication Activity (V2) for a MedicationRequest of intent `plan` or `proposal`.
pub(crate) fn planned_medication<'a>(ctx: &mut Ctx<'a>, m: &'a Value, row: &str) {
    let code = medication_code(ctx, m);
    let w = &mut ctx.w;
    entry_open(w);
    w.raw("<substanceAdministration classCode=\"SBADM\" moodCode=\"INT\">");
    w.template("2.16.840.1.113883.10.20.22.4.42", EXT_2014);
    w.entry_id(&format!("{}/planned", fhir::key(m)));
    w.text_ref(row);
    w.status("active");
    let (start, end) = medication_dates(m);
    w.ivl("effectiveTime", true, start, end);
    w.raw("<consumable><manufacturedProduct classCode=\"MANU\">");
    w.template("2.16.840.1.113883.10.20.22.4.23", EXT_2014);
    w.raw("<manufacturedMaterial>");
    w.cd("code", None, code, Some(&cell(row)));
    w.raw("</manufacturedMaterial></manufacturedProduct></consumable></substanceAdministration>");
    entry_close(w);
}

#[cfg(test)]
mod tests {
    use super::super::{ENTRY_ID_ROOT, fhir};

    #[test]
    fn root_is_a_uuid() {
        assert!(fhir::is_uuid(ENTRY_ID_ROOT));
    }
}
