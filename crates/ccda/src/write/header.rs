//! The US Realm Header (C-CDA R2.1, 2.16.840.1.113883.10.20.22.1.1:2015-08-01).

use super::fhir::{self, arr, s};
use super::{Ctx, DocumentType};
use serde_json::Value;

const US_CORE_RACE: &str = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race";
const US_CORE_ETHNICITY: &str = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity";
const RACE_OID: &str = "2.16.840.1.113883.6.238";
const NULL_FLAVOR_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor";

/// Everything before `<component><structuredBody>`.
pub(crate) fn write_header(ctx: &mut Ctx<'_>, kind: DocumentType) {
    let chart = ctx.chart;
    let w = &mut ctx.w;
    w.raw("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    w.raw(concat!(
        "<ClinicalDocument xmlns=\"urn:hl7-org:v3\" ",
        "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" ",
        "xmlns:sdtc=\"urn:hl7-org:sdtc\">"
    ));
    w.empty("realmCode", &[("code", "US")]);
    w.empty("typeId", &[("root", "2.16.840.1.113883.1.3"), ("extension", "POCD_HD000040")]);
    // Both the R1.1 ids (root alone) and the R2.1 ones.
    w.template("2.16.840.1.113883.10.20.22.1.1", Some("2015-08-01"));
    w.template(kind.template_id(), Some("2015-08-01"));
    w.empty("id", &[("root", chart.document_id)]);
    let (code, display) = kind.loinc();
    w.fixed("code", None, &super::values::loinc(code, display));
    w.leaf("title", &[], kind.title());
    let now = fhir::ts_of(chart.now);
    w.empty("effectiveTime", &[("value", &now)]);
    w.empty(
        "confidentialityCode",
        &[
            ("code", "N"),
            ("codeSystem", "2.16.840.1.113883.5.25"),
            ("codeSystemName", "Confidentiality"),
            ("displayName", "normal"),
        ],
    );
    w.empty("languageCode", &[("code", "en-US")]);
    w.empty("setId", &[("root", chart.document_id)]);
    w.empty("versionNumber", &[("value", "1")]);
    record_target(ctx);
    author(ctx, &now);
    ctx.w.raw("<custodian><assignedCustodian>");
    custodian_organization(ctx);
    ctx.w.raw("</assignedCustodian></custodian>");
    if kind == DocumentType::Referral {
        in_fulfillment_of(ctx);
    }
    service_event(ctx);
    if kind == DocumentType::Discharge {
        encompassing_encounter(ctx);
    }
}

fn record_target(ctx: &mut Ctx<'_>) {
    let p = ctx.chart.patient;
    let w = &mut ctx.w;
    w.raw("<recordTarget><patientRole>");
    w.entry_id(&fhir::key(p));
    for i in arr(p, "identifier") {
        let (Some(sys), Some(val)) = (s(i, "system"), s(i, "value")) else {
            continue;
        };
        if let Some(root) = fhir::identifier_root(sys) {
            w.empty("id", &[("root", root), ("extension", val)]);
        }
    }
    w.addrs(arr(p, "address"));
    w.telecoms(arr(p, "telecom"));
    w.raw("<patient>");
    w.names(arr(p, "name"));
    let gender = match s(p, "gender") {
        Some("male") => Some(("M", "Male")),
        Some("female") => Some(("F", "Female")),
        _ => None,
    };
    match gender {
        Some((code, display)) => w.empty(
            "administrativeGenderCode",
            &[
                ("code", code),
                ("codeSystem", "2.16.840.1.113883.5.1"),
                ("codeSystemName", "AdministrativeGender"),
                ("displayName", display),
            ],
        ),
        None => w.empty("administrativeGenderCode", &[("nullFlavor", "UNK")]),
    }
    w.ts("birthTime", s(p, "birthDate"));
    if let Some(d) = s(p, "deceasedDateTime") {
        w.empty("sdtc:deceasedInd", &[("value", "true")]);
        w.ts("sdtc:deceasedTime", Some(d));
    } else if let Some(b) = p.get("deceasedBoolean").and_then(Value::as_bool) {
        w.empty("sdtc:deceasedInd", &[("value", if b { "true" } else { "false" })]);
    }
    if let Some(ms) = p.get("maritalStatus") {
        w.cd("maritalStatusCode", None, Some(ms), None);
    }
    let race = omb(p, US_CORE_RACE);
    match race.split_first() {
        Some((first, rest)) => {
            race_code(w, "raceCode", first);
            for r in rest {
                race_code(w, "sdtc:raceCode", r);
            }
        }
        None => w.empty("raceCode", &[("nullFlavor", "UNK")]),
    }
    let eth = omb(p, US_CORE_ETHNICITY);
    match eth.split_first() {
        Some((first, rest)) => {
            race_code(w, "ethnicGroupCode", first);
            for r in rest {
                race_code(w, "sdtc:ethnicGroupCode", r);
            }
        }
        None => w.empty("ethnicGroupCode", &[("nullFlavor", "UNK")]),
    }
    for c in arr(p, "communication") {
        let lang = c.get("language").and_then(fhir::first_code);
        let Some(lang) = lang.filter(|l| !l.chars().any(char::is_whitespace)) else {
            continue;
        };
        w.raw("<languageCommunication>");
        w.empty("languageCode", &[("code", lang)]);
        if let Some(pref) = c.get("preferred").and_then(Value::as_bool) {
            w.empty("preferenceInd", &[("value", if pref { "true" } else { "false" })]);
        }
        w.raw("</languageCommunication>");
    }
    w.raw("</patient></patientRole></recordTarget>");
}

