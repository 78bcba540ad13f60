//! Reading a C-CDA document into FHIR R4 resources.
//!
//! The mapping follows the HL7 "C-CDA on FHIR" guidance and US Core where they say something:
//!
//! - Header: `recordTarget/patientRole` → Patient (identifiers, names, gender, birthDate,
//!   addresses, telecoms, marital status, languages, US Core race and ethnicity); each author →
//!   Practitioner (NPI as `http://hl7.org/fhir/sid/us-npi`) or Device; `representedOrganization`,
//!   custodian, `providerOrganization`, service delivery locations → Organization / Location.
//!   People, devices, organizations and locations are made once per document (same type and
//!   first identifier, else same name).
//! - Sections are recognised by their templateId (R2.1 or R1.1) else their LOINC code:
//!
//!   | Section | Entries | Resources |
//!   |---|---|---|
//!   | Problems (also admission / discharge diagnoses, assessment) | Problem Observation 4.4 (in 4.3, 4.33, 4.34) | Condition |
//!   | Allergies | Allergy-Intolerance Observation 4.7 (in 4.30) | AllergyIntolerance |
//!   | Medications (also admission / discharge) | Medication Activity 4.16 (in 4.35, 4.36) | MedicationStatement (EVN), MedicationRequest (INT) |
//!   | Immunizations | Immunization Activity 4.52 | Immunization |
//!   | Results | Result Organizer 4.1, Result Observation 4.2 | DiagnosticReport, Observation (laboratory) |
//!   | Vital signs | Vital Sign Observation 4.27 | Observation (vital-signs) |
//!   | Procedures | Procedure Activity 4.12, 4.13, 4.14 | Procedure |
//!   | Encounters | Encounter Activity 4.49 | Encounter |
//!   | Social history | every observation | Observation (social-history) |
//!   | Plan of treatment (and a Care Plan's interventions) | planned entries; Goal 4.121 | ServiceRequest (intent plan), MedicationRequest (4.42, intent plan), CommunicationRequest (Instruction 4.20), Goal |
//!   | Goals | Goal Observation 4.121 | Goal |
//!   | Health concerns | Health Concern Act 4.132 | Condition (health-concern) |
//!   | Functional / mental status | every observation, and those of organizers | Observation (survey) |
//!
//! - An Instruction (4.20) is something to tell the patient, not a service to perform: a
//!   CommunicationRequest whose payload is its narrative (else its code's text) and whose
//!   category is its code. Nutrition Recommendations (4.130) and Planned Intervention Acts
//!   (4.146) are planned acts: ServiceRequests.
//! - Every other entry, and every entry without what its resource needs (a code, a date…),
//!   becomes a [`Warning`]; sections without entries make nothing.
//! - Datatypes: code system OIDs become FHIR system URIs (`urn:oid:` when not known); a code
//!   keeps all its translations as codings and its original text (narrative references
//!   followed) as `text`; a time without a zone offset keeps only its date (FHIR requires the
//!   offset); `administrativeGenderCode` UN (undifferentiated) is `other`, as in FHIR's v3
//!   ConceptMap; each entry's narrative link becomes the `narrativeLink` extension.

mod clinical;
mod data;
mod party;
mod plan;
#[cfg(test)]
mod tests;
mod xml;

use crate::{CDA_NS, Error};
use data::identifier;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use xml::{El, Narrative, attr, child, children, elements, has_template, template_roots};

/// The document templates read (C-CDA R2.1, and R1.1 as far as their templates allow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentTemplate {
    /// Continuity of Care Document.
    Ccd,
    /// Discharge Summary.
    DischargeSummary,
    /// Referral Note.
    ReferralNote,
    /// Consultation Note.
    ConsultationNote,
    /// History and Physical.
    HistoryAndPhysical,
    /// Progress Note.
    ProgressNote,
    /// Transfer Summary.
    TransferSummary,
    /// Operative Note.
    OperativeNote,
    /// Procedure Note.
    ProcedureNote,
    /// Care Plan.
    CarePlan,
    /// A ClinicalDocument of no template above (US Realm Header only).
    Other,
}

