//! FHIR Subscriptions, HTTP-free: R4 criteria subscriptions (a search URL; `rest-hook` with
//! headers and an empty or `application/fhir+json` payload, or `websocket` with the
//! bind-with-id handshake) and the R4B/R5 topic-based backport
//! (`http://hl7.org/fhir/uv/subscriptions-backport`: topics, filters, handshake, heartbeat,
//! `empty` / `id-only` / `full-resource` content, event numbers, `$status` and `$events`).
//!
//! - [`spec`]: a Subscription read and validated (bad ones are refused by the hook, whatever
//!   the door, with a 422 and its `OperationOutcome`);
//! - [`endpoint`]: where notifications may go, the operator's allow-list;
//! - [`topics`]: the SubscriptionTopics offered;
//! - [`registry`]: the active subscriptions in memory, the write hook matching every write of
//!   a wanted type inside its own transaction and queuing the notification in the outbox
//!   (`store::notify`, channel `sub:ID`, numbered in commit order: the event numbers);
//! - [`deliver`]: the sender thread (at least once, in order per subscription, backoff, the
//!   `error` status and back, the owner's policy checked at delivery);
//! - [`bundle`]: the backport's notification shapes;
//! - [`sockets`]: the websocket bindings the edge serves;
//! - [`Service`]: `$status` and `$events` through the caller's door.

pub mod bundle;
pub mod deliver;
pub mod endpoint;
pub mod registry;
pub mod sockets;
pub mod spec;
pub mod topics;

pub use deliver::{DeliveryConfig, Sender};
pub use endpoint::AllowList;
pub use registry::{Owner, Registry};

use access::Access;
use serde_json::{Value, json};
use spec::Content;
use std::sync::Arc;
use store::notify::Notifications;

/// The most events one `$events` answers.
pub const MAX_EVENTS: usize = 100;

/// The subscription operations the edge serves.
#[derive(Clone)]
pub struct Service {
    registry: Arc<Registry>,
    notifications: Arc<dyn Notifications>,
    base_url: String,
}

fn storage(error: store::Error) -> access::Error {
    access::Error::Store(error)
}

impl Service {
    /// The operations over `registry` and the outbox, references under `base_url`.
    pub fn new(registry: Arc<Registry>, notifications: Arc<dyn Notifications>, base_url: impl Into<String>) -> Service {
        Service { registry, notifications, base_url: base_url.into().trim_end_matches('/').to_string() }
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The subscription as the caller may read it, understood.
    fn subscription(&self, access: &Access, id: &str) -> Result<(spec::Spec, Value), access::Error> {
        let version = access.read("Subscription", id)?;
        let body = version.body.as_deref().ok_or(access::Error::Hidden)?;
        let resource: Value = serde_json::from_str(body)
            .map_err(|_| storage(store::Error::Storage("a stored Subscription could not be read".into())))?;
        let spec =
            spec::read(&resource, version.version, &self.registry.allow_list()).map_err(access::Error::Invalid)?;
        Ok((spec, resource))
    }

    /// `Subscription/[id]/$status`: a `searchset` Bundle with the SubscriptionStatus.
    pub fn status(&self, access: &Access, id: &str) -> Result<Value, access::Error> {
        let (spec, resource) = self.subscription(access, id)?;
        let latest = self.notifications.latest_number(&registry::event_channel(id)).map_err(storage)?;
        let status = resource.get("status").and_then(Value::as_str).unwrap_or("requested");
        let error = resource.get("error").and_then(Value::as_str);
        let parameters = bundle::status(&spec, &self.base_url, bundle::Kind::QueryStatus, latest, &[], status, error);
        Ok(json!({
            "resourceType": "Bundle",
            "type": "searchset",
            "total": 1,
            "entry": [{"fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()), "resource": parameters, "search": {"mode": "match"}}]
        }))
    }

    /// `Subscription/[id]/$events`: the notifications numbered `since..=until` (at most
    /// [`MAX_EVENTS`]), each focus the caller may read (`content`: the caller's preference,
    /// else the subscription's), as a `history` notification Bundle of type `query-event`.
    pub fn events(
        &self,
        access: &Access,
        id: &str,
        since: Option<i64>,
        until: Option<i64>,
        content: Option<Content>,
    ) -> Result<Value, access::Error> {
        let (mut spec, resource) = self.subscription(access, id)?;
        let channel = registry::event_channel(id);
        let latest = self.notifications.latest_number(&channel).map_err(storage)?;
        let from = since.unwrap_or(1).max(1);
        let to = until.unwrap_or(latest).min(latest);
        let mut events = Vec::new();
        if from <= to {
            for notification in self.notifications.events(&channel, from, to, MAX_EVENTS).map_err(storage)? {
                let Some((resource_type, rid, version)) = split(&notification.resource) else { continue };
                // Nothing the caller may not read: an event whose focus they may not see is left out.
                let focus = match access.vread(resource_type, rid, version) {
                    Ok(v) => v.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()),
                    Err(access::Error::Hidden) | Err(access::Error::Forbidden(_)) => continue,
                    Err(access::Error::Store(e))
                        if matches!(e.kind(), store::ErrorKind::NotFound | store::ErrorKind::Gone) =>
                    {
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                events.push(bundle::Event {
                    number: notification.number,
                    timestamp: notification.created_at,
                    focus: notification.resource.clone(),
                    resource: focus,
                    created: notification.payload.contains("\"change\":\"create\""),
                });
            }
        }
        if let Some(content) = content {
            spec.content = content;
        }
        let status = resource.get("status").and_then(Value::as_str).unwrap_or("requested");
        Ok(bundle::notification(&spec, &self.base_url, bundle::Kind::QueryEvent, latest, &events, status, None))
    }

    /// Binds a websocket to subscription `id` (`bind ID`), when the caller may read it and it
    /// is an active websocket subscription: the lines to send the socket. Waiting
    /// notifications are made due at once.
    pub fn bind(
        &self,
        access: &Access,
        id: &str,
    ) -> Result<tokio::sync::mpsc::UnboundedReceiver<String>, access::Error> {
        let (spec, _) = self.subscription(access, id)?;
        if !matches!(spec.channel, spec::Channel::Websocket) || self.registry.get(id).is_none() {
            return Err(access::Error::invalid("the subscription is not an active websocket subscription"));
        }
        let receiver = self.registry.sockets().bind(id);
        self.notifications.retry_now(&registry::event_channel(id)).map_err(storage)?;
        self.registry.wake();
        Ok(receiver)
    }
}

/// The CapabilityStatement extensions of subscriptions: the websocket URL (R4's
/// `capabilitystatement-websocket`) and each topic's canonical (the backport's
/// `capabilitystatement-subscriptiontopic-canonical`).
pub fn capability_extensions(websocket_url: &str) -> Vec<Value> {
    let mut extensions = vec![json!({
        "url": "http://hl7.org/fhir/StructureDefinition/capabilitystatement-websocket",
        "valueUri": websocket_url
    })];
    for topic in topics::TOPICS {
        extensions.push(json!({
            "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical",
            "valueCanonical": topic.canonical()
        }));
    }
    extensions
}

fn split(reference: &str) -> Option<(&str, &str, u64)> {
    let (resource, version) = reference.split_once("/_history/")?;
    let (resource_type, id) = resource.split_once('/')?;
    Some((resource_type, id, version.parse().ok()?))
}
