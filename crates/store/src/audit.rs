//! The audit trail's contract: `AuditEvent`s appended to a hash chain, so that an entry
//! edited, inserted or removed in the database is found by [`verify`].
//!
//! Each entry holds its position (`sequence`, gapless from 1), the hash of the entry before it
//! and its own hash over the previous hash and every stored field ([`chain_hash`]). A one-row
//! head keeps the last position and hash, so that removing the newest entries is found too.
//! Backends append under a lock on the head (SQLite's single writer; a row lock on
//! PostgreSQL), which orders the chain.
//!
//! # Keyed chains
//!
//! A plain SHA-256 chain shows edits, but whoever can write the table can also recompute
//! every hash after an edit. Entries are therefore appended with an HMAC-SHA256 under an
//! [`AuditKey`] kept outside the database (the binary keeps it in a file): without the key a
//! consistent rewrite cannot be made. Each entry says which scheme it uses: a keyed entry's
//! hash is `hmac-sha256:` and 64 hex digits ([`KEYED`]); a plain entry's is 64 hex digits.
//! Chains written before keys existed stay valid: their plain entries are checked as before,
//! and the first keyed entry (the server appends one at start when the head is plain) marks
//! where keying began. From there on every entry must be keyed, and with a key [`verify`]
//! requires at least one keyed entry, so that downgrading the whole chain to plain hashes is
//! found as well.
//!
//! Writes are audited inside their own transaction ([`crate::Records::as_actor`]); reads and
//! searches are appended by the server in batches, before their responses are sent. The
//! entries are FHIR `AuditEvent`s ([`event`]), searchable by patient, agent and time.

use crate::{Error, Result};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use time::OffsetDateTime;

/// The hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The prefix of a keyed entry's hash (HMAC-SHA256 under the [`AuditKey`]).
pub const KEYED: &str = "hmac-sha256:";

/// What an append that could not be made answers (the request is refused, not served
/// unaudited).
pub const UNAVAILABLE: &str = "the audit trail is unavailable";

/// The audit chain's secret key: 32 bytes kept outside the database (held here as the HMAC
/// state keyed with it).
#[derive(Clone)]
pub struct AuditKey(Arc<Hmac<Sha256>>);

impl AuditKey {
    /// Its length in bytes.
    pub const LEN: usize = 32;

    /// The key of exactly [`AuditKey::LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<AuditKey> {
        let wrong = || Error::invalid(format!("an audit key is exactly {} bytes", AuditKey::LEN));
        if bytes.len() != AuditKey::LEN {
            return Err(wrong());
        }
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(bytes).map_err(|_| wrong())?;
        Ok(AuditKey(Arc::new(mac)))
    }

    fn mac(&self) -> Hmac<Sha256> {
        (*self.0).clone()
    }
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(…)")
    }
}

/// An entry to append (its position and hashes are the backend's to assign).
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEntry {
    /// When it happened (microsecond precision is kept).
    pub recorded: OffsetDateTime,
    /// The patient whose record was touched, if one.
    pub patient: Option<String>,
    /// Who acted: `Practitioner/x`, `Patient/y`, `user:NAME` or `client:ID`.
    pub agent: String,
    /// The FHIR action code: `C`, `R`, `U`, `D` or `E` (execute: searches, operations, sign-in).
    pub action: String,
    /// The FHIR outcome code: `0` success, `4` minor failure (refused), `8` serious failure.
    pub outcome: String,
    /// The `AuditEvent` resource, as JSON text (without `id`).
    pub event: String,
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub sequence: i64,
    /// What was recorded: when, who, which patient, the action, its outcome and the event.
    pub entry: NewAuditEntry,
    /// The hash of the entry before (or [`GENESIS`]).
    pub previous_hash: String,
    /// This entry's hash.
    pub hash: String,
}

/// Which entries to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only entries about this patient (as [`NewAuditEntry::patient`] names them).
    pub patient: Option<String>,
    /// Only entries of this agent (as [`NewAuditEntry::agent`] names them).
    pub agent: Option<String>,
    /// Recorded at or after.
    pub since: Option<OffsetDateTime>,
    /// Recorded before.
    pub until: Option<OffsetDateTime>,
    /// Only entries below this position (paging).
    pub before_sequence: Option<i64>,
    /// At most this many entries.
    pub count: usize,
}