/// The sections whose entries become resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SectionKind {
    /// Problems (and discharge / admission diagnoses).
    Problems,
    /// Allergies and intolerances.
    Allergies,
    /// Medications (and admission / discharge medications).
    Medications,
    /// Immunizations.
    Immunizations,
    /// Results.
    Results,
    /// Vital signs.
    VitalSigns,
    /// Procedures.
    Procedures,
    /// Encounters.
    Encounters,
    /// Social history.
    SocialHistory,
    /// Plan of treatment (plan of care).
    PlanOfTreatment,
    /// Goals.
    Goals,
    /// Health concerns.
    HealthConcerns,
    /// Functional status.
    FunctionalStatus,
    /// Mental status.
    MentalStatus,
}

impl SectionKind {
    /// The section's name in reports (`problems`, `vital-signs`…).
    pub fn name(self) -> &'static str {
        match self {
            SectionKind::Problems => "problems",
            SectionKind::Allergies => "allergies",
            SectionKind::Medications => "medications",
            SectionKind::Immunizations => "immunizations",
            SectionKind::Results => "results",
            SectionKind::VitalSigns => "vital-signs",
            SectionKind::Procedures => "procedures",
            SectionKind::Encounters => "encounters",
            SectionKind::SocialHistory => "social-history",
            SectionKind::PlanOfTreatment => "plan-of-treatment",
            SectionKind::Goals => "goals",
            SectionKind::HealthConcerns => "health-concerns",
            SectionKind::FunctionalStatus => "functional-status",
            SectionKind::MentalStatus => "mental-status",
        }
    }
}

/// One resource made from the document.
#[derive(Debug, Clone)]
pub struct Mapped {
    /// Its `urn:uuid:` name inside the document's resources; references between them use it.
    pub full_url: String,
    /// The FHIR R4 resource, without `id`.
    pub resource: Value,
    /// The section whose entry it came from; `None` for the header's people and organizations
    /// and for those named by entries (authors, performers).
    pub section: Option<SectionKind>,
}

/// An entry that could not be mapped (never dropped silently).
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    /// Where: the section's LOINC code or title, and the entry's position in it.
    pub location: String,
    /// Why, without the document's content.
    pub message: String,
}

/// A document read.
#[derive(Debug, Clone)]
pub struct Document {
    /// Its template.
    pub template: DocumentTemplate,
    /// Whether it declares the R2.1 templates (extension `2015-08-01`); `false`: R1.1.
    pub r2: bool,
    /// `ClinicalDocument.id` as a FHIR Identifier.
    pub id: Value,
    /// `ClinicalDocument.setId` as a FHIR Identifier, when present.
    pub set_id: Option<Value>,
    /// The orders the document fulfils (`inFulfillmentOf/order/id`) as FHIR Identifiers: a
    /// consult note names the referral it answers.
    pub orders: Vec<Value>,
    /// `ClinicalDocument.versionNumber`, when present.
    pub version_number: Option<u32>,
    /// `ClinicalDocument.code` as a FHIR CodeableConcept (LOINC).
    pub code: Value,
    /// `ClinicalDocument.title`.
    pub title: Option<String>,
    /// `ClinicalDocument.effectiveTime` as a FHIR dateTime.
    pub effective_time: Option<String>,
    /// The `urn:uuid:` name of the patient among [`Document::resources`].
    pub patient_url: String,
    /// The `urn:uuid:` names of the document's authors (Practitioner or Device).
    pub author_urls: Vec<String>,
    /// The `urn:uuid:` name of the organization the authors act for, when given.
    pub author_organization_url: Option<String>,
    /// The `urn:uuid:` name of the custodian organization.
    pub custodian_url: Option<String>,
    /// Every resource made: the patient, people and organizations, and the sections' entries.
    pub resources: Vec<Mapped>,
    /// Entries not mapped, and why.
    pub warnings: Vec<Warning>,
}

/// The C-CDA template OID prefix of entries (`2.16.840.1.113883.10.20.22.4.`).
pub(crate) const ENTRY: &str = "2.16.840.1.113883.10.20.22.4.";

/// How deep subsections are read (sections within sections); deeper ones become a warning.
pub(crate) const MAX_SECTION_DEPTH: usize = 8;

