//! The schema and its migrations, applied at open. `PRAGMA user_version` is the number of
//! migrations applied.

use crate::storage;
use rusqlite::Connection;
use store::{Error, Result};

/// Migration `i` brings the schema from version `i` to `i + 1`. Never edit one that shipped;
/// append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the resource store.
    //
    // Sharding: when resources are partitioned by patient compartment, each table gets a
    // `shard_key TEXT NOT NULL DEFAULT ''` column (the patient id, '' for shared resources) and
    // it is put first in each key and index below; lookups by (resource_type, id) stay the
    // same shape.
    r#"
    -- Every version ever written: the history. `sequence` orders all writes of the store.
    CREATE TABLE resource_version (
        sequence      INTEGER PRIMARY KEY AUTOINCREMENT,
        resource_type TEXT    NOT NULL,
        id            TEXT    NOT NULL,
        version       INTEGER NOT NULL,
        last_updated  INTEGER NOT NULL,  -- unix microseconds
        change        TEXT    NOT NULL CHECK (change IN ('created', 'updated', 'deleted')),
        body          TEXT,              -- NULL for a deletion
        UNIQUE (resource_type, id, version)
    );
    CREATE INDEX resource_version_by_type ON resource_version (resource_type, sequence);
    CREATE INDEX resource_version_by_time ON resource_version (last_updated);

    -- The latest version of each resource, with its body, so that a read is one lookup.
    -- A rowid table, not WITHOUT ROWID: bodies are kilobytes, and a WITHOUT ROWID b-tree
    -- would carry them in its interior pages; the primary key index stays small instead.
    CREATE TABLE resource_current (
        resource_type TEXT    NOT NULL,
        id            TEXT    NOT NULL,
        version       INTEGER NOT NULL,
        last_updated  INTEGER NOT NULL,
        change        TEXT    NOT NULL,
        deleted       INTEGER NOT NULL,
        sequence      INTEGER NOT NULL,
        body          TEXT,
        PRIMARY KEY (resource_type, id)
    );
    CREATE INDEX resource_current_live ON resource_current (resource_type) WHERE deleted = 0;

    -- Identifiers of live resources, for conditional operations. system is '' when absent.
    CREATE TABLE identifier_index (
        resource_type TEXT NOT NULL,
        value         TEXT NOT NULL,
        system        TEXT NOT NULL,
        id            TEXT NOT NULL,
        PRIMARY KEY (resource_type, value, system, id)
    ) WITHOUT ROWID;
    CREATE INDEX identifier_index_by_resource ON identifier_index (resource_type, id);
    "#,
    // 2: search indexes. Rows point at `resource_current.rowid` (`rid`), which an update keeps
    // (the upsert updates the row in place). `param` is `search::param_key` of the parameter;
    // `grp` ties the components of one composite value together.
    // Value indexes end in `rid` so that listing a value's resources reads the index alone;
    // `*_rid` indexes serve the per-resource checks, sorts and includes.
    r#"
    CREATE TABLE search_string (
        rid INTEGER NOT NULL, param INTEGER NOT NULL, grp INTEGER,
        normalized TEXT NOT NULL, exact TEXT NOT NULL
    );
    CREATE INDEX search_string_value ON search_string (param, normalized, rid);
    CREATE INDEX search_string_rid ON search_string (rid, param);

    CREATE TABLE search_token (
        rid INTEGER NOT NULL, param INTEGER NOT NULL, grp INTEGER,
        system TEXT, code TEXT, text TEXT
    );
    CREATE INDEX search_token_code ON search_token (param, code, system, rid);
    CREATE INDEX search_token_text ON search_token (param, text, rid) WHERE text IS NOT NULL;
    CREATE INDEX search_token_rid ON search_token (rid, param);

    CREATE TABLE search_reference (
        rid INTEGER NOT NULL, param INTEGER NOT NULL, grp INTEGER,
        target_type TEXT, target_id TEXT, version TEXT, url TEXT, id_system TEXT, id_value TEXT
    );
    CREATE INDEX search_reference_target ON search_reference (param, target_id, target_type, rid);
    CREATE INDEX search_reference_url ON search_reference (param, url, rid) WHERE url IS NOT NULL;
    CREATE INDEX search_reference_identifier ON search_reference (param, id_value, rid) WHERE id_value IS NOT NULL;
    CREATE INDEX search_reference_rid ON search_reference (rid, param);

    CREATE TABLE search_date (
        rid INTEGER NOT NULL, param INTEGER NOT NULL, grp INTEGER,
        low INTEGER NOT NULL, high INTEGER NOT NULL  -- unix microseconds, inclusive
    );
    CREATE INDEX search_date_low ON search_date (param, low, high, rid);
    CREATE INDEX search_date_high ON search_date (param, high, low, rid);
    CREATE INDEX search_date_rid ON search_date (rid, param);

    CREATE TABLE search_number (
        rid INTEGER NOT NULL, param INTEGER NOT NULL, grp INTEGER,
        value REAL NOT NULL, low REAL NOT NULL, high REAL NOT NULL
    );
    CREATE INDEX search_number_value ON search_number (param, value, rid);
    CREATE INDEX search_number_rid ON search_number (rid, param);

    CREATE TABLE search_quantity (
        rid INTEGER NOT NULL, param INTEGER NOT NULL, grp INTEGER,
        value REAL NOT NULL, low REAL NOT NULL, high REAL NOT NULL, system TEXT, code TEXT, unit TEXT,
        canonical_code TEXT, canonical_value REAL, canonical_low REAL, canonical_high REAL
    );
    CREATE INDEX search_quantity_value ON search_quantity (param, value, rid);
    CREATE INDEX search_quantity_canonical ON search_quantity (param, canonical_code, canonical_value)
        WHERE canonical_code IS NOT NULL;
    CREATE INDEX search_quantity_rid ON search_quantity (rid, param);

    CREATE TABLE search_uri (
        rid INTEGER NOT NULL, param INTEGER NOT NULL, grp INTEGER, uri TEXT NOT NULL
    );
    CREATE INDEX search_uri_value ON search_uri (param, uri, rid);
    CREATE INDEX search_uri_rid ON search_uri (rid, param);

    -- `_text` (narrative) and `_content` (every string of the resource); rowid = rid.
    CREATE VIRTUAL TABLE search_text USING fts5(
        narrative, content, content = '', contentless_delete = 1, tokenize = 'unicode61 remove_diacritics 2'
    );
    "#,
    // 3: the interface message log (HL7 v2 received over MLLP): every message verbatim, before
    // processing, with its state. Not patient-owned rows in the sharding sense: the log stays
    // on the node that received the message.
    r#"
    CREATE TABLE interface_message (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        received_at   INTEGER NOT NULL,  -- unix microseconds
        updated_at    INTEGER NOT NULL,
        sender        TEXT    NOT NULL,  -- MSH-3|MSH-4 as sent
        control_id    TEXT    NOT NULL,  -- MSH-10
        message_type  TEXT    NOT NULL,  -- e.g. ADT^A01
        status        TEXT    NOT NULL
            CHECK (status IN ('received', 'processed', 'failed', 'rejected', 'duplicate')),
        attempts      INTEGER NOT NULL DEFAULT 0,
        ack_code      TEXT,
        error         TEXT,
        patient       TEXT,              -- Patient id, once known
        resources     TEXT,              -- JSON array of Type/id written
        duplicate_of  INTEGER,
        raw           BLOB    NOT NULL
    );
    CREATE INDEX interface_message_key ON interface_message (sender, control_id, status);
    CREATE INDEX interface_message_status ON interface_message (status, id);
    CREATE INDEX interface_message_patient ON interface_message (patient, id) WHERE patient IS NOT NULL;
    CREATE INDEX interface_message_received ON interface_message (received_at);
    "#,
    // 4: outbound interface partners and the outbox. An outbox row is inserted in the same
    // transaction as the record change it announces (one row per subscribed partner), so a
    // committed change is always announced; the sender marks it delivered or dead.
    r#"
    CREATE TABLE interface_partner (
        name       TEXT PRIMARY KEY,
        address    TEXT NOT NULL,     -- HOST:PORT of its MLLP listener
        events     TEXT NOT NULL,     -- ',A01,A03,' : the trigger events it takes
        created_at INTEGER NOT NULL
    );

    CREATE TABLE interface_outbox (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        partner         TEXT    NOT NULL,
        created_at      INTEGER NOT NULL,  -- unix microseconds
        event           TEXT    NOT NULL,  -- A01
        message_type    TEXT    NOT NULL,  -- ADT^A01
        control_id      TEXT    NOT NULL,  -- MSH-10
        resource        TEXT    NOT NULL,  -- Type/id announced
        patient         TEXT,
        status          TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_error      TEXT,
        updated_at      INTEGER NOT NULL,
        payload         TEXT    NOT NULL
    );
    CREATE INDEX interface_outbox_due ON interface_outbox (next_attempt_at, id) WHERE status = 'pending';
    CREATE INDEX interface_outbox_status ON interface_outbox (status, id);
    "#,
    // 5: the audit trail: AuditEvents chained by hash (`store::audit`). `sequence` is the
    // gapless position in the chain; `audit_chain` holds the head, so that removing the newest
    // entries is noticed too.
    r#"
    CREATE TABLE audit_event (
        sequence      INTEGER PRIMARY KEY,
        recorded      INTEGER NOT NULL,  -- unix microseconds
        patient       TEXT,
        agent         TEXT    NOT NULL,
        action        TEXT    NOT NULL,
        outcome       TEXT    NOT NULL,
        event         TEXT    NOT NULL,  -- the AuditEvent JSON
        previous_hash TEXT    NOT NULL,
        hash          TEXT    NOT NULL
    );
    CREATE INDEX audit_event_patient ON audit_event (patient, sequence) WHERE patient IS NOT NULL;
    CREATE INDEX audit_event_agent ON audit_event (agent, sequence);
    CREATE INDEX audit_event_recorded ON audit_event (recorded);
    CREATE TABLE audit_chain (
        id       INTEGER PRIMARY KEY CHECK (id = 1),
        sequence INTEGER NOT NULL,
        hash     TEXT    NOT NULL
    );
    INSERT INTO audit_chain VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
    "#,
    // 6: inbound interface partners (the MLLP listener's allow-list: the peer addresses each
    // connects from, and the destructive events it may send), and the partner each logged
    // message came from, which keys duplicate detection (a message's own header does not).
    r#"
    CREATE TABLE interface_inbound_partner (
        name           TEXT PRIMARY KEY,
        addresses      TEXT NOT NULL,     -- JSON array of IP addresses or CIDR blocks
        allowed_events TEXT NOT NULL,     -- JSON array of destructive trigger events allowed
        created_at     INTEGER NOT NULL
    );
    ALTER TABLE interface_message ADD COLUMN partner TEXT NOT NULL DEFAULT '';
    DROP INDEX interface_message_key;
    CREATE INDEX interface_message_key ON interface_message (partner, sender, control_id, status);
    "#,
    // 7: the state of long-running jobs (Bulk Data exports and imports), as JSON text.
    r#"
    CREATE TABLE job (
        id         TEXT PRIMARY KEY,
        kind       TEXT NOT NULL,
        state      TEXT NOT NULL,
        updated_at INTEGER NOT NULL   -- unix microseconds
    );
    CREATE INDEX job_kind ON job (kind, updated_at);
    "#,
    // 8: the notification outbox (care alerts, Subscription events, e-mails, webhooks): rows
    // inserted in the transaction of the change they announce, numbered within their channel.
    r#"
    CREATE TABLE notification (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        channel         TEXT    NOT NULL,  -- sub:ID, alert, email:…, webhook:…
        number          INTEGER NOT NULL,  -- from 1 within the channel, in commit order
        created_at      INTEGER NOT NULL,  -- unix microseconds
        event           TEXT    NOT NULL,
        resource        TEXT    NOT NULL,
        patient         TEXT,
        status          TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_error      TEXT,
        updated_at      INTEGER NOT NULL,
        payload         TEXT    NOT NULL,
        UNIQUE (channel, number)
    );
    CREATE INDEX notification_due ON notification (next_attempt_at, id) WHERE status = 'pending';
    CREATE INDEX notification_pending ON notification (channel, id) WHERE status = 'pending';
    "#,
];

/// Applies the migrations `conn`'s database lacks, each in its own transaction.
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    let applied: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(storage("schema"))?;
    let applied = usize::try_from(applied).map_err(|_| Error::Storage("bad schema version".into()))?;
    if applied > MIGRATIONS.len() {
        return Err(Error::Storage(format!(
            "the database has schema version {applied}, newer than this program's {}",
            MIGRATIONS.len()
        )));
    }
    for (done, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction().map_err(storage("migration"))?;
        tx.execute_batch(sql).map_err(storage("migration"))?;
        tx.pragma_update(None, "user_version", done as i64 + 1).map_err(storage("migration"))?;
        tx.commit().map_err(storage("migration"))?;
    }
    Ok(())
}

/// The schema version a fully migrated database has.
pub(crate) fn latest() -> usize {
    MIGRATIONS.len()
}
