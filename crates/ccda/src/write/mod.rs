//! Writing a C-CDA R2.1 document from a patient's FHIR R4 resources.
//!
//! The document is one `String` written front to back (no DOM): the US Realm Header, then
//! the sections the document type requires, each with its narrative table and coded entries
//! pointing into it (`text/reference` at the row, `originalText/reference` at its first
//! cell). Resources are indexed by `Type/id` once; every entry's id is [`ENTRY_ID_ROOT`]
//! with the extension `Type/id` of the resource it comes from, so writing the same chart
//! twice gives the same bytes.
//!
//! What each [`DocumentType`] holds (a required section without data is written with
//! `nullFlavor="NI"` and a "No … recorded." narrative; an optional one is left out):
//!
//! | Section (template)                          | CCD      | Referral | Discharge |
//! |---------------------------------------------|----------|----------|-----------|
//! | Reason for Referral (IHE …3.1)              |          | required |           |
//! | Allergies and Intolerances (2.6.1)          | required | required | required  |
//! | Hospital Course (IHE …3.5)                  |          |          | required  |
//! | Discharge Diagnosis (2.24)                  |          |          | required  |
//! | Discharge Medications (2.11.1)              |          |          | required  |
//! | Medications (2.1.1)                         | required | required |           |
//! | Problems (2.5.1)                            | required | required | with data |
//! | Procedures (2.7.1)                          | with data| with data| with data |
//! | Results (2.3.1)                             | required | with data| with data |
//! | Vital Signs (2.4.1)                         | required | with data| with data |
//! | Social History (2.17)                       | required | with data|           |
//! | Immunizations (2.2.1)                       | with data| with data|           |
//! | Encounters (2.22.1)                         | with data|          |           |
//! | Plan of Treatment (2.10)                    | with data| required | required  |
//!
//! Codes: the first coding of a known system (LOINC, SNOMED CT, RxNorm, CVX, ICD-10-CM,
//! NDC, CPT, UCUM, HL7 v3 systems, `urn:oid:`) is the code, the other known ones its
//! translations; a concept without any is written `nullFlavor="OTH"` with its text only.
//! `Chart::period` keeps the dated resources that overlap it (an open one, such as an
//! active problem, overlaps every period after its start); undated ones are kept.

mod entries;
mod fhir;
mod header;
mod sections;
mod values;
mod xml;

use crate::Error;
use serde_json::Value;
use std::collections::HashMap;
use time::OffsetDateTime;

/// The documents written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentType {
    /// Continuity of Care Document (LOINC 34133-9).
    Ccd,
    /// Referral Note (LOINC 57133-1).
    Referral,
    /// Discharge Summary (LOINC 18842-5).
    Discharge,
}

impl DocumentType {
    /// The document template's id (C-CDA R2.1, extension `2015-08-01`).
    pub fn template_id(self) -> &'static str {
        match self {
            Self::Ccd => "2.16.840.1.113883.10.20.22.1.2",
            Self::Referral => "2.16.840.1.113883.10.20.22.1.14",
            Self::Discharge => "2.16.840.1.113883.10.20.22.1.8",
        }
    }

    /// The LOINC document type code and its display name.
    pub fn loinc(self) -> (&'static str, &'static str) {
        match self {
            Self::Ccd => ("34133-9", "Summary of episode note"),
            Self::Referral => ("57133-1", "Referral note"),
            Self::Discharge => ("18842-5", "Discharge summary"),
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Ccd => "Continuity of Care Document",
            Self::Referral => "Referral Note",
            Self::Discharge => "Discharge Summary",
        }
    }
}

/// The root of every entry id written: a UUID fixed for Continuum installations, whose
/// extension is the `Type/id` of the FHIR resource the entry comes from.
pub const ENTRY_ID_ROOT: &str = "d9c11297-f72a-4291-87e5-92fac2283403";

/// What a document is made from.
#[derive(Debug, Clone)]
pub struct Chart<'a> {
    /// The patient (a FHIR Patient with `id`).
    pub patient: &'a Value,
    /// The patient's resources (their compartment, and the Medications, Practitioners and
    /// Organizations these reference), each with `id`.
    pub resources: &'a [Value],
    /// The organization that makes and keeps the document (a FHIR Organization).
    pub custodian: &'a Value,
    /// The document's author: the person asking for it (a FHIR Practitioner), else the
    /// custodian as an authoring system.
    pub author: Option<&'a Value>,
    /// The document's id (a UUID).
    pub document_id: &'a str,
    /// When it is made.
    pub now: OffsetDateTime,
    /// Only what happened in this period (`start`, `end`), when given.
    pub period: (Option<OffsetDateTime>, Option<OffsetDateTime>),
}

