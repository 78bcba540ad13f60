//! Delivery of the alerts the hook queued: a thread of its own takes each patient's due alert
//! notifications in order and, through the door as the job `care-alerts`,
//!
//! 1. finds the recipients (the care team's current members whose organization's rules admit
//!    the event and their role, behavioral-health events to the behavioral-health clinicians,
//!    and the owning practice: [`super::rules`]);
//! 2. writes one `Communication` per recipient — their in-app inbox — as a conditional create
//!    keyed on the notification and the recipient (`identifier` `urn:continuum:alert|N:REF`),
//!    so a notification delivered twice after a crash shows once;
//! 3. for a discharge, starts the transition of care ([`crate::transitions`]);
//! 4. queues the outbound channels of what it newly wrote: an e-mail to each recipient with an
//!    e-mail address (`email:REF`) and the organizations' webhooks (`webhook:NAME`), sent by
//!    [`super::channels`];
//! 5. marks the notification delivered. A failure leaves it pending, retried with backoff.
//!
//! The thread wakes when a write of a type that raises alerts commits, and every second in any
//! case (a retry coming due, a notification queued by another server sharing the database).

use super::events::AlertKind;
use super::hook::CHANNEL_PREFIX;
use super::rules::AlertConfig;
use crate::teams;
use crate::{Error, Result};
use access::{Access, Door, Who};
use chart::read;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;
use store::notify::{NewNotification, Notification, Notifications};
use time::OffsetDateTime;

/// The identifier system of the Communications alerts write.
pub const ALERT_IDENTIFIER: &str = "urn:continuum:alert";
/// The code system of the alert events in `Communication.reasonCode`.
pub const ALERT_EVENT_SYSTEM: &str = "urn:continuum:alert-event";
/// The job name alerts are written under (in the audit trail).
pub const JOB: &str = "care-alerts";

/// Most notifications taken per round.
const BATCH: usize = 100;
/// The longest wait between retries of one notification.
const MOST_BACKOFF: Duration = Duration::from_secs(300);

/// One who is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// `Practitioner/x`, `PractitionerRole/y` or `Organization/z`.
    pub reference: String,
    /// The Organization id they act for, when known.
    pub organization: Option<String>,
}

/// The alert sender: see the module's documentation.
#[derive(Clone)]
pub struct AlertDelivery {
    door: Door,
    notifications: Arc<dyn Notifications>,
    config: Arc<AlertConfig>,
    transitions: crate::transitions::TransitionConfig,
    email: bool,
}

/// Wakes the sender when a write that may raise alerts commits.
struct Wake(SyncSender<()>);

impl store::CommitListener for Wake {
    fn committed(&self, changes: &[store::Committed]) {
        if changes.iter().any(|c| matches!(c.resource_type.as_str(), "Encounter" | "Observation" | "MedicationRequest"))
        {
            let _ = self.0.try_send(());
        }
    }
}

impl AlertDelivery {
    /// The sender over `door` (policy and auditor set), the store's outbox and `config`.
    pub fn new(door: Door, notifications: Arc<dyn Notifications>, config: AlertConfig) -> AlertDelivery {
        AlertDelivery {
            door,
            notifications,
            config: Arc::new(config),
            transitions: crate::transitions::TransitionConfig::default(),
            email: false,
        }
    }

    /// The same sender, queueing e-mails to recipients with an address (only when an e-mail
    /// sender runs: otherwise they would wait for ever).
    pub fn with_email(mut self, email: bool) -> AlertDelivery {
        self.email = email;
        self
    }

    /// The same sender with the transitions of care configured.
    pub fn with_transitions(mut self, transitions: crate::transitions::TransitionConfig) -> AlertDelivery {
        self.transitions = transitions;
        self
    }

    /// The configuration in force.
    pub fn config(&self) -> &AlertConfig {
        &self.config
    }

    /// Starts the sender's thread; it runs as long as the process.
    pub fn start(self) -> std::io::Result<()> {
        let (wake, woken) = std::sync::mpsc::sync_channel(1);
        self.door.records().changes().listen(Arc::new(Wake(wake)));
        std::thread::Builder::new().name("care-alerts".into()).spawn(move || self.run(woken)).map(drop)
    }

