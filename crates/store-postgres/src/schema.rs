//! The schema and its migrations, applied on connect. The table `continuum_migration` lists
//! the migrations applied; an advisory lock keeps two processes from migrating at once.
//!
//! The tables are those of the SQLite backend. Differences: `resource_current.rid` (a
//! `bigserial`, kept by updates) stands for SQLite's rowid; the current body is also kept as
//! `jsonb` (`content`, generated from the exact text in `body`, which reads return so that
//! element order and decimals round-trip); `search_text` holds `tsvector`s under GIN indexes;
//! text columns use the "C" collation, so that comparisons, prefix ranges and sorting are
//! by code point as in SQLite, whatever the database's default collation.
//!
//! Migration 4 rebuilds the resource tables for sharding by patient (`patient_*` tables with a
//! `shard_key`, `shared_*` tables, the names above as views over both): see [`crate::layout`]
//! and `docs/scale-out.md`.

use crate::{Connection, storage};
use store::{Error, Result};

/// Migration `i` brings the schema from version `i` to `i + 1`. Never edit one that shipped;
/// append a new one.
const MIGRATIONS: &[Migration] = &[
    // 1: the resource store.
    Migration::Sql(
        r#"
    CREATE TABLE resource_version (
        sequence      BIGSERIAL PRIMARY KEY,
        resource_type TEXT COLLATE "C" NOT NULL,
        id            TEXT COLLATE "C" NOT NULL,
        version       BIGINT NOT NULL,
        last_updated  BIGINT NOT NULL,  -- unix microseconds
        change        TEXT NOT NULL CHECK (change IN ('created', 'updated', 'deleted')),
        body          TEXT,             -- NULL for a deletion
        UNIQUE (resource_type, id, version)
    );
    CREATE INDEX resource_version_by_type ON resource_version (resource_type, sequence);
    CREATE INDEX resource_version_by_time ON resource_version (last_updated);

    CREATE TABLE resource_current (
        rid           BIGSERIAL NOT NULL UNIQUE,
        resource_type TEXT COLLATE "C" NOT NULL,
        id            TEXT COLLATE "C" NOT NULL,
        version       BIGINT NOT NULL,
        last_updated  BIGINT NOT NULL,
        change        TEXT NOT NULL,
        deleted       BOOLEAN NOT NULL,
        sequence      BIGINT NOT NULL,
        body          TEXT,
        content       JSONB GENERATED ALWAYS AS (body::jsonb) STORED,
        PRIMARY KEY (resource_type, id)
    );
    CREATE INDEX resource_current_live ON resource_current (resource_type, rid) WHERE NOT deleted;

    CREATE TABLE identifier_index (
        resource_type TEXT COLLATE "C" NOT NULL,
        value         TEXT COLLATE "C" NOT NULL,
        system        TEXT COLLATE "C" NOT NULL,
        id            TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (resource_type, value, system, id)
    );
    CREATE INDEX identifier_index_by_resource ON identifier_index (resource_type, id);
    "#,
    ),
    // 2: search indexes; rows point at `resource_current.rid`. See the SQLite backend's
    // migration 2 for the reasons of each index.
    Migration::Sql(
        r#"
    CREATE TABLE search_string (
        rid BIGINT NOT NULL, param BIGINT NOT NULL, grp BIGINT,
        normalized TEXT COLLATE "C" NOT NULL, exact TEXT COLLATE "C" NOT NULL
    );
    CREATE INDEX search_string_value ON search_string (param, normalized, rid);
    CREATE INDEX search_string_rid ON search_string (rid, param);

    CREATE TABLE search_token (
        rid BIGINT NOT NULL, param BIGINT NOT NULL, grp BIGINT,
        system TEXT COLLATE "C", code TEXT COLLATE "C", text TEXT COLLATE "C"
    );
    CREATE INDEX search_token_code ON search_token (param, code, system, rid);
    CREATE INDEX search_token_text ON search_token (param, text, rid) WHERE text IS NOT NULL;
    CREATE INDEX search_token_rid ON search_token (rid, param);

    CREATE TABLE search_reference (
        rid BIGINT NOT NULL, param BIGINT NOT NULL, grp BIGINT,
        target_type TEXT COLLATE "C", target_id TEXT COLLATE "C", version TEXT COLLATE "C",
        url TEXT COLLATE "C", id_system TEXT COLLATE "C", id_value TEXT COLLATE "C"
    );
    CREATE INDEX search_reference_target ON search_reference (param, target_id, target_type, rid);
    CREATE INDEX search_reference_by_target ON search_reference (target_id, target_type, param);
    CREATE INDEX search_reference_url ON search_reference (param, url, rid) WHERE url IS NOT NULL;
    CREATE INDEX search_reference_identifier ON search_reference (param, id_value, rid) WHERE id_value IS NOT NULL;
    CREATE INDEX search_reference_rid ON search_reference (rid, param);

    CREATE TABLE search_date (
        rid BIGINT NOT NULL, param BIGINT NOT NULL, grp BIGINT,
        low BIGINT NOT NULL, high BIGINT NOT NULL  -- unix microseconds, inclusive
    );
    CREATE INDEX search_date_low ON search_date (param, low, high, rid);
    CREATE INDEX search_date_high ON search_date (param, high, low, rid);
    CREATE INDEX search_date_rid ON search_date (rid, param);

    CREATE TABLE search_number (
        rid BIGINT NOT NULL, param BIGINT NOT NULL, grp BIGINT,
        value DOUBLE PRECISION NOT NULL, low DOUBLE PRECISION NOT NULL, high DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX search_number_value ON search_number (param, value, rid);
    CREATE INDEX search_number_rid ON search_number (rid, param);

    CREATE TABLE search_quantity (
        rid BIGINT NOT NULL, param BIGINT NOT NULL, grp BIGINT,
        value DOUBLE PRECISION NOT NULL, low DOUBLE PRECISION NOT NULL, high DOUBLE PRECISION NOT NULL,
        system TEXT COLLATE "C", code TEXT COLLATE "C", unit TEXT COLLATE "C",
        canonical_code TEXT COLLATE "C", canonical_value DOUBLE PRECISION,
        canonical_low DOUBLE PRECISION, canonical_high DOUBLE PRECISION
    );
    CREATE INDEX search_quantity_value ON search_quantity (param, value, rid);
    CREATE INDEX search_quantity_canonical ON search_quantity (param, canonical_code, canonical_value)
        WHERE canonical_code IS NOT NULL;
    CREATE INDEX search_quantity_rid ON search_quantity (rid, param);

    CREATE TABLE search_uri (
        rid BIGINT NOT NULL, param BIGINT NOT NULL, grp BIGINT, uri TEXT COLLATE "C" NOT NULL
    );
    CREATE INDEX search_uri_value ON search_uri (param, uri, rid);
    CREATE INDEX search_uri_rid ON search_uri (rid, param);

    -- `_text` (narrative) and `_content` (every string of the resource), diacritics folded
    -- before they are stored (see index_rows.rs).
    CREATE TABLE search_text (
        rid BIGINT PRIMARY KEY, narrative TSVECTOR NOT NULL, content TSVECTOR NOT NULL
    );
    CREATE INDEX search_text_narrative ON search_text USING GIN (narrative);
    CREATE INDEX search_text_content ON search_text USING GIN (content);
    "#,
    ),
    // 3: the interface message log (HL7 v2 received over MLLP), every message verbatim before
    // processing, and the outbound partners and outbox. The message log is not patient-owned
    // in the sharding sense (a message is logged before its patient is known; it stays with the
    // node that received it); outbox rows carry the patient they announce.
    Migration::Sql(
        r#"
    CREATE TABLE interface_message (
        id            BIGSERIAL PRIMARY KEY,
        received_at   BIGINT NOT NULL,  -- unix microseconds
        updated_at    BIGINT NOT NULL,
        sender        TEXT COLLATE "C" NOT NULL,  -- MSH-3|MSH-4 as sent
        control_id    TEXT COLLATE "C" NOT NULL,  -- MSH-10
        message_type  TEXT COLLATE "C" NOT NULL,  -- e.g. ADT^A01
        status        TEXT NOT NULL
            CHECK (status IN ('received', 'processed', 'failed', 'rejected', 'duplicate')),
        attempts      INTEGER NOT NULL DEFAULT 0,
        ack_code      TEXT,
        error         TEXT,
        patient       TEXT COLLATE "C",  -- Patient id, once known
        resources     TEXT,              -- JSON array of Type/id written
        duplicate_of  BIGINT,
        raw           BYTEA NOT NULL
    );
    CREATE INDEX interface_message_key ON interface_message (sender, control_id, status);
    CREATE INDEX interface_message_status ON interface_message (status, id);
    CREATE INDEX interface_message_patient ON interface_message (patient, id) WHERE patient IS NOT NULL;
    CREATE INDEX interface_message_received ON interface_message (received_at);

    CREATE TABLE interface_partner (
        name       TEXT COLLATE "C" PRIMARY KEY,
        address    TEXT NOT NULL,     -- HOST:PORT of its MLLP listener
        events     TEXT NOT NULL,     -- ',A01,A03,' : the trigger events it takes
        created_at BIGINT NOT NULL
    );

    CREATE TABLE interface_outbox (
        id              BIGSERIAL PRIMARY KEY,
        partner         TEXT COLLATE "C" NOT NULL,
        created_at      BIGINT NOT NULL,  -- unix microseconds
        event           TEXT NOT NULL,    -- A01
        message_type    TEXT NOT NULL,    -- ADT^A01
        control_id      TEXT NOT NULL,    -- MSH-10
        resource        TEXT COLLATE "C" NOT NULL,  -- Type/id announced
        patient         TEXT COLLATE "C",
        status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at BIGINT NOT NULL,
        last_error      TEXT,
        updated_at      BIGINT NOT NULL,
        payload         TEXT NOT NULL
    );
    CREATE INDEX interface_outbox_due ON interface_outbox (next_attempt_at, id) WHERE status = 'pending';
    CREATE INDEX interface_outbox_status ON interface_outbox (status, id);
    CREATE INDEX interface_outbox_partner ON interface_outbox (partner, id) WHERE status = 'pending';
    "#,
    ),
    // 4: the tables rebuilt for sharding by patient (see `layout`): patient-owned rows carry
    // `shard_key`, shared resources get tables of their own, the old names become views.
    Migration::Code(crate::layout::rebuild),
    // 5: the audit trail, chained by hash (`audit`), in the database's layout.
    Migration::Code(crate::audit::create),
    // 6: inbound interface partners (the MLLP listener's allow-list: the peer addresses each
    // connects from, and the destructive events it may send), and the partner each logged
    // message came from, which keys duplicate detection (a message's own header does not).
    // Configuration like `interface_partner`; not patient-owned.
    Migration::Sql(
        r#"
    CREATE TABLE interface_inbound_partner (
        name           TEXT COLLATE "C" PRIMARY KEY,
        addresses      TEXT NOT NULL,     -- JSON array of IP addresses or CIDR blocks
        allowed_events TEXT NOT NULL,     -- JSON array of destructive trigger events allowed
        created_at     BIGINT NOT NULL
    );
    ALTER TABLE interface_message ADD COLUMN partner TEXT COLLATE "C" NOT NULL DEFAULT '';
    DROP INDEX interface_message_key;
    CREATE INDEX interface_message_key ON interface_message (partner, sender, control_id, status);
    "#,
    ),
    // 7: the state of long-running jobs (Bulk Data exports and imports), as JSON text. Not
    // patient-owned.
    Migration::Sql(
        r#"
    CREATE TABLE job (
        id         TEXT COLLATE "C" PRIMARY KEY,
        kind       TEXT COLLATE "C" NOT NULL,
        state      TEXT NOT NULL,
        updated_at BIGINT NOT NULL   -- unix microseconds
    );
    CREATE INDEX job_kind ON job (kind, updated_at);
    "#,
    ),
    // 8: the notification outbox (care alerts, Subscription events, e-mails, webhooks): rows
    // inserted in the transaction of the change they announce, numbered within their channel
    // (under an advisory lock per channel, so numbers follow commit order). Not patient-owned:
    // a channel's order spans patients.
    Migration::Sql(
        r#"
    CREATE TABLE notification (
        id              BIGSERIAL PRIMARY KEY,
        channel         TEXT COLLATE "C" NOT NULL,
        number          BIGINT NOT NULL,
        created_at      BIGINT NOT NULL,  -- unix microseconds
        event           TEXT COLLATE "C" NOT NULL,
        resource        TEXT COLLATE "C" NOT NULL,
        patient         TEXT COLLATE "C",
        status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at BIGINT NOT NULL,
        last_error      TEXT,
        updated_at      BIGINT NOT NULL,
        payload         TEXT NOT NULL,
        UNIQUE (channel, number)
    );
    CREATE INDEX notification_due ON notification (next_attempt_at, id) WHERE status = 'pending';
    CREATE INDEX notification_pending ON notification (channel, id) WHERE status = 'pending';
    "#,
    ),
];

/// One schema migration.
enum Migration {
    /// Statements without parameters.
    Sql(&'static str),
    /// A migration that needs values from the program or the server (run in the migration's
    /// transaction).
    Code(fn(&mut Connection) -> Result<()>),
}

/// Key of the advisory lock held while migrating.
const MIGRATION_LOCK: i64 = 0x636f_6e74_696e_7575; // "continuu"

/// Applies the migrations the database lacks, each in its own transaction.
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    migrate_to(conn, MIGRATIONS.len())
}

/// Applies the migrations the database lacks up to schema version `target` (tests build
/// older schemas with it, to check upgrades).
pub(crate) fn migrate_to(conn: &mut Connection, target: usize) -> Result<()> {
    let fail = storage("migration");
    // Under the migration lock, so that processes starting together do not race to create
    // the table (a lost race fails with 23505, 42P07 or 42710 depending on the moment).
    conn.batch(&format!(
        "BEGIN;
         SELECT pg_advisory_xact_lock({MIGRATION_LOCK});
         CREATE TABLE IF NOT EXISTS continuum_migration (
            version    INTEGER PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         );
         COMMIT;"
    ))
    .map_err(|e| {
        let _ = conn.batch("ROLLBACK");
        fail(e)
    })?;
    loop {
        conn.batch("BEGIN").map_err(&fail)?;
        let step = migrate_one(conn, target);
        match step {
            Ok(true) => conn.batch("COMMIT").map_err(&fail)?,
            Ok(false) => {
                conn.batch("COMMIT").map_err(&fail)?;
                return Ok(());
            }
            Err(e) => {
                let _ = conn.batch("ROLLBACK");
                return Err(e);
            }
        }
    }
}

/// Applies the next migration inside the open transaction; `false` when none is left.
fn migrate_one(conn: &mut Connection, target: usize) -> Result<bool> {
    let fail = storage("migration");
    conn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).map_err(&fail)?;
    let done = applied(conn)?;
    if done > MIGRATIONS.len() {
        return Err(Error::Storage(format!(
            "the database has schema version {done}, newer than this program's {}",
            MIGRATIONS.len()
        )));
    }
    let Some(migration) = MIGRATIONS.get(done).filter(|_| done < target) else { return Ok(false) };
    match migration {
        Migration::Sql(sql) => conn.batch(sql).map_err(&fail)?,
        Migration::Code(run) => run(conn)?,
    }
    let version = i32::try_from(done + 1).map_err(|_| Error::Storage("bad schema version".into()))?;
    conn.execute("INSERT INTO continuum_migration (version) VALUES ($1)", &[&version]).map_err(&fail)?;
    Ok(true)
}

/// The number of migrations applied.
pub(crate) fn applied(conn: &mut Connection) -> Result<usize> {
    let row = conn.query_one("SELECT count(*) FROM continuum_migration", &[]).map_err(storage("schema"))?;
    let n: i64 = row.try_get(0).map_err(storage("schema"))?;
    usize::try_from(n).map_err(|_| Error::Storage("bad schema version".into()))
}

/// The schema version a fully migrated database has.
pub(crate) fn latest() -> usize {
    MIGRATIONS.len()
}