/// The codings of a US Core race or ethnicity extension: OMB categories, then details.
fn omb<'v>(p: &'v Value, url: &str) -> Vec<&'v Value> {
    let mut out = Vec::new();
    for e in arr(p, "extension").iter().filter(|e| s(e, "url") == Some(url)) {
        for part in ["ombCategory", "detailed"] {
            for sub in arr(e, "extension").iter().filter(|x| s(x, "url") == Some(part)) {
                if let Some(c) = sub.get("valueCoding") {
                    out.push(c);
                }
            }
        }
    }
    out
}

fn race_code(w: &mut super::xml::Xml, name: &str, coding: &Value) {
    let code = s(coding, "code");
    match (s(coding, "system"), code) {
        (Some(NULL_FLAVOR_SYSTEM), Some(c)) if matches!(c, "ASKU" | "UNK" | "NI" | "OTH") => {
            w.empty(name, &[("nullFlavor", c)]);
        }
        (_, Some(c)) => {
            let mut attrs = vec![("code", c), ("codeSystem", RACE_OID), ("codeSystemName", "CDC Race and Ethnicity")];
            if let Some(d) = s(coding, "display") {
                attrs.push(("displayName", d));
            }
            w.empty(name, &attrs);
        }
        _ => w.empty(name, &[("nullFlavor", "UNK")]),
    }
}

fn author(ctx: &mut Ctx<'_>, now: &str) {
    let chart = ctx.chart;
    ctx.w.raw("<author>");
    ctx.w.empty("time", &[("value", now)]);
    ctx.w.raw("<assignedAuthor>");
    match chart.author {
        Some(person) => {
            ctx.w.ids(arr(person, "identifier"), &fhir::key(person));
            ctx.w.addrs(arr(person, "address"));
            ctx.w.telecoms(arr(person, "telecom"));
            ctx.w.raw("<assignedPerson>");
            ctx.w.names(arr(person, "name"));
            ctx.w.raw("</assignedPerson>");
        }
        None => {
            let org = chart.custodian;
            ctx.w.entry_id("Device/continuum");
            ctx.w.addrs(arr(org, "address"));
            ctx.w.telecoms(arr(org, "telecom"));
            ctx.w.raw("<assignedAuthoringDevice>");
            ctx.w.leaf("manufacturerModelName", &[], "Continuum");
            ctx.w.leaf("softwareName", &[], "Continuum EHR");
            ctx.w.raw("</assignedAuthoringDevice>");
        }
    }
    ctx.organization("representedOrganization", chart.custodian);
    ctx.w.raw("</assignedAuthor></author>");
}

