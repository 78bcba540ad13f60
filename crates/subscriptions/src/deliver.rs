//! The sender: a thread that delivers the queued notifications of every subscription, at
//! least once and in order per subscription (the outbox hands a channel's notifications out
//! in order and holds the later ones while an earlier one waits for its retry).
//!
//! - Woken by the commit feed when a write of a wanted type commits (no polling of the
//!   records); otherwise it sleeps until the earliest retry or heartbeat it knows of (at most
//!   [`DeliveryConfig::idle_check`], for retries another server scheduled).
//! - A failed attempt is retried after a delay that doubles from
//!   [`DeliveryConfig::first_retry`] up to [`DeliveryConfig::max_retry`], forever; after
//!   [`DeliveryConfig::error_after`] failures in a row the Subscription's `status` becomes
//!   `error` with the reason in `error`, and it becomes `active` again with the first
//!   delivery that succeeds (the missed notifications follow in order).
//! - Every event is checked before it leaves against the policy for the subscription's owner
//!   as it stands at that moment: a resource the owner may not read is never sent (the
//!   notification is settled without a request). An open server (no policy) sends everything.
//! - The endpoint's host is resolved and checked again before every request (DNS rebinding),
//!   and the request goes to the address checked.
//! - Status changes are written through the door as the job `subscriptions`.

use crate::bundle::{self, Event, Kind};
use crate::endpoint::{self, Endpoint};
use crate::registry::{Entry, Owner, Registry, event_channel, status_channel};
use crate::spec::{Channel, Content};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use store::notify::{Notification, Notifications};
use time::OffsetDateTime;

/// The sender's settings.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// The FHIR base URL (in references of notifications).
    pub base_url: String,
    /// The first retry's delay.
    pub first_retry: Duration,
    /// The longest delay between retries.
    pub max_retry: Duration,
    /// Failures in a row after which the Subscription's status becomes `error`.
    pub error_after: u32,
    /// Longest a receiver may take to answer.
    pub timeout: Duration,
    /// Longest the sender sleeps without being woken.
    pub idle_check: Duration,
}

impl DeliveryConfig {
    /// Defaults under `base_url`.
    pub fn new(base_url: impl Into<String>) -> DeliveryConfig {
        DeliveryConfig {
            base_url: base_url.into(),
            first_retry: Duration::from_millis(500),
            max_retry: Duration::from_secs(30),
            error_after: 3,
            timeout: Duration::from_secs(10),
            idle_check: Duration::from_secs(5),
        }
    }
}

/// The delay before attempt `attempts + 1`, after `attempts` failures (from 1).
pub fn backoff(config: &DeliveryConfig, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(30);
    config.first_retry.saturating_mul(1u32 << doublings).min(config.max_retry)
}

/// The running sender; stop it with [`Sender::stop`].
pub struct Sender {
    stop: Arc<AtomicBool>,
    registry: Arc<Registry>,
    thread: Option<JoinHandle<()>>,
}

impl Sender {
    /// Starts the sender over `registry` and the `notifications` outbox, writing status changes
    /// through `door`.
    pub fn start(
        registry: Arc<Registry>,
        notifications: Arc<dyn Notifications>,
        door: access::Door,
        config: DeliveryConfig,
    ) -> std::io::Result<Sender> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut worker = Worker {
            registry: Arc::clone(&registry),
            notifications,
            door,
            config,
            clients: HashMap::new(),
            last_sent: HashMap::new(),
            stop: Arc::clone(&stop),
        };
        let thread = std::thread::Builder::new().name("subscriptions".into()).spawn(move || worker.run())?;
        Ok(Sender { stop, registry, thread: Some(thread) })
    }

    /// Stops the sender and waits for it (a delivery under way finishes first).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.registry.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Why an attempt failed (fixed words: never content).
#[derive(Debug, Clone)]
struct Failure {
    reason: String,
    /// Counts toward the `error` status (a websocket with no client bound does not).
    counts: bool,
}

impl Failure {
    fn new(reason: impl Into<String>) -> Failure {
        Failure { reason: reason.into(), counts: true }
    }
}

struct Worker {
    registry: Arc<Registry>,
    notifications: Arc<dyn Notifications>,
    door: access::Door,
    config: DeliveryConfig,
    clients: HashMap<(String, SocketAddr), reqwest::blocking::Client>,
    last_sent: HashMap<String, Instant>,
    stop: Arc<AtomicBool>,
}

/// What became of one notification.
enum Outcome {
    Delivered,
    /// Not for now (the subscription is not yet active); woken again when it is.
    Held,
    Failed(Failure),
}

