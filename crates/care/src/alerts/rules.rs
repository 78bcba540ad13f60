//! Who is told of what: the alert rules per organization (which events, which team roles),
//! the behavioral-health roles, and the webhooks — plain configuration, a JSON file given to
//! `continuum serve --alert-rules FILE`:
//!
//! ```json
//! {
//!   "rules": [
//!     {"organization": "pcp-clinic", "events": ["ed-visit", "discharge"], "roles": ["care manager"]},
//!     {"organization": "*", "events": [], "roles": []}
//!   ],
//!   "behavioral_health_roles": ["behavioral", "psych", "mental health", "counsel", "therap"],
//!   "webhooks": [{"name": "pcp-events", "organization": "pcp-clinic", "url": "https://…"}]
//! }
//! ```
//!
//! A member of the care team is told of an event when a rule of the organization they act for
//! (`onBehalfOf`; an Organization member is its own) admits both the event (`events` empty: all)
//! and their role on the team (`roles` empty: all; a role matches when its text contains one of
//! the words, ignoring case). An organization without a rule of its own follows the `*` rules;
//! without any configuration every member is told of every event. Events meant for
//! behavioral health ([`super::AlertKind::behavioral_health`]) go to the members whose role
//! matches `behavioral_health_roles`, and to every member when the team has none (an urgent
//! signal must reach someone). The owning practice (the patient's `managingOrganization` and
//! `generalPractitioner`) is told of every event its rules admit for the role `practice`, and
//! a rule's `notify` list names partners outside the team told of the rule's events for the
//! practice's patients (`{"organization": "pcp-clinic", "events": ["depression-screen-positive"],
//! "roles": ["care manager"], "notify": ["Organization/harbor-bh"]}`).

use super::events::AlertKind;
use serde::Deserialize;

/// A rule of one organization (or `*`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Rule {
    /// The Organization id the rule is for, or `*` for organizations without rules of their own.
    pub organization: String,
    /// Event codes admitted (empty: all).
    #[serde(default)]
    pub events: Vec<String>,
    /// Words of the team roles admitted (empty: all).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Who else is told of these events for the patients this organization is the practice
    /// of (`Organization/…`, `Practitioner/…`): a behavioral-health partner told of positive
    /// depression screens, say. Being told is a care relationship for 30 days (the policy's
    /// rule), so the partner can open the chart and take the patient on.
    #[serde(default)]
    pub notify: Vec<String>,
}

/// A webhook told of each alert for an organization.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Webhook {
    /// Its name (the outbox channel is `webhook:NAME`).
    pub name: String,
    /// The Organization id whose alerts it is told of, or `*`.
    pub organization: String,
    /// Where to POST (http or https).
    pub url: String,
}

/// The alert configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct AlertConfig {
    /// The rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Words of the team roles that are behavioral-health clinicians.
    #[serde(default = "default_bh_roles")]
    pub behavioral_health_roles: Vec<String>,
    /// The webhooks.
    #[serde(default)]
    pub webhooks: Vec<Webhook>,
}

fn default_bh_roles() -> Vec<String> {
    ["behavioral", "behavioural", "psych", "mental health", "counsel", "therap"].iter().map(|s| s.to_string()).collect()
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig { rules: Vec::new(), behavioral_health_roles: default_bh_roles(), webhooks: Vec::new() }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not JSON of the documented shape.
    #[error("the alert rules are not valid: {0}")]
    Shape(String),
    /// An event code that is none.
    #[error("the alert rules name an unknown event `{0}`")]
    UnknownEvent(String),
    /// A partner to notify that is not an Organization, Practitioner or PractitionerRole.
    #[error(
        "the alert rules would notify `{0}`, which is not an Organization, Practitioner or PractitionerRole reference"
    )]
    Notify(String),
    /// A webhook URL that is not http(s).
    #[error("webhook `{0}` must have an http or https URL")]
    WebhookUrl(String),
}

impl AlertConfig {
    /// Reads a configuration (see the module's documentation).
    pub fn from_json(text: &str) -> Result<AlertConfig, ConfigError> {
        let config: AlertConfig = serde_json::from_str(text).map_err(|e| ConfigError::Shape(e.to_string()))?;
        for rule in &config.rules {
            if let Some(bad) = rule.events.iter().find(|e| AlertKind::parse(e).is_none()) {
                return Err(ConfigError::UnknownEvent(bad.clone()));
            }
        }
        for rule in &config.rules {
            if let Some(bad) = rule.notify.iter().find(|n| {
                let (kind, id) = n.split_once('/').unwrap_or_default();
                !matches!(kind, "Organization" | "Practitioner" | "PractitionerRole") || id.is_empty()
            }) {
                return Err(ConfigError::Notify(bad.clone()));
            }
        }
        for hook in &config.webhooks {
            if !(hook.url.starts_with("http://") || hook.url.starts_with("https://")) {
                return Err(ConfigError::WebhookUrl(hook.name.clone()));
            }
        }
        Ok(config)
    }

