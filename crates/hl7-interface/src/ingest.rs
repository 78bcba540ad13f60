//! One received message, from bytes to ACK: parse, log verbatim, recognise duplicates, map,
//! commit the one transaction Bundle, record the outcome, acknowledge.
//!
//! Every message comes from a [`Peer`], the partner the listener recognised by the connection's
//! address: the message is logged under that partner, a duplicate is a message with the same
//! MSH-3/MSH-4 and MSH-10 *from the same partner* (so that no other peer can make a partner's
//! messages be dropped as duplicates), and a destructive event
//! ([`crate::partners::DESTRUCTIVE_EVENTS`]) is refused with `AR`, changing nothing, unless the
//! partner is allowed it.
//!
//! The ACK is built only after the commit has returned (and the store answers only once a
//! commit is durable), so `AA` means the effects are in the record. Exactly-once: each message's
//! Bundle writes `Provenance/hl7v2-message-<log id>`; a logged message whose outcome was lost
//! in a crash is settled at start-up by whether that Provenance exists ([`Interface::recover`]).

use crate::JOB;
use crate::map::{self, Context, Kind, MapError, provenance_id};
use crate::partners::{AllowList, Peer};
use access::{Access, Door, Who};
use hl7v2::{AckCode, AckError, AckHeader, ErrorCode, ErrorLocation, Message};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use store::ErrorKind;
use store::messages::{MessageLog, MessageOutcome, MessageStatus, NewMessage};

/// HL7 versions taken (MSH-12).
const VERSIONS: &[&str] = &["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2"];
/// How often a message is mapped again when the record changed under it.
const ATTEMPTS: usize = 4;

/// The result of handling one message.
#[derive(Debug, Clone)]
pub struct Handled {
    /// The log id (`None` when the message could not even be logged).
    pub log_id: Option<i64>,
    /// Where it ended.
    pub status: Option<MessageStatus>,
    /// The encoded ACK to send back; `None` when nothing may be answered (the message could
    /// not be stored, so the sender must send it again).
    pub ack: Option<String>,
}

/// The HL7 v2 interface over one record and its message log.
pub struct Interface {
    door: Door,
    log: Arc<dyn MessageLog>,
    in_flight: KeyLocks,
}

impl Interface {
    /// An interface reaching the record through `door` (as the job [`JOB`]) and logging into
    /// `log`.
    pub fn new(door: Door, log: Arc<dyn MessageLog>) -> Self {
        Interface { door, log, in_flight: KeyLocks::default() }
    }

    /// The door entered as the interface: what it reads is audited under its name, what it
    /// writes in the write's own transaction.
    fn enter(&self) -> Access {
        self.door.enter(Who::Job(JOB))
    }

    /// The message log.
    pub fn log(&self) -> &Arc<dyn MessageLog> {
        &self.log
    }

    /// The listener's allow-list, from the inbound partners registered now.
    pub fn allow_list(&self) -> store::Result<AllowList> {
        Ok(AllowList::new(self.log.inbound_partners()?))
    }