/// Writes the document of `kind` for `chart`.
///
/// Fails only when the chart cannot make a document at all: a patient that is not a
/// FHIR Patient, or a `document_id` that is neither a UUID nor an OID.
pub fn write(chart: &Chart<'_>, kind: DocumentType) -> Result<String, Error> {
    if fhir::s(chart.patient, "resourceType") != Some("Patient") {
        return Err(Error::CannotWrite("the patient is not a FHIR Patient".into()));
    }
    if !(fhir::is_uuid(chart.document_id) || fhir::is_oid(chart.document_id)) {
        return Err(Error::CannotWrite("the document id is neither a UUID nor an OID".into()));
    }
    let mut ctx = Ctx::new(chart);
    if kind == DocumentType::Discharge {
        ctx.encounter = ctx.discharge_encounter();
    }
    header::write_header(&mut ctx, kind);
    ctx.w.raw("<component><structuredBody>");
    sections::write_sections(&mut ctx, kind);
    ctx.w.raw("</structuredBody></component></ClinicalDocument>\n");
    Ok(ctx.w.out)
}

/// What the writing of one document shares.
pub(crate) struct Ctx<'a> {
    /// The chart written.
    pub(crate) chart: &'a Chart<'a>,
    /// Its resources by `Type/id`.
    pub(crate) index: fhir::Index<'a>,
    /// Its resources in the period, by type, in the order given.
    by_type: HashMap<&'a str, Vec<&'a Value>>,
    /// The document.
    pub(crate) w: xml::Xml,
    /// The earliest start among the resources written about (for the service event).
    pub(crate) earliest: Option<OffsetDateTime>,
    /// The encounter a discharge summary is about.
    pub(crate) encounter: Option<&'a Value>,
}

impl<'a> Ctx<'a> {
    fn new(chart: &'a Chart<'a>) -> Self {
        let mut by_type: HashMap<&'a str, Vec<&'a Value>> = HashMap::new();
        let mut earliest: Option<OffsetDateTime> = None;
        for r in chart.resources {
            let Some(ty) = fhir::s(r, "resourceType") else {
                continue;
            };
            let (start, end) = fhir::span(r);
            let start_t = start.and_then(fhir::instant);
            let end_t = end.and_then(fhir::instant);
            // An open record (no end) still counts in any period after its start.
            if let (Some(from), Some(t)) = (chart.period.0, end_t)
                && t < from
            {
                continue;
            }
            if let (Some(to), Some(t)) = (chart.period.1, start_t)
                && t > to
            {
                continue;
            }
            if let Some(t) = start_t
                && earliest.is_none_or(|e| t < e)
            {
                earliest = Some(t);
            }
            by_type.entry(ty).or_default().push(r);
        }
        Self {
            chart,
            index: fhir::Index::new(chart.resources),
            by_type,
            w: xml::Xml::with_capacity(64 * 1024 + chart.resources.len() * 1024),
            earliest,
            encounter: None,
        }
    }

    /// The latest inpatient encounter in the period, else the latest encounter.
    fn discharge_encounter(&self) -> Option<&'a Value> {
        let encounters = self.of_type("Encounter");
        let start = |e: &Value| e.get("period").and_then(|p| fhir::s(p, "start")).and_then(fhir::instant);
        let latest = |inpatient_only: bool| {
            let mut best: Option<(&'a Value, Option<OffsetDateTime>)> = None;
            for e in &encounters {
                let class = e.get("class").and_then(|c| fhir::s(c, "code"));
                if inpatient_only && !matches!(class, Some("IMP" | "ACUTE" | "NONAC")) {
                    continue;
                }
                let t = start(e);
                if best.is_none_or(|(_, bt)| t >= bt) {
                    best = Some((e, t));
                }
            }
            best.map(|(e, _)| e)
        };
        latest(true).or_else(|| latest(false))
    }

    /// The resources of type `ty` in the period, in the order given.
    pub(crate) fn of_type(&self, ty: &str) -> Vec<&'a Value> {
        self.by_type.get(ty).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    #[test]
    fn the_period_keeps_what_overlaps_it() {
        let patient = json!({"resourceType": "Patient", "id": "p"});
        let resources = vec![
            json!({"resourceType": "Condition", "id": "open", "onsetDateTime": "2010-01-01"}),
            json!({"resourceType": "Condition", "id": "over", "onsetDateTime": "2010-01-01",
                   "abatementDateTime": "2011-01-01"}),
            json!({"resourceType": "Observation", "id": "old", "effectiveDateTime": "2010-05-05T10:00:00Z"}),
            json!({"resourceType": "Observation", "id": "in", "effectiveDateTime": "2020-05-05T10:00:00+02:00"}),
            json!({"resourceType": "Observation", "id": "later", "effectiveDateTime": "2022-05-05"}),
            json!({"resourceType": "AllergyIntolerance", "id": "undated"}),
        ];
        let custodian = json!({"resourceType": "Organization"});
        let chart = Chart {
            patient: &patient,
            resources: &resources,
            custodian: &custodian,
            author: None,
            document_id: "1.2.3",
            now: datetime!(2026-01-01 0:00 UTC),
            period: (Some(datetime!(2020-01-01 0:00 UTC)), Some(datetime!(2021-01-01 0:00 UTC))),
        };
        let ctx = Ctx::new(&chart);
        let ids = |ty: &str| -> Vec<&str> { ctx.of_type(ty).iter().filter_map(|r| fhir::s(r, "id")).collect() };
        assert_eq!(ids("Condition"), ["open"]);
        assert_eq!(ids("Observation"), ["in"]);
        assert_eq!(ids("AllergyIntolerance"), ["undated"]);
    }
}