/// The stored audit trail.
pub trait AuditLog: Send + Sync {
    /// Appends entries in their own transaction, keyed with `key` when given.
    fn append(&self, entries: &[NewAuditEntry], key: Option<&AuditKey>) -> Result<()>;
    /// Entries matching `query`, newest first.
    fn search(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>>;
    /// Entries with a position above `after`, in order, at most `count` (for [`verify`]).
    fn entries_after(&self, after: i64, count: usize) -> Result<Vec<AuditEntry>>;
    /// The head: the last position and hash (`None` before the first entry).
    fn head(&self) -> Result<Option<(i64, String)>>;
}

/// The fields an entry's hash covers, each length-prefixed.
fn feed(previous: &str, sequence: i64, entry: &NewAuditEntry, mut update: impl FnMut(&[u8])) {
    for part in [
        previous,
        &sequence.to_string(),
        &search::micros(entry.recorded).to_string(),
        entry.patient.as_deref().unwrap_or(""),
        &entry.agent,
        &entry.action,
        &entry.outcome,
        &entry.event,
    ] {
        update(&(part.len() as u64).to_be_bytes());
        update(part.as_bytes());
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(text, "{b:02x}");
    }
    text
}

/// The plain hash of an entry at `sequence` after `previous` (SHA-256; chains written before
/// keys, and stores opened without one).
pub fn entry_hash(previous: &str, sequence: i64, entry: &NewAuditEntry) -> String {
    let mut hasher = Sha256::new();
    feed(previous, sequence, entry, |bytes| hasher.update(bytes));
    hex(&hasher.finalize())
}

/// The keyed hash of an entry at `sequence` after `previous`: [`KEYED`] and the hex of an
/// HMAC-SHA256 under `key` over the same fields as [`entry_hash`], after a domain label.
pub fn keyed_hash(key: &AuditKey, previous: &str, sequence: i64, entry: &NewAuditEntry) -> String {
    let mut mac = key.mac();
    mac.update(b"continuum audit chain v2\n");
    feed(previous, sequence, entry, |bytes| mac.update(bytes));
    format!("{KEYED}{}", hex(&mac.finalize().into_bytes()))
}

/// The hash a backend stores for an entry: keyed when it was given a key, else plain.
pub fn chain_hash(key: Option<&AuditKey>, previous: &str, sequence: i64, entry: &NewAuditEntry) -> String {
    match key {
        Some(key) => keyed_hash(key, previous, sequence, entry),
        None => entry_hash(previous, sequence, entry),
    }
}

/// Whether a stored hash is keyed.
pub fn is_keyed(hash: &str) -> bool {
    hash.starts_with(KEYED)
}

/// The time of an audit entry stored as Unix microseconds ([`search::micros`]).
pub fn recorded_at(micros: i64) -> Result<OffsetDateTime> {
    search::from_micros(micros).map_err(|_| Error::Storage("an audit entry's time is out of range".into()))
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every entry is in place and unchanged; `keyed` of them carry an HMAC checked with the
    /// key (the others, before keying began, a plain hash).
    Intact {
        /// How many entries the chain holds.
        entries: u64,
        /// How many of them carry an HMAC.
        keyed: u64,
    },
    /// The first entry found wrong, and how.
    Broken {
        /// The position of the entry found wrong (or where an entry is missing).
        sequence: i64,
        /// What is wrong with it, in words.
        problem: String,
    },
}

/// Checks the whole chain from the first entry to the head: every link, every hash, and, with
/// `key`, every keyed entry's HMAC. Without a key a keyed entry cannot be checked and is
/// reported as such; with one, a plain entry after a keyed one, or a chain without any keyed
/// entry, is a rewrite.
pub fn verify(log: &dyn AuditLog, key: Option<&AuditKey>) -> Result<Verification> {
    let mut previous_hash = GENESIS.to_string();
    let mut previous_sequence = 0i64;
    let mut entries = 0u64;
    let mut keyed = 0u64;
    loop {
        let batch = log.entries_after(previous_sequence, 1000)?;
        if batch.is_empty() {
            break;
        }
        for stored in batch {
            let sequence = stored.sequence;
            if sequence != previous_sequence + 1 {
                return Ok(Verification::Broken {
                    sequence: previous_sequence + 1,
                    problem: format!("entries {} to {} are missing (removed)", previous_sequence + 1, sequence - 1),
                });
            }
            if stored.previous_hash != previous_hash {
                return Ok(Verification::Broken {
                    sequence,
                    problem: "it does not follow the entry before it (inserted, or the one before was replaced)".into(),
                });
            }
            if is_keyed(&stored.hash) {
                let Some(key) = key else {
                    return Ok(Verification::Broken {
                        sequence,
                        problem: "it is keyed (HMAC-SHA256) and no key was given to check it with".into(),
                    });
                };
                if keyed_hash(key, &previous_hash, sequence, &stored.entry) != stored.hash {
                    return Ok(Verification::Broken {
                        sequence,
                        problem: "its content was edited, or it was not written with this key".into(),
                    });
                }
                keyed += 1;
            } else {
                if keyed > 0 {
                    return Ok(Verification::Broken {
                        sequence,
                        problem: "it has a plain hash after keyed entries: it was rewritten without the key".into(),
                    });
                }
                if entry_hash(&previous_hash, sequence, &stored.entry) != stored.hash {
                    return Ok(Verification::Broken { sequence, problem: "its content was edited".into() });
                }
            }
            previous_hash = stored.hash;
            previous_sequence = sequence;
            entries += 1;
        }
    }
    match log.head()? {
        None if entries == 0 => {}
        Some((sequence, hash)) if sequence == previous_sequence && hash == previous_hash => {}
        Some((sequence, _)) if sequence > previous_sequence => {
            return Ok(Verification::Broken {
                sequence: previous_sequence + 1,
                problem: format!("entries {} to {sequence} are missing (removed)", previous_sequence + 1),
            });
        }
        _ => {
            return Ok(Verification::Broken {
                sequence: previous_sequence,
                problem: "the chain's head does not match its last entry".into(),
            });
        }
    }
    if key.is_some() && entries > 0 && keyed == 0 {
        // A server with a key appends a keyed entry as soon as it starts on a plain chain, so
        // a chain without one was rewritten with plain hashes (or the key is not its key).
        return Ok(Verification::Broken {
            sequence: previous_sequence,
            problem: "no entry is keyed: the trail was rewritten without the key, or was never written with it".into(),
        });
    }
    Ok(Verification::Intact { entries, keyed })
}

/// How a key stands to a chain, before a server appends with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    /// No entry yet: the first will be keyed.
    Empty,
    /// The newest entry has a plain hash (a chain from before keys): keying begins with the
    /// next entry.
    Plain,
    /// The newest entry is keyed with this key.
    Matches,
    /// The newest entry is keyed with another key (or was rewritten): appending with this key
    /// would break the chain.
    Other,
}

