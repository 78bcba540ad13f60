//! The table layout for sharding by patient (schema version 4; `docs/scale-out.md`).
//!
//! Every resource table of versions 1–3 exists twice:
//!
//! - `patient_<name>` for the patient-owned types ([`crate::shard`]): a `shard_key TEXT
//!   COLLATE "C" NOT NULL` column leads every primary key and unique constraint, so that the
//!   tables can be distributed by it (Citus) or partitioned by its hash (PostgreSQL), both of
//!   which refuse a key without it;
//! - `shared_<name>` for every other type, without `shard_key` (Citus reference tables).
//!
//! `<name>` itself is a view, the `UNION ALL` of both, for the reads that span families (system
//! history, fetches by row key, includes); a read or search on types of one family names that
//! family's tables, and writes always do (PostgreSQL refuses row locks on a `UNION` view).
//!
//! Row keys (`rid`) and history sequences still come from one sequence each, so they stay
//! unique across families and shards. The uniqueness of `(type, id)` across shards is kept
//! by the writer, not by a constraint: a resource that does not exist yet is created under an
//! advisory lock on its `type/id` after a read of every shard (`queries::current`).
//!
//! `interface_outbox` is patient-owned too (its `shard_key` is the patient it announces,
//! `''` for none); `interface_message` (the HL7 message log, written before a patient is
//! known, kept by the node that received it), `interface_partner` (configuration),
//! `continuum_migration` and `continuum_layout` are not.
//!
//! When the custom setting `continuum.partitions` (e.g. `ALTER DATABASE db SET
//! continuum.partitions = '8'`) is above 0 while this migration runs, the patient-owned tables
//! are created `PARTITION BY HASH (shard_key)` with that many partitions; the choice is kept
//! in `continuum_layout`. When the `citus` extension is installed, [`distribute`] makes the
//! patient-owned tables distributed tables and the shared ones reference tables.

use crate::shard::{self, Family};
use crate::{Connection, storage};
use store::{Error, Result};

/// Most hash partitions `continuum.partitions` may ask for.
const MAX_PARTITIONS: u32 = 1024;

/// A resource table of versions 1–3 and how version 4 builds it.
struct Table {
    name: &'static str,
    /// Columns, `shard_key` excepted.
    columns: &'static str,
    /// Primary key and unique constraints, `shard_key` excepted (it leads them in the
    /// patient-owned table).
    keys: &'static [&'static str],
    /// Indexes of both families: (name suffix, definition).
    indexes: &'static [(&'static str, &'static str)],
    /// Indexes of the patient-owned table only: lookups that the shared table's unique
    /// constraints serve but that, without the shard key, the patient table's do not.
    patient_indexes: &'static [(&'static str, &'static str)],
    /// Columns of the view named `name`.
    view: &'static str,
}

