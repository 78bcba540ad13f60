//! The audit trail's contract: `AuditEvent`s appended to a hash chain, so that an entry
//! edited, inserted or removed in the database is found by [`verify`].
//!
//! Each entry holds its position (`sequence`, gapless from 1), the hash of the entry before it
//! and its own hash: SHA-256 over the previous hash and every stored field ([`entry_hash`]).
//! A one-row head keeps the last position and hash, so that removing the newest entries is
//! found too. Backends append under a lock on the head (SQLite's single writer; a row lock on
//! PostgreSQL), which orders the chain.
//!
//! Writes are audited inside their own transaction ([`crate::Records::as_actor`]); reads and
//! searches are appended by the server in batches. The entries are FHIR `AuditEvent`s
//! ([`event`]), searchable by patient, agent and time.

use crate::{Error, Result};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// The hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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
    pub entry: NewAuditEntry,
    /// The hash of the entry before (or [`GENESIS`]).
    pub previous_hash: String,
    /// This entry's hash.
    pub hash: String,
}

/// Which entries to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub patient: Option<String>,
    pub agent: Option<String>,
    /// Recorded at or after.
    pub since: Option<OffsetDateTime>,
    /// Recorded before.
    pub until: Option<OffsetDateTime>,
    /// Only entries below this position (paging).
    pub before_sequence: Option<i64>,
    pub count: usize,
}

/// The stored audit trail.
pub trait AuditLog: Send + Sync {
    /// Appends entries in their own transaction.
    fn append(&self, entries: &[NewAuditEntry]) -> Result<()>;
    /// Entries matching `query`, newest first.
    fn search(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>>;
    /// Entries with a position above `after`, in order, at most `count` (for [`verify`]).
    fn entries_after(&self, after: i64, count: usize) -> Result<Vec<AuditEntry>>;
    /// The head: the last position and hash (`None` before the first entry).
    fn head(&self) -> Result<Option<(i64, String)>>;
}

/// The hash of an entry at `sequence` after `previous`.
pub fn entry_hash(previous: &str, sequence: i64, entry: &NewAuditEntry) -> String {
    let mut hasher = Sha256::new();
    for part in [
        previous,
        &sequence.to_string(),
        &micros(entry.recorded).to_string(),
        entry.patient.as_deref().unwrap_or(""),
        &entry.agent,
        &entry.action,
        &entry.outcome,
        &entry.event,
    ] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Unix microseconds (what backends store).
pub fn micros(time: OffsetDateTime) -> i64 {
    (time.unix_timestamp_nanos() / 1000) as i64
}

/// The time of unix microseconds.
pub fn from_micros(micros: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .map_err(|_| Error::Storage("an audit entry's time is out of range".into()))
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every entry is in place and unchanged.
    Intact { entries: u64 },
    /// The first entry found wrong, and how.
    Broken { sequence: i64, problem: String },
}

/// Checks the whole chain from the first entry to the head.
pub fn verify(log: &dyn AuditLog) -> Result<Verification> {
    let mut previous_hash = GENESIS.to_string();
    let mut previous_sequence = 0i64;
    let mut entries = 0u64;
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
            if entry_hash(&previous_hash, sequence, &stored.entry) != stored.hash {
                return Ok(Verification::Broken { sequence, problem: "its content was edited".into() });
            }
            previous_hash = stored.hash;
            previous_sequence = sequence;
            entries += 1;
        }
    }
    match log.head()? {
        None if entries == 0 => Ok(Verification::Intact { entries }),
        Some((sequence, hash)) if sequence == previous_sequence && hash == previous_hash => {
            Ok(Verification::Intact { entries })
        }
        Some((sequence, _)) if sequence > previous_sequence => Ok(Verification::Broken {
            sequence: previous_sequence + 1,
            problem: format!("entries {} to {sequence} are missing (removed)", previous_sequence + 1),
        }),
        _ => Ok(Verification::Broken {
            sequence: previous_sequence,
            problem: "the chain's head does not match its last entry".into(),
        }),
    }
}

/// Who acts, for the audit trail.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Actor {
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

impl Actor {
    /// A door of the server itself (the HL7 interface), acting for no person.
    pub fn system(name: &str) -> Actor {
        Actor { name: name.to_string(), ..Actor::default() }
    }

    /// The agent text kept beside the event for searching.
    pub fn agent(&self) -> String {
        self.who.clone().unwrap_or_else(|| format!("user:{}", self.name))
    }
}

/// What happened, for [`event`].
#[derive(Debug, Clone)]
pub struct Happening<'a> {
    /// `C`, `R`, `U`, `D` or `E`.
    pub action: &'a str,
    /// The RESTful interaction (`read`, `search-type`, `create`…) or operation.
    pub subtype: &'a str,
    /// `0`, `4` or `8`.
    pub outcome: &'a str,
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
pub fn event(actor: &Actor, happening: &Happening<'_>, recorded: OffsetDateTime) -> NewAuditEntry {
    let restful = matches!(
        happening.subtype,
        "read"
            | "vread"
            | "update"
            | "patch"
            | "delete"
            | "history-instance"
            | "history-type"
            | "history-system"
            | "create"
            | "search-type"
            | "search-system"
            | "search"
            | "batch"
            | "transaction"
            | "operation"
    );
    let login = happening.subtype == "login";
    let subtype = if login {
        json!({"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110122", "display": "Login"})
    } else if restful {
        json!({"system": "http://hl7.org/fhir/restful-interaction", "code": happening.subtype})
    } else {
        json!({"system": "urn:continuum:audit", "code": happening.subtype})
    };
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
        "action": happening.action,
        "recorded": recorded_text,
        "outcome": happening.outcome,
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
        action: happening.action.to_string(),
        outcome: happening.outcome.to_string(),
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
        fn append(&self, entries: &[NewAuditEntry]) -> Result<()> {
            let mut chain = self.0.lock().unwrap();
            for entry in entries {
                let (sequence, previous) =
                    chain.last().map_or((1, GENESIS.to_string()), |e| (e.sequence + 1, e.hash.clone()));
                let hash = entry_hash(&previous, sequence, entry);
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
        let actor = Actor { who: Some("Practitioner/1".into()), name: "doc".into(), ..Actor::default() };
        let what = [format!("Observation/{n}")];
        event(
            &actor,
            &Happening {
                action: "R",
                subtype: "read",
                outcome: "0",
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
        chain.append(&(0..5).map(entry).collect::<Vec<_>>()).unwrap();
        assert_eq!(verify(&chain).unwrap(), Verification::Intact { entries: 5 });

        let edited = Chain(Mutex::new(chain.0.lock().unwrap().clone()));
        edited.0.lock().unwrap()[2].entry.agent = "someone-else".into();
        assert!(matches!(verify(&edited).unwrap(), Verification::Broken { sequence: 3, .. }));

        let removed = Chain(Mutex::new(chain.0.lock().unwrap().clone()));
        removed.0.lock().unwrap().remove(1);
        assert!(matches!(verify(&removed).unwrap(), Verification::Broken { sequence: 2, .. }));

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
        assert!(matches!(verify(&inserted).unwrap(), Verification::Broken { sequence: 4, .. }));

        let event: Value = serde_json::from_str(&entry(1).event).unwrap();
        assert_eq!(event["resourceType"], "AuditEvent");
        assert_eq!(event["entity"][1]["what"]["reference"], "Patient/p");
    }
}
