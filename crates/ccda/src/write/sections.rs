//! The sections of each document type, their narrative tables, and which entries they hold.

use super::entries::{self, Vital, cell};
use super::fhir::{self, arr, s};
use super::values::{Fixed, loinc, person_name, shown_date};
use super::{Ctx, DocumentType};
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// A section's template, code and titles.
pub(crate) struct Spec {
    /// `templateId/@root`.
    pub(crate) root: &'static str,
    /// `templateId/@extension`.
    pub(crate) extension: Option<&'static str>,
    /// The section's LOINC code.
    pub(crate) code: Fixed,
    /// Its title.
    pub(crate) title: &'static str,
    /// The narrative of the section without information.
    pub(crate) none: &'static str,
    /// The narrative rows' ID prefix.
    pub(crate) prefix: &'static str,
}

/// Allergies and Intolerances Section (entries required) (V3).
pub(crate) const ALLERGIES: Spec = Spec {
    root: "2.16.840.1.113883.10.20.22.2.6.1",
    extension: Some("2015-08-01"),
    code: loinc("48765-2", "Allergies and adverse reactions Document"),
    title: "Allergies and Intolerances",
    none: "No allergies or intolerances recorded.",
    prefix: "allergy",
};
/// Medications Section (entries required) (V2).
pub(crate) const MEDICATIONS: Spec = Spec {
    root: "2.16.840.1.113883.10.20.22.2.1.1",
    extension: Some("2014-06-09"),
    code: loinc("10160-0", "History of Medication use Narrative"),
    title: "Medications",
    none: "No medications recorded.",
    prefix: "medication",
};
/// Problem Section (entries required) (V3).
pub(crate) const PROBLEMS: Spec = Spec {
    root: "2.16.840.1.113883.10.20.22.2.5.1",
    extension: Some("2015-08-01"),
    code: loinc("11450-4", "Problem list - Reported"),
    title: "Problems",
    none: "No problems recorded.",
    prefix: "problem",
};
/// Results Section (entries required) (V3).
pub(crate) const RESULTS: Spec = Spec {
    root: "2.16.840.1.113883.10.20.22.2.3.1",
    extension: Some("2015-08-01"),
    code: loinc("30954-2", "Relevant diagnostic tests/laboratory data Narrative"),
    title: "Results",
    none: "No results recorded.",
    prefix: "result",
};
/// Vital Signs Section (entries required) (V3).
pub(crate) const VITAL_SIGNS: Spec = Spec {
    root: "2.16.840.1.113883.10.20.22.2.4.1",
    extension: Some("2015-08-01"),
    code: loinc("8716-3", "Vital signs"),
    title: "Vital Signs",
    none: "No vital signs recorded.",
    prefix: "vital",
};
/// Social History Section (V3).
pub(crate) const SOCIAL_HISTORY: Spec = Spec {
    root: "2.16.840.1.113883.10.20.22.2.17",
    extension: Some("2015-08-01"),
    code: loinc("29762-2", "Social history Narrative"),
    title: "Social History",
    none: "No social history recorded.",
    prefix: "social",
};
/// Procedures Section (entries required) (V2).
pub(crate) const PROCEDURES: Spec = Spec {
    root: "2.16.840.1.113883.10.20.22.2.7.1",
    extension: Some("2014-06-09"),
    code: loinc("47519-4", "History of Procedures Document"),
    title: "Procedures",
    none: "No procedures recorded.",
    prefix: "procedure",
};
/// Immunizations Section (entries required) (V3).
pub(crate) const IMMUNIZATIONS: Spec = Spec {
    root: "2.16.840.1.113883.10.20.22.2.2.1",
    extension: Some("2015-08-01"),
    code: loinc("11369-6", "History of Immunization Narrative"),
    title: "Immunizations",
    none: "No immunizations recorded.",
    prefix: "immunization",
};
/// Encounters Section (entries required) (V3).
pub(crate) const ENCOUNTERS: Spec = Spec {
    root: "2.16.840.1.113883.10.20.22.2.22.1",
    extension: Some("2015-08-01"),
    code: loinc("46240-8", "History of Hospitalizations+Outpatient visits Narrative"),
    title: "Encounters",
    none: "No encounters recorded.",
    prefix: "encounter",
};
/// Plan of Treatment Section (V2).
pub(crate) const PLAN_OF_TREATMENT: Spec = Spec {
    root: "2.16.840.1.113883.10.20.22.2.10",
    extension: Some("2014-06-09"),
    code: loinc("18776-5", "Plan of care note"),
    title: "Plan of Treatment",
    none: "No plan of treatment recorded.",
    prefix: "plan",
};
/// Reason for Referral Section (V2).
pub(crate) const REASON_FOR_REFERRAL: Spec = Spec {
    root: "1.3.6.1.4.1.19376.1.5.3.1.3.1",
    extension: Some("2014-06-09"),
    code: loinc("42349-1", "Reason for referral (narrative)"),
    title: "Reason for Referral",
    none: "No reason for referral recorded.",
    prefix: "referral",
};
/// Hospital Course Section.
pub(crate) const HOSPITAL_COURSE: Spec = Spec {
    root: "1.3.6.1.4.1.19376.1.5.3.1.3.5",
    extension: None,
    code: loinc("8648-8", "Hospital course Narrative"),
    title: "Hospital Course",
    none: "No hospital course recorded.",
    prefix: "course",
};
/// Discharge Diagnosis Section (V3).
pub(crate) const DISCHARGE_DIAGNOSIS: Spec = Spec {
    root: "2.16.840.1.113883.10.20.22.2.24",
    extension: Some("2015-08-01"),
    code: loinc("11535-2", "Hospital discharge Dx Narrative"),
    title: "Discharge Diagnosis",
    none: "No discharge diagnosis recorded.",
    prefix: "diagnosis",
};
/// Discharge Medications Section (entries required) (V3).
pub(crate) const DISCHARGE_MEDICATIONS: Spec = Spec {
    root: "2.16.840.1.113883.10.20.22.2.11.1",
    extension: Some("2015-08-01"),
    code: loinc("10183-2", "Hospital discharge medication Narrative"),
    title: "Discharge Medications",
    none: "No discharge medications recorded.",
    prefix: "discharge-medication",
};