    /// Handles one received message (the content of one MLLP frame) from `peer`. Blocking:
    /// call it from a blocking thread.
    pub fn handle(&self, raw: &[u8], peer: &Peer) -> Handled {
        let message = Message::parse_bytes(raw);
        let (sender, control_id, message_type) = match &message {
            Ok(m) => header_keys(m),
            Err(_) => (String::new(), String::new(), String::new()),
        };
        let new = NewMessage {
            partner: &peer.partner,
            sender: &sender,
            control_id: &control_id,
            message_type: &message_type,
            raw,
        };
        let log_id = match self.log.receive(&new) {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(kind = ?e.kind(), "an HL7 message could not be logged; no ACK sent");
                return Handled { log_id: None, status: None, ack: None };
            }
        };
        let (status, ack) = match message {
            Ok(message) => self.process(log_id, &message, peer, &sender, &control_id),
            Err(e) => {
                let error = AckError::from_parse_error(&e);
                self.finish(log_id, MessageStatus::Rejected, outcome(AckCode::AR, Some(e.to_string())));
                (MessageStatus::Rejected, hl7v2::ack_unparseable(raw, &error, &ack_header(log_id).as_header()).encode())
            }
        };
        Handled { log_id: Some(log_id), status: Some(status), ack: Some(ack) }
    }

    /// Runs a logged message again (after a fix): a failed, rejected or unfinished one, as
    /// the partner it came from, with that partner's permissions now.
    pub fn replay(&self, log_id: i64) -> Result<Handled, ReplayError> {
        let stored = self.log.get(log_id).map_err(|_| ReplayError::Storage)?.ok_or(ReplayError::NotFound)?;
        if matches!(stored.status, MessageStatus::Processed | MessageStatus::Duplicate) {
            return Err(ReplayError::AlreadyApplied);
        }
        let peer = self.allow_list().map_err(|_| ReplayError::Storage)?.named(&stored.partner);
        let (status, ack) = match Message::parse_bytes(&stored.raw) {
            Ok(message) => {
                let (sender, control_id, _) = header_keys(&message);
                self.process(log_id, &message, &peer, &sender, &control_id)
            }
            Err(e) => {
                let error = AckError::from_parse_error(&e);
                self.finish(log_id, MessageStatus::Rejected, outcome(AckCode::AR, Some(e.to_string())));
                (
                    MessageStatus::Rejected,
                    hl7v2::ack_unparseable(&stored.raw, &error, &ack_header(log_id).as_header()).encode(),
                )
            }
        };
        Ok(Handled { log_id: Some(log_id), status: Some(status), ack: Some(ack) })
    }

    /// Settles messages left `received` by a crash: one whose Provenance exists was applied
    /// (its outcome was lost) and is marked processed; any other is processed now. Returns how
    /// many were settled.
    pub fn recover(&self) -> Result<usize, ReplayError> {
        let query =
            store::MessageQuery { statuses: vec![MessageStatus::Received], limit: 10_000, ..Default::default() };
        let pending = self.log.list(&query).map_err(|_| ReplayError::Storage)?;
        for message in pending.iter().rev() {
            let access = self.enter();
            let applied = access.read("Provenance", &provenance_id(message.id));
            access.settle_queued();
            match applied {
                Ok(version) => {
                    let resources = version
                        .body
                        .as_deref()
                        .and_then(|b| serde_json::from_str::<Value>(b).ok())
                        .and_then(|b| b.get("target").and_then(Value::as_array).cloned())
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|t| t.get("reference").and_then(Value::as_str).map(str::to_string))
                        .collect::<Vec<_>>();
                    let patient = resources.iter().find_map(|r| r.strip_prefix("Patient/").map(str::to_string));
                    let done = MessageOutcome { patient, resources, ..outcome(AckCode::AA, None) };
                    self.finish(message.id, MessageStatus::Processed, done);
                }
                Err(_) => {
                    self.replay(message.id)?;
                }
            }
        }
        Ok(pending.len())
    }

    fn finish(&self, log_id: i64, status: MessageStatus, outcome: MessageOutcome) {
        if let Err(e) = self.log.finish(log_id, status, &outcome) {
            // The effects (if any) are committed; recovery settles the log row.
            tracing::warn!(log_id, kind = ?e.kind(), "the outcome of an HL7 message could not be logged");
        }
    }

    /// Processes a parsed, logged message and returns its status and encoded ACK.
    fn process(
        &self,
        log_id: i64,
        message: &Message,
        peer: &Peer,
        sender: &str,
        control_id: &str,
    ) -> (MessageStatus, String) {
        let header = ack_header(log_id);
        let reject = |code: AckCode, error: MapError| {
            let status = if code == AckCode::AR { MessageStatus::Rejected } else { MessageStatus::Failed };
            self.finish(log_id, status, outcome(code, Some(error.message.clone())));
            (status, hl7v2::ack(message, code, Some(&error.to_ack_error()), &header.as_header()).encode())
        };
        if control_id.is_empty() {
            return reject(AckCode::AR, MapError::missing_field("MSH", 10));
        }
        let version = message.version().unwrap_or_default();
        if !VERSIONS.contains(&version.as_str()) {
            let error = MapError::new(ErrorCode::UnsupportedVersionId, "HL7 version is not supported (2.3 to 2.8)")
                .at(ErrorLocation::field("MSH", 1, 12));
            return reject(AckCode::AR, error);
        }
        let kind = match map::kind_of(message) {
            Ok(kind) => kind,
            Err(error) => return reject(AckCode::AR, error),
        };
        if let Some(event) = kind.destructive()
            && !peer.may_send(event)
        {
            // Nothing is read or written: the partner is not trusted with this event.
            tracing::warn!(log_id, trigger = event, partner = %peer.partner, "HL7 destructive event refused: the partner is not allowed it");
            let error = MapError::new(
                ErrorCode::UnsupportedEventCode,
                format!("this partner is not allowed to send {event} (a destructive event)"),
            )
            .at(ErrorLocation::field("MSH", 1, 9));
            return reject(AckCode::AR, error);
        }
        let _guard = self.in_flight.lock(format!("{}\u{1f}{sender}\u{1f}{control_id}", peer.partner));
        match self.log.find_processed(&peer.partner, sender, control_id, log_id) {
            Ok(Some(original)) => {
                let done = MessageOutcome { duplicate_of: Some(original), ..outcome(AckCode::AA, None) };
                self.finish(log_id, MessageStatus::Duplicate, done);
                return (
                    MessageStatus::Duplicate,
                    hl7v2::ack(message, AckCode::AA, None, &header.as_header()).encode(),
                );
            }
            Ok(None) => {}
            Err(_) => return reject(AckCode::AE, MapError::storage()),
        }
        match self.apply(log_id, message, kind, sender, control_id) {
            Ok(done) => {
                self.finish(log_id, MessageStatus::Processed, done);
                (MessageStatus::Processed, hl7v2::ack(message, AckCode::AA, None, &header.as_header()).encode())
            }
            Err(error) => reject(AckCode::AE, error),
        }
    }

    /// Maps and commits, mapping again when the record changed between reading and writing.
    fn apply(
        &self,
        log_id: i64,
        message: &Message,
        kind: Kind,
        sender: &str,
        control_id: &str,
    ) -> Result<MessageOutcome, MapError> {
        let access = self.enter();
        let applied = self.apply_as(&access, log_id, message, kind, sender, control_id);
        // What matching read goes to the trail with the next batch; the message's writes
        // were audited in their own transaction.
        access.settle_queued();
        applied
    }

    fn apply_as(
        &self,
        access: &Access,
        log_id: i64,
        message: &Message,
        kind: Kind,
        sender: &str,
        control_id: &str,
    ) -> Result<MessageOutcome, MapError> {
        let msh4 = message.msh().field(4).and_then(|f| f.repetition(1));
        let local_system = msh4
            .as_ref()
            .and_then(map::datatypes::hd_system_field)
            .unwrap_or_else(|| format!("{}unknown", map::datatypes::AUTHORITY_PREFIX));
        let offset = message.timestamp().and_then(|t| map::datatypes::offset_of(&t)).unwrap_or_else(|| "Z".to_string());
        let ctx = Context {
            access,
            log_id,
            local_system,
            offset,
            sender: sender.to_string(),
            message_type: message_type(message),
            control_id: control_id.to_string(),
        };
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let mapped = map::map(message, kind, &ctx)?;
            match access.transaction(mapped.bundle) {
                Ok(response) => {
                    let outcome = outcome_of(&response, mapped.patient_entry, mapped.known_patient);
                    if let Some(prior) = &mapped.merge {
                        let survivor = outcome.patient.clone().ok_or_else(MapError::storage)?;
                        merge_patients(access, prior, &survivor)?;
                    }
                    return Ok(outcome);
                }
                Err(access::Error::Store(e))
                    if matches!(e.kind(), ErrorKind::PreconditionFailed | ErrorKind::Conflict) =>
                {
                    last = Some(e);
                }
                Err(access::Error::Store(e)) => return Err(store_error(&e)),
                Err(e) => {
                    tracing::error!(class = ?e.class(), "the door refused the HL7 interface's write");
                    return Err(MapError::storage());
                }
            }
        }
        Err(last.map(|e| store_error(&e)).unwrap_or_else(MapError::storage))
    }
}