fn custodian_organization(ctx: &mut Ctx<'_>) {
    let org = ctx.chart.custodian;
    let w = &mut ctx.w;
    w.raw("<representedCustodianOrganization>");
    w.ids(arr(org, "identifier"), &fhir::key(org));
    match s(org, "name") {
        Some(n) => w.leaf("name", &[], n),
        None => w.empty("name", &[("nullFlavor", "NI")]),
    }
    // Exactly one telecom and one addr here.
    let phones = arr(org, "telecom");
    w.telecoms(phones.get(..1).unwrap_or(&[]));
    let addresses = arr(org, "address");
    w.addrs(addresses.get(..1).unwrap_or(&[]));
    w.raw("</representedCustodianOrganization>");
}

/// The referrals a referral note answers, as the orders it fulfils: each referral
/// ServiceRequest's entry id (`ENTRY_ID_ROOT` / `ServiceRequest/id`, how the consult note that
/// comes back names it) and its identifiers with an OID or UUID system.
fn in_fulfillment_of(ctx: &mut Ctx<'_>) {
    let referrals: Vec<Value> = ctx
        .of_type("ServiceRequest")
        .into_iter()
        .filter(|r| super::sections::is_referral(r) && matches!(s(r, "status"), Some("active" | "draft" | "on-hold")))
        .cloned()
        .collect();
    for referral in &referrals {
        let w = &mut ctx.w;
        w.raw("<inFulfillmentOf><order>");
        w.entry_id(&fhir::key(referral));
        for identifier in arr(referral, "identifier") {
            if let (Some(system), Some(value)) = (s(identifier, "system"), s(identifier, "value"))
                && let Some(root) = fhir::identifier_root(system)
            {
                w.empty("id", &[("root", root), ("extension", value)]);
            }
        }
        w.raw("</order></inFulfillmentOf>");
    }
}

fn service_event(ctx: &mut Ctx<'_>) {
    let chart = ctx.chart;
    let low =
        chart.period.0.or(ctx.earliest).map(fhir::ts_of).or_else(|| s(chart.patient, "birthDate").and_then(fhir::ts));
    let high = fhir::ts_of(chart.period.1.unwrap_or(chart.now));
    let w = &mut ctx.w;
    w.raw("<documentationOf><serviceEvent classCode=\"PCPR\"><effectiveTime>");
    match low {
        Some(l) => w.empty("low", &[("value", &l)]),
        None => w.empty("low", &[("nullFlavor", "UNK")]),
    }
    w.empty("high", &[("value", &high)]);
    w.raw("</effectiveTime></serviceEvent></documentationOf>");
}

fn encompassing_encounter(ctx: &mut Ctx<'_>) {
    let enc = ctx.encounter;
    let w = &mut ctx.w;
    w.raw("<componentOf><encompassingEncounter>");
    match enc {
        Some(e) => {
            w.entry_id(&fhir::key(e));
            if let Some(class) = e.get("class") {
                // Encounter.class is a Coding.
                let cc = serde_json::json!({ "coding": [class] });
                w.cd("code", None, Some(&cc), None);
            }
            let period = e.get("period");
            let start = period.and_then(|p| s(p, "start"));
            let end = period.and_then(|p| s(p, "end"));
            w.open("effectiveTime", &[]);
            w.ts("low", start);
            w.ts("high", end);
            w.close("effectiveTime");
            if let Some(d) = e.get("hospitalization").and_then(|h| h.get("dischargeDisposition")) {
                w.cd("dischargeDispositionCode", None, Some(d), None);
            }
            let place = arr(e, "location").iter().find_map(|l| l.get("location").and_then(|r| s(r, "display")));
            if let Some(name) = place {
                w.raw("<location><healthCareFacility><location>");
                w.leaf("name", &[], name);
                w.raw("</location></healthCareFacility></location>");
            }
        }
        None => {
            w.empty("id", &[("nullFlavor", "NI")]);
            w.open("effectiveTime", &[]);
            w.empty("low", &[("nullFlavor", "UNK")]);
            w.empty("high", &[("nullFlavor", "UNK")]);
            w.close("effectiveTime");
        }
    }
    w.raw("</encompassingEncounter></componentOf>");
}