impl Worker {
    fn run(&mut self) {
        while !self.stop.load(Ordering::SeqCst) {
            let mut next = Instant::now() + self.config.idle_check;
            let mut full = false;
            for prefix in ["sub-status:", "sub:"] {
                match self.round(prefix, &mut next) {
                    Ok(was_full) => full |= was_full,
                    Err(error) => tracing::warn!(%error, "the subscription sender could not read its queue"),
                }
            }
            self.heartbeats(&mut next);
            if !full {
                self.registry.wait(next.saturating_duration_since(Instant::now()));
            }
        }
    }

    /// One batch of due notifications; whether it was full (more are waiting).
    fn round(&mut self, prefix: &str, next: &mut Instant) -> store::Result<bool> {
        const BATCH: usize = 200;
        let due = self.notifications.due(OffsetDateTime::now_utc(), prefix, BATCH)?;
        let full = due.len() == BATCH;
        let mut stalled: HashSet<String> = HashSet::new();
        let mut callers: HashMap<Option<Owner>, Option<Arc<policy::Caller>>> = HashMap::new();
        for notification in due {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            if stalled.contains(&notification.channel) {
                continue;
            }
            let id = notification.channel.split_once(':').map(|(_, id)| id.to_string()).unwrap_or_default();
            let Some(entry) = self.registry.get(&id) else {
                if !self.removed(&id) {
                    // Committed, but not yet in the registry (its listener runs after the
                    // commit): it wakes the sender once it is.
                    stalled.insert(notification.channel.clone());
                    continue;
                }
                // Deleted or turned off: nothing more is sent.
                if let Err(error) = self.notifications.drop_pending(&notification.channel) {
                    tracing::warn!(%error, "pending notifications of a removed subscription could not be dropped");
                }
                stalled.insert(notification.channel.clone());
                continue;
            };
            let outcome = if prefix == "sub-status:" {
                self.handshake(&entry, &notification)
            } else {
                self.event(&entry, &notification, &mut callers)
            };
            match outcome {
                Outcome::Delivered => {
                    self.notifications.delivered(notification.id)?;
                    self.last_sent.insert(id.clone(), Instant::now());
                    if entry.spec.status == "error" || (entry.spec.status == "requested" && prefix == "sub-status:") {
                        self.set_status(&id, "active", None);
                    }
                }
                Outcome::Held => {
                    stalled.insert(notification.channel.clone());
                }
                Outcome::Failed(failure) => {
                    stalled.insert(notification.channel.clone());
                    let attempts = notification.attempts + 1;
                    let delay = backoff(&self.config, attempts);
                    let retry_at = OffsetDateTime::now_utc() + delay;
                    self.notifications.attempt_failed(notification.id, &failure.reason, Some(retry_at))?;
                    *next = (*next).min(Instant::now() + delay);
                    if failure.counts && attempts >= self.config.error_after && entry.spec.status != "error" {
                        self.set_status(&id, "error", Some(&failure.reason));
                    } else if prefix == "sub-status:" && entry.spec.backport && entry.spec.status == "requested" {
                        // A handshake that fails leaves the subscription in error at once.
                        self.set_status(&id, "error", Some(&failure.reason));
                    }
                }
            }
        }
        Ok(full)
    }