/// How `key` stands to the chain's newest entry.
pub fn check_key(log: &dyn AuditLog, key: &AuditKey) -> Result<KeyCheck> {
    let Some((sequence, _)) = log.head()? else { return Ok(KeyCheck::Empty) };
    let Some(newest) = log.entries_after(sequence - 1, 1)?.into_iter().next() else { return Ok(KeyCheck::Other) };
    if !is_keyed(&newest.hash) {
        return Ok(KeyCheck::Plain);
    }
    Ok(if keyed_hash(key, &newest.previous_hash, newest.sequence, &newest.entry) == newest.hash {
        KeyCheck::Matches
    } else {
        KeyCheck::Other
    })
}

/// The entry that marks where keying begins (appended by a server that starts with a key on
/// an empty chain or one from before keys), by `actor`.
pub fn keying_began(actor: &Agent, recorded: OffsetDateTime) -> NewAuditEntry {
    let happening = Happening {
        action: Action::Execute,
        subtype: Subtype::Continuum("audit-keyed"),
        outcome: Outcome::Success,
        entities: &[],
        query: None,
        patient: None,
        reason: None,
    };
    event(actor, &happening, recorded)
}

/// Who acts, for the audit trail.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Agent {
    /// The FHIR resource of the person (`Practitioner/x`, `Patient/y`, `RelatedPerson/z`).
    pub who: Option<String>,
    /// Sign-in name, or the client id of a backend service, or the name of a system door.
    pub name: String,
    /// The app acting for them.
    pub client_id: Option<String>,
    /// The network address the request came from.
    pub address: Option<String>,
    /// Break-the-glass access in force for the patient concerned.
    pub emergency: bool,
}

