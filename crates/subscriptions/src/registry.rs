//! The active subscriptions, in memory, and the write hook that matches every write against
//! them inside the write's own transaction.
//!
//! The list is loaded when the server starts ([`Registry::load`]) and kept current from the
//! commit feed: the hook reads and validates every Subscription written (refusing a bad one,
//! whatever the door) and stages what it understood under its version; when that version
//! commits, the feed's listener puts it in the list (before the writer's caller is answered,
//! so a write made after a Subscription's `201` is matched against it). A staged version that
//! never commits is never used.
//!
//! The owner of a subscription — who wrote it, as the records were told — is kept durably in
//! the payload of its handshake notification (channel `sub-status:ID`, queued in the
//! Subscription's own write) and copied into every event notification (channel `sub:ID`), so
//! that the sender checks what it delivers against the owner's reach as it stands then.
//! Versions written by the sender itself (status `active`/`error`) change nothing but the
//! status and keep the owner.

use crate::endpoint::AllowList;
use crate::spec::{self, Criteria, Spec};
use crate::topics;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};
use store::notify::NewNotification;
use store::{Change, Committed, NewVersion, ResourceVersion, Transaction, WriteHook};

/// Who a subscription's notifications are for: who wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    /// A user's sign-in name or a backend client's id.
    pub name: String,
    /// The app they wrote through.
    pub client_id: Option<String>,
}

impl Owner {
    /// As kept in notification payloads.
    pub fn to_json(owner: Option<&Owner>) -> Value {
        match owner {
            Some(o) => json!({"name": o.name, "client_id": o.client_id}),
            None => Value::Null,
        }
    }

    /// From a notification payload.
    pub fn from_payload(payload: &str) -> Option<Owner> {
        let value: Value = serde_json::from_str(payload).ok()?;
        let owner = value.get("owner")?;
        Some(Owner {
            name: owner.get("name")?.as_str()?.to_string(),
            client_id: owner.get("client_id").and_then(Value::as_str).map(str::to_string),
        })
    }
}

/// An active subscription.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The subscription as understood.
    pub spec: Spec,
    /// Its owner (`None`: written by no one known — an open server, or the server itself).
    pub owner: Option<Owner>,
}

/// The channel of a subscription's event notifications (numbered: its event numbers).
pub fn event_channel(id: &str) -> String {
    format!("sub:{id}")
}

/// The channel of a subscription's handshakes (activation).
pub fn status_channel(id: &str) -> String {
    format!("sub-status:{id}")
}

#[derive(Default)]
struct Active {
    by_id: HashMap<String, Arc<Entry>>,
    by_type: HashMap<String, ByType>,
}

/// The subscriptions that may match writes of one type: those that a token or reference of
/// the written version must name (looked up by it), and the others.
#[derive(Default)]
struct ByType {
    always: Vec<Arc<Entry>>,
    by_value: HashMap<(i64, String), Vec<Arc<Entry>>>,
}

/// The index values a matching resource must hold one of: those of the first filter on a
/// token (codes) or a reference (ids) of the search, compared case-folded (a necessary
/// condition only: the search itself decides). `None` when no filter is that simple.
fn required_values(query: &search::SearchQuery) -> Option<Vec<(i64, String)>> {
    'filters: for filter in &query.filters {
        let search::Filter::Param { keys, conditions, .. } = filter else { continue };
        let mut values = Vec::new();
        for key in keys {
            for condition in conditions {
                match condition {
                    search::Condition::Token { code: Some(code), .. } => values.push((*key, code.to_lowercase())),
                    search::Condition::Reference { id, .. } => values.push((*key, format!("ref:{id}"))),
                    _ => continue 'filters,
                }
            }
        }
        if !values.is_empty() {
            return Some(values);
        }
    }
    None
}

/// What [`required_values`] compares, of one index row.
fn index_value(entry: &search::IndexEntry) -> Option<(i64, String)> {
    match &entry.value {
        search::IndexValue::Token { code: Some(code), .. } => Some((entry.param, code.to_lowercase())),
        search::IndexValue::Reference { target_id: Some(id), .. } => Some((entry.param, format!("ref:{id}"))),
        _ => None,
    }
}