/// The sections of each document type, in order.
pub(crate) fn write_sections(ctx: &mut Ctx<'_>, kind: DocumentType) {
    match kind {
        DocumentType::Ccd => {
            allergies(ctx);
            medications(ctx);
            problems(ctx, true);
            procedures(ctx, false);
            results(ctx, true);
            vital_signs(ctx, true);
            social_history(ctx, true);
            immunizations(ctx, false);
            encounters(ctx, false);
            plan_of_treatment(ctx, false);
        }
        DocumentType::Referral => {
            reason_for_referral(ctx);
            allergies(ctx);
            medications(ctx);
            problems(ctx, true);
            procedures(ctx, false);
            results(ctx, false);
            vital_signs(ctx, false);
            social_history(ctx, false);
            immunizations(ctx, false);
            plan_of_treatment(ctx, true);
        }
        DocumentType::Discharge => {
            allergies(ctx);
            hospital_course(ctx);
            discharge_diagnosis(ctx);
            discharge_medications(ctx);
            plan_of_treatment(ctx, true);
            problems(ctx, false);
            procedures(ctx, false);
            results(ctx, false);
            vital_signs(ctx, false);
        }
    }
}

fn section_open(ctx: &mut Ctx<'_>, spec: &Spec, null: bool) {
    let w = &mut ctx.w;
    w.raw("<component>");
    if null {
        w.raw("<section nullFlavor=\"NI\">");
    } else {
        w.raw("<section>");
    }
    w.template(spec.root, spec.extension);
    if spec.root == DISCHARGE_MEDICATIONS.root {
        w.open(
            "code",
            &[
                ("code", spec.code.code),
                ("codeSystem", spec.code.system),
                ("codeSystemName", spec.code.system_name),
                ("displayName", spec.code.display),
            ],
        );
        w.fixed("translation", None, &loinc("75311-1", "Discharge medications Narrative"));
        w.close("code");
    } else {
        w.fixed("code", None, &spec.code);
    }
    w.leaf("title", &[], spec.title);
}