impl Agent {
    /// A door of the server itself (the HL7 interface), acting for no person.
    pub fn system(name: &str) -> Agent {
        Agent { name: name.to_string(), ..Agent::default() }
    }

    /// The agent text kept beside the event for searching.
    pub fn agent(&self) -> String {
        self.who.clone().unwrap_or_else(|| format!("user:{}", self.name))
    }
}

/// The FHIR `AuditEvent.action` code of what was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `C`: something was created.
    Create,
    /// `R`: something was read (or handed out).
    Read,
    /// `U`: something was updated.
    Update,
    /// `D`: something was deleted.
    Delete,
    /// `E`: something was executed (searches, operations, sign-in).
    Execute,
}

impl Action {
    /// The code as FHIR writes it.
    pub fn code(self) -> &'static str {
        match self {
            Action::Create => "C",
            Action::Read => "R",
            Action::Update => "U",
            Action::Delete => "D",
            Action::Execute => "E",
        }
    }

    /// The action of writing a version with `change`.
    pub fn of(change: crate::Change) -> Action {
        match change {
            crate::Change::Created => Action::Create,
            crate::Change::Updated => Action::Update,
            crate::Change::Deleted => Action::Delete,
        }
    }
}

/// The FHIR `AuditEvent.outcome` code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `0`: it succeeded.
    Success,
    /// `4`: a minor failure: the request was refused or could not be done as asked.
    MinorFailure,
    /// `8`: a serious failure: the server failed.
    SeriousFailure,
}

impl Outcome {
    /// The code as FHIR writes it.
    pub fn code(self) -> &'static str {
        match self {
            Outcome::Success => "0",
            Outcome::MinorFailure => "4",
            Outcome::SeriousFailure => "8",
        }
    }

    /// The outcome of an answer with HTTP status `status`.
    pub fn of_status(status: u16) -> Outcome {
        match status {
            0..400 => Outcome::Success,
            400..500 => Outcome::MinorFailure,
            _ => Outcome::SeriousFailure,
        }
    }
}

/// The `AuditEvent.subtype`: a FHIR RESTful interaction, a sign-in, or one of Continuum's own
/// events (coded in `urn:continuum:audit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subtype {
    /// `read`.
    Read,
    /// `vread`.
    Vread,
    /// `update`.
    Update,
    /// `patch`.
    Patch,
    /// `delete`.
    Delete,
    /// `history-instance`.
    HistoryInstance,
    /// `history-type`.
    HistoryType,
    /// `history-system`.
    HistorySystem,
    /// `create`.
    Create,
    /// `search-type`.
    SearchType,
    /// `search-system`.
    SearchSystem,
    /// `search` (a compartment search).
    Search,
    /// `batch`.
    Batch,
    /// `transaction`.
    Transaction,
    /// `operation` (`$everything`, `$break-the-glass`…).
    Operation,
    /// A sign-in (DICOM 110122 "Login").
    Login,
    /// One of Continuum's own events, by its code (`hl7-message-log`, `audit-keyed`…).
    Continuum(&'static str),
}