    fn run(self, woken: Receiver<()>) {
        loop {
            match self.deliver_due() {
                Ok(n) if n >= BATCH => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "care alerts could not be read from the outbox"),
            }
            match woken.recv_timeout(Duration::from_secs(1)) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Delivers the alerts due now; how many were taken.
    pub fn deliver_due(&self) -> Result<usize> {
        let due = self.notifications.due(OffsetDateTime::now_utc(), CHANNEL_PREFIX, BATCH)?;
        let mut held = std::collections::HashSet::new();
        for notification in &due {
            // A failure holds the rest of that patient's alerts for this round (order).
            if held.contains(&notification.channel) {
                continue;
            }
            match self.deliver(notification) {
                Ok(()) => self.notifications.delivered(notification.id)?,
                Err(e) => {
                    tracing::warn!(error = %e, alert = notification.id, "a care alert could not be delivered; retrying");
                    held.insert(notification.channel.clone());
                    let wait = backoff(notification.attempts);
                    let retry_at = OffsetDateTime::now_utc() + wait;
                    self.notifications.attempt_failed(notification.id, "delivery failed", Some(retry_at))?;
                }
            }
        }
        Ok(due.len())
    }

    /// Delivers one alert notification (see the module's documentation).
    pub fn deliver(&self, notification: &Notification) -> Result<()> {
        let access = self.door.enter(Who::Job(JOB));
        let result = self.deliver_as(&access, notification);
        access.settle_queued();
        result
    }

    fn deliver_as(&self, access: &Access, notification: &Notification) -> Result<()> {
        let Some(kind) = AlertKind::parse(&notification.event) else { return Ok(()) };
        let Some(patient) = notification.patient.as_deref() else { return Ok(()) };
        let recipients = recipients(access, patient, kind, &self.config)?;
        let about = notification.resource.clone();
        let detail = describe(access, &about);
        let mut created = Vec::new();
        for recipient in &recipients {
            let key = format!("{}:{}", notification.id, recipient.reference);
            let communication = json!({
                "resourceType": "Communication",
                "identifier": [{"system": ALERT_IDENTIFIER, "value": key}],
                "status": "in-progress",
                "category": [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/communication-category",
                    "code": "alert", "display": "Alert"}]}],
                "priority": if kind.urgent() { "urgent" } else { "routine" },
                "subject": {"reference": format!("Patient/{patient}")},
                "about": [{"reference": about}],
                "sent": store::format_instant(OffsetDateTime::now_utc()),
                "recipient": [{"reference": recipient.reference}],
                "reasonCode": [{"coding": [{"system": ALERT_EVENT_SYSTEM, "code": kind.code(), "display": kind.title()}],
                    "text": kind.title()}],
                "payload": [{"contentString": format!("{}: {detail}", kind.title())}],
            });
            let condition = format!("identifier={ALERT_IDENTIFIER}|{}", escape(&key));
            let outcome = access.create(communication, Some(&condition))?;
            if outcome.kind == store::WriteKind::Created {
                let id = outcome.version.map(|v| v.id).unwrap_or_default();
                created.push((recipient.clone(), id));
            }
        }
        if kind == AlertKind::Discharge
            && let Some(encounter) = about.strip_prefix("Encounter/")
        {
            crate::transitions::discharged(access, patient, encounter, &self.transitions)?;
        }
        self.queue_channels(access, notification, kind, &created)?;
        Ok(())
    }

    /// Queues e-mails and webhooks for the Communications newly written.
    fn queue_channels(
        &self,
        access: &Access,
        notification: &Notification,
        kind: AlertKind,
        created: &[(Recipient, String)],
    ) -> Result<()> {
        for (recipient, communication) in created.iter().filter(|_| self.email) {
            if let Some(address) = email_of(access, &recipient.reference) {
                let payload = json!({"to": address, "communication": format!("Communication/{communication}")});
                self.notifications.enqueue(&NewNotification {
                    channel: &format!("{}{}", super::channels::EMAIL_PREFIX, recipient.reference),
                    event: kind.code(),
                    resource: &format!("Communication/{communication}"),
                    patient: None,
                    payload: &payload.to_string(),
                })?;
            }
        }
        if created.is_empty() {
            return Ok(());
        }
        let organizations: Vec<String> = created.iter().filter_map(|(r, _)| r.organization.clone()).collect();
        for hook in self.config.webhooks_for(&organizations) {
            let communications: Vec<String> = created
                .iter()
                .filter(|(r, _)| {
                    hook.organization == "*" || r.organization.as_deref() == Some(hook.organization.as_str())
                })
                .map(|(_, id)| format!("Communication/{id}"))
                .collect();
            // What a webhook is told names no patient: the event, when, and where to look.
            let payload = json!({
                "url": hook.url,
                "event": kind.code(),
                "urgent": kind.urgent(),
                "alert": notification.id,
                "communications": communications,
                "at": store::format_instant(OffsetDateTime::now_utc()),
            });
            self.notifications.enqueue(&NewNotification {
                channel: &format!("{}{}", super::channels::WEBHOOK_PREFIX, hook.name),
                event: kind.code(),
                resource: &notification.resource,
                patient: None,
                payload: &payload.to_string(),
            })?;
        }
        Ok(())
    }
}