/// Reads a C-CDA document. Refused as a whole ([`Error`]) when it is too large, not
/// well-formed, not a `ClinicalDocument`, or has no patient; entries that cannot be mapped
/// become [`Warning`]s.
///
/// Never panics. Each resource made references the patient by its `urn:uuid:` name
/// ([`Document::patient_url`]); names are made deterministically, in document order.
pub fn read(xml: &[u8]) -> Result<Document, Error> {
    if xml.len() > crate::MAX_DOCUMENT_BYTES {
        return Err(Error::TooLarge { limit: crate::MAX_DOCUMENT_BYTES });
    }
    let text =
        std::str::from_utf8(xml).map_err(|e| Error::NotXml(format!("not UTF-8 (at byte {})", e.valid_up_to())))?;
    // No DTD (the default, kept explicit): entity declarations are refused, never expanded.
    let options = roxmltree::ParsingOptions { allow_dtd: false, ..roxmltree::ParsingOptions::default() };
    let doc = roxmltree::Document::parse_with_options(text, options).map_err(|e| Error::NotXml(xml_error(&e)))?;
    let root = doc.root_element();
    if root.tag_name().name() != "ClinicalDocument" || root.tag_name().namespace() != Some(CDA_NS) {
        return Err(Error::NotClinicalDocument);
    }
    Reader::default().document(root)
}

/// The reason of a parse error, without any of the document's content.
fn xml_error(error: &roxmltree::Error) -> String {
    let pos = error.pos();
    let what = match error {
        roxmltree::Error::DtdDetected => return "a DTD (entity declarations) is not accepted".into(),
        roxmltree::Error::NoRootNode => return "no root element".into(),
        roxmltree::Error::UnclosedRootNode => "truncated (the root element is not closed)",
        roxmltree::Error::UnexpectedCloseTag(..) => "mismatched closing tag",
        roxmltree::Error::UnknownEntityReference(..) => "unknown entity reference",
        roxmltree::Error::EntityReferenceLoop(..) => "entity reference loop",
        roxmltree::Error::UnknownNamespace(..) => "unknown namespace prefix",
        roxmltree::Error::DuplicatedAttribute(..) => "duplicated attribute",
        _ => "malformed",
    };
    format!("{what} at line {}, column {}", pos.row, pos.col)
}

/// A section being read: what it is, where it is, and its narrative's ids.
pub(crate) struct Section<'a> {
    /// Its kind; `None`: a section whose entries are not mapped.
    pub(crate) kind: Option<SectionKind>,
    /// Its LOINC code, else its title, else its templateId.
    pub(crate) location: String,
    /// The narrative's `ID`s.
    pub(crate) narrative: Narrative<'a>,
    /// Hospital admission / discharge diagnoses (Condition category encounter-diagnosis).
    pub(crate) diagnoses: bool,
}

/// The state of one read: resources made so far, warnings, and the people and organizations
/// already made (to name each once).
#[derive(Default)]
pub(crate) struct Reader {
    /// The resources made.
    pub(crate) resources: Vec<Mapped>,
    /// The warnings.
    pub(crate) warnings: Vec<Warning>,
    /// How many `urn:uuid:` names were given.
    counter: u64,
    /// The patient's name.
    pub(crate) patient_url: String,
    /// People, devices, organizations and locations made, by identity (type + identifier or name).
    pub(crate) parties: HashMap<String, String>,
    /// The resource types of the resources made outside sections (by name).
    types: HashMap<String, String>,
}

impl Reader {
    /// The next `urn:uuid:` name.
    fn next_url(&mut self) -> String {
        self.counter += 1;
        format!("urn:uuid:00000000-0000-4000-8000-{:012x}", self.counter)
    }

    /// Adds a resource; answers its name.
    pub(crate) fn add(&mut self, resource: Map<String, Value>, section: Option<SectionKind>) -> String {
        let full_url = self.next_url();
        if section.is_none()
            && let Some(t) = resource.get("resourceType").and_then(Value::as_str)
        {
            self.types.insert(full_url.clone(), t.to_owned());
        }
        self.resources.push(Mapped { full_url: full_url.clone(), resource: Value::Object(resource), section });
        full_url
    }

    /// Adds a warning about entry `index` (0-based) of `section`.
    pub(crate) fn warn(&mut self, section: &Section<'_>, index: usize, message: impl Into<String>) {
        self.warnings
            .push(Warning { location: format!("{} entry {}", section.location, index + 1), message: message.into() });
    }

    /// Whether the resource named `url` is of one of `types` (to reference only what FHIR allows).
    pub(crate) fn is_a(&self, url: &str, types: &[&str]) -> bool {
        self.types.get(url).is_some_and(|t| types.contains(&t.as_str()))
    }

    /// The references to those of `urls` whose resources are of one of `types`.
    pub(crate) fn refs(&self, urls: Vec<String>, types: &[&str]) -> Vec<String> {
        urls.into_iter().filter(|u| self.is_a(u, types)).collect()
    }