impl Active {
    fn with(&self, change: impl FnOnce(&mut HashMap<String, Arc<Entry>>)) -> Active {
        let mut by_id = self.by_id.clone();
        change(&mut by_id);
        let mut by_type: HashMap<String, ByType> = HashMap::new();
        let mut entries: Vec<&Arc<Entry>> = by_id.values().collect();
        entries.sort_by(|a, b| a.spec.id.cmp(&b.spec.id));
        for entry in entries {
            for t in entry.spec.criteria.types() {
                let group = by_type.entry(t.to_string()).or_default();
                let required = match &entry.spec.criteria {
                    Criteria::Search { query, .. } => required_values(query),
                    Criteria::Topic { .. } => None,
                };
                match required {
                    Some(values) => {
                        for value in values {
                            group.by_value.entry(value).or_default().push(Arc::clone(entry));
                        }
                    }
                    None => group.always.push(Arc::clone(entry)),
                }
            }
        }
        Active { by_id, by_type }
    }
}

/// What the hook understood of a Subscription version, until it commits.
struct Staged {
    spec: Option<Spec>,
    /// `Some`: the owner this version sets; `None`: the current owner stays.
    owner: Option<Option<Owner>>,
}

/// The registry: active subscriptions, the operator's allow-list, the bound websockets and
/// the sender's wake-up.
pub struct Registry {
    active: RwLock<Arc<Active>>,
    staged: Mutex<HashMap<(String, u64), Staged>>,
    allow: RwLock<AllowList>,
    wake: (Mutex<bool>, Condvar),
    /// Set by the hook when it queued a notification: the next commit wakes the sender (a
    /// write that queued nothing does not).
    queued: AtomicBool,
    sockets: crate::sockets::Sockets,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            active: RwLock::new(Arc::new(Active::default())),
            staged: Mutex::default(),
            allow: RwLock::new(AllowList::default()),
            wake: (Mutex::new(false), Condvar::new()),
            queued: AtomicBool::new(false),
            sockets: crate::sockets::Sockets::default(),
        }
    }
}

impl Registry {
    /// An empty registry (fill it with [`Registry::load`] once the store is open).
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// The write hook over this registry (install it on the records).
    pub fn hook(self: &Arc<Self>) -> Arc<dyn WriteHook> {
        Arc::new(SubscriptionHook(Arc::clone(self)))
    }

    /// Sets the operator's allow-list of otherwise forbidden endpoints.
    pub fn set_allow_list(&self, allow: AllowList) {
        *self.allow.write().unwrap_or_else(|e| e.into_inner()) = allow;
    }