impl Subtype {
    /// The code.
    pub fn code(self) -> &'static str {
        match self {
            Subtype::Read => "read",
            Subtype::Vread => "vread",
            Subtype::Update => "update",
            Subtype::Patch => "patch",
            Subtype::Delete => "delete",
            Subtype::HistoryInstance => "history-instance",
            Subtype::HistoryType => "history-type",
            Subtype::HistorySystem => "history-system",
            Subtype::Create => "create",
            Subtype::SearchType => "search-type",
            Subtype::SearchSystem => "search-system",
            Subtype::Search => "search",
            Subtype::Batch => "batch",
            Subtype::Transaction => "transaction",
            Subtype::Operation => "operation",
            Subtype::Login => "login",
            Subtype::Continuum(code) => code,
        }
    }

    /// The interaction of writing a version with `change`.
    pub fn of(change: crate::Change) -> Subtype {
        match change {
            crate::Change::Created => Subtype::Create,
            crate::Change::Updated => Subtype::Update,
            crate::Change::Deleted => Subtype::Delete,
        }
    }

    fn coding(self) -> Value {
        match self {
            Subtype::Login => {
                json!({"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110122", "display": "Login"})
            }
            Subtype::Continuum(code) => json!({"system": "urn:continuum:audit", "code": code}),
            restful => json!({"system": "http://hl7.org/fhir/restful-interaction", "code": restful.code()}),
        }
    }
}

/// What happened, for [`event`].
#[derive(Debug, Clone)]
pub struct Happening<'a> {
    /// What kind of thing was done.
    pub action: Action,
    /// The RESTful interaction, sign-in or Continuum event.
    pub subtype: Subtype,
    /// How it went.
    pub outcome: Outcome,
    /// What was touched: `Type/id[/_history/v]` references.
    pub entities: &'a [String],
    /// The search's query string (for searches).
    pub query: Option<&'a str>,
    /// The patient concerned.
    pub patient: Option<&'a str>,
    /// Why, as the caller stated (break-the-glass).
    pub reason: Option<&'a str>,
}

/// The `AuditEvent` of a happening by `actor`, and the entry that stores it.
pub fn event(actor: &Agent, happening: &Happening<'_>, recorded: OffsetDateTime) -> NewAuditEntry {
    let login = happening.subtype == Subtype::Login;
    let subtype = happening.subtype.coding();
    let mut person = json!({"requestor": true, "name": actor.name});
    if let Some(who) = &actor.who {
        person["who"] = json!({"reference": who});
    }
    if let Some(address) = &actor.address {
        person["network"] = json!({"address": address, "type": "2"});
    }
    let mut agents = vec![person];
    if let Some(client) = &actor.client_id {
        agents.push(json!({
            "type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110150", "display": "Application"}]},
            "who": {"identifier": {"system": "urn:continuum:client", "value": client}},
            "requestor": false
        }));
    }
    let mut entities: Vec<Value> = happening.entities.iter().map(|r| json!({"what": {"reference": r}})).collect();
    if let Some(patient) = happening.patient {
        entities.push(json!({
            "what": {"reference": format!("Patient/{patient}")},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}
        }));
    }
    if let Some(query) = happening.query {
        use base64::Engine;
        entities.push(json!({
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
            "query": base64::engine::general_purpose::STANDARD.encode(query)
        }));
    }
    let recorded_text = crate::format_instant(recorded);
    let kind = if login {
        json!({"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110114", "display": "User Authentication"})
    } else {
        json!({"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"})
    };
    let mut event = json!({
        "resourceType": "AuditEvent",
        "type": kind,
        "subtype": [subtype],
        "action": happening.action.code(),
        "recorded": recorded_text,
        "outcome": happening.outcome.code(),
        "agent": agents,
        "source": {"observer": {"display": "continuum"}, "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "3"}]},
    });
    if actor.emergency || happening.reason.is_some() {
        event["purposeOfEvent"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "BTG", "display": "break the glass"}]}]);
    }
    if let Some(reason) = happening.reason {
        event["outcomeDesc"] = json!(format!("break-the-glass: {reason}"));
    }
    if !entities.is_empty() {
        event["entity"] = Value::Array(entities);
    }
    NewAuditEntry {
        recorded,
        patient: happening.patient.map(str::to_string),
        agent: actor.agent(),
        action: happening.action.code().to_string(),
        outcome: happening.outcome.code().to_string(),
        event: event.to_string(),
    }
}

