//! Counting the coded entries of a C-CDA document's sections from its XML alone, independently
//! of the `ccda` reader: how many resources each section's entries should make. The reader's
//! tests and the exchange service's tests compare what they made with it. Sections are named
//! as the exchange service reports them (`problems`, `vital-signs`…).

use roxmltree::Node;
use std::collections::HashMap;
use std::path::PathBuf;

/// The eight HL7 C-CDA R2.1 examples in `testdata/ccda/hl7-c-cda-examples/`.
pub const EXAMPLES: [&str; 8] = [
    "CCD_1",
    "CCD_2",
    "Care_Plan",
    "Consultation_Note",
    "Discharge_Summary",
    "History_and_Physical",
    "Progress_Note",
    "Referral_Note",
];

/// The bytes of the example `name` (one of [`EXAMPLES`]).
pub fn example(name: &str) -> Vec<u8> {
    let path: PathBuf =
        [env!("CARGO_MANIFEST_DIR"), "..", "..", "testdata", "ccda", "hl7-c-cda-examples", &format!("{name}.xml")]
            .iter()
            .collect();
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The section kinds counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum K {
    Problems,
    Allergies,
    Medications,
    Immunizations,
    Results,
    VitalSigns,
    Procedures,
    Encounters,
    SocialHistory,
    PlanOfTreatment,
    Goals,
    HealthConcerns,
    FunctionalStatus,
    MentalStatus,
}

impl K {
    fn name(self) -> &'static str {
        match self {
            K::Problems => "problems",
            K::Allergies => "allergies",
            K::Medications => "medications",
            K::Immunizations => "immunizations",
            K::Results => "results",
            K::VitalSigns => "vital-signs",
            K::Procedures => "procedures",
            K::Encounters => "encounters",
            K::SocialHistory => "social-history",
            K::PlanOfTreatment => "plan-of-treatment",
            K::Goals => "goals",
            K::HealthConcerns => "health-concerns",
            K::FunctionalStatus => "functional-status",
            K::MentalStatus => "mental-status",
        }
    }
}

const V3: &str = "urn:hl7-org:v3";
const SECTION: &str = "2.16.840.1.113883.10.20.22.2.";
const ENTRY: &str = "2.16.840.1.113883.10.20.22.4.";

/// Whether `n` is the CDA element `name`.
pub fn is(n: Node<'_, '_>, name: &str) -> bool {
    n.is_element() && n.has_tag_name((V3, name))
}

/// The CDA child elements `name` of `n`.
pub fn kids<'a, 'i>(n: Node<'a, 'i>, name: &'static str) -> impl Iterator<Item = Node<'a, 'i>> {
    n.children().filter(move |c| is(*c, name))
}

/// The element children of `n` (whatever their names).
fn elements<'a, 'i>(n: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    n.children().filter(Node::is_element)
}

/// Whether `n` declares the entry template `2.16.840.1.113883.10.20.22.4.{suffix}`.
pub fn tmpl(n: Node<'_, '_>, suffix: &str) -> bool {
    let want = format!("{ENTRY}{suffix}");
    kids(n, "templateId").any(|t| t.attribute("root") == Some(want.as_str()))
}

/// The acts of `n`'s `entryRelationship`s.
fn inner<'a, 'i>(n: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    kids(n, "entryRelationship").flat_map(elements)
}

/// The observations of `n`'s `component`s.
fn components<'a, 'i>(n: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    kids(n, "component").flat_map(|c| kids(c, "observation"))
}

/// A section's kind, by its template roots (R2.1 or R1.1) else its LOINC code.
fn section_kind(section: Node<'_, '_>) -> Option<K> {
    for t in kids(section, "templateId") {
        let root = t.attribute("root").unwrap_or("");
        if root == "2.16.840.1.113883.10.20.21.2.3" {
            return Some(K::PlanOfTreatment);
        }
        let Some(suffix) = root.strip_prefix(SECTION) else { continue };
        let kind = match suffix {
            "5" | "5.1" | "43" | "24" | "8" | "9" => K::Problems,
            "6" | "6.1" => K::Allergies,
            "1" | "1.1" | "11" | "11.1" | "44" => K::Medications,
            "2" | "2.1" => K::Immunizations,
            "3" | "3.1" => K::Results,
            "4" | "4.1" => K::VitalSigns,
            "7" | "7.1" => K::Procedures,
            "22" | "22.1" => K::Encounters,
            "17" => K::SocialHistory,
            "10" => K::PlanOfTreatment,
            "60" => K::Goals,
            "58" => K::HealthConcerns,
            "14" => K::FunctionalStatus,
            "56" => K::MentalStatus,
            _ => continue,
        };
        return Some(kind);
    }
    None
}