fn section_close(ctx: &mut Ctx<'_>) {
    ctx.w.raw("</section></component>");
}

/// A required section without information (`nullFlavor="NI"`), or nothing when optional.
fn no_information(ctx: &mut Ctx<'_>, spec: &Spec, required: bool) {
    if !required {
        return;
    }
    section_open(ctx, spec, true);
    ctx.w.leaf("text", &[], spec.none);
    section_close(ctx);
}

/// The ID of row `i` of a section.
fn row_id(spec: &Spec, i: usize) -> String {
    format!("{}{}", spec.prefix, i + 1)
}

/// Opens the section and writes its narrative table; the rows' IDs are `row_id(spec, i)`.
fn table(ctx: &mut Ctx<'_>, spec: &Spec, head: &[&str], rows: &[Vec<String>]) {
    section_open(ctx, spec, false);
    let w = &mut ctx.w;
    w.raw("<text><table border=\"1\" width=\"100%\"><thead><tr>");
    for h in head {
        w.leaf("th", &[], h);
    }
    w.raw("</tr></thead><tbody>");
    for (i, row) in rows.iter().enumerate() {
        let id = row_id(spec, i);
        w.open("tr", &[("ID", &id)]);
        for (j, c) in row.iter().enumerate() {
            if j == 0 {
                w.leaf("td", &[("ID", &cell(&id))], c);
            } else {
                w.leaf("td", &[], c);
            }
        }
        w.raw("</tr>");
    }
    w.raw("</tbody></table></text>");
}

fn status_text(r: &Value, key: &str) -> String {
    match r.get(key) {
        Some(Value::String(st)) => st.clone(),
        Some(cc @ Value::Object(_)) => fhir::cc_text(cc),
        _ => String::new(),
    }
}

