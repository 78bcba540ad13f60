//! The planner's SQL in two small dialects shaped like the backends' (the backends' own are
//! checked in their crates): one with `?n`, lists of placeholders, `1`/`0`, `rowid` and one
//! table set; one with `$n`, arrays, `TRUE`/`FALSE`, `rid`, and tables by family with a
//! shard condition.

use crate::{Dialect, Params, Statement, Value, count, include, revinclude, search, search_ids};
use search::query::{Filter, SearchQuery, parse_include, parse_pairs};

/// SQLite's shape.
struct Lite;

impl Dialect for Lite {
    type Scope = ();
    const ROW_KEY: &'static str = "rowid";
    const TRUE: &'static str = "1";
    const FALSE: &'static str = "0";

    fn placeholder(n: usize, _: &Value) -> String {
        format!("?{n}")
    }
    fn among(&self, params: &mut Params, values: &[i64]) -> String {
        let list: Vec<String> = values.iter().map(|v| params.bind(*v)).collect();
        format!("IN ({})", list.join(", "))
    }
    fn live(&self, alias: &str) -> String {
        format!("{alias}.deleted = 0")
    }
    fn text_rows(&self, params: &mut Params, _: &(), _: bool, query: &str) -> String {
        format!("SELECT rowid FROM search_text WHERE search_text MATCH {}", params.bind(query))
    }
    fn search_scope(&self, _: &mut Params, _: &SearchQuery) {}
    fn scope_of(&self, _: &[String]) {}
    fn resource_scope(&self, _: &str, _: &str) {}
    fn table(&self, _: &(), base: &str) -> String {
        base.to_string()
    }
    fn scope_condition(&self, _: &(), _: &str) -> Option<String> {
        None
    }
    fn seeks_reference_ids(&self) -> bool {
        true
    }
}

/// PostgreSQL's shape: Patients and Observations are `patient_` rows, pinned to one patient
/// when a search names a single `Patient/…` in a reference; other types are `shared_` rows.
struct Pg;

#[derive(Clone, Default)]
struct PgScope {
    family: Option<&'static str>,
    pin: Option<String>,
}

fn family(resource_type: &str) -> &'static str {
    if matches!(resource_type, "Patient" | "Observation") { "patient_" } else { "shared_" }
}

impl Dialect for Pg {
    type Scope = PgScope;
    const ROW_KEY: &'static str = "rid";
    const TRUE: &'static str = "TRUE";
    const FALSE: &'static str = "FALSE";

    fn placeholder(n: usize, _: &Value) -> String {
        format!("${n}")
    }
    fn among(&self, params: &mut Params, values: &[i64]) -> String {
        format!("= ANY({})", params.bind(Value::Ints(values.to_vec())))
    }
    fn live(&self, alias: &str) -> String {
        format!("NOT {alias}.deleted")
    }
    fn text_rows(&self, params: &mut Params, scope: &PgScope, content: bool, query: &str) -> String {
        let column = if content { "content" } else { "narrative" };
        let m = params.bind(query);
        format!(
            "SELECT x.rid FROM {} x WHERE x.{column} @@ plainto_tsquery('simple', {m})",
            self.table(scope, "search_text")
        )
    }
    fn search_scope(&self, params: &mut Params, query: &SearchQuery) -> PgScope {
        let mut scope = self.scope_of(&query.types);
        if scope.family == Some("patient_") {
            let patient = query.filters.iter().find_map(|f| match f {
                Filter::Param { conditions, .. } => conditions.iter().find_map(|c| match c {
                    search::Condition::Reference { target_type: Some(t), id, .. } if t == "Patient" => Some(id.clone()),
                    _ => None,
                }),
                _ => None,
            });
            scope.pin = patient.map(|p| params.bind(p));
        }
        scope
    }
    fn scope_of(&self, types: &[String]) -> PgScope {
        let first = types.first().map(|t| family(t));
        let family = first.filter(|f| types.iter().all(|t| family(t) == *f));
        PgScope { family, pin: None }
    }
    fn resource_scope(&self, resource_type: &str, id: &str) -> PgScope {
        PgScope { family: Some(family(resource_type)), pin: (resource_type == "Patient").then(|| id.to_string()) }
    }
    fn table(&self, scope: &PgScope, base: &str) -> String {
        format!("{}{base}", scope.family.unwrap_or(""))
    }
    fn scope_condition(&self, scope: &PgScope, alias: &str) -> Option<String> {
        scope.pin.as_ref().map(|pin| format!("{alias}.shard_key = {pin}"))
    }
}