    /// The operator's allow-list.
    pub fn allow_list(&self) -> AllowList {
        self.allow.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The bound websockets.
    pub fn sockets(&self) -> &crate::sockets::Sockets {
        &self.sockets
    }

    fn snapshot(&self) -> Arc<Active> {
        Arc::clone(&self.active.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The active subscription `id`.
    pub fn get(&self, id: &str) -> Option<Arc<Entry>> {
        self.snapshot().by_id.get(id).cloned()
    }

    /// Every active subscription.
    pub fn all(&self) -> Vec<Arc<Entry>> {
        let mut all: Vec<_> = self.snapshot().by_id.values().cloned().collect();
        all.sort_by(|a, b| a.spec.id.cmp(&b.spec.id));
        all
    }

    /// The active subscriptions with a heartbeat period.
    pub fn with_heartbeat(&self) -> Vec<Arc<Entry>> {
        self.snapshot().by_id.values().filter(|e| e.spec.heartbeat.is_some()).cloned().collect()
    }

    /// How many subscriptions are active.
    pub fn len(&self) -> usize {
        self.snapshot().by_id.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Loads the subscriptions that are not `off` from `records`, their owners from their
    /// latest handshake in `notifications`; listens to the commit feed from then on.
    pub fn load(
        self: &Arc<Self>,
        records: &store::Records,
        notifications: &dyn store::Notifications,
    ) -> store::Result<usize> {
        records.changes().listen(Arc::clone(self) as Arc<dyn store::CommitListener>);
        let pairs = vec![("status".to_string(), "requested,active,error".to_string())];
        let query =
            search::SearchQuery::parse(Some("Subscription"), &pairs, true).map_err(|e| store::Error::Invalid(e.0))?;
        let page = records.search(&query, 100_000)?;
        let allow = self.allow_list();
        let mut loaded = Vec::new();
        for version in page.matches {
            let Some(body) = &version.body else { continue };
            let Ok(resource) = serde_json::from_str::<Value>(body) else { continue };
            let spec = match spec::read(&resource, version.version, &allow) {
                Ok(spec) if spec.live() => spec,
                Ok(_) => continue,
                Err(_) => {
                    tracing::warn!("a stored Subscription is no longer valid here; it is not served");
                    continue;
                }
            };
            let channel = status_channel(&version.id);
            let latest = notifications.latest_number(&channel)?;
            let owner = notifications
                .events(&channel, latest, latest, 1)?
                .first()
                .and_then(|n| Owner::from_payload(&n.payload));
            loaded.push(Arc::new(Entry { spec, owner }));
        }
        let count = loaded.len();
        let mut active = self.active.write().unwrap_or_else(|e| e.into_inner());
        *active = Arc::new(active.with(|by_id| {
            for entry in loaded {
                by_id.insert(entry.spec.id.clone(), entry);
            }
        }));
        drop(active);
        self.wake();
        Ok(count)
    }

    /// Wakes the sender.
    pub fn wake(&self) {
        let (flag, condvar) = &self.wake;
        *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        condvar.notify_all();
    }

    /// Waits until woken or `timeout` passed.
    pub fn wait(&self, timeout: Duration) {
        let (flag, condvar) = &self.wake;
        let deadline = Instant::now() + timeout;
        let mut woken = flag.lock().unwrap_or_else(|e| e.into_inner());
        while !*woken {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            woken = condvar.wait_timeout(woken, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        *woken = false;
    }

    fn stage(&self, id: &str, version: u64, staged: Staged) {
        let mut map = self.staged.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 10_000 {
            // Versions whose writes rolled back: never committed, never needed.
            map.clear();
        }
        map.insert((id.to_string(), version), staged);
    }
}

impl store::CommitListener for Registry {
    fn committed(&self, changes: &[Committed]) {
        let mut wanted = false;
        let mut updates: Vec<(String, Option<Arc<Entry>>)> = Vec::new();
        {
            let active = self.snapshot();
            for change in changes {
                if change.resource_type != "Subscription" {
                    continue;
                }
                wanted = true;
                if change.change == Change::Deleted {
                    updates.push((change.id.clone(), None));
                    continue;
                }
                let staged =
                    self.staged.lock().unwrap_or_else(|e| e.into_inner()).remove(&(change.id.clone(), change.version));
                let Some(staged) = staged else { continue };
                let entry = staged.spec.filter(Spec::live).map(|spec| {
                    let owner = match staged.owner {
                        Some(owner) => owner,
                        None => active.by_id.get(&change.id).and_then(|e| e.owner.clone()),
                    };
                    Arc::new(Entry { spec, owner })
                });
                updates.push((change.id.clone(), entry));
            }
        }
        if !updates.is_empty() {
            let mut active = self.active.write().unwrap_or_else(|e| e.into_inner());
            *active = Arc::new(active.with(|by_id| {
                for (id, entry) in updates {
                    match entry {
                        Some(entry) => by_id.insert(id, entry),
                        None => by_id.remove(&id),
                    };
                }
            }));
        }
        if self.queued.swap(false, Ordering::AcqRel) {
            wanted = true;
        }
        if wanted {
            self.wake();
        }
    }
}

/// The hook: validates Subscriptions, queues their handshakes, and matches every other write
/// of a wanted type against the active subscriptions.
struct SubscriptionHook(Arc<Registry>);

/// Whether two versions of a Subscription differ in more than what the sender writes.
fn material_change(previous: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            for key in ["meta", "status", "error", "text"] {
                o.remove(key);
            }
        }
        v
    };
    strip(previous) != strip(new)
}

fn body_json(body: Option<&str>) -> Option<Value> {
    serde_json::from_str(body?).ok()
}

impl SubscriptionHook {
    fn subscription_written(
        &self,
        tx: &mut dyn Transaction,
        previous: Option<&ResourceVersion>,
        new: &NewVersion<'_>,
        actor: Option<&store::Agent>,
    ) -> store::Result<()> {
        let Some(resource) = body_json(new.body) else {
            // Deleted: nothing more is sent; the sender drops what was pending.
            return Ok(());
        };
        let spec = spec::read(&resource, new.version, &self.0.allow_list()).map_err(store::Error::Unprocessable)?;
        let before = previous.and_then(|p| body_json(p.body.as_deref()));
        let handshake = spec.live()
            && (spec.status == "requested" || before.as_ref().is_none_or(|b| material_change(b, &resource)));
        let owner = if handshake {
            let owner = actor.map(|a| Owner { name: a.name.clone(), client_id: a.client_id.clone() });
            let payload = json!({"owner": Owner::to_json(owner.as_ref()), "version": new.version}).to_string();
            let resource_ref = format!("Subscription/{}/_history/{}", new.id, new.version);
            let channel = status_channel(new.id);
            tx.enqueue_notification(&NewNotification {
                channel: &channel,
                event: "handshake",
                resource: &resource_ref,
                patient: None,
                payload: &payload,
            })?;
            Some(owner)
        } else {
            None
        };
        self.0.stage(new.id, new.version, Staged { spec: Some(spec), owner });
        Ok(())
    }
}

impl WriteHook for SubscriptionHook {
    fn wants(&self, resource_type: &str) -> bool {
        resource_type == "Subscription"
            || self.0.active.read().unwrap_or_else(|e| e.into_inner()).by_type.contains_key(resource_type)
    }

    fn written(
        &self,
        tx: &mut dyn Transaction,
        previous: Option<&ResourceVersion>,
        new: &NewVersion<'_>,
        sequence: i64,
    ) -> store::Result<()> {
        self.written_by(tx, previous, new, sequence, None)
    }

    fn written_by(
        &self,
        tx: &mut dyn Transaction,
        previous: Option<&ResourceVersion>,
        new: &NewVersion<'_>,
        _sequence: i64,
        actor: Option<&store::Agent>,
    ) -> store::Result<()> {
        if new.resource_type == "Subscription" {
            return self.subscription_written(tx, previous, new, actor);
        }
        if new.body.is_none() {
            return Ok(());
        }
        let active = self.0.snapshot();
        let Some(group) = active.by_type.get(new.resource_type) else { return Ok(()) };
        let mut candidates: Vec<&Arc<Entry>> = group.always.iter().collect();
        if !group.by_value.is_empty() {
            for value in new.index.iter().filter_map(index_value) {
                if let Some(entries) = group.by_value.get(&value) {
                    candidates.extend(entries);
                }
            }
        }
        if candidates.is_empty() {
            return Ok(());
        }
        candidates.sort_by(|a, b| a.spec.id.cmp(&b.spec.id));
        candidates.dedup_by(|a, b| Arc::ptr_eq(a, b));
        let by_id =
            search::SearchQuery::parse(Some(new.resource_type), &[("_id".to_string(), new.id.to_string())], true)
                .map_err(|e| store::Error::Invalid(e.0))?
                .filters;
        let mut parsed: Option<(Option<Value>, Option<Value>)> = None;
        let reference = format!("{}/{}/_history/{}", new.resource_type, new.id, new.version);
        let patient = store::compartment::patients_in_index(new.resource_type, new.index).into_iter().next();
        for entry in candidates {
            let matched = match &entry.spec.criteria {
                Criteria::Search { query, .. } => matches(tx, query, &by_id)?,
                Criteria::Topic { topic, filters } => {
                    let (before, after) = parsed.get_or_insert_with(|| {
                        (previous.and_then(|p| body_json(p.body.as_deref())), body_json(new.body))
                    });
                    let Some(after) = after.as_ref() else { continue };
                    if !topics::triggers(topic, tx, before.as_ref(), after, new)? {
                        continue;
                    }
                    let mut all = true;
                    for (_, query) in filters.iter().filter(|(t, _)| t == new.resource_type) {
                        if !matches(tx, query, &by_id)? {
                            all = false;
                            break;
                        }
                    }
                    all
                }
            };
            if !matched {
                continue;
            }
            let event = match &entry.spec.criteria {
                Criteria::Search { .. } => "subscription-match",
                Criteria::Topic { topic, .. } => topic.code,
            };
            let payload = json!({
                "owner": Owner::to_json(entry.owner.as_ref()),
                "subscription_version": entry.spec.version,
                "change": change_code(new.change),
            })
            .to_string();
            let channel = event_channel(&entry.spec.id);
            self.0.queued.store(true, Ordering::Release);
            tx.enqueue_notification(&NewNotification {
                channel: &channel,
                event,
                resource: &reference,
                patient: patient.as_deref(),
                payload: &payload,
            })?;
        }
        Ok(())
    }
}

fn change_code(change: Change) -> &'static str {
    match change {
        Change::Created => "create",
        Change::Updated => "update",
        Change::Deleted => "delete",
    }
}

/// Whether the resource whose `_id` filters are `by_id` matches `query`, as the transaction
/// sees it.
fn matches(tx: &mut dyn Transaction, query: &search::SearchQuery, by_id: &[search::Filter]) -> store::Result<bool> {
    let mut query = query.clone();
    query.filters.extend(by_id.iter().cloned());
    Ok(!tx.search_ids(&query, 1)?.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_senders_fields_are_immaterial() {
        let a = json!({"resourceType": "Subscription", "status": "requested", "criteria": "Observation?code=1"});
        let mut b = a.clone();
        b["status"] = json!("error");
        b["error"] = json!("the endpoint failed");
        b["meta"] = json!({"versionId": "2"});
        assert!(!material_change(&a, &b));
        b["criteria"] = json!("Observation?code=2");
        assert!(material_change(&a, &b));
    }

    fn parsed(pairs: &[(&str, &str)]) -> search::SearchQuery {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        search::SearchQuery::parse(Some("Observation"), &pairs, true).unwrap()
    }

    #[test]
    fn the_pre_check_needs_a_value_a_match_must_hold() {
        let code = search::param_key("Observation", "code");
        let patient = search::param_key("Observation", "patient");
        let query = parsed(&[("code", "http://loinc.org|1234-5,http://loinc.org|99-9"), ("patient", "Patient/1")]);
        assert_eq!(required_values(&query), Some(vec![(code, "1234-5".into()), (code, "99-9".into())]));
        let query = parsed(&[("patient", "Patient/1")]);
        assert_eq!(required_values(&query), Some(vec![(patient, "ref:1".into())]));
        // `:text` and `:not` name no value a match must hold: the search decides alone.
        assert_eq!(required_values(&parsed(&[("code:text", "glucose")])), None);
        assert_eq!(required_values(&parsed(&[("code:not", "http://loinc.org|1")])), None);
        assert_eq!(required_values(&parsed(&[("date", "ge2020")])), None);
        let row = search::IndexEntry {
            param: code,
            group: None,
            value: search::IndexValue::Token {
                system: Some("http://loinc.org".into()),
                code: Some("1234-5".into()),
                text: None,
            },
        };
        assert_eq!(index_value(&row), Some((code, "1234-5".into())));
    }

    fn observation(patient: &str, code: &str) -> Value {
        json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": format!("Patient/{patient}")}})
    }

    #[test]
    fn writes_are_matched_inside_their_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(store_sqlite::SqliteBackend::open(dir.path()).unwrap());
        let notifications = backend.notifications().unwrap();
        let registry = Registry::new();
        registry.set_allow_list(AllowList::parse(&["127.0.0.1"]).unwrap());
        let records = store::Records::new(backend).with_hook(registry.hook());
        registry.load(&records, &notifications).unwrap();
        use store::Notifications as _;
        for p in ["p1", "p2"] {
            records.update("Patient", p, json!({"resourceType": "Patient", "id": p}), None).unwrap();
        }
        let subscription = json!({"resourceType": "Subscription", "status": "requested", "reason": "test",
            "criteria": "Observation?code=http://loinc.org|1234-5&patient=Patient/p1",
            "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook"}});
        let id = records.create(subscription.clone(), None).unwrap().version.unwrap().id;
        assert!(registry.get(&id).is_some(), "active as soon as its write committed");
        let handshake = notifications.events(&status_channel(&id), 1, 1, 1).unwrap();
        assert_eq!(handshake.len(), 1);
        assert_eq!(handshake[0].event, "handshake");

        let matching = records.create(observation("p1", "1234-5"), None).unwrap().version.unwrap().id;
        records.create(observation("p1", "9999-9"), None).unwrap();
        records.create(observation("p2", "1234-5"), None).unwrap();
        let events = notifications.events(&event_channel(&id), 1, 100, 100).unwrap();
        assert_eq!(events.len(), 1, "only the write that matches the criteria");
        assert_eq!(events[0].number, 1);
        assert_eq!(events[0].resource, format!("Observation/{matching}/_history/1"));
        assert_eq!(events[0].patient.as_deref(), Some("p1"));

        // A bad one is refused by the hook, and nothing of it is kept.
        let mut bad = subscription.clone();
        bad["criteria"] = json!("Observation?no-such-parameter=1");
        let refused = records.create(bad, None).unwrap_err();
        assert_eq!(refused.kind(), store::ErrorKind::Unprocessable);
        assert_eq!(registry.len(), 1);

        // Turned off: nothing more is matched.
        let mut off = subscription;
        off["id"] = json!(id);
        off["status"] = json!("off");
        records.update("Subscription", &id, off, None).unwrap();
        assert!(registry.get(&id).is_none());
        records.create(observation("p1", "1234-5"), None).unwrap();
        assert_eq!(notifications.latest_number(&event_channel(&id)).unwrap(), 1);
    }

    #[test]
    fn topics_trigger_on_their_transitions_only() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(store_sqlite::SqliteBackend::open(dir.path()).unwrap());
        let notifications = backend.notifications().unwrap();
        let registry = Registry::new();
        let records = store::Records::new(backend).with_hook(registry.hook());
        registry.load(&records, &notifications).unwrap();
        use store::Notifications as _;
        records.update("Patient", "p1", json!({"resourceType": "Patient", "id": "p1"}), None).unwrap();
        let subscribe = |topic: &str| {
            let subscription = json!({"resourceType": "Subscription", "status": "requested", "reason": "test",
                "meta": {"profile": [crate::spec::BACKPORT_PROFILE]},
                "criteria": format!("{}{topic}", crate::topics::TOPIC_BASE),
                "_criteria": {"extension": [{"url": crate::spec::FILTER_CRITERIA, "valueString": "Encounter?patient=Patient/p1"}]},
                "channel": {"type": "rest-hook", "endpoint": "https://8.8.8.8/hook", "payload": "application/fhir+json"}});
            records.create(subscription, None).unwrap().version.unwrap().id
        };
        let (start, end) = (subscribe("encounter-start"), subscribe("encounter-end"));
        let encounter = |status: &str| {
            json!({"resourceType": "Encounter", "id": "e1", "status": status,
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": "Patient/p1"}})
        };
        for status in ["planned", "in-progress", "in-progress", "finished", "finished"] {
            records.update("Encounter", "e1", encounter(status), None).unwrap();
        }
        let started = notifications.events(&event_channel(&start), 1, 100, 100).unwrap();
        assert_eq!(started.len(), 1, "started once");
        assert_eq!(started[0].resource, "Encounter/e1/_history/2");
        assert_eq!(started[0].event, "encounter-start");
        let ended = notifications.events(&event_channel(&end), 1, 100, 100).unwrap();
        assert_eq!(ended.len(), 1, "ended once");
        assert!(ended[0].resource.starts_with("Encounter/e1/_history/"));
        assert!(ended[0].number == 1 && started[0].number == 1, "each subscription numbers its own events");
    }

    #[test]
    fn owners_round_trip_through_payloads() {
        let owner = Owner { name: "dr.a".into(), client_id: Some("app".into()) };
        let payload = json!({"owner": Owner::to_json(Some(&owner))}).to_string();
        assert_eq!(Owner::from_payload(&payload), Some(owner));
        assert_eq!(Owner::from_payload(&json!({"owner": null}).to_string()), None);
    }
}
