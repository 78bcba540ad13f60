//! A clinician's alert inbox: the alert Communications addressed to them — to their
//! Practitioner, one of their PractitionerRoles, or one of their Organizations (the practice's
//! alerts every member of staff of it sees) — newest first, with the unread count.
//!
//! Unread is `Communication.status` `in-progress`; reading one sets it `completed` with
//! `received` the time it was opened (written with `If-Match`, so a second reader of a shared
//! practice alert is told it changed meanwhile, not silently overwritten). The inbox is read
//! through the caller's door: an alert about a patient the caller can no longer open (a
//! Consent withdrawn, a membership ended) is not shown.

use crate::{Error, Result};
use access::Access;
use chart::read;
use serde_json::{Value, json};
use store::audit::Subtype;

/// Most alerts one page of the inbox shows.
pub const PAGE: usize = 100;

/// One alert as the inbox lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The Communication's id.
    pub id: String,
    /// Its version (for `If-Match` when marking it read).
    pub version: String,
    /// The patient's id.
    pub patient: String,
    /// The event's code (`ed-visit`).
    pub event: String,
    /// What happened, for the clinician.
    pub text: String,
    /// Whether it is urgent.
    pub urgent: bool,
    /// When it was sent (as stored).
    pub sent: String,
    /// Whether it was read.
    pub read: bool,
    /// `Type/id` of what it is about.
    pub about: Option<String>,
}

/// The inbox: a page of alerts and how many are unread in all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inbox {
    /// Newest first.
    pub alerts: Vec<Alert>,
    /// Unread alerts in all.
    pub unread: u64,
}

/// The references an alert to the caller may be addressed to: their Practitioner, their
/// PractitionerRoles and their Organizations (empty for callers who are not staff).
pub fn addresses(access: &Access) -> Vec<String> {
    let Some(caller) = access.caller() else { return Vec::new() };
    match &caller.principal.subject {
        auth::Subject::User {
            identity: auth::Identity::Staff { organizations, practitioner, practitioner_roles, .. },
            ..
        } => practitioner
            .iter()
            .map(|p| format!("Practitioner/{p}"))
            .chain(practitioner_roles.iter().map(|r| format!("PractitionerRole/{r}")))
            .chain(organizations.iter().map(|o| format!("Organization/{o}")))
            .collect(),
        _ => Vec::new(),
    }
}

fn alert_pairs(to: &[String]) -> Vec<(&'static str, String)> {
    vec![
        ("recipient", to.join(",")),
        ("category", "http://terminology.hl7.org/CodeSystem/communication-category|alert".into()),
    ]
}

/// The caller's inbox (only unread ones when `unread_only`).
pub fn inbox(access: &Access, unread_only: bool) -> Result<Inbox> {
    let to = addresses(access);
    if to.is_empty() {
        return Ok(Inbox::default());
    }
    let mut pairs = alert_pairs(&to);
    pairs.push(("_sort", "-sent".into()));
    if unread_only {
        pairs.push(("status", "in-progress".into()));
    }
    let alerts = read::search(access, "Communication", &pairs, PAGE)?.iter().map(alert_of).collect();
    Ok(Inbox { alerts, unread: unread_count(access)? })
}

/// How many alerts to the caller are unread.
pub fn unread_count(access: &Access) -> Result<u64> {
    let to = addresses(access);
    if to.is_empty() {
        return Ok(0);
    }
    let mut pairs = alert_pairs(&to);
    pairs.push(("status", "in-progress".into()));
    pairs.push(("_summary", "count".into()));
    let params: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let query =
        search::query::SearchQuery::parse(Some("Communication"), &params, false).map_err(access::Error::from)?;
    let page = access.search(query, &params, 0, Subtype::SearchType)?;
    Ok(page.total.unwrap_or(0))
}

/// Marks alert `id` (read at `version`) read; only an alert addressed to the caller.
pub fn mark_read(access: &Access, id: &str, version: &str) -> Result<()> {
    let mut communication = read::read(access, "Communication", id)?;
    let to = addresses(access);
    let addressed = communication.get("recipient").and_then(Value::as_array).is_some_and(|all| {
        all.iter().any(|r| chart::elements::reference(Some(r)).is_some_and(|r| to.iter().any(|t| t == r)))
    });
    if !addressed {
        return Err(Error::NotFound);
    }
    if communication.get("status").and_then(Value::as_str) == Some("completed") {
        return Ok(());
    }
    if communication.pointer("/meta/versionId").and_then(Value::as_str) != Some(version) {
        return Err(access::Error::Store(store::Error::PreconditionFailed("the alert changed meanwhile".into())).into());
    }
    communication["status"] = json!("completed");
    communication["received"] = json!(store::format_instant(time::OffsetDateTime::now_utc()));
    read::write_back(access, communication)?;
    Ok(())
}

fn alert_of(communication: &Value) -> Alert {
    let text = |at: &str| communication.pointer(at).and_then(Value::as_str).unwrap_or_default().to_string();
    Alert {
        id: text("/id"),
        version: communication.pointer("/meta/versionId").and_then(Value::as_str).unwrap_or("1").to_string(),
        patient: text("/subject/reference").strip_prefix("Patient/").unwrap_or_default().to_string(),
        event: text("/reasonCode/0/coding/0/code"),
        text: text("/payload/0/contentString"),
        urgent: communication.get("priority").and_then(Value::as_str).is_some_and(|p| p != "routine"),
        sent: text("/sent"),
        read: communication.get("status").and_then(Value::as_str) == Some("completed"),
        about: communication.pointer("/about/0/reference").and_then(Value::as_str).map(str::to_string),
    }
}