fn allergies(ctx: &mut Ctx<'_>) {
    let spec = &ALLERGIES;
    let items = ctx.of_type("AllergyIntolerance");
    if items.is_empty() {
        return no_information(ctx, spec, true);
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|a| {
            let reactions: Vec<String> =
                arr(a, "reaction").iter().flat_map(|r| arr(r, "manifestation").iter().map(fhir::cc_text)).collect();
            let severities: Vec<&str> = arr(a, "reaction").iter().filter_map(|r| s(r, "severity")).collect();
            let kind = [s(a, "type").unwrap_or(""), arr(a, "category").first().and_then(Value::as_str).unwrap_or("")]
                .iter()
                .filter(|x| !x.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            vec![
                a.get("code").map(fhir::cc_text).unwrap_or_default(),
                kind,
                reactions.join("; "),
                severities.join("; "),
                s(a, "criticality").unwrap_or("").to_owned(),
                status_text(a, "clinicalStatus"),
                // The onset only: a recorded date is not when the allergy began.
                match s(a, "onsetDateTime").or_else(|| a.get("onsetPeriod").and_then(|p| s(p, "start"))) {
                    Some(onset) => shown_date(Some(onset)),
                    None => match s(a, "recordedDate") {
                        Some(r) => format!("unknown (recorded {})", shown_date(Some(r))),
                        None => String::new(),
                    },
                },
            ]
        })
        .collect();
    table(ctx, spec, &["Substance", "Type", "Reaction", "Severity", "Criticality", "Status", "Onset"], &rows);
    for (i, a) in items.iter().enumerate() {
        entries::allergy_concern(ctx, a, &row_id(spec, i));
    }
    section_close(ctx);
}

fn medication_row(ctx: &Ctx<'_>, m: &Value) -> Vec<String> {
    let name = entries::medication_code(ctx, m).map(fhir::cc_text).unwrap_or_default();
    let instructions = entries::dosage(m)
        .map(|d| {
            s(d, "text").map_or_else(
                || {
                    let repeat = d.get("timing").and_then(|t| t.get("repeat"));
                    match repeat {
                        Some(r) => format!(
                            "{} every {} {}",
                            r.get("frequency").and_then(super::values::number_text).unwrap_or_else(|| "1".into()),
                            r.get("period").and_then(super::values::number_text).unwrap_or_default(),
                            s(r, "periodUnit").unwrap_or("")
                        ),
                        None => String::new(),
                    }
                },
                str::to_owned,
            )
        })
        .unwrap_or_default();
    let (start, end) = entries::medication_dates(m);
    vec![name, instructions, shown_date(start), shown_date(end), s(m, "status").unwrap_or("").to_owned()]
}

const MEDICATION_HEAD: [&str; 5] = ["Medication", "Instructions", "Start", "End", "Status"];

fn medications(ctx: &mut Ctx<'_>) {
    let spec = &MEDICATIONS;
    let mut items = ctx.of_type("MedicationRequest");
    items.extend(ctx.of_type("MedicationStatement"));
    if items.is_empty() {
        return no_information(ctx, spec, true);
    }
    let rows: Vec<Vec<String>> = items.iter().map(|m| medication_row(ctx, m)).collect();
    table(ctx, spec, &MEDICATION_HEAD, &rows);
    for (i, m) in items.iter().copied().enumerate() {
        entries::medication_entry(ctx, m, &row_id(spec, i));
    }
    section_close(ctx);
}

/// Whether a Condition belongs on the problem list (problem-list-item, encounter-diagnosis
/// or no category).
pub(crate) fn is_problem(c: &Value) -> bool {
    arr(c, "category").is_empty()
        || fhir::has_category(c, "problem-list-item")
        || fhir::has_category(c, "encounter-diagnosis")
}

fn condition_rows(items: &[&Value]) -> Vec<Vec<String>> {
    items
        .iter()
        .map(|c| {
            let (onset, abated) = entries::condition_dates(c);
            vec![
                c.get("code").map(fhir::cc_text).unwrap_or_default(),
                status_text(c, "clinicalStatus"),
                shown_date(onset),
                shown_date(abated),
            ]
        })
        .collect()
}

fn problems(ctx: &mut Ctx<'_>, required: bool) {
    let spec = &PROBLEMS;
    let items: Vec<&Value> = ctx.of_type("Condition").into_iter().filter(|c| is_problem(c)).collect();
    if items.is_empty() {
        return no_information(ctx, spec, required);
    }
    let rows = condition_rows(&items);
    table(ctx, spec, &["Problem", "Status", "Onset", "Resolved"], &rows);
    for (i, c) in items.iter().enumerate() {
        entries::problem_concern(ctx, c, &row_id(spec, i));
    }
    section_close(ctx);
}

/// Laboratory Observations grouped by the DiagnosticReport listing them (first report
/// wins); those in no report form groups of their own.
fn result_groups<'a>(ctx: &Ctx<'a>) -> Vec<(Option<&'a Value>, Vec<&'a Value>)> {
    let labs: Vec<&'a Value> =
        ctx.of_type("Observation").into_iter().filter(|o| fhir::has_category(o, "laboratory")).collect();
    let lab_keys: HashSet<String> = labs.iter().map(|o| fhir::key(o)).collect();
    let mut placed: HashSet<String> = HashSet::new();
    let mut groups = Vec::new();
    for report in ctx.of_type("DiagnosticReport") {
        let mut members = Vec::new();
        for r in arr(report, "result") {
            let Some(o) = ctx.index.resolve(r) else {
                continue;
            };
            let k = fhir::key(o);
            if lab_keys.contains(&k) && placed.insert(k) {
                members.push(o);
            }
        }
        if !members.is_empty() {
            groups.push((Some(report), members));
        }
    }
    for o in labs {
        if placed.insert(fhir::key(o)) {
            groups.push((None, vec![o]));
        }
    }
    groups
}