/// The resource tables, in the order they are copied.
const TABLES: &[Table] = &[
    Table {
        name: "resource_current",
        columns: r#"rid BIGINT NOT NULL DEFAULT nextval('resource_row_key'),
            resource_type TEXT COLLATE "C" NOT NULL, id TEXT COLLATE "C" NOT NULL,
            version BIGINT NOT NULL, last_updated BIGINT NOT NULL, change TEXT NOT NULL,
            deleted BOOLEAN NOT NULL, sequence BIGINT NOT NULL, body TEXT,
            content JSONB GENERATED ALWAYS AS (body::jsonb) STORED"#,
        keys: &["PRIMARY KEY (resource_type, id)", "UNIQUE (rid)"],
        indexes: &[("live", "(resource_type, rid) WHERE NOT deleted")],
        patient_indexes: &[("by_id", "(resource_type, id)"), ("by_rid", "(rid)")],
        view: "rid, resource_type, id, version, last_updated, change, deleted, sequence, body",
    },
    Table {
        name: "resource_version",
        columns: r#"sequence BIGINT NOT NULL DEFAULT nextval('resource_history_sequence'),
            resource_type TEXT COLLATE "C" NOT NULL, id TEXT COLLATE "C" NOT NULL,
            version BIGINT NOT NULL, last_updated BIGINT NOT NULL,
            change TEXT NOT NULL CHECK (change IN ('created', 'updated', 'deleted')), body TEXT"#,
        keys: &["PRIMARY KEY (sequence)", "UNIQUE (resource_type, id, version)"],
        indexes: &[("by_type", "(resource_type, sequence)"), ("by_time", "(last_updated)")],
        patient_indexes: &[("by_sequence", "(sequence)"), ("by_version", "(resource_type, id, version)")],
        view: "sequence, resource_type, id, version, last_updated, change, body",
    },
    Table {
        name: "identifier_index",
        columns: r#"resource_type TEXT COLLATE "C" NOT NULL, value TEXT COLLATE "C" NOT NULL,
            system TEXT COLLATE "C" NOT NULL, id TEXT COLLATE "C" NOT NULL"#,
        keys: &["PRIMARY KEY (resource_type, value, system, id)"],
        indexes: &[("by_resource", "(resource_type, id)")],
        patient_indexes: &[("by_value", "(resource_type, value, system, id)")],
        view: "resource_type, value, system, id",
    },
    Table {
        name: "search_string",
        columns: r#"rid BIGINT NOT NULL, param BIGINT NOT NULL, grp BIGINT,
            normalized TEXT COLLATE "C" NOT NULL, exact TEXT COLLATE "C" NOT NULL"#,
        keys: &[],
        indexes: &[("value", "(param, normalized, rid)"), ("rid", "(rid, param)")],
        patient_indexes: &[],
        view: "rid, param, grp, normalized, exact",
    },
    Table {
        name: "search_token",
        columns: r#"rid BIGINT NOT NULL, param BIGINT NOT NULL, grp BIGINT,
            system TEXT COLLATE "C", code TEXT COLLATE "C", text TEXT COLLATE "C""#,
        keys: &[],
        indexes: &[
            ("code", "(param, code, system, rid)"),
            ("text", "(param, text, rid) WHERE text IS NOT NULL"),
            ("rid", "(rid, param)"),
        ],
        patient_indexes: &[],
        view: "rid, param, grp, system, code, text",
    },
    Table {
        name: "search_reference",
        columns: r#"rid BIGINT NOT NULL, param BIGINT NOT NULL, grp BIGINT,
            target_type TEXT COLLATE "C", target_id TEXT COLLATE "C", version TEXT COLLATE "C",
            url TEXT COLLATE "C", id_system TEXT COLLATE "C", id_value TEXT COLLATE "C""#,
        keys: &[],
        indexes: &[
            ("target", "(param, target_id, target_type, rid)"),
            ("by_target", "(target_id, target_type, param)"),
            ("url", "(param, url, rid) WHERE url IS NOT NULL"),
            ("identifier", "(param, id_value, rid) WHERE id_value IS NOT NULL"),
            ("rid", "(rid, param)"),
        ],
        patient_indexes: &[],
        view: "rid, param, grp, target_type, target_id, version, url, id_system, id_value",
    },
    Table {
        name: "search_date",
        columns: "rid BIGINT NOT NULL, param BIGINT NOT NULL, grp BIGINT, low BIGINT NOT NULL, high BIGINT NOT NULL",
        keys: &[],
        indexes: &[("low", "(param, low, high, rid)"), ("high", "(param, high, low, rid)"), ("rid", "(rid, param)")],
        patient_indexes: &[],
        view: "rid, param, grp, low, high",
    },
    Table {
        name: "search_number",
        columns: "rid BIGINT NOT NULL, param BIGINT NOT NULL, grp BIGINT, value DOUBLE PRECISION NOT NULL,
            low DOUBLE PRECISION NOT NULL, high DOUBLE PRECISION NOT NULL",
        keys: &[],
        indexes: &[("value", "(param, value, rid)"), ("rid", "(rid, param)")],
        patient_indexes: &[],
        view: "rid, param, grp, value, low, high",
    },
    Table {
        name: "search_quantity",
        columns: r#"rid BIGINT NOT NULL, param BIGINT NOT NULL, grp BIGINT,
            value DOUBLE PRECISION NOT NULL, low DOUBLE PRECISION NOT NULL, high DOUBLE PRECISION NOT NULL,
            system TEXT COLLATE "C", code TEXT COLLATE "C", unit TEXT COLLATE "C",
            canonical_code TEXT COLLATE "C", canonical_value DOUBLE PRECISION,
            canonical_low DOUBLE PRECISION, canonical_high DOUBLE PRECISION"#,
        keys: &[],
        indexes: &[
            ("value", "(param, value, rid)"),
            ("canonical", "(param, canonical_code, canonical_value) WHERE canonical_code IS NOT NULL"),
            ("rid", "(rid, param)"),
        ],
        patient_indexes: &[],
        view: "rid, param, grp, value, low, high, system, code, unit, canonical_code, canonical_value, \
               canonical_low, canonical_high",
    },
    Table {
        name: "search_uri",
        columns: r#"rid BIGINT NOT NULL, param BIGINT NOT NULL, grp BIGINT, uri TEXT COLLATE "C" NOT NULL"#,
        keys: &[],
        indexes: &[("value", "(param, uri, rid)"), ("rid", "(rid, param)")],
        patient_indexes: &[],
        view: "rid, param, grp, uri",
    },
    Table {
        name: "search_text",
        columns: "rid BIGINT NOT NULL, narrative TSVECTOR NOT NULL, content TSVECTOR NOT NULL",
        keys: &["PRIMARY KEY (rid)"],
        indexes: &[("narrative", "USING GIN (narrative)"), ("content", "USING GIN (content)")],
        patient_indexes: &[],
        view: "rid, narrative, content",
    },
];