    /// The reference to the patient.
    pub(crate) fn patient_ref(&self) -> Value {
        json!({ "reference": self.patient_url })
    }

    /// Reads the whole document.
    fn document(mut self, root: El<'_>) -> Result<Document, Error> {
        let patient_role = child(root, "recordTarget")
            .and_then(|r| child(r, "patientRole"))
            .ok_or(Error::Incomplete("a patient (recordTarget/patientRole)"))?;
        let id = child(root, "id").and_then(identifier).ok_or(Error::Incomplete("a document id"))?;
        let empty = Narrative::default();
        let code =
            child(root, "code").and_then(|c| data::concept(c, &empty)).ok_or(Error::Incomplete("a document code"))?;
        self.patient_url = self.patient(patient_role);
        let mut author_urls = Vec::new();
        let mut author_organization_url = None;
        for assigned in children(root, "author").filter_map(|a| child(a, "assignedAuthor")) {
            if let Some(url) = self.assigned(assigned)
                && !author_urls.contains(&url)
            {
                author_urls.push(url);
            }
            if author_organization_url.is_none() {
                author_organization_url = child(assigned, "representedOrganization").and_then(|o| self.organization(o));
            }
        }
        let custodian_url = path_to(root, &["custodian", "assignedCustodian", "representedCustodianOrganization"])
            .and_then(|o| self.organization(o));
        if let Some(body) = path_to(root, &["component", "structuredBody"]) {
            for component in children(body, "component") {
                if let Some(section) = child(component, "section") {
                    self.section(section, 0);
                }
            }
        }
        let set_id = child(root, "setId").and_then(identifier);
        let orders: Vec<Value> = children(root, "inFulfillmentOf")
            .filter_map(|f| child(f, "order"))
            .flat_map(|order| children(order, "id").filter_map(identifier).collect::<Vec<_>>())
            .collect();
        let version_number = child(root, "versionNumber").and_then(|v| attr(v, "value")).and_then(|v| v.parse().ok());
        let title = child(root, "title").and_then(xml::text_of);
        let effective_time = child(root, "effectiveTime").and_then(data::ts_of);
        Ok(Document {
            template: document_template(root),
            r2: root
                .descendants()
                .filter(|d| xml::is(*d, "templateId"))
                .any(|t| matches!(attr(t, "extension"), Some("2015-08-01" | "2014-06-09"))),
            id,
            set_id,
            orders,
            version_number,
            code,
            title,
            effective_time,
            patient_url: self.patient_url,
            author_urls,
            author_organization_url,
            custodian_url,
            resources: self.resources,
            warnings: self.warnings,
        })
    }

    /// Reads a section (and its subsections, up to [`MAX_SECTION_DEPTH`] deep).
    fn section(&mut self, node: El<'_>, depth: usize) {
        let (kind, diagnoses) = section_kind(node);
        let location = child(node, "code")
            .and_then(|c| attr(c, "code"))
            .map(str::to_owned)
            .or_else(|| child(node, "title").and_then(xml::text_of))
            .or_else(|| template_roots(node).next().map(str::to_owned))
            .unwrap_or_else(|| "a section".into());
        let section = Section { kind, location, narrative: Narrative::of(node), diagnoses };
        for (index, entry) in children(node, "entry").enumerate() {
            let Some(act) = elements(entry).next() else {
                self.warn(&section, index, "an entry without an act");
                continue;
            };
            self.entry(&section, index, act);
        }
        for component in children(node, "component") {
            if let Some(sub) = child(component, "section") {
                if depth + 1 >= MAX_SECTION_DEPTH {
                    self.warnings.push(Warning {
                        location: section.location.clone(),
                        message: format!("subsections nested more than {MAX_SECTION_DEPTH} deep are not read"),
                    });
                    break;
                }
                self.section(sub, depth + 1);
            }
        }
    }