fn results(ctx: &mut Ctx<'_>, required: bool) {
    let spec = &RESULTS;
    let groups = result_groups(ctx);
    if groups.is_empty() {
        return no_information(ctx, spec, required);
    }
    let mut rows = Vec::new();
    for (report, members) in &groups {
        let panel = report.and_then(|r| r.get("code")).map(fhir::cc_text).unwrap_or_default();
        for o in members {
            rows.push(vec![
                o.get("code").map(fhir::cc_text).unwrap_or_default(),
                entries::value_text(o),
                entries::range_text(o),
                arr(o, "interpretation").iter().map(fhir::cc_text).collect::<Vec<_>>().join("; "),
                shown_date(entries::observation_time(o)),
                panel.clone(),
            ]);
        }
    }
    table(ctx, spec, &["Test", "Value", "Reference range", "Interpretation", "Date", "Panel"], &rows);
    let mut n = 0;
    for (report, members) in &groups {
        let ids: Vec<String> = (n..n + members.len()).map(|i| row_id(spec, i)).collect();
        n += members.len();
        entries::result_organizer(ctx, *report, members, &ids);
    }
    section_close(ctx);
}

/// Whether an Observation has a `value[x]`.
fn has_value(o: &Value) -> bool {
    o.as_object().is_some_and(|m| m.keys().any(|k| k.starts_with("value")))
}

/// The vital signs: an Observation with a value (or neither value nor components) is one,
/// a panel of components without a value is one per component.
pub(crate) fn vitals_of(o: &Value) -> Vec<Vital<'_>> {
    let components = arr(o, "component");
    if !has_value(o) && !components.is_empty() {
        (0..components.len()).map(|i| Vital { obs: o, component: Some(i) }).collect()
    } else {
        vec![Vital { obs: o, component: None }]
    }
}

fn vital_signs(ctx: &mut Ctx<'_>, required: bool) {
    let spec = &VITAL_SIGNS;
    let mut order: Vec<Option<&str>> = Vec::new();
    let mut groups: HashMap<Option<&str>, Vec<Vital<'_>>> = HashMap::new();
    for o in ctx.of_type("Observation").into_iter().filter(|o| fhir::has_category(o, "vital-signs")) {
        let t = entries::observation_time(o);
        let g = groups.entry(t).or_insert_with(|| {
            order.push(t);
            Vec::new()
        });
        g.extend(vitals_of(o));
    }
    if order.is_empty() {
        return no_information(ctx, spec, required);
    }
    let mut rows = Vec::new();
    for t in &order {
        for v in groups.get(t).map_or(&[][..], Vec::as_slice) {
            let src = v.source();
            rows.push(vec![
                src.get("code").map(fhir::cc_text).unwrap_or_default(),
                entries::value_text(src),
                shown_date(*t),
            ]);
        }
    }
    table(ctx, spec, &["Vital sign", "Value", "Date"], &rows);
    let mut n = 0;
    for t in &order {
        let members = groups.get(t).map_or(&[][..], Vec::as_slice);
        let ids: Vec<String> = (n..n + members.len()).map(|i| row_id(spec, i)).collect();
        n += members.len();
        entries::vital_signs_organizer(ctx, *t, members, &ids);
    }
    section_close(ctx);
}

fn birth_sex_code(p: &Value) -> Option<&str> {
    arr(p, "extension")
        .iter()
        .find(|e| s(e, "url") == Some("http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex"))
        .and_then(|e| s(e, "valueCode"))
}

/// LOINC "Tobacco smoking status" (Synthea files some under the `survey` category).
const SMOKING_STATUS: &str = "72166-2";