/// The search index tables (keyed by `rid`), by their view names.
pub(crate) const INDEX_TABLES: &[&str] = &[
    "search_string",
    "search_token",
    "search_reference",
    "search_date",
    "search_number",
    "search_quantity",
    "search_uri",
    "search_text",
];

/// The outbox, patient-owned (by the patient it announces).
const OUTBOX: Table = Table {
    name: "interface_outbox",
    columns: r#"id BIGINT NOT NULL DEFAULT nextval('interface_outbox_id'),
        partner TEXT COLLATE "C" NOT NULL, created_at BIGINT NOT NULL, event TEXT NOT NULL,
        message_type TEXT NOT NULL, control_id TEXT NOT NULL, resource TEXT COLLATE "C" NOT NULL,
        patient TEXT COLLATE "C",
        status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
        attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at BIGINT NOT NULL, last_error TEXT,
        updated_at BIGINT NOT NULL, payload TEXT NOT NULL"#,
    keys: &["PRIMARY KEY (id)"],
    indexes: &[
        ("due", "(next_attempt_at, id) WHERE status = 'pending'"),
        ("status", "(status, id)"),
        ("partner", "(partner, id) WHERE status = 'pending'"),
    ],
    patient_indexes: &[("by_id", "(id)")],
    view: "",
};

/// The name of `table` in `family`.
pub(crate) fn name(family: Family, table: &str) -> String {
    format!("{}{table}", family.prefix())
}

/// Every patient-owned table, the first being the one the others are colocated with.
pub(crate) fn patient_tables() -> Vec<String> {
    let mut tables: Vec<String> = TABLES.iter().map(|t| name(Family::Patient, t.name)).collect();
    tables.push(OUTBOX.name.to_string());
    tables.push("audit_event".to_string());
    tables
}

/// Every shared (reference) table.
pub(crate) fn shared_tables() -> Vec<String> {
    let mut tables: Vec<String> = TABLES.iter().map(|t| name(Family::Shared, t.name)).collect();
    tables.push("interface_partner".to_string());
    tables.push("audit_chain".to_string());
    tables
}