    /// Maps one entry of a section.
    fn entry(&mut self, section: &Section<'_>, index: usize, act: El<'_>) {
        let is_entry = |n: &str| has_template(act, &[&format!("{ENTRY}{n}")]);
        use SectionKind as K;
        match section.kind {
            Some(K::Problems) if is_entry("3") || is_entry("33") || is_entry("34") || is_entry("4") => {
                self.problems(section, index, act)
            }
            Some(K::Allergies) if is_entry("30") || is_entry("7") => self.allergies(section, index, act),
            Some(K::Medications) if is_entry("16") || is_entry("35") || is_entry("36") => {
                self.medications(section, index, act)
            }
            Some(K::Immunizations) if is_entry("52") => self.immunization(section, index, act),
            Some(K::Results) if is_entry("1") || is_entry("2") => self.results(section, index, act),
            Some(K::VitalSigns) if is_entry("26") || is_entry("27") => self.vital_signs(section, index, act),
            Some(K::Procedures) if is_entry("12") || is_entry("13") || is_entry("14") => {
                self.procedure(section, index, act)
            }
            Some(K::Encounters) if is_entry("49") => self.encounter(section, index, act),
            Some(K::SocialHistory) if xml::is(act, "observation") => self.plain_observation(section, index, act),
            Some(K::PlanOfTreatment | K::Goals) if is_entry("121") => self.goal(section, index, act),
            Some(K::PlanOfTreatment) if plan::is_planned(act) => self.planned(section, index, act),
            Some(K::HealthConcerns) if is_entry("132") => self.health_concern(section, index, act),
            Some(K::FunctionalStatus | K::MentalStatus) if xml::is(act, "observation") => {
                self.plain_observation(section, index, act)
            }
            Some(K::FunctionalStatus | K::MentalStatus) if xml::is(act, "organizer") => {
                let mut any = false;
                for obs in self.components(section, index, act) {
                    any = true;
                    self.plain_observation(section, index, obs);
                }
                if !any {
                    self.warn(section, index, "an organizer without observations");
                }
            }
            _ => {
                let what = match template_roots(act).find(|r| r.starts_with(ENTRY)) {
                    Some(root) => format!("{} ({root})", template_name(root)),
                    None => format!("an entry ({}) of no known template", act.tag_name().name()),
                };
                let message = match section.kind {
                    None => format!("{what} is not mapped: no resources are made from this section's entries"),
                    Some(kind) => format!("{what} is not mapped in a {kind:?} section"),
                };
                self.warn(section, index, message);
            }
        }
    }

    /// A resource's first elements: `resourceType`, the narrative link, `identifier`s.
    pub(crate) fn base(&self, resource_type: &str, act: El<'_>) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("resourceType".into(), Value::String(resource_type.into()));
        if let Some(link) = child(act, "text").and_then(|t| child(t, "reference")).and_then(|r| attr(r, "value"))
            && link.starts_with('#')
            && link.len() > 1
            && !link.contains(char::is_whitespace)
        {
            out.insert(
                "extension".into(),
                json!([{"url": "http://hl7.org/fhir/StructureDefinition/narrativeLink", "valueUrl": link}]),
            );
        }
        data::put_list(&mut out, "identifier", data::identifiers(act));
        out
    }

    /// The first author of `act` (its party's name) and the time of authorship.
    pub(crate) fn author(&mut self, act: El<'_>) -> (Option<String>, Option<String>) {
        let Some(author) = child(act, "author") else { return (None, None) };
        let time = child(author, "time").and_then(data::ts_of);
        let who = child(author, "assignedAuthor").and_then(|a| self.assigned(a));
        (who, time)
    }

    /// The parties of `act`'s performers.
    pub(crate) fn performers(&mut self, act: El<'_>) -> Vec<String> {
        let mut out = Vec::new();
        for assigned in children(act, "performer").filter_map(|p| child(p, "assignedEntity")) {
            if let Some(url) = self.assigned(assigned)
                && !out.contains(&url)
            {
                out.push(url);
            }
        }
        out
    }
}

/// Follows a path of CDA children.
fn path_to<'a>(node: El<'a>, names: &[&str]) -> Option<El<'a>> {
    xml::path(node, names)
}

/// The document template, from the root's templateIds.
fn document_template(root: El<'_>) -> DocumentTemplate {
    const P: &str = "2.16.840.1.113883.10.20.22.1.";
    let roots: Vec<&str> = template_roots(root).collect();
    let table = [
        ("2", DocumentTemplate::Ccd),
        ("8", DocumentTemplate::DischargeSummary),
        ("14", DocumentTemplate::ReferralNote),
        ("4", DocumentTemplate::ConsultationNote),
        ("3", DocumentTemplate::HistoryAndPhysical),
        ("9", DocumentTemplate::ProgressNote),
        ("13", DocumentTemplate::TransferSummary),
        ("7", DocumentTemplate::OperativeNote),
        ("6", DocumentTemplate::ProcedureNote),
        ("15", DocumentTemplate::CarePlan),
    ];
    for (suffix, template) in table {
        if roots.iter().any(|r| r.strip_prefix(P) == Some(suffix)) {
            return template;
        }
    }
    DocumentTemplate::Other
}