    /// Whether subscription `id` is deleted, turned off, past its end or no longer valid (its
    /// pending notifications are dropped), rather than not yet in the registry.
    fn removed(&self, id: &str) -> bool {
        match self.door.records().backend().current("Subscription", id) {
            Ok(Some(version)) => {
                let resource = version.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok());
                match resource {
                    Some(resource) => crate::spec::read(&resource, version.version, &self.registry.allow_list())
                        .map_or(true, |spec| !spec.live()),
                    None => true,
                }
            }
            Ok(None) => true,
            // Unknown for now: kept, asked again next time.
            Err(_) => false,
        }
    }

    fn handshake(&mut self, entry: &Entry, notification: &Notification) -> Outcome {
        let spec = &entry.spec;
        if !spec.backport {
            // R4 criteria subscriptions have no handshake: activation is the status change.
            return Outcome::Delivered;
        }
        let _ = notification;
        match &spec.channel {
            Channel::RestHook { endpoint, headers } => {
                let latest = self.notifications.latest_number(&event_channel(&spec.id)).unwrap_or(0);
                let body =
                    bundle::notification(spec, &self.config.base_url, Kind::Handshake, latest, &[], "requested", None);
                self.post(endpoint, headers, Some(&body))
            }
            Channel::Websocket => Outcome::Delivered,
        }
    }

    fn caller_for(
        &self,
        owner: Option<&Owner>,
        callers: &mut HashMap<Option<Owner>, Option<Arc<policy::Caller>>>,
    ) -> Result<Option<Arc<policy::Caller>>, Failure> {
        let Some(policy) = self.door.policy() else { return Ok(None) };
        if let Some(caller) = callers.get(&owner.cloned()) {
            return Ok(caller.clone());
        }
        let caller = match owner {
            Some(owner) => policy
                .caller_for(&owner.name, owner.client_id.as_deref())
                .map_err(|_| Failure::new("the owner's access could not be computed"))?
                .map(Arc::new),
            None => None,
        };
        callers.insert(owner.cloned(), caller.clone());
        Ok(caller)
    }

    fn event(
        &mut self,
        entry: &Entry,
        notification: &Notification,
        callers: &mut HashMap<Option<Owner>, Option<Arc<policy::Caller>>>,
    ) -> Outcome {
        let spec = &entry.spec;
        if spec.backport && spec.status == "requested" {
            return Outcome::Held;
        }
        // The focus as it was written.
        let Some((resource_type, id, version)) = split_versioned(&notification.resource) else {
            return Outcome::Delivered;
        };
        let resource = match self.door.records().backend().version(resource_type, id, version) {
            Ok(Some(v)) => v.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()),
            Ok(None) => None,
            Err(_) => return Outcome::Failed(Failure::new("the resource could not be read")),
        };
        let Some(resource) = resource else { return Outcome::Delivered };
        // The owner's reach, now.
        if let Some(policy) = self.door.policy() {
            let owner = Owner::from_payload(&notification.payload);
            let caller = match self.caller_for(owner.as_ref(), callers) {
                Ok(caller) => caller,
                Err(failure) => return Outcome::Failed(failure),
            };
            let Some(caller) = caller else { return Outcome::Delivered };
            match policy.may_read(&caller, resource_type, &resource) {
                Ok(true) => {}
                Ok(false) => return Outcome::Delivered,
                Err(_) => return Outcome::Failed(Failure::new("the owner's access could not be checked")),
            }
        }
        match &spec.channel {
            Channel::Websocket => {
                if self.registry.sockets().send(&spec.id, &format!("ping {}", spec.id)) > 0 {
                    Outcome::Delivered
                } else {
                    Outcome::Failed(Failure { reason: "no websocket client is bound".into(), counts: false })
                }
            }
            Channel::RestHook { endpoint, headers } if spec.backport => {
                let created = notification.payload.contains("\"change\":\"create\"");
                let event = Event {
                    number: notification.number,
                    timestamp: notification.created_at,
                    focus: notification.resource.clone(),
                    resource: (spec.content == Content::FullResource).then_some(resource),
                    created,
                };
                let status = if spec.status == "error" { "error" } else { "active" };
                let body = bundle::notification(
                    spec,
                    &self.config.base_url,
                    Kind::EventNotification,
                    notification.number,
                    &[event],
                    status,
                    None,
                );
                self.post(endpoint, headers, Some(&body))
            }
            Channel::RestHook { endpoint, headers } => {
                let body = (spec.content == Content::FullResource).then_some(&resource);
                self.post(endpoint, headers, body)
            }
        }
    }

    fn heartbeats(&mut self, next: &mut Instant) {
        for entry in self.registry.with_heartbeat() {
            let spec = &entry.spec;
            let (Some(period), true, Channel::RestHook { endpoint, headers }) =
                (spec.heartbeat, spec.backport && spec.status == "active", &spec.channel)
            else {
                continue;
            };
            let period = Duration::from_secs(period);
            let last = *self.last_sent.entry(spec.id.clone()).or_insert_with(Instant::now);
            if last.elapsed() >= period {
                let latest = self.notifications.latest_number(&event_channel(&spec.id)).unwrap_or(0);
                let body =
                    bundle::notification(spec, &self.config.base_url, Kind::Heartbeat, latest, &[], "active", None);
                let _ = self.post(endpoint, headers, Some(&body));
                self.last_sent.insert(spec.id.clone(), Instant::now());
                *next = (*next).min(Instant::now() + period);
            } else {
                *next = (*next).min(last + period);
            }
        }
    }

    fn client(&mut self, endpoint: &Endpoint, address: SocketAddr) -> Result<reqwest::blocking::Client, Failure> {
        let key = (endpoint.host.clone(), address);
        if let Some(client) = self.clients.get(&key) {
            return Ok(client.clone());
        }
        let mut builder = reqwest::blocking::Client::builder()
            .timeout(self.config.timeout)
            .connect_timeout(self.config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("continuum-subscriptions/", env!("CARGO_PKG_VERSION")))
            .resolve(&endpoint.host, address);
        if endpoint.url.scheme() == "https" {
            for path in ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"]
            {
                if let Ok(pem) = std::fs::read(path) {
                    for certificate in reqwest::Certificate::from_pem_bundle(&pem).unwrap_or_default() {
                        builder = builder.add_root_certificate(certificate);
                    }
                    break;
                }
            }
        }
        let client = builder.build().map_err(|_| Failure::new("no HTTP client could be made"))?;
        if self.clients.len() > 1000 {
            self.clients.clear();
        }
        self.clients.insert(key, client.clone());
        Ok(client)
    }

    fn post(&mut self, endpoint: &Endpoint, headers: &[(String, String)], body: Option<&Value>) -> Outcome {
        let address = match endpoint::resolve(endpoint, &self.registry.allow_list()) {
            Ok(address) => address,
            Err(error) => return Outcome::Failed(Failure::new(error.to_string())),
        };
        let client = match self.client(endpoint, address) {
            Ok(client) => client,
            Err(failure) => return Outcome::Failed(failure),
        };
        let mut request = client.post(endpoint.url.clone());
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        request = match body {
            Some(body) => request.header("Content-Type", "application/fhir+json").body(body.to_string()),
            None => request.header("Content-Length", "0"),
        };
        match request.send() {
            Ok(response) if response.status().is_success() => Outcome::Delivered,
            Ok(response) => {
                Outcome::Failed(Failure::new(format!("the endpoint answered HTTP {}", response.status().as_u16())))
            }
            Err(error) if error.is_timeout() => Outcome::Failed(Failure::new("the endpoint did not answer in time")),
            Err(_) => Outcome::Failed(Failure::new("the endpoint could not be reached")),
        }
    }

    /// Writes the Subscription's `status` (and `error`) through the door as the job
    /// `subscriptions`; a concurrent change wins (it is retried with the next outcome).
    fn set_status(&self, id: &str, status: &str, error: Option<&str>) {
        let access = self.door.enter(access::Who::Job("subscriptions"));
        let result = (|| -> Result<(), access::Error> {
            let current = access.read("Subscription", id)?;
            let Some(body) = current.body.as_deref() else { return Ok(()) };
            let mut resource: Value = serde_json::from_str(body).map_err(|_| {
                access::Error::Store(store::Error::Storage("a stored Subscription could not be read".into()))
            })?;
            let now = resource.get("status").and_then(Value::as_str);
            if now == Some("off") || (now == Some(status) && resource.get("error").and_then(Value::as_str) == error) {
                return Ok(());
            }
            let Some(object) = resource.as_object_mut() else { return Ok(()) };
            object.insert("status".into(), Value::String(status.to_string()));
            match error {
                Some(error) => object.insert("error".into(), Value::String(error.to_string())),
                None => object.remove("error"),
            };
            access.update("Subscription", id, resource, Some(current.version))?;
            Ok(())
        })();
        if let Err(error) = result {
            tracing::warn!(%error, "a subscription's status could not be written");
        }
        let _ = access.settle_queued();
        if status == "active" {
            // The notifications held for activation or waiting for a retry go now.
            let _ = self.notifications.retry_now(&event_channel(id));
            let _ = self.notifications.retry_now(&status_channel(id));
        }
    }
}

/// `Type/id/_history/N` split.
fn split_versioned(reference: &str) -> Option<(&str, &str, u64)> {
    let (resource, version) = reference.split_once("/_history/")?;
    let (resource_type, id) = resource.split_once('/')?;
    Some((resource_type, id, version.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let config = DeliveryConfig::new("http://x/fhir");
        assert_eq!(backoff(&config, 1), Duration::from_millis(500));
        assert_eq!(backoff(&config, 2), Duration::from_secs(1));
        assert_eq!(backoff(&config, 3), Duration::from_secs(2));
        assert_eq!(backoff(&config, 7), Duration::from_secs(30));
        assert_eq!(backoff(&config, 1000), Duration::from_secs(30));
    }

    #[test]
    fn versioned_references_split() {
        assert_eq!(split_versioned("Observation/a-1/_history/3"), Some(("Observation", "a-1", 3)));
        assert_eq!(split_versioned("Observation/a-1"), None);
    }
}