    /// Whether a member with team role `role` acting for `organization` is told of `kind`.
    pub fn admits(&self, organization: Option<&str>, role: &str, kind: AlertKind) -> bool {
        let own: Vec<&Rule> = match organization {
            Some(org) => self.rules.iter().filter(|r| r.organization == org).collect(),
            None => Vec::new(),
        };
        let rules: Vec<&Rule> =
            if own.is_empty() { self.rules.iter().filter(|r| r.organization == "*").collect() } else { own };
        if rules.is_empty() {
            return true;
        }
        let role = role.to_lowercase();
        rules.iter().any(|r| {
            (r.events.is_empty() || r.events.iter().any(|e| e == kind.code()))
                && (r.roles.is_empty() || r.roles.iter().any(|w| role.contains(&w.to_lowercase())))
        })
    }

    /// Who else is told of `kind` for a patient whose practice is `organization`.
    pub fn partners(&self, organization: &str, kind: AlertKind) -> Vec<String> {
        self.rules
            .iter()
            .filter(|r| {
                r.organization == organization && (r.events.is_empty() || r.events.iter().any(|e| e == kind.code()))
            })
            .flat_map(|r| r.notify.iter().cloned())
            .collect()
    }

    /// Whether team role `role` is a behavioral-health clinician's.
    pub fn is_behavioral_health(&self, role: &str) -> bool {
        let role = role.to_lowercase();
        self.behavioral_health_roles.iter().any(|w| role.contains(&w.to_lowercase()))
    }

    /// The webhooks told of an alert for `organizations`.
    pub fn webhooks_for<'a>(&'a self, organizations: &'a [String]) -> impl Iterator<Item = &'a Webhook> + 'a {
        self.webhooks.iter().filter(move |w| w.organization == "*" || organizations.contains(&w.organization))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_choose_events_and_roles_per_organization() {
        let config = AlertConfig::from_json(
            r#"{"rules": [
                {"organization": "pcp", "events": ["ed-visit", "discharge"], "roles": ["care manager"]},
                {"organization": "*", "events": ["discharge"]}
            ]}"#,
        )
        .unwrap();
        assert!(config.admits(Some("pcp"), "Care Manager", AlertKind::EdVisit));
        assert!(!config.admits(Some("pcp"), "Physician", AlertKind::EdVisit));
        assert!(!config.admits(Some("pcp"), "Care manager", AlertKind::AbnormalResult));
        assert!(config.admits(Some("other"), "anyone", AlertKind::Discharge));
        assert!(!config.admits(Some("other"), "anyone", AlertKind::EdVisit));
        assert!(!config.admits(None, "anyone", AlertKind::EdVisit));
        assert!(AlertConfig::default().admits(None, "x", AlertKind::SelfHarmRisk), "no configuration: everyone");
        assert!(AlertConfig::default().is_behavioral_health("Behavioral health clinician"));
        assert!(!AlertConfig::default().is_behavioral_health("Primary care physician"));
    }

    #[test]
    fn bad_configurations_are_refused() {
        assert!(matches!(
            AlertConfig::from_json(r#"{"rules": [{"organization": "x", "events": ["nope"]}]}"#),
            Err(ConfigError::UnknownEvent(_))
        ));
        assert!(matches!(
            AlertConfig::from_json(r#"{"webhooks": [{"name": "a", "organization": "*", "url": "ftp://x"}]}"#),
            Err(ConfigError::WebhookUrl(_))
        ));
        assert!(matches!(AlertConfig::from_json("[1]"), Err(ConfigError::Shape(_))));
        assert!(matches!(
            AlertConfig::from_json(r#"{"rules": [{"organization": "x", "notify": ["Patient/p"]}]}"#),
            Err(ConfigError::Notify(_))
        ));
        let config = AlertConfig::from_json(
            r#"{"rules": [{"organization": "pcp", "events": ["depression-screen-positive"], "notify": ["Organization/bh"]}]}"#,
        )
        .unwrap();
        assert_eq!(config.partners("pcp", AlertKind::PositiveDepressionScreen), ["Organization/bh"]);
        assert!(config.partners("pcp", AlertKind::EdVisit).is_empty());
        assert!(config.partners("other", AlertKind::PositiveDepressionScreen).is_empty());
    }
}