/// A40: merges `prior` into `survivor` through the identity service (the code of
/// `Patient/$merge`). A prior patient already merged into this survivor (a message sent twice)
/// is a success; every refusal is answered in the service's fixed words.
fn merge_patients(access: &Access, prior: &str, survivor: &str) -> Result<(), MapError> {
    let request = exchange::identity::MergeRequest {
        source: prior.to_string(),
        target: survivor.to_string(),
        result: None,
        preview: false,
    };
    match exchange::identity::merge(access, &request) {
        Ok(_) => Ok(()),
        Err(exchange::Error::AlreadyMerged) if merged_into(access, prior, survivor) => Ok(()),
        Err(exchange::Error::Access(access::Error::Store(e))) => Err(store_error(&e)),
        Err(e @ (exchange::Error::AlreadyMerged | exchange::Error::MergeRefused(_))) => {
            Err(MapError::new(ErrorCode::ApplicationInternalError, e.to_string()))
        }
        Err(e) => {
            tracing::error!(class = ?e.class(), "the HL7 interface's patient merge failed");
            Err(MapError::storage())
        }
    }
}

/// Whether `prior` is already merged into `survivor` (`replaced-by` it).
fn merged_into(access: &Access, prior: &str, survivor: &str) -> bool {
    let Ok(version) = access.read("Patient", prior) else { return false };
    let Some(body) = version.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()) else {
        return false;
    };
    let target = format!("Patient/{survivor}");
    body.get("link").and_then(Value::as_array).is_some_and(|links| {
        links.iter().any(|l| {
            l.get("type").and_then(Value::as_str) == Some("replaced-by")
                && l.pointer("/other/reference").and_then(Value::as_str) == Some(target.as_str())
        })
    })
}