/// The kind of a section, by its templateId (R2.1 or R1.1), else its LOINC code; and whether
/// it holds admission / discharge diagnoses.
fn section_kind(node: El<'_>) -> (Option<SectionKind>, bool) {
    use SectionKind as K;
    const P: &str = "2.16.840.1.113883.10.20.22.2.";
    for root in template_roots(node) {
        let kind = match root.strip_prefix(P) {
            Some("5" | "5.1" | "9" | "8") => (K::Problems, false),
            Some("43" | "24") => (K::Problems, true),
            Some("6" | "6.1") => (K::Allergies, false),
            Some("1" | "1.1" | "11" | "11.1" | "44") => (K::Medications, false),
            Some("2" | "2.1") => (K::Immunizations, false),
            Some("3" | "3.1") => (K::Results, false),
            Some("4" | "4.1") => (K::VitalSigns, false),
            Some("7" | "7.1") => (K::Procedures, false),
            Some("22" | "22.1") => (K::Encounters, false),
            Some("17") => (K::SocialHistory, false),
            Some("10") => (K::PlanOfTreatment, false),
            Some("60") => (K::Goals, false),
            Some("58") => (K::HealthConcerns, false),
            Some("14") => (K::FunctionalStatus, false),
            Some("56") => (K::MentalStatus, false),
            _ if root == "2.16.840.1.113883.10.20.21.2.3" => (K::PlanOfTreatment, false),
            _ => continue,
        };
        return (Some(kind.0), kind.1);
    }
    let code = child(node, "code").and_then(|c| attr(c, "code")).unwrap_or("");
    let kind = match code {
        "11450-4" | "51847-2" | "51848-0" => (K::Problems, false),
        "46241-6" | "11535-2" | "78375-3" => (K::Problems, true),
        "48765-2" => (K::Allergies, false),
        "10160-0" | "10183-2" | "75311-1" | "42346-7" => (K::Medications, false),
        "11369-6" => (K::Immunizations, false),
        "30954-2" => (K::Results, false),
        "8716-3" => (K::VitalSigns, false),
        "47519-4" => (K::Procedures, false),
        "46240-8" => (K::Encounters, false),
        "29762-2" => (K::SocialHistory, false),
        "18776-5" | "62387-6" => (K::PlanOfTreatment, false),
        "61146-7" => (K::Goals, false),
        "75310-3" => (K::HealthConcerns, false),
        "47420-5" => (K::FunctionalStatus, false),
        "10190-7" => (K::MentalStatus, false),
        _ => return (None, false),
    };
    (Some(kind.0), kind.1)
}

/// A readable name of an entry template (for warnings).
fn template_name(root: &str) -> &'static str {
    match root.strip_prefix(ENTRY).unwrap_or("") {
        "108" => "Advance Directive Organizer",
        "48" => "Advance Directive Observation",
        "45" => "Family History Organizer",
        "46" => "Family History Observation",
        "60" => "Coverage Activity",
        "61" => "Policy Activity",
        "135" => "Medical Equipment Organizer",
        "50" => "Non-Medicinal Supply Activity",
        "14" => "Procedure Activity Procedure",
        "124" => "Nutrition Assessment",
        "114" => "Wound Observation",
        "140" => "Patient Referral Act",
        "141" => "Handoff Communication Participants",
        "136" => "Risk Concern Act",
        "131" => "Intervention Act",
        "144" => "Outcome Observation",
        "3" => "Problem Concern Act",
        "4" => "Problem Observation",
        "30" => "Allergy Concern Act",
        "16" => "Medication Activity",
        "52" => "Immunization Activity",
        "1" => "Result Organizer",
        "2" => "Result Observation",
        "26" => "Vital Signs Organizer",
        "27" => "Vital Sign Observation",
        "49" => "Encounter Activity",
        "121" => "Goal Observation",
        "132" => "Health Concern Act",
        "38" => "Social History Observation",
        "78" => "Smoking Status Observation",
        "64" => "Comment Activity",
        "69" => "Assessment Scale Observation",
        "31" => "Age Observation",
        "122" => "Entry Reference",
        _ => "an entry",
    }
}