/// A stored entry as the `AuditEvent` resource it is (its position as `id`).
pub fn as_resource(stored: &AuditEntry) -> Value {
    let mut event: Value = serde_json::from_str(&stored.entry.event).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut event {
        let mut ordered = serde_json::Map::new();
        ordered.insert("resourceType".into(), json!("AuditEvent"));
        ordered.insert("id".into(), json!(stored.sequence.to_string()));
        for (k, v) in std::mem::take(map) {
            if k != "resourceType" {
                ordered.insert(k, v);
            }
        }
        *map = ordered;
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Chain(Mutex<Vec<AuditEntry>>);

    impl AuditLog for Chain {
        fn append(&self, entries: &[NewAuditEntry], key: Option<&AuditKey>) -> Result<()> {
            let mut chain = self.0.lock().unwrap();
            for entry in entries {
                let (sequence, previous) =
                    chain.last().map_or((1, GENESIS.to_string()), |e| (e.sequence + 1, e.hash.clone()));
                let hash = chain_hash(key, &previous, sequence, entry);
                chain.push(AuditEntry { sequence, entry: entry.clone(), previous_hash: previous, hash });
            }
            Ok(())
        }
        fn search(&self, _: &AuditQuery) -> Result<Vec<AuditEntry>> {
            Ok(Vec::new())
        }
        fn entries_after(&self, after: i64, count: usize) -> Result<Vec<AuditEntry>> {
            Ok(self.0.lock().unwrap().iter().filter(|e| e.sequence > after).take(count).cloned().collect())
        }
        fn head(&self) -> Result<Option<(i64, String)>> {
            Ok(self.0.lock().unwrap().last().map(|e| (e.sequence, e.hash.clone())))
        }
    }

    fn entry(n: usize) -> NewAuditEntry {
        let actor = Agent { who: Some("Practitioner/1".into()), name: "doc".into(), ..Agent::default() };
        let what = [format!("Observation/{n}")];
        event(
            &actor,
            &Happening {
                action: Action::Read,
                subtype: Subtype::Read,
                outcome: Outcome::Success,
                entities: &what,
                query: None,
                patient: Some("p"),
                reason: None,
            },
            OffsetDateTime::from_unix_timestamp(1_700_000_000 + n as i64).unwrap(),
        )
    }

    #[test]
    fn verify_finds_edits_insertions_and_removals() {
        let chain = Chain::default();
        chain.append(&(0..5).map(entry).collect::<Vec<_>>(), None).unwrap();
        assert_eq!(verify(&chain, None).unwrap(), Verification::Intact { entries: 5, keyed: 0 });

        let edited = Chain(Mutex::new(chain.0.lock().unwrap().clone()));
        edited.0.lock().unwrap()[2].entry.agent = "someone-else".into();
        assert!(matches!(verify(&edited, None).unwrap(), Verification::Broken { sequence: 3, .. }));

        let removed = Chain(Mutex::new(chain.0.lock().unwrap().clone()));
        removed.0.lock().unwrap().remove(1);
        assert!(matches!(verify(&removed, None).unwrap(), Verification::Broken { sequence: 2, .. }));

        // An entry slipped in with a recomputed hash still breaks the next one's link.
        let inserted = Chain(Mutex::new(chain.0.lock().unwrap().clone()));
        {
            let mut entries = inserted.0.lock().unwrap();
            let forged = entry(99);
            let previous = entries[1].hash.clone();
            let hash = entry_hash(&previous, 3, &forged);
            entries.insert(2, AuditEntry { sequence: 3, entry: forged, previous_hash: previous, hash });
            for e in entries.iter_mut().skip(3) {
                e.sequence += 1;
            }
        }
        assert!(matches!(verify(&inserted, None).unwrap(), Verification::Broken { sequence: 4, .. }));

        let event: Value = serde_json::from_str(&entry(1).event).unwrap();
        assert_eq!(event["resourceType"], "AuditEvent");
        assert_eq!(event["entity"][1]["what"]["reference"], "Patient/p");
    }

    fn key(byte: u8) -> AuditKey {
        AuditKey::from_bytes(&[byte; AuditKey::LEN]).unwrap()
    }

    /// Recomputes every entry's plain hash from the first: what a consistent rewrite without
    /// the key produces.
    fn rewrite_plain(chain: &Chain) {
        let mut entries = chain.0.lock().unwrap();
        let mut previous = GENESIS.to_string();
        for e in entries.iter_mut() {
            e.previous_hash = previous.clone();
            e.hash = entry_hash(&previous, e.sequence, &e.entry);
            previous = e.hash.clone();
        }
    }

    #[test]
    fn keyed_chains_find_consistent_rewrites_and_keep_plain_beginnings() {
        let k = key(7);
        assert!(AuditKey::from_bytes(&[1; 31]).is_err());
        assert_eq!(format!("{k:?}"), "AuditKey(…)", "the key is never printed");

        // A chain from before keys, then keyed from a marked point on.
        let chain = Chain::default();
        chain.append(&(0..3).map(entry).collect::<Vec<_>>(), None).unwrap();
        assert_eq!(check_key(&chain, &k).unwrap(), KeyCheck::Plain);
        chain.append(&[keying_began(&Agent::system("test"), OffsetDateTime::now_utc())], Some(&k)).unwrap();
        chain.append(&(3..6).map(entry).collect::<Vec<_>>(), Some(&k)).unwrap();
        assert_eq!(check_key(&chain, &k).unwrap(), KeyCheck::Matches);
        assert_eq!(check_key(&chain, &key(8)).unwrap(), KeyCheck::Other);
        assert!(is_keyed(&chain.0.lock().unwrap()[3].hash) && !is_keyed(&chain.0.lock().unwrap()[2].hash));
        assert_eq!(verify(&chain, Some(&k)).unwrap(), Verification::Intact { entries: 7, keyed: 4 });
        assert!(matches!(verify(&chain, None).unwrap(), Verification::Broken { sequence: 4, .. }), "no key to check");
        assert!(matches!(verify(&chain, Some(&key(8))).unwrap(), Verification::Broken { sequence: 4, .. }));

        // An edit with every later hash recomputed without the key: plain after keyed.
        let edited = Chain(Mutex::new(chain.0.lock().unwrap().clone()));
        edited.0.lock().unwrap()[5].entry.agent = "someone-else".into();
        rewrite_plain(&edited);
        assert!(matches!(verify(&edited, None).unwrap(), Verification::Intact { .. }), "a plain check is fooled");
        match verify(&edited, Some(&k)).unwrap() {
            Verification::Broken { problem, .. } => assert!(problem.contains("no entry is keyed"), "{problem}"),
            other => panic!("{other:?}"),
        }
        // Rewritten from a keyed entry on (the plain beginning kept): named at that entry.
        let tail = Chain(Mutex::new(chain.0.lock().unwrap().clone()));
        {
            let mut entries = tail.0.lock().unwrap();
            entries[5].entry.agent = "someone-else".into();
            let mut previous = entries[4].hash.clone();
            for e in entries.iter_mut().skip(5) {
                e.previous_hash = previous.clone();
                e.hash = entry_hash(&previous, e.sequence, &e.entry);
                previous = e.hash.clone();
            }
        }
        assert!(matches!(verify(&tail, Some(&k)).unwrap(), Verification::Broken { sequence: 6, .. }));
        // A keyed entry edited and its HMAC left as it was.
        let forged = Chain(Mutex::new(chain.0.lock().unwrap().clone()));
        forged.0.lock().unwrap()[4].entry.outcome = "4".into();
        assert!(matches!(verify(&forged, Some(&k)).unwrap(), Verification::Broken { sequence: 5, .. }));
        // A plain chain checked with a key that was never used on it.
        let plain = Chain::default();
        plain.append(&(0..2).map(entry).collect::<Vec<_>>(), None).unwrap();
        assert!(matches!(verify(&plain, Some(&k)).unwrap(), Verification::Broken { .. }));
        assert_eq!(check_key(&Chain::default(), &k).unwrap(), KeyCheck::Empty);
    }
}