/// What a store error means for the sender, in fixed words (validation issues name the
/// element, never its value).
fn store_error(error: &store::Error) -> MapError {
    match error.kind() {
        ErrorKind::Invalid | ErrorKind::Unprocessable => {
            let places: Vec<String> = error.issues().iter().filter_map(|i| i.expression.clone()).take(3).collect();
            let mut text = "the mapped resources are not valid FHIR".to_string();
            if !places.is_empty() {
                text.push_str(&format!(" (at {})", places.join(", ")));
            }
            MapError::new(ErrorCode::DataTypeError, text)
        }
        ErrorKind::PreconditionFailed | ErrorKind::Conflict => {
            MapError::new(ErrorCode::ApplicationRecordLocked, "the record kept changing while the message was applied")
        }
        _ => MapError::new(ErrorCode::ApplicationInternalError, "the record could not be written"),
    }
}

/// The log outcome answered with `ack_code` (and, for AE or AR, the error given).
fn outcome(ack_code: AckCode, error: Option<String>) -> MessageOutcome {
    MessageOutcome { ack_code: ack_code.as_str().into(), error, ..Default::default() }
}

/// The log outcome of a committed Bundle: what it wrote, and the Patient.
fn outcome_of(response: &Value, patient_entry: Option<usize>, known: Option<String>) -> MessageOutcome {
    let entries = response.get("entry").and_then(Value::as_array).cloned().unwrap_or_default();
    let location = |entry: &Value| -> Option<String> {
        let location = entry.get("response")?.get("location")?.as_str()?;
        let mut parts = location.split('/');
        Some(format!("{}/{}", parts.next()?, parts.next()?))
    };
    let resources: Vec<String> = entries.iter().filter_map(location).collect();
    let patient = patient_entry
        .and_then(|i| entries.get(i))
        .and_then(location)
        .and_then(|l| l.strip_prefix("Patient/").map(str::to_string))
        .or(known);
    MessageOutcome { patient, resources, ..outcome(AckCode::AA, None) }
}

/// Sender (MSH-3|MSH-4 as sent), control id (MSH-10) and type (`ADT^A01`) of a message.
fn header_keys(message: &Message) -> (String, String, String) {
    let raw = |n: usize| message.msh().field(n).map(|f| f.raw().to_string()).unwrap_or_default();
    (format!("{}|{}", raw(3), raw(4)), message.control_id().unwrap_or_default(), message_type(message))
}

fn message_type(message: &Message) -> String {
    match (message.message_code(), message.trigger_event()) {
        (Some(code), Some(trigger)) => format!("{code}^{trigger}"),
        (Some(code), None) => code,
        _ => String::new(),
    }
}

/// The header of our ACK: a control id from the log id, and the time now.
fn ack_header(log_id: i64) -> OwnedAckHeader {
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!("[year][month][day][hour][minute][second]+0000");
    OwnedAckHeader { control_id: format!("ACK{log_id}"), timestamp: now.format(&format).unwrap_or_default() }
}

/// An [`AckHeader`] that owns its text.
struct OwnedAckHeader {
    control_id: String,
    timestamp: String,
}

impl OwnedAckHeader {
    fn as_header(&self) -> AckHeader<'_> {
        AckHeader { control_id: &self.control_id, timestamp: &self.timestamp }
    }
}

/// Why a replay could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// No message with that log id.
    #[error("no logged message has that id")]
    NotFound,
    /// The message was applied already (processed, or acknowledged as a duplicate).
    #[error("the message was already applied; replaying it would apply it twice")]
    AlreadyApplied,
    /// The log could not be read.
    #[error("the message log could not be read")]
    Storage,
}

/// Mutual exclusion per key (partner, sender and control id), so that two copies of one message sent
/// at once on two connections are not both applied.
#[derive(Default)]
struct KeyLocks {
    held: Mutex<HashMap<String, usize>>,
    released: Condvar,
}

struct KeyGuard<'a> {
    locks: &'a KeyLocks,
    key: String,
}

impl KeyLocks {
    fn lock(&self, key: String) -> KeyGuard<'_> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        while held.contains_key(&key) {
            held = self.released.wait(held).unwrap_or_else(|p| p.into_inner());
        }
        held.insert(key.clone(), 1);
        KeyGuard { locks: self, key }
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock().unwrap_or_else(|p| p.into_inner());
        held.remove(&self.key);
        self.locks.released.notify_all();
    }
}