/// The name of a section's kind (`problems`…), when its entries make resources.
pub fn section_name(section: Node<'_, '_>) -> Option<&'static str> {
    section_kind(section).map(K::name)
}

/// The number of resources the entries of `kind` sections should make.
///
/// The counting rule, per section kind (the entries are the section's `entry` children; "in" an
/// act means in one of its `entryRelationship`s, "of" an organizer in its `component`s):
/// - Problems: Problem Observations (4.4), as entries or in a concern act (4.3, 4.33, 4.34);
/// - Allergies: Allergy-Intolerance Observations (4.7), as entries or in a concern act (4.30);
/// - Medications: Medication Activities (4.16), as entries or in a Discharge / Admission
///   Medication act (4.35, 4.36);
/// - Immunizations: Immunization Activities (4.52);
/// - Results: Result Organizers (4.1) + the Result Observations (4.2) of each;
/// - Vital signs: the Vital Sign Observations (4.27) of the organizers (4.26), or as entries;
/// - Procedures: Procedure Activity Procedures (4.14), Observations (4.13) and Acts (4.12);
/// - Encounters: Encounter Activities (4.49);
/// - Social history: every `observation` entry;
/// - Plan of treatment: Planned Act (4.39), Encounter (4.40), Procedure (4.41), Medication
///   Activity (4.42), Supply (4.43), Observation (4.44), Immunization (4.120), Instruction
///   (4.20), Nutrition Recommendation (4.130), Planned Intervention Act (4.146) and Goal
///   Observation (4.121) entries, and the planned entries (the same templates but 4.146 and
///   4.121) in each Planned Intervention Act;
/// - Goals: Goal Observations (4.121);
/// - Health concerns: Health Concern Acts (4.132);
/// - Functional and mental status: every `observation` entry, and the observations of each
///   `organizer` entry.
pub fn coded_entries(xml: &str) -> HashMap<&'static str, usize> {
    let doc = roxmltree::Document::parse(xml).unwrap();
    let mut counts = HashMap::new();
    for section in doc.descendants().filter(|n| is(*n, "section")) {
        let Some(kind) = section_kind(section) else { continue };
        let mut n = 0;
        for act in kids(section, "entry").flat_map(elements) {
            n += match kind {
                K::Problems if tmpl(act, "4") => 1,
                K::Problems => inner(act).filter(|o| tmpl(*o, "4")).count(),
                K::Allergies if tmpl(act, "7") => 1,
                K::Allergies => inner(act).filter(|o| tmpl(*o, "7")).count(),
                K::Medications if tmpl(act, "16") => 1,
                K::Medications => inner(act).filter(|o| tmpl(*o, "16")).count(),
                K::Immunizations => usize::from(tmpl(act, "52")),
                K::Results if tmpl(act, "1") => 1 + components(act).filter(|o| tmpl(*o, "2")).count(),
                K::Results => usize::from(tmpl(act, "2")),
                K::VitalSigns if tmpl(act, "27") => 1,
                K::VitalSigns => components(act).filter(|o| tmpl(*o, "27")).count(),
                K::Procedures => usize::from(["12", "13", "14"].iter().any(|s| tmpl(act, s))),
                K::Encounters => usize::from(tmpl(act, "49")),
                K::SocialHistory => usize::from(is(act, "observation")),
                K::PlanOfTreatment => {
                    let planned = ["39", "40", "41", "42", "43", "44", "120", "20", "130"];
                    let grouped = if tmpl(act, "146") {
                        inner(act).filter(|a| planned.iter().any(|s| tmpl(*a, s))).count()
                    } else {
                        0
                    };
                    usize::from(planned.iter().chain(&["146", "121"]).any(|s| tmpl(act, s))) + grouped
                }
                K::Goals => usize::from(tmpl(act, "121")),
                K::HealthConcerns => usize::from(tmpl(act, "132")),
                K::FunctionalStatus | K::MentalStatus if is(act, "organizer") => components(act).count(),
                K::FunctionalStatus | K::MentalStatus => usize::from(is(act, "observation")),
            };
        }
        *counts.entry(kind.name()).or_insert(0) += n;
    }
    counts
}