/// How long to wait before the next attempt after `attempts` failed ones: 1 s doubling, at
/// most five minutes.
pub fn backoff(attempts: u32) -> time::Duration {
    let wait = Duration::from_secs(1u64 << attempts.min(16)).min(MOST_BACKOFF);
    time::Duration::try_from(wait).unwrap_or(time::Duration::minutes(5))
}

/// The recipients of an alert of `kind` about `patient` (see [`super::rules`]).
pub fn recipients(access: &Access, patient: &str, kind: AlertKind, config: &AlertConfig) -> Result<Vec<Recipient>> {
    let mut members: Vec<(Recipient, String)> = Vec::new();
    for team in teams::teams(access, patient)?.into_iter().filter(|t| t.status == "active") {
        for member in team.members.into_iter().filter(|m| m.current) {
            let (kind_of, id) = member.reference.split_once('/').unwrap_or_default();
            if !matches!(kind_of, "Practitioner" | "PractitionerRole" | "Organization") {
                continue;
            }
            let organization = match kind_of {
                "Organization" => Some(id.to_string()),
                _ => member.organization.as_deref().and_then(|o| o.strip_prefix("Organization/")).map(str::to_string),
            };
            members.push((Recipient { reference: member.reference.clone(), organization }, member.role));
        }
    }
    let mut chosen: Vec<Recipient> = if kind.behavioral_health() {
        let clinicians: Vec<Recipient> =
            members.iter().filter(|(_, role)| config.is_behavioral_health(role)).map(|(r, _)| r.clone()).collect();
        if clinicians.is_empty() { members.iter().map(|(r, _)| r.clone()).collect() } else { clinicians }
    } else {
        members
            .iter()
            .filter(|(r, role)| config.admits(r.organization.as_deref(), role, kind))
            .map(|(r, _)| r.clone())
            .collect()
    };
    if !kind.behavioral_health() || chosen.is_empty() {
        for practice in practice_of(access, patient)? {
            let admitted = match practice.reference.strip_prefix("Organization/") {
                Some(org) => config.admits(Some(org), "practice", kind),
                None => config.admits(practice.organization.as_deref(), "practice", kind),
            };
            if admitted || (kind.behavioral_health() && chosen.is_empty()) {
                chosen.push(practice);
            }
        }
    }
    for practice in practice_of(access, patient)? {
        let Some(org) = practice.reference.strip_prefix("Organization/") else { continue };
        for partner in config.partners(org, kind) {
            let organization = partner.strip_prefix("Organization/").map(str::to_string);
            chosen.push(Recipient { reference: partner, organization });
        }
    }
    let mut seen = std::collections::HashSet::new();
    chosen.retain(|r| seen.insert(r.reference.clone()));
    Ok(chosen)
}