fn query(resource_type: Option<&str>, text: &str) -> SearchQuery {
    let pairs = parse_pairs(text).expect("query text");
    SearchQuery::parse(resource_type, &pairs, true).expect("query")
}

/// The text with runs of white space as one space (the planner indents nested selects).
fn squash(statement: &Statement) -> String {
    statement.sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The placeholder numbers of `sql` in `prefix`-n form, in order of appearance.
fn placeholders(sql: &str, prefix: char) -> Vec<usize> {
    let mut out = Vec::new();
    let mut rest = sql;
    while let Some(at) = rest.find(prefix) {
        let digits: String = rest[at + 1..].chars().take_while(char::is_ascii_digit).collect();
        if let Ok(n) = digits.parse() {
            out.push(n);
        }
        rest = &rest[at + 1..];
    }
    out
}

/// Every value bound is named by its placeholder, and no placeholder names a value not bound.
fn assert_numbered(statement: &Statement, prefix: char) {
    let mut used = placeholders(&statement.sql, prefix);
    used.sort_unstable();
    used.dedup();
    let expected: Vec<usize> = (1..=statement.values.len()).collect();
    assert_eq!(used, expected, "{}", statement.sql);
}

#[test]
fn one_search_in_both_dialects() {
    let q = query(Some("Observation"), "subject=Patient/p1&category=laboratory&_sort=-date");
    let lite = search(&Lite, &q, 20);
    let subject = search::param_key("Observation", "subject");
    let category = search::param_key("Observation", "category");
    let date = search::param_key("Observation", "date");
    assert_eq!(
        squash(&lite),
        "SELECT r.rowid FROM resource_current r WHERE r.deleted = 0 AND 1 AND r.resource_type = ?1 \
         AND r.rowid IN (SELECT t1.rid FROM search_reference t1 WHERE t1.param = ?2 AND ((t1.target_id = ?3 AND t1.target_type = ?4))) \
         AND EXISTS (SELECT 1 FROM search_token t2 WHERE t2.rid = r.rowid AND t2.param = ?5 AND ((t2.code = ?6))) \
         ORDER BY (SELECT MAX(s.high) FROM search_date s WHERE s.rid = r.rowid AND s.param = ?7) IS NULL, \
         (SELECT MAX(s.high) FROM search_date s WHERE s.rid = r.rowid AND s.param = ?7) DESC, r.rowid ASC LIMIT ?8"
    );
    let text = |v: &str| Value::Text(v.into());
    let values = vec![
        text("Observation"),
        Value::Int(subject),
        text("p1"),
        text("Patient"),
        Value::Int(category),
        text("laboratory"),
        Value::Int(date),
        Value::Int(20),
    ];
    assert_eq!(lite.values, values);

    // PostgreSQL's: the pin is bound first, every table is the family's, every index row of the
    // search is on the patient's shard.
    let pg = search(&Pg, &q, 20);
    assert_eq!(
        squash(&pg),
        "SELECT r.rid FROM patient_resource_current r WHERE NOT r.deleted AND TRUE AND r.resource_type = $2 \
         AND r.rid IN (SELECT t1.rid FROM patient_search_reference t1 WHERE t1.param = $3 AND ((t1.target_id = $4 AND t1.target_type = $5)) AND t1.shard_key = $1) \
         AND EXISTS (SELECT 1 FROM patient_search_token t2 WHERE t2.rid = r.rid AND t2.param = $6 AND ((t2.code = $7)) AND t2.shard_key = $1) \
         AND r.shard_key = $1 \
         ORDER BY (SELECT MAX(s.high) FROM patient_search_date s WHERE s.rid = r.rid AND s.param = $8 AND s.shard_key = $1) IS NULL, \
         (SELECT MAX(s.high) FROM patient_search_date s WHERE s.rid = r.rid AND s.param = $8 AND s.shard_key = $1) DESC, r.rid ASC LIMIT $9"
    );
    let mut pinned = vec![text("p1")];
    pinned.extend(values);
    assert_eq!(pg.values, pinned);
}

#[test]
fn lists_of_keys_are_placeholders_or_one_array() {
    let q = query(None, "_type=Observation,Condition&patient=Patient/p1");
    let lite = count(&Lite, &q);
    assert!(squash(&lite).contains("t1.param IN (?3, ?4)"), "{}", lite.sql);
    assert_numbered(&lite, '?');
    let pg = count(&Pg, &q);
    assert!(squash(&pg).contains("t1.param = ANY($3)"), "{}", pg.sql);
    assert!(pg.values.contains(&Value::Ints(vec![
        search::param_key("Observation", "patient"),
        search::param_key("Condition", "patient")
    ])));
    assert_numbered(&pg, '$');
}

#[test]
fn placeholders_are_numbered_in_order_in_both_dialects() {
    let searches = [
        (Some("Observation"), "patient=Patient/1&code=http://loinc.org|1234-5,5678&date=ge2020-01-01&_sort=date"),
        (
            Some("Observation"),
            "date=eq2020&date=ne2021&date=gt2019&date=lt2022&date=le2023&date=sa2018&date=eb2030&date=ap2020",
        ),
        (Some("Observation"), "value-quantity=5.4|http://unitsofmeasure.org|mg&code-value-quantity=1234$gt5"),
        (Some("Patient"), "name:contains=mi_t&birthdate:missing=true&gender:not=male&_text=cough&_list=42,43"),
        (Some("Patient"), "_has:Observation:patient:code=1234&general-practitioner=Practitioner/1,Practitioner/2"),
        (Some("Observation"), "subject:Patient.name=smith&_lastUpdated=ap2020-01-01&_id=a,b"),
        (Some("ValueSet"), "url=http://x|1&url:below=http://x&url:above=http://x/y/z"),
        (Some("Patient"), "_contained=both&name=a"),
        (None, "_type=Patient,Practitioner&name=a"),
    ];
    for (resource_type, text) in searches {
        let q = query(resource_type, text);
        for statement in [search(&Lite, &q, 10), search_ids(&Lite, &q, 10), count(&Lite, &q)] {
            assert_numbered(&statement, '?');
        }
        for statement in [search(&Pg, &q, 10), search_ids(&Pg, &q, 10), count(&Pg, &q)] {
            assert_numbered(&statement, '$');
            assert!(!statement.sql.contains('?'), "{}", statement.sql);
        }
    }
}

#[test]
fn a_chain_reads_its_targets_in_their_own_scope() {
    let q = query(Some("Observation"), "subject=Patient/p1&performer:Practitioner.name=kim");
    let pg = squash(&search(&Pg, &q, 10));
    // The Practitioner rows are shared ones and not pinned; the Observation's references are.
    assert!(pg.contains("FROM patient_search_reference t2 JOIN shared_resource_current c3"), "{pg}");
    assert!(pg.contains("FROM shared_search_string t4 WHERE t4.param"), "{pg}");
    assert!(!pg.contains("t4.shard_key"), "{pg}");
    assert!(pg.contains("AND t2.shard_key = $1)"), "{pg}");
    let lite = squash(&search(&Lite, &q, 10));
    assert!(lite.contains("FROM search_reference t2 JOIN resource_current c3"), "{lite}");
    assert!(lite.contains("AND c3.deleted = 0 AND c3.rowid IN (SELECT t4.rid FROM search_string t4"), "{lite}");
}

#[test]
fn reference_ids_are_sought_when_the_dialect_asks() {
    let q = query(Some("Patient"), "general-practitioner=Practitioner/1,Practitioner/2");
    let lite = squash(&search(&Lite, &q, 10));
    assert!(lite.contains("t1.param = ?2 AND t1.target_id IN (?3, ?4) AND ((t1.target_id = ?5"), "{lite}");
    let pg = squash(&search(&Pg, &q, 10));
    assert!(pg.contains("t1.param = $2 AND ((t1.target_id = $3"), "{pg}");
}

#[test]
fn long_alternatives_nest_in_groups() {
    let many: Vec<Filter> =
        (0..130).map(|i| Filter::Is { resource_type: "Patient".into(), id: format!("p{i}") }).collect();
    let q = SearchQuery {
        types: vec!["Patient".into()],
        filters: vec![Filter::Text { content: false, query: "x".into() }, Filter::AllOf(vec![Filter::AnyOf(many)])],
        ..SearchQuery::default()
    };
    let lite = search(&Lite, &q, 10);
    assert_numbered(&lite, '?');
    // 130 alternatives: groups of 64, 64 and 2, each parenthesized, inside the AllOf's and
    // the AnyOf's own parentheses.
    assert!(lite.sql.contains(" AND ((((r.resource_type = ?3 AND r.id = ?4) OR "), "{}", lite.sql);
    assert_eq!(lite.sql.matches(") OR ((r.resource_type").count(), 2, "{}", lite.sql);
    assert_eq!(lite.sql.matches(" OR ").count(), 129);
}

#[test]
fn empty_filters_are_the_dialects_booleans() {
    let q = SearchQuery {
        types: vec!["Observation".into(), "Practitioner".into()],
        filters: vec![Filter::AnyOf(vec![Filter::AllOf(vec![]), Filter::OfType(vec![]), Filter::Nothing])],
        ..SearchQuery::default()
    };
    assert!(squash(&count(&Lite, &q)).ends_with("AND 1 AND r.resource_type IN (?1, ?2) AND (1 OR 0 OR 0)"));
    assert!(squash(&count(&Pg, &q)).ends_with("AND TRUE AND r.resource_type IN ($1, $2) AND (TRUE OR FALSE OR FALSE)"));
}

#[test]
fn includes_follow_references_both_ways() {
    let forward = parse_include("Observation:subject:Patient", false, "Observation").expect("include");
    let lite = include(&Lite, &[7, 8], &forward).expect("statement");
    assert_eq!(
        squash(&lite),
        "SELECT DISTINCT c.rowid FROM search_reference t JOIN resource_current c \
         ON c.resource_type = t.target_type AND c.id = t.target_id \
         WHERE t.rid IN (?1, ?2) AND t.param = ?3 AND c.deleted = 0 AND t.target_type = ?4"
    );
    let pg = include(&Pg, &[7, 8], &forward).expect("statement");
    assert_eq!(
        squash(&pg),
        "SELECT DISTINCT c.rid FROM search_reference t JOIN resource_current c \
         ON c.resource_type = t.target_type AND c.id = t.target_id \
         WHERE t.rid = ANY($1) AND t.param = $2 AND NOT c.deleted AND t.target_type = $3"
    );
    let reverse = parse_include("Provenance:target", false, "Observation").expect("include");
    let pg = revinclude(&Pg, &[7], &reverse).expect("statement");
    assert_eq!(
        squash(&pg),
        "SELECT DISTINCT s.rid FROM resource_current m \
         JOIN search_reference t ON t.target_id = m.id AND t.target_type = m.resource_type \
         JOIN resource_current s ON s.rid = t.rid \
         WHERE m.rid = $1 AND t.param = $2 AND s.resource_type = $3 AND NOT s.deleted"
    );
    assert!(include(&Lite, &[], &forward).is_none());
    let mut no_parameter = reverse.clone();
    no_parameter.keys.clear();
    assert!(revinclude(&Lite, &[1], &no_parameter).is_none());
    assert!(revinclude(&Lite, &[1], &reverse).is_some());
}