fn social_history(ctx: &mut Ctx<'_>, required: bool) {
    let spec = &SOCIAL_HISTORY;
    let items: Vec<&Value> = ctx
        .of_type("Observation")
        .into_iter()
        .filter(|o| {
            fhir::has_category(o, "social-history")
                || o.get("code").is_some_and(|c| fhir::has_code(c, Some("http://loinc.org"), SMOKING_STATUS))
        })
        .collect();
    let sex = birth_sex_code(ctx.chart.patient);
    if items.is_empty() && sex.is_none() {
        return no_information(ctx, spec, required);
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    if let Some(code) = sex {
        rows.push(vec!["Sex assigned at birth".into(), code.into(), String::new()]);
    }
    for o in &items {
        rows.push(vec![
            o.get("code").map(fhir::cc_text).unwrap_or_default(),
            entries::value_text(o),
            shown_date(entries::observation_time(o)),
        ]);
    }
    table(ctx, spec, &["Social history", "Value", "Date"], &rows);
    let mut n = 0;
    if let Some(code) = sex {
        entries::birth_sex(ctx, code, &row_id(spec, 0));
        n = 1;
    }
    for (i, o) in items.iter().enumerate() {
        entries::social_observation(ctx, o, &row_id(spec, n + i));
    }
    section_close(ctx);
}

fn immunizations(ctx: &mut Ctx<'_>, required: bool) {
    let spec = &IMMUNIZATIONS;
    let items = ctx.of_type("Immunization");
    if items.is_empty() {
        return no_information(ctx, spec, required);
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            vec![
                i.get("vaccineCode").map(fhir::cc_text).unwrap_or_default(),
                shown_date(s(i, "occurrenceDateTime")),
                s(i, "status").unwrap_or("").to_owned(),
                s(i, "lotNumber").unwrap_or("").to_owned(),
            ]
        })
        .collect();
    table(ctx, spec, &["Vaccine", "Date", "Status", "Lot"], &rows);
    for (n, i) in items.iter().enumerate() {
        entries::immunization(ctx, i, &row_id(spec, n));
    }
    section_close(ctx);
}

fn procedures_in<'a>(ctx: &mut Ctx<'a>, spec: &Spec, items: &[&'a Value]) {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|p| {
            let (start, end) = entries::procedure_dates(p);
            vec![
                p.get("code").map(fhir::cc_text).unwrap_or_default(),
                shown_date(start),
                shown_date(end),
                s(p, "status").unwrap_or("").to_owned(),
            ]
        })
        .collect();
    table(ctx, spec, &["Procedure", "Start", "End", "Status"], &rows);
    for (i, p) in items.iter().enumerate() {
        entries::procedure(ctx, p, &row_id(spec, i));
    }
    section_close(ctx);
}

fn procedures(ctx: &mut Ctx<'_>, required: bool) {
    let items = ctx.of_type("Procedure");
    if items.is_empty() {
        return no_information(ctx, &PROCEDURES, required);
    }
    procedures_in(ctx, &PROCEDURES, &items);
}

fn encounter_row(e: &Value) -> Vec<String> {
    let period = e.get("period");
    let kind = arr(e, "type")
        .first()
        .map(fhir::cc_text)
        .or_else(|| e.get("class").and_then(|c| s(c, "display").or_else(|| s(c, "code"))).map(str::to_owned))
        .unwrap_or_default();
    let reasons: Vec<String> = arr(e, "reasonCode").iter().map(fhir::cc_text).collect();
    let place = arr(e, "location").iter().find_map(|l| l.get("location").and_then(|r| s(r, "display"))).unwrap_or("");
    vec![
        kind,
        shown_date(period.and_then(|p| s(p, "start"))),
        shown_date(period.and_then(|p| s(p, "end"))),
        reasons.join("; "),
        place.to_owned(),
    ]
}

fn encounters(ctx: &mut Ctx<'_>, required: bool) {
    let spec = &ENCOUNTERS;
    let items = ctx.of_type("Encounter");
    if items.is_empty() {
        return no_information(ctx, spec, required);
    }
    let rows: Vec<Vec<String>> = items.iter().map(|e| encounter_row(e)).collect();
    table(ctx, spec, &["Encounter", "Start", "End", "Reason", "Location"], &rows);
    for (i, e) in items.iter().enumerate() {
        entries::encounter(ctx, e, &row_id(spec, i));
    }
    section_close(ctx);
}