/// `CREATE TABLE` and `CREATE INDEX` of `table` as `name`, with the shard key when
/// `patient`, hash-partitioned when `partitions > 0`.
fn create(out: &mut String, table: &Table, name: &str, patient: bool, partitions: u32) {
    let mut parts = Vec::new();
    if patient {
        parts.push(r#"shard_key TEXT COLLATE "C" NOT NULL"#.to_string());
    }
    parts.push(table.columns.to_string());
    for key in table.keys {
        parts.push(if patient { key.replacen('(', "(shard_key, ", 1) } else { key.to_string() });
    }
    let partitioned = patient && partitions > 0;
    let by = if partitioned { " PARTITION BY HASH (shard_key)" } else { "" };
    out.push_str(&format!("CREATE TABLE {name} (\n    {}\n){by};\n", parts.join(",\n    ")));
    if partitioned {
        for i in 0..partitions {
            out.push_str(&format!(
                "CREATE TABLE {name}_p{i} PARTITION OF {name} FOR VALUES WITH (MODULUS {partitions}, REMAINDER {i});\n"
            ));
        }
    }
    let extra = if patient { table.patient_indexes } else { &[] };
    for (suffix, definition) in table.indexes.iter().chain(extra) {
        out.push_str(&format!("CREATE INDEX {name}_{suffix} ON {name} {definition};\n"));
    }
}

/// The partitions asked for by `continuum.partitions` (0: none).
fn partitions_setting(conn: &mut Connection) -> Result<u32> {
    let row =
        conn.query_one("SELECT current_setting('continuum.partitions', true)", &[]).map_err(storage("migration"))?;
    let value: Option<String> = row.try_get(0).map_err(storage("migration"))?;
    let value = value.unwrap_or_default();
    let value = value.trim();
    if value.is_empty() {
        return Ok(0);
    }
    match value.parse::<u32>() {
        Ok(n) if n <= MAX_PARTITIONS => Ok(n),
        _ => Err(Error::Storage(format!("continuum.partitions must be a number from 0 to {MAX_PARTITIONS}"))),
    }
}

/// Migration 4: rebuilds the resource tables and the outbox in the sharded layout and moves
/// the rows of an older database into them, computing each resource's shard key from its
/// stored reference index rows (the same rule as [`shard::shard_key`]; a resource deleted
/// before the upgrade has no index rows left and gets `''`, a Patient its id).
pub(crate) fn rebuild(conn: &mut Connection) -> Result<()> {
    let fail = storage("migration");
    let partitions = partitions_setting(conn)?;
    let mut sql = String::from(
        "ALTER SEQUENCE resource_current_rid_seq OWNED BY NONE;
         ALTER SEQUENCE resource_current_rid_seq RENAME TO resource_row_key;
         ALTER SEQUENCE resource_version_sequence_seq OWNED BY NONE;
         ALTER SEQUENCE resource_version_sequence_seq RENAME TO resource_history_sequence;
         ALTER SEQUENCE interface_outbox_id_seq OWNED BY NONE;
         ALTER SEQUENCE interface_outbox_id_seq RENAME TO interface_outbox_id;
        ",
    );
    for table in TABLES.iter().chain([&OUTBOX]) {
        sql.push_str(&format!("ALTER TABLE {0} RENAME TO v3_{0};\n", table.name));
    }
    // The outbox keeps its name: its old indexes and key must make way.
    sql.push_str(
        "ALTER TABLE v3_interface_outbox RENAME CONSTRAINT interface_outbox_pkey TO v3_interface_outbox_pkey;\n",
    );
    for (suffix, _) in OUTBOX.indexes {
        sql.push_str(&format!("ALTER INDEX interface_outbox_{suffix} RENAME TO v3_interface_outbox_{suffix};\n"));
    }
    for table in TABLES {
        create(&mut sql, table, &name(Family::Patient, table.name), true, partitions);
        create(&mut sql, table, &name(Family::Shared, table.name), false, 0);
    }
    create(&mut sql, &OUTBOX, OUTBOX.name, true, partitions);
    sql.push_str(
        r#"CREATE TABLE continuum_layout (partitions INTEGER NOT NULL);
        CREATE TEMP TABLE v3_patient_type (resource_type TEXT COLLATE "C" PRIMARY KEY) ON COMMIT DROP;
        CREATE TEMP TABLE v3_shard_rule (
            resource_type TEXT COLLATE "C" NOT NULL, param BIGINT NOT NULL, position INTEGER NOT NULL,
            PRIMARY KEY (param, resource_type)
        ) ON COMMIT DROP;
        "#,
    );
    conn.batch(&sql).map_err(&fail)?;
    let partitions_value = i32::try_from(partitions).map_err(|_| Error::Storage("bad partition count".into()))?;
    conn.execute("INSERT INTO continuum_layout (partitions) VALUES ($1)", &[&partitions_value]).map_err(&fail)?;
    let types: Vec<&str> = shard::patient_types();
    conn.execute("INSERT INTO v3_patient_type SELECT unnest($1::text[])", &[&types]).map_err(&fail)?;
    let rule = shard::compartment_rule();
    let (rule_types, rule_keys, rule_positions): (Vec<&str>, Vec<i64>, Vec<i32>) =
        rule.iter().fold((Vec::new(), Vec::new(), Vec::new()), |(mut t, mut k, mut p), (ty, key, pos)| {
            t.push(*ty);
            k.push(*key);
            p.push(*pos);
            (t, k, p)
        });
    conn.execute(
        "INSERT INTO v3_shard_rule SELECT * FROM unnest($1::text[], $2::int8[], $3::int4[])",
        &[&rule_types, &rule_keys, &rule_positions],
    )
    .map_err(&fail)?;
    conn.batch(&copy_sql()).map_err(&fail)?;
    Ok(())
}

/// Moves the rows of the renamed version-3 tables into the new ones, then drops them and
/// creates the views.
fn copy_sql() -> String {
    let mut sql = String::from(
        r#"CREATE TEMP TABLE v3_shard ON COMMIT DROP AS
        SELECT c.rid, c.resource_type, c.id,
            CASE WHEN c.resource_type = 'Patient' THEN c.id ELSE coalesce((
                SELECT t.target_id FROM v3_search_reference t
                  JOIN v3_shard_rule u ON u.param = t.param AND u.resource_type = c.resource_type
                WHERE t.rid = c.rid AND t.target_type = 'Patient' AND t.target_id IS NOT NULL
                ORDER BY u.position, t.ctid LIMIT 1), '') END AS shard_key
        FROM v3_resource_current c WHERE c.resource_type IN (SELECT resource_type FROM v3_patient_type);
        CREATE UNIQUE INDEX ON v3_shard (rid);
        CREATE UNIQUE INDEX ON v3_shard (resource_type, id);
        ANALYZE v3_shard;
        "#,
    );
    for table in TABLES {
        let columns = table.view;
        let (patient, shared) = (name(Family::Patient, table.name), name(Family::Shared, table.name));
        let prefixed: Vec<String> = columns.split(',').map(|c| format!("o.{}", c.trim())).collect();
        let prefixed = prefixed.join(", ");
        let (join, owned) = if table.name.starts_with("search_") {
            ("s.rid = o.rid".to_string(), "EXISTS (SELECT 1 FROM v3_shard s WHERE s.rid = o.rid)")
        } else {
            (
                "s.resource_type = o.resource_type AND s.id = o.id".to_string(),
                "o.resource_type IN (SELECT resource_type FROM v3_patient_type)",
            )
        };
        sql.push_str(&format!(
            "INSERT INTO {patient} (shard_key, {columns}) SELECT s.shard_key, {prefixed} FROM v3_{0} o JOIN v3_shard s ON {join};
             INSERT INTO {shared} ({columns}) SELECT {prefixed} FROM v3_{0} o WHERE NOT ({owned});
             DROP TABLE v3_{0};
             CREATE VIEW {0} AS SELECT {columns} FROM {patient} UNION ALL SELECT {columns} FROM {shared};
            ",
            table.name
        ));
    }
    sql.push_str(
        "INSERT INTO interface_outbox (shard_key, id, partner, created_at, event, message_type, control_id, resource,
             patient, status, attempts, next_attempt_at, last_error, updated_at, payload)
         SELECT coalesce(patient, ''), id, partner, created_at, event, message_type, control_id, resource,
             patient, status, attempts, next_attempt_at, last_error, updated_at, payload FROM v3_interface_outbox;
         DROP TABLE v3_interface_outbox;
        ",
    );
    sql
}