/// The patient's owning practice: `managingOrganization` and the Organizations and
/// Practitioners of `generalPractitioner`.
pub fn practice_of(access: &Access, patient: &str) -> Result<Vec<Recipient>> {
    let record = match read::read(access, "Patient", patient) {
        Ok(record) => record,
        Err(chart::Error::NotOnChart) => return Err(Error::NotFound),
        Err(chart::Error::Access(e)) => return Err(e.into()),
        Err(_) => return Err(Error::NotFound),
    };
    let managing = chart::elements::reference(record.get("managingOrganization"))
        .and_then(|r| r.strip_prefix("Organization/"))
        .map(str::to_string);
    let mut out = Vec::new();
    if let Some(org) = &managing {
        out.push(Recipient { reference: format!("Organization/{org}"), organization: Some(org.clone()) });
    }
    for gp in record.get("generalPractitioner").and_then(Value::as_array).into_iter().flatten() {
        let Some(reference) = chart::elements::reference(Some(gp)) else { continue };
        let organization = match reference.strip_prefix("Organization/") {
            Some(org) => Some(org.to_string()),
            None => managing.clone(),
        };
        if reference.starts_with("Organization/") || reference.starts_with("Practitioner/") {
            out.push(Recipient { reference: reference.to_string(), organization });
        }
    }
    Ok(out)
}

/// A short description of the resource an alert is about (its code or class and time), read
/// through the door; what it is when it cannot be read.
fn describe(access: &Access, reference: &str) -> String {
    let Some((resource_type, id)) = reference.split_once('/') else { return reference.to_string() };
    let Ok(resource) = read::read(access, resource_type, id) else { return resource_type.to_string() };
    let what = match resource_type {
        "Encounter" => {
            let class = resource.pointer("/class/display").or_else(|| resource.pointer("/class/code"));
            let kind = resource.get("type").and_then(Value::as_array).and_then(|t| t.first());
            match kind {
                Some(kind) => chart::elements::concept(Some(kind)),
                None => class.and_then(Value::as_str).unwrap_or("Encounter").to_string(),
            }
        }
        "Observation" => {
            let name = chart::elements::concept(resource.get("code"));
            format!("{name} {}", chart::elements::observation_value(&resource)).trim().to_string()
        }
        "MedicationRequest" => {
            let status = resource.get("status").and_then(Value::as_str).unwrap_or_default();
            format!("{} ({status})", chart::lists::medication_name(&resource))
        }
        _ => resource_type.to_string(),
    };
    if what.is_empty() { resource_type.to_string() } else { what }
}

/// The e-mail address of a Practitioner (or a PractitionerRole's), when it has one.
fn email_of(access: &Access, reference: &str) -> Option<String> {
    let (resource_type, id) = reference.split_once('/')?;
    if !matches!(resource_type, "Practitioner" | "PractitionerRole") {
        return None;
    }
    let resource = read::read(access, resource_type, id).ok()?;
    let own = resource.get("telecom").and_then(Value::as_array).and_then(|all| {
        all.iter()
            .find(|t| t.get("system").and_then(Value::as_str) == Some("email"))
            .and_then(|t| t.get("value").and_then(Value::as_str))
            .map(str::to_string)
    });
    match (own, resource_type) {
        (Some(address), _) => Some(address),
        (None, "PractitionerRole") => email_of(access, chart::elements::reference(resource.get("practitioner"))?),
        _ => None,
    }
}

/// A search value with FHIR's `\` escapes of `,` `|` `$` and `\` (then percent-encoded by
/// the criteria's reader: only `&`, `%`, `+`, `#` need it here).
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' | ',' | '|' | '$' => {
                out.push('\\');
                out.push(c);
            }
            '%' => out.push_str("%25"),
            '&' => out.push_str("%26"),
            '+' => out.push_str("%2B"),
            '#' => out.push_str("%23"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_stops_at_five_minutes() {
        assert_eq!(backoff(0), time::Duration::seconds(1));
        assert_eq!(backoff(3), time::Duration::seconds(8));
        assert_eq!(backoff(30), time::Duration::minutes(5));
    }

    #[test]
    fn keys_are_escaped_for_criteria() {
        assert_eq!(escape("12:Practitioner/a"), "12:Practitioner/a");
        assert_eq!(escape("a|b,c&d"), "a\\|b\\,c%26d");
    }
}
