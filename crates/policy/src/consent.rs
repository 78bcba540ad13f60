//! Sensitivity labels on resources and the patient's `Consent` rules about sharing them.
//!
//! A resource is sensitive when its `meta.security` carries a label of the HL7 v3
//! `ActCode` system: behavioral health (`PSY`, `BH`, `PSYTHPN`) or substance use covered by
//! 42 CFR Part 2 (`ETH`, `SUD`, `42CFRPart2`). A `Consent` (status `active`, with a
//! `patient`) holds rules in `provision` and its nested provisions: `type` permit or deny,
//! the Organizations in `actor`, and optionally `securityLabel`s narrowing the rule to those
//! categories. A rule without labels is about the whole record.

use serde_json::Value;

/// The HL7 v3 ActCode system of the sensitivity labels.
pub const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

/// A sensitive category of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sensitivity {
    /// Mental and behavioral health.
    BehavioralHealth,
    /// Substance use disorder records (42 CFR Part 2): shared only with the patient's consent.
    SubstanceUse,
}

impl Sensitivity {
    /// Both categories.
    pub const ALL: [Sensitivity; 2] = [Sensitivity::BehavioralHealth, Sensitivity::SubstanceUse];

    /// The category of one ActCode label, if it is one of ours.
    pub fn of_code(code: &str) -> Option<Sensitivity> {
        match code {
            "PSY" | "BH" | "PSYTHPN" => Some(Sensitivity::BehavioralHealth),
            "ETH" | "SUD" | "42CFRPart2" => Some(Sensitivity::SubstanceUse),
            _ => None,
        }
    }

    /// The codes that carry it (for search filters).
    pub fn codes(self) -> &'static [&'static str] {
        match self {
            Sensitivity::BehavioralHealth => &["PSY", "BH", "PSYTHPN"],
            Sensitivity::SubstanceUse => &["ETH", "SUD", "42CFRPart2"],
        }
    }
}

fn category_of(coding: &Value) -> Option<Sensitivity> {
    let system = coding.get("system").and_then(Value::as_str)?;
    let code = coding.get("code").and_then(Value::as_str)?;
    (system == ACT_CODE).then(|| Sensitivity::of_code(code)).flatten()
}

/// The sensitive categories a resource is labelled with.
pub fn labels(resource: &Value) -> Vec<Sensitivity> {
    let mut found = Vec::new();
    let security = resource.pointer("/meta/security").and_then(Value::as_array);
    for category in security.into_iter().flatten().filter_map(category_of) {
        if !found.contains(&category) {
            found.push(category);
        }
    }
    found
}

/// Permit or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// The provision permits access (`provision.type` `permit`).
    Permit,
    /// The provision denies access (`provision.type` `deny`).
    Deny,
}

/// One provision of a Consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Whether the provision permits or denies (its own `type`, or its parent's).
    pub kind: RuleKind,
    /// Organization ids named as actors (empty: anyone).
    pub organizations: Vec<String>,
    /// Categories the rule is limited to (empty: the whole record).
    pub categories: Vec<Sensitivity>,
}

impl Rule {
    /// Whether the rule speaks about an organization among `organizations`.
    pub fn names_any(&self, organizations: &[String]) -> bool {
        self.organizations.is_empty() || self.organizations.iter().any(|o| organizations.contains(o))
    }
}

/// The rules of an active Consent and the patient it is about; `None` when the resource is
/// not an active Consent with a patient.
pub fn rules(consent: &Value) -> Option<(String, Vec<Rule>)> {
    if consent.get("status").and_then(Value::as_str) != Some("active") {
        return None;
    }
    let patient = consent.pointer("/patient/reference").and_then(Value::as_str)?;
    let patient = patient.strip_prefix("Patient/")?.to_string();
    let mut out = Vec::new();
    if let Some(provision) = consent.get("provision") {
        collect(provision, None, &mut out);
    }
    Some((patient, out))
}

fn collect(provision: &Value, inherited: Option<RuleKind>, out: &mut Vec<Rule>) {
    let kind = match provision.get("type").and_then(Value::as_str) {
        Some("permit") => Some(RuleKind::Permit),
        Some("deny") => Some(RuleKind::Deny),
        _ => inherited,
    };
    if let Some(kind) = kind {
        let organizations = provision
            .get("actor")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| a.pointer("/reference/reference").and_then(Value::as_str))
            .filter_map(|r| r.strip_prefix("Organization/"))
            .map(str::to_string)
            .collect();
        let categories = provision
            .get("securityLabel")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(category_of)
            .collect();
        // A nested provision without its own actors is the parent's exception for them.
        out.push(Rule { kind, organizations, categories });
    }
    for nested in provision.get("provision").and_then(Value::as_array).into_iter().flatten() {
        let mut inner = Vec::new();
        collect(nested, kind, &mut inner);
        let parent_orgs = out.last().map(|r| r.organizations.clone()).unwrap_or_default();
        for mut rule in inner {
            if rule.organizations.is_empty() {
                rule.organizations = parent_orgs.clone();
            }
            out.push(rule);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_come_from_act_code_security() {
        let r = json!({"meta": {"security": [
            {"system": ACT_CODE, "code": "PSY"},
            {"system": ACT_CODE, "code": "R"},
            {"system": "http://other", "code": "ETH"},
        ]}});
        assert_eq!(labels(&r), vec![Sensitivity::BehavioralHealth]);
        assert!(labels(&json!({})).is_empty());
    }

    #[test]
    fn consent_rules_read_actors_and_labels() {
        let consent = json!({
            "resourceType": "Consent", "status": "active",
            "patient": {"reference": "Patient/p1"},
            "provision": {
                "type": "deny",
                "actor": [{"role": {"text": "recipient"}, "reference": {"reference": "Organization/o2"}}],
                "provision": [{"type": "permit", "securityLabel": [{"system": ACT_CODE, "code": "PSY"}]}]
            }
        });
        let (patient, rules) = rules(&consent).unwrap();
        assert_eq!(patient, "p1");
        assert_eq!(rules[0], Rule { kind: RuleKind::Deny, organizations: vec!["o2".into()], categories: vec![] });
        assert_eq!(
            rules[1],
            Rule {
                kind: RuleKind::Permit,
                organizations: vec!["o2".into()],
                categories: vec![Sensitivity::BehavioralHealth]
            }
        );
        let inactive = json!({"resourceType": "Consent", "status": "inactive", "patient": {"reference": "Patient/p1"}});
        assert!(super::rules(&inactive).is_none());
    }
}