/// The hash partitions of the patient-owned tables (0: not partitioned).
pub(crate) fn partitions(conn: &mut Connection) -> Result<u32> {
    let row = conn.query_one("SELECT partitions FROM continuum_layout", &[]).map_err(storage("schema"))?;
    let n: i32 = row.try_get(0).map_err(storage("schema"))?;
    u32::try_from(n).map_err(|_| Error::Storage("bad partition count".into()))
}

/// With the `citus` extension installed: makes the patient-owned tables distributed tables
/// (by `shard_key`, all colocated with `patient_resource_current`) and the shared ones
/// reference tables; tables already distributed are left as they are. Without it, nothing.
///
/// Not exercised by the test suite: Citus is not installed where it runs (see
/// `docs/scale-out.md`).
pub(crate) fn distribute(conn: &mut Connection) -> Result<()> {
    let fail = storage("distribute");
    if conn.query_opt("SELECT 1 FROM pg_extension WHERE extname = 'citus'", &[]).map_err(&fail)?.is_none() {
        return Ok(());
    }
    let done = |conn: &mut Connection, table: &str| -> Result<bool> {
        let row = conn
            .query_opt("SELECT 1 FROM pg_dist_partition WHERE logicalrelid = $1::text::regclass", &[&table])
            .map_err(storage("distribute"))?;
        Ok(row.is_some())
    };
    let patient = patient_tables();
    for (i, table) in patient.iter().enumerate() {
        if done(conn, table)? {
            continue;
        }
        let colocate = if i == 0 { "default" } else { patient[0].as_str() };
        conn.execute(
            "SELECT create_distributed_table($1::text::regclass, 'shard_key', colocate_with => $2::text)",
            &[table, &colocate],
        )
        .map_err(&fail)?;
    }
    for table in shared_tables() {
        if !done(conn, &table)? {
            conn.execute("SELECT create_reference_table($1::text::regclass)", &[&table]).map_err(&fail)?;
        }
    }
    Ok(())
}