/// A planned item: a CarePlan activity or a ServiceRequest.
enum Planned<'a> {
    Activity { plan: &'a Value, index: usize, detail: &'a Value },
    Request(&'a Value),
    Medication(&'a Value),
}

fn plan_of_treatment(ctx: &mut Ctx<'_>, required: bool) {
    let spec = &PLAN_OF_TREATMENT;
    let mut items: Vec<Planned<'_>> = Vec::new();
    for plan in ctx.of_type("CarePlan") {
        if !matches!(s(plan, "status"), Some("active" | "on-hold" | "draft")) {
            continue;
        }
        for (index, activity) in arr(plan, "activity").iter().enumerate() {
            let Some(detail) = activity.get("detail") else {
                continue;
            };
            if matches!(s(detail, "status"), Some("completed" | "cancelled" | "stopped" | "entered-in-error")) {
                continue;
            }
            items.push(Planned::Activity { plan, index, detail });
        }
    }
    for r in ctx.of_type("ServiceRequest") {
        if matches!(s(r, "status"), Some("active" | "on-hold" | "draft")) {
            items.push(Planned::Request(r));
        }
    }
    for m in ctx.of_type("MedicationRequest") {
        if matches!(s(m, "intent"), Some("plan" | "proposal"))
            && matches!(s(m, "status"), Some("active" | "on-hold" | "draft"))
        {
            items.push(Planned::Medication(m));
        }
    }
    if items.is_empty() {
        return no_information(ctx, spec, required);
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|p| match p {
            Planned::Medication(m) => {
                let r = medication_row(ctx, m);
                vec![r[0].clone(), "Planned medication".into(), r[4].clone(), r[2].clone()]
            }
            Planned::Activity { plan, detail, .. } => vec![
                detail.get("code").map(fhir::cc_text).unwrap_or_default(),
                arr(plan, "category").first().map(fhir::cc_text).unwrap_or_else(|| "Care plan activity".into()),
                s(detail, "status").unwrap_or("").to_owned(),
                shown_date(plan.get("period").and_then(|x| s(x, "start"))),
            ],
            Planned::Request(r) => vec![
                r.get("code").map(fhir::cc_text).unwrap_or_default(),
                "Service request".into(),
                s(r, "status").unwrap_or("").to_owned(),
                shown_date(s(r, "occurrenceDateTime").or_else(|| s(r, "authoredOn"))),
            ],
        })
        .collect();
    table(ctx, spec, &["Planned", "Plan", "Status", "Date"], &rows);
    for (i, p) in items.iter().enumerate() {
        let row = row_id(spec, i);
        match p {
            Planned::Activity { plan, index, detail } => {
                let id = format!("{}/activity/{index}", fhir::key(plan));
                let when = detail.get("scheduledPeriod").and_then(|x| s(x, "start"));
                entries::planned_act(ctx, &id, detail.get("code"), when, &row);
            }
            Planned::Request(r) => entries::planned_procedure(ctx, r, &row),
            Planned::Medication(m) => entries::planned_medication(ctx, m, &row),
        }
    }
    section_close(ctx);
}

/// Whether a ServiceRequest is a referral (SNOMED 3457005 as category or code).
pub(crate) fn is_referral(r: &Value) -> bool {
    let sct = Some("http://snomed.info/sct");
    arr(r, "category").iter().any(|c| fhir::has_code(c, sct, "3457005"))
        || r.get("code").is_some_and(|c| {
            fhir::has_code(c, sct, "3457005") || fhir::cc_text(c).to_ascii_lowercase().contains("referral")
        })
}

fn reason_for_referral(ctx: &mut Ctx<'_>) {
    let spec = &REASON_FOR_REFERRAL;
    let items: Vec<&Value> = ctx
        .of_type("ServiceRequest")
        .into_iter()
        .filter(|r| is_referral(r) && !matches!(s(r, "status"), Some("entered-in-error" | "revoked")))
        .collect();
    if items.is_empty() {
        return no_information(ctx, spec, true);
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|r| {
            let reasons: Vec<String> = arr(r, "reasonCode")
                .iter()
                .map(fhir::cc_text)
                .chain(arr(r, "reasonReference").iter().filter_map(|x| s(x, "display").map(str::to_owned)))
                .collect();
            let to: Vec<String> =
                arr(r, "performer").iter().filter_map(|x| s(x, "display").map(str::to_owned)).collect();
            vec![
                r.get("code").map(fhir::cc_text).unwrap_or_default(),
                reasons.join("; "),
                to.join("; "),
                shown_date(s(r, "authoredOn")),
                s(r, "status").unwrap_or("").to_owned(),
            ]
        })
        .collect();
    table(ctx, spec, &["Referral", "Reason", "To", "Date", "Status"], &rows);
    section_close(ctx);
}

fn hospital_course(ctx: &mut Ctx<'_>) {
    let spec = &HOSPITAL_COURSE;
    let Some(enc) = ctx.encounter else {
        return no_information(ctx, spec, true);
    };
    let target = fhir::key(enc);
    let period = enc.get("period");
    let kind = encounter_row(enc);
    let in_encounter = |r: &Value| r.get("encounter").is_some_and(|e| fhir::refers_to(e, &target));
    let procedures: Vec<String> = ctx
        .of_type("Procedure")
        .into_iter()
        .filter(|p| in_encounter(p))
        .filter_map(|p| p.get("code").map(fhir::cc_text))
        .collect();
    let diagnoses: Vec<String> = ctx
        .of_type("Condition")
        .into_iter()
        .filter(|c| in_encounter(c))
        .filter_map(|c| c.get("code").map(fhir::cc_text))
        .collect();
    let practitioners: Vec<String> = arr(enc, "participant")
        .iter()
        .filter_map(|p| p.get("individual"))
        .map(|i| {
            ctx.index
                .resolve(i)
                .map(|pr| person_name(arr(pr, "name")))
                .or_else(|| s(i, "display").map(str::to_owned))
                .unwrap_or_default()
        })
        .filter(|n| !n.is_empty())
        .collect();
    section_open(ctx, spec, false);
    let w = &mut ctx.w;
    w.raw("<text>");
    w.leaf(
        "paragraph",
        &[("ID", "course1")],
        &format!(
            "{} from {} to {}{}.",
            if kind[0].is_empty() { "Encounter" } else { &kind[0] },
            shown_date(period.and_then(|p| s(p, "start"))),
            shown_date(period.and_then(|p| s(p, "end"))),
            if kind[4].is_empty() { String::new() } else { format!(" at {}", kind[4]) }
        ),
    );
    for (label, list) in [
        ("Reason", kind[3].clone()),
        ("Diagnoses", diagnoses.join("; ")),
        ("Procedures", procedures.join("; ")),
        ("Care team", practitioners.join("; ")),
    ] {
        if !list.is_empty() {
            w.leaf("paragraph", &[], &format!("{label}: {list}"));
        }
    }
    w.raw("</text>");
    section_close(ctx);
}

fn discharge_diagnosis(ctx: &mut Ctx<'_>) {
    let spec = &DISCHARGE_DIAGNOSIS;
    let Some(enc) = ctx.encounter else {
        return no_information(ctx, spec, true);
    };
    let target = fhir::key(enc);
    let items: Vec<&Value> = ctx
        .of_type("Condition")
        .into_iter()
        .filter(|c| c.get("encounter").is_some_and(|e| fhir::refers_to(e, &target)))
        .collect();
    if items.is_empty() {
        return no_information(ctx, spec, true);
    }
    let rows = condition_rows(&items);
    table(ctx, spec, &["Diagnosis", "Status", "Onset", "Resolved"], &rows);
    for (i, c) in items.iter().enumerate() {
        entries::discharge_diagnosis(ctx, c, &row_id(spec, i));
    }
    section_close(ctx);
}

fn discharge_medications(ctx: &mut Ctx<'_>) {
    let spec = &DISCHARGE_MEDICATIONS;
    let target = ctx.encounter.map(fhir::key);
    let mut items: Vec<&Value> = ctx
        .of_type("MedicationRequest")
        .into_iter()
        .filter(|m| {
            s(m, "status") == Some("active")
                || target.as_deref().is_some_and(|t| m.get("encounter").is_some_and(|e| fhir::refers_to(e, t)))
        })
        .collect();
    items.extend(ctx.of_type("MedicationStatement").into_iter().filter(|m| s(m, "status") == Some("active")));
    if items.is_empty() {
        return no_information(ctx, spec, true);
    }
    let rows: Vec<Vec<String>> = items.iter().map(|m| medication_row(ctx, m)).collect();
    table(ctx, spec, &MEDICATION_HEAD, &rows);
    for (i, m) in items.iter().copied().enumerate() {
        entries::discharge_medication(ctx, m, &row_id(spec, i));
    }
    section_close(ctx);
}
