//! A search request parsed against the definitions: which parameters, which values, which
//! result options. Backends translate a [`SearchQuery`] into their own query language.

use crate::registry::{CompiledParam, ParamKind, registry};
use crate::values::{DateRange, NumberRange, normalize};
use fhir::{Issue, IssueCode};
use percent_encoding::percent_decode_str;

/// Why a search cannot run (answered 400 with an OperationOutcome).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", .0.iter().map(|i| i.diagnostics.as_str()).collect::<Vec<_>>().join("; "))]
pub struct QueryError(pub Vec<Issue>);

fn invalid(message: impl Into<String>) -> QueryError {
    QueryError(vec![Issue::error(IssueCode::Value, message)])
}

/// A comparison prefix of number, date and quantity values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// `eq`, the default: the stored value lies within the range the search value implies.
    Eq,
    /// `ne`: the stored value lies outside that range.
    Ne,
    /// `gt`: greater than the search value.
    Gt,
    /// `lt`: less than the search value.
    Lt,
    /// `ge`: greater than or equal to the search value.
    Ge,
    /// `le`: less than or equal to the search value.
    Le,
    /// `sa`, starts after: the stored range begins after the search range ends.
    Sa,
    /// `eb`, ends before: the stored range ends before the search range begins.
    Eb,
    /// `ap`: approximately equal (a margin of about 10%).
    Ap,
}

impl Prefix {
    /// Splits a leading prefix off `value` (`eq` when none).
    pub fn split(value: &str) -> (Prefix, &str) {
        let prefixes = [
            ("eq", Prefix::Eq),
            ("ne", Prefix::Ne),
            ("gt", Prefix::Gt),
            ("lt", Prefix::Lt),
            ("ge", Prefix::Ge),
            ("le", Prefix::Le),
            ("sa", Prefix::Sa),
            ("eb", Prefix::Eb),
            ("ap", Prefix::Ap),
        ];
        for (text, prefix) in prefixes {
            if let Some(rest) = value.strip_prefix(text)
                && rest.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.')
            {
                return (prefix, rest);
            }
        }
        (Prefix::Eq, value)
    }
}

/// How a string value matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringMatch {
    /// Normalised starts-with (the default).
    Start,
    /// Exact, case- and accent-sensitive (`:exact`).
    Exact,
    /// Normalised substring (`:contains`).
    Contains,
    /// Equal to the stored normalised form (the `phonetic` parameter, whose stored forms are
    /// Double Metaphone codes).
    Code,
}

/// How a uri value matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriMatch {
    /// The stored uri equals the value (the default).
    Exact,
    /// The stored uri is a prefix of the value (`:above`).
    Above,
    /// The value is a prefix of the stored uri (`:below`).
    Below,
}

/// One value of a parameter (the values of one parameter are OR-ed).
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// A string value: normalised unless `mode` is [`StringMatch::Exact`].
    String {
        /// The value searched for.
        value: String,
        /// How it matches the stored strings.
        mode: StringMatch,
    },
    /// `system: None` is any system, `Some(None)` no system (`|code`); `code: None` any code
    /// (`system|`).
    Token {
        /// The system asked for: `None` any, `Some(None)` none.
        system: Option<Option<String>>,
        /// The code asked for: `None` any.
        code: Option<String>,
    },
    /// `:text`: the normalised text starts with `value`.
    TokenText(String),
    /// `:below` / `:above`: any of `codes` in `system` (the code and what it subsumes, or
    /// what subsumes it, from the embedded CodeSystem's hierarchy).
    TokenIn {
        /// The CodeSystem the codes belong to.
        system: String,
        /// The code given and the codes it subsumes or is subsumed by.
        codes: Vec<String>,
    },
    /// A local reference (`Patient/1`, or `1` with the type chosen by the parameter's targets
    /// or a `:Type` modifier; `target_type: None` means any type).
    Reference {
        /// The resource type referenced, `None` for any.
        target_type: Option<String>,
        /// The id of the resource referenced.
        id: String,
        /// The version, when the value pins one (`Patient/1/_history/2`).
        version: Option<String>,
    },
    /// An absolute URL or canonical not on this server.
    ReferenceUrl(String),
    /// `:identifier`.
    ReferenceIdentifier {
        /// The identifier's system, as for [`Condition::Token`].
        system: Option<Option<String>>,
        /// The identifier's value.
        value: String,
    },
    /// A date value compared by `prefix` with the stored date ranges.
    Date {
        /// How the ranges compare.
        prefix: Prefix,
        /// The range the value covers at its precision.
        range: DateRange,
    },
    /// A number compared by `prefix` with the stored numbers.
    Number {
        /// How the ranges compare.
        prefix: Prefix,
        /// The range the value implies at its precision.
        range: NumberRange,
    },
    /// A quantity (`[prefix]number|system|code`) compared by `prefix`.
    Quantity {
        /// How the ranges compare.
        prefix: Prefix,
        /// The range the number implies at its precision, in the unit given.
        range: NumberRange,
        /// The unit's system, `None` for any.
        system: Option<String>,
        /// The unit's code (or unit text), `None` for any.
        code: Option<String>,
        /// The value in canonical UCUM units, when the unit is known.
        canonical: Option<(String, NumberRange)>,
    },
    /// A uri value.
    Uri {
        /// The uri searched for.
        value: String,
        /// How it matches the stored uris.
        mode: UriMatch,
    },
    /// A composite value: one condition per component, all on the same composite value.
    Composite(Vec<(i64, ParamKind, Condition)>),
}

/// One AND-ed part of a search.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `_id` (OR of ids).
    Id(Vec<String>),
    /// `_lastUpdated` (OR of conditions).
    LastUpdated(Vec<(Prefix, DateRange)>),
    /// A parameter whose index rows carry one of `keys` (one key per resource type searched),
    /// matching any of `conditions`.
    Param {
        /// The parameter's key on each type searched.
        keys: Vec<i64>,
        /// The parameter's type, which says which index rows hold it.
        kind: ParamKind,
        /// The values, OR-ed.
        conditions: Vec<Condition>,
    },
    /// `:not`: no index row of the parameter matches any of the conditions.
    Not {
        /// The parameter's key on each type searched.
        keys: Vec<i64>,
        /// The parameter's type.
        kind: ParamKind,
        /// The values none of which may match.
        conditions: Vec<Condition>,
    },
    /// `:missing=true|false`.
    Missing {
        /// The parameter's key on each type searched.
        keys: Vec<i64>,
        /// The parameter's type.
        kind: ParamKind,
        /// `true`: the resource has no value for it; `false`: it has one.
        missing: bool,
    },
    /// A chain: a reference parameter (`keys`) pointing at a `target_type` resource that
    /// matches `inner`.
    Chain {
        /// The reference parameter's key on each type searched.
        keys: Vec<i64>,
        /// The type of the resources referenced.
        target_type: String,
        /// What a referenced resource must match.
        inner: Box<Filter>,
    },
    /// `_has`: some `source_type` resource whose reference parameter `key` points here
    /// matches `inner`.
    Has {
        /// The type of the resources that point here.
        source_type: String,
        /// Their reference parameter's key.
        key: i64,
        /// What such a resource must match.
        inner: Box<Filter>,
    },
    /// `_text` / `_content`: full-text search of the narrative or of the whole resource.
    Text {
        /// `true` for `_content` (every string), `false` for `_text` (the narrative).
        content: bool,
        /// The words searched for, as given.
        query: String,
    },
    /// `_list`: the resource is an item of one of these Lists.
    List(Vec<String>),
    /// Compartment search: any of the linking parameters `keys` points at `target_type/id`
    /// for one of `ids` (several: the union of those compartments, e.g. the patients a user
    /// may see).
    Compartment {
        /// The linking parameters' keys.
        keys: Vec<i64>,
        /// The compartment's type (`Patient`).
        target_type: String,
        /// The ids of the compartments' owners.
        ids: Vec<String>,
    },
    /// Exactly the resource `resource_type/id`.
    Is {
        /// Its type.
        resource_type: String,
        /// Its id.
        id: String,
    },
    /// Any of the filters holds.
    AnyOf(Vec<Filter>),
    /// Every one of the filters holds (access narrowing nests these inside `AnyOf`, chains
    /// and `_has`).
    AllOf(Vec<Filter>),
    /// The resource is of one of these types (a container of `_contained`, one type of a
    /// search over several).
    OfType(Vec<String>),
    /// Always false (e.g. a chain whose target type lacks the parameter after filtering).
    Nothing,
}

/// `_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Total {
    /// No total in the result Bundle.
    None,
    /// A total that may be approximate (the default).
    #[default]
    Estimate,
    /// The exact number of matches.
    Accurate,
}

/// `_summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Summary {
    /// The whole resources (the default).
    #[default]
    False,
    /// Only the elements marked as summary in the definitions.
    True,
    /// Only the narrative, with id, meta and mandatory elements.
    Text,
    /// Everything except the narrative.
    Data,
    /// Only the total, no resources.
    Count,
}

/// `_contained`: whether to search resources contained in others (and return their
/// containers, `_containedType=container`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Contained {
    /// Only resources that stand on their own (the default, `_contained=false`).
    #[default]
    No,
    /// Only contained resources (`_contained=true`).
    Only,
    /// Both kinds (`_contained=both`).
    Both,
}

/// A sort key of `_sort`.
#[derive(Debug, Clone, PartialEq)]
pub enum SortKey {
    /// `_id`.
    Id,
    /// `_lastUpdated`.
    LastUpdated,
    /// A search parameter.
    Param {
        /// The parameter's key on each type searched.
        keys: Vec<i64>,
        /// The parameter's type, which says how its values order.
        kind: ParamKind,
    },
}

/// `_include` / `_revinclude`: `source_type:param[:target_type]`, `*` for every reference
/// parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    /// The type of the resources whose references are followed.
    pub source_type: String,
    /// Keys of the reference parameters followed (all of the source type's for `*`).
    pub keys: Vec<i64>,
    /// Only references to this type are followed, when given.
    pub target_type: Option<String>,
    /// `:iterate` (or the older `:recurse`): also followed from the resources included.
    pub iterate: bool,
    /// The text as given, for links.
    pub text: String,
}

/// A parsed search.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchQuery {
    /// The types searched: one for a type-level search; for a system-level search the `_type`
    /// list, or empty for every type.
    pub types: Vec<String>,
    /// What a match must satisfy, AND-ed.
    pub filters: Vec<Filter>,
    /// `_sort`: keys in order, each with `true` when descending.
    pub sort: Vec<(SortKey, bool)>,
    /// `_count`: the page size asked for.
    pub count: Option<usize>,
    /// `_total`.
    pub total: Total,
    /// `_summary`.
    pub summary: Summary,
    /// `_elements`: the only elements to return (empty: all).
    pub elements: Vec<String>,
    /// `_include`: resources the matches reference, added to the result.
    pub include: Vec<Include>,
    /// `_revinclude`: resources that reference the matches, added to the result.
    pub revinclude: Vec<Include>,
    /// Parameters ignored (unknown or unsupported), reported as warnings.
    pub ignored: Vec<Issue>,
    /// The search parameters as understood, for the self link (name, value).
    pub echo: Vec<(String, String)>,
    /// Paging parameters of this server's links (`_page`), passed back as given.
    pub page: Option<String>,
    /// `_contained`.
    pub contained: Contained,
    /// With `_contained=both`: the filters as they apply to contained resources (matched
    /// besides `filters` on the searched types).
    pub contained_filters: Vec<Filter>,
}

impl SearchQuery {
    /// `Patient/[id]/$everything`: the patient and every resource in its compartment (of
    /// `types` when given), changed since `since` when given, with what they reference
    /// included.
    pub fn everything(id: &str, types: Option<&[String]>, since: Option<DateRange>) -> Result<SearchQuery, QueryError> {
        SearchQuery::everything_of(&[id.to_string()], types, since)
    }

    /// [`SearchQuery::everything`] over the compartments of several Patients at once (the
    /// linked records of one person).
    pub fn everything_of(
        ids: &[String],
        types: Option<&[String]>,
        since: Option<DateRange>,
    ) -> Result<SearchQuery, QueryError> {
        let compartment = fhir::definitions().patient_compartment();
        let mut all: Vec<String> =
            compartment.resources.iter().filter(|(_, p)| !p.is_empty()).map(|(t, _)| t.clone()).collect();
        all.push("Patient".to_string());
        all.sort();
        all.dedup();
        if let Some(types) = types {
            for t in types {
                if !all.contains(t) {
                    return Err(invalid(format!("`_type`: `{t}` is not in the Patient compartment")));
                }
            }
            all.retain(|t| types.contains(t));
        }
        let mut keys = Vec::new();
        let mut include_keys = Vec::new();
        for t in &all {
            for name in compartment.params(t) {
                if let Some(p) = registry().param(t, name).filter(|p| p.kind == ParamKind::Reference) {
                    keys.push(p.key);
                }
            }
            include_keys.extend(
                registry()
                    .params(t)
                    .unwrap_or_default()
                    .iter()
                    .filter(|p| p.kind == ParamKind::Reference)
                    .map(|p| p.key),
            );
        }
        let mut any = vec![Filter::Compartment { keys, target_type: "Patient".into(), ids: ids.to_vec() }];
        if all.iter().any(|t| t == "Patient") {
            any.extend(ids.iter().map(|id| Filter::Is { resource_type: "Patient".into(), id: id.clone() }));
        }
        let mut filters = vec![Filter::AnyOf(any)];
        if let Some(since) = since {
            filters.push(Filter::LastUpdated(vec![(Prefix::Ge, since)]));
        }
        let include = Include {
            source_type: "*".into(),
            keys: include_keys,
            target_type: None,
            iterate: false,
            text: "*".into(),
        };
        Ok(SearchQuery { types: all, filters, include: vec![include], ..SearchQuery::default() })
    }
}

/// Splits a query string into decoded `(name, value)` pairs (`+` is a space, as in forms).
pub fn parse_pairs(query: &str) -> Result<Vec<(String, String)>, QueryError> {
    let query = query.strip_prefix('?').unwrap_or(query);
    let mut pairs = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        pairs.push((decode(name)?, decode(value)?));
    }
    Ok(pairs)
}

fn decode(text: &str) -> Result<String, QueryError> {
    let spaced = text.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| invalid("a search parameter is not valid UTF-8 after percent-decoding"))
}

/// Splits on `separator` where it is not escaped by a backslash; escapes are kept.
pub fn split_unescaped(text: &str, separator: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in text.chars() {
        if escaped {
            current.push('\\');
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == separator {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    if escaped {
        current.push('\\');
    }
    parts.push(current);
    parts
}

/// Removes FHIR search escapes: `\,` `\|` `\$` `\\` become the character itself.
pub fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(next) => out.push(next),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Result parameters and what they take.
const RESULT_PARAMS: &[&str] = &[
    "_count",
    "_sort",
    "_total",
    "_summary",
    "_elements",
    "_include",
    "_revinclude",
    "_contained",
    "_containedType",
    "_format",
    "_pretty",
    "_page",
];

/// Largest chain depth accepted.
const MAX_CHAIN: usize = 4;

impl SearchQuery {
    /// Parses the parameters of a search on `resource_type` (`None`: system-level).
    /// Unknown parameters are ignored and listed in `ignored`, or refused when `strict`.
    pub fn parse(
        resource_type: Option<&str>,
        pairs: &[(String, String)],
        strict: bool,
    ) -> Result<SearchQuery, QueryError> {
        let mut query = SearchQuery::default();
        if let Some(t) = resource_type {
            if registry().params(t).is_none() {
                return Err(invalid(format!("`{t}` is not a resource type")));
            }
            query.types.push(t.to_string());
        } else if let Some((_, types)) = pairs.iter().find(|(n, _)| n == "_type") {
            for t in types.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                if registry().params(t).is_none() {
                    return Err(invalid(format!("`_type`: `{t}` is not a resource type")));
                }
                query.types.push(t.to_string());
            }
        }
        let types = if query.types.is_empty() {
            fhir::definitions().resource_types().into_iter().map(str::to_string).collect()
        } else {
            query.types.clone()
        };
        for (name, value) in pairs {
            if name == "_type" && resource_type.is_none() {
                continue;
            }
            let (base, iterate) = match name.strip_suffix(":iterate").or_else(|| name.strip_suffix(":recurse")) {
                Some(base) => (base, true),
                None => (name.as_str(), false),
            };
            if base == "_include" || base == "_revinclude" {
                let fallback = types.first().map_or("Resource", String::as_str);
                for v in value.split(',').filter(|v| !v.is_empty()) {
                    let include = parse_include(v, iterate, fallback)?;
                    if base == "_include" { query.include.push(include) } else { query.revinclude.push(include) }
                }
                query.echo.push((name.clone(), value.clone()));
                continue;
            }
            if RESULT_PARAMS.contains(&name.as_str()) {
                query.result_param(name, value, &types)?;
                continue;
            }
            match parse_filter(&types, name, value, 0) {
                Ok(filter) => {
                    query.filters.push(filter);
                    query.echo.push((name.clone(), value.clone()));
                }
                Err(Unusable::Unknown(message)) => {
                    if strict {
                        return Err(QueryError(vec![Issue::error(IssueCode::NotSupported, message)]));
                    }
                    query.ignored.push(Issue::warning(IssueCode::NotSupported, message));
                }
                Err(Unusable::Invalid(e)) => return Err(e),
            }
        }
        if query.contained != Contained::No {
            let mut mapped: Vec<Filter> = query.filters.iter().map(to_contained).collect();
            // Only containers that do contain a resource of the searched type(s).
            let markers = types.iter().map(|t| crate::registry::contained_marker(t)).collect();
            mapped.push(Filter::Missing { keys: markers, kind: ParamKind::Uri, missing: false });
            if query.contained == Contained::Only {
                query.filters = mapped;
            } else {
                query.contained_filters = mapped;
            }
        }
        Ok(query)
    }

    fn result_param(&mut self, name: &str, value: &str, types: &[String]) -> Result<(), QueryError> {
        match name {
            "_count" => {
                let n: usize = value.parse().map_err(|_| invalid("`_count` must be a non-negative integer"))?;
                self.count = Some(n);
                self.echo.push((name.into(), value.into()));
            }
            "_page" => self.page = Some(value.to_string()),
            "_contained" => {
                self.contained = match value {
                    "false" => Contained::No,
                    "true" => Contained::Only,
                    "both" => Contained::Both,
                    _ => return Err(invalid("`_contained` must be true, false or both")),
                };
                self.echo.push((name.into(), value.into()));
            }
            "_containedType" => match value {
                "container" => self.echo.push((name.into(), value.into())),
                "contained" => self.ignored.push(Issue::warning(
                    IssueCode::NotSupported,
                    "`_containedType=contained` is not supported; containers are returned",
                )),
                _ => return Err(invalid("`_containedType` must be container or contained")),
            },
            "_total" => {
                self.total = match value {
                    "none" => Total::None,
                    "estimate" => Total::Estimate,
                    "accurate" => Total::Accurate,
                    _ => return Err(invalid("`_total` must be none, estimate or accurate")),
                };
                self.echo.push((name.into(), value.into()));
            }
            "_summary" => {
                self.summary = match value {
                    "true" => Summary::True,
                    "text" => Summary::Text,
                    "data" => Summary::Data,
                    "count" => Summary::Count,
                    "false" => Summary::False,
                    _ => return Err(invalid("`_summary` must be true, text, data, count or false")),
                };
                self.echo.push((name.into(), value.into()));
            }
            "_elements" => {
                self.elements.extend(value.split(',').map(str::trim).filter(|e| !e.is_empty()).map(str::to_string));
                self.echo.push((name.into(), value.into()));
            }
            "_sort" => {
                for key in value.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                    let (descending, key) = match key.strip_prefix('-') {
                        Some(k) => (true, k),
                        None => (false, key),
                    };
                    let sort = match key {
                        "_id" => SortKey::Id,
                        "_lastUpdated" => SortKey::LastUpdated,
                        _ => {
                            let (keys, kind) = keys_of(types, key)
                                .ok_or_else(|| invalid(format!("`_sort`: unknown search parameter `{key}`")))?;
                            SortKey::Param { keys, kind }
                        }
                    };
                    self.sort.push((sort, descending));
                }
                self.echo.push((name.into(), value.into()));
            }
            _ => {}
        }
        Ok(())
    }
}

/// The same filter on contained resources: parameter keys swapped for their contained keys.
/// Chains start from the contained resource and end at ordinary ones; what concerns the
/// resource itself (`_id`, `_lastUpdated`, `_text`…) stays on the container.
fn to_contained(filter: &Filter) -> Filter {
    let map = |keys: &[i64]| keys.iter().map(|k| registry().contained(*k).unwrap_or(*k)).collect::<Vec<_>>();
    match filter {
        Filter::Param { keys, kind, conditions } => Filter::Param {
            keys: map(keys),
            kind: *kind,
            conditions: conditions
                .iter()
                .map(|c| match c {
                    Condition::Composite(parts) => Condition::Composite(
                        parts
                            .iter()
                            .map(|(k, kind, c)| (registry().contained(*k).unwrap_or(*k), *kind, c.clone()))
                            .collect(),
                    ),
                    other => other.clone(),
                })
                .collect(),
        },
        Filter::Not { keys, kind, conditions } => {
            Filter::Not { keys: map(keys), kind: *kind, conditions: conditions.clone() }
        }
        Filter::Missing { keys, kind, missing } => Filter::Missing { keys: map(keys), kind: *kind, missing: *missing },
        Filter::Chain { keys, target_type, inner } => {
            Filter::Chain { keys: map(keys), target_type: target_type.clone(), inner: inner.clone() }
        }
        Filter::AnyOf(filters) => Filter::AnyOf(filters.iter().map(to_contained).collect()),
        Filter::AllOf(filters) => Filter::AllOf(filters.iter().map(to_contained).collect()),
        // A contained resource has no id of its own on the server, and nothing references it
        // from outside its container.
        Filter::Id(_) | Filter::Has { .. } | Filter::Is { .. } => Filter::Nothing,
        other => other.clone(),
    }
}

/// Why a parameter cannot be used: unknown/unsupported (ignorable) or invalid (an error).
enum Unusable {
    Unknown(String),
    Invalid(QueryError),
}

impl From<QueryError> for Unusable {
    fn from(e: QueryError) -> Self {
        Unusable::Invalid(e)
    }
}

/// The keys of parameter `name` on each of `types` that has it, and its kind (which must be
/// the same on all).
fn keys_of(types: &[String], name: &str) -> Option<(Vec<i64>, ParamKind)> {
    let found: Vec<&CompiledParam> = types.iter().filter_map(|t| registry().param(t, name)).collect();
    let kind = found.first()?.kind;
    Some((found.iter().filter(|p| p.kind == kind).map(|p| p.key).collect(), kind))
}

fn parse_filter(types: &[String], name: &str, value: &str, depth: usize) -> Result<Filter, Unusable> {
    if depth > MAX_CHAIN {
        return Err(Unusable::Invalid(invalid("chains are limited to 4 levels")));
    }
    if let Some(rest) = name.strip_prefix("_has:") {
        return parse_has(types, rest, value, depth);
    }
    // `param[:modifier][.chain]`
    let (head, chain) = match name.split_once('.') {
        Some((h, c)) => (h, Some(c)),
        None => (name, None),
    };
    let (param, modifier) = match head.split_once(':') {
        Some((p, m)) => (p, Some(m)),
        None => (head, None),
    };
    match param {
        "_id" if chain.is_none() => {
            if modifier.is_some() {
                return Err(Unusable::Unknown(format!("modifier on `_id` is not supported: `{name}`")));
            }
            let ids: Vec<String> = split_unescaped(value, ',').iter().map(|v| unescape(v)).collect();
            if ids.iter().any(String::is_empty) {
                return Err(invalid("`_id` has an empty value").into());
            }
            return Ok(Filter::Id(ids));
        }
        "_lastUpdated" if chain.is_none() && modifier.is_none() => {
            let conditions = split_unescaped(value, ',')
                .iter()
                .map(|v| {
                    let (prefix, rest) = Prefix::split(v);
                    DateRange::parse(rest)
                        .map(|r| (prefix, r))
                        .ok_or_else(|| invalid("`_lastUpdated` needs a date, dateTime or instant"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Filter::LastUpdated(conditions));
        }
        "_text" | "_content" if chain.is_none() && modifier.is_none() => {
            if value.trim().is_empty() {
                return Err(invalid(format!("`{param}` has no text")).into());
            }
            return Ok(Filter::Text { content: param == "_content", query: value.to_string() });
        }
        // R4 lists `_query` as a parameter of every resource, but it names an operation-like
        // query this server does not have; searching it as a token would match nothing silently.
        "_query" => return Err(Unusable::Unknown("named queries (`_query`) are not supported".into())),
        "_list" if chain.is_none() && modifier.is_none() => {
            return Ok(Filter::List(split_unescaped(value, ',').iter().map(|v| unescape(v)).collect()));
        }
        _ => {}
    }
    let Some((keys, kind)) = keys_of(types, param) else {
        return Err(Unusable::Unknown(format!("unknown search parameter `{param}`")));
    };
    if let Some(chain) = chain {
        if kind != ParamKind::Reference {
            return Err(invalid(format!("`{param}` is not a reference parameter and cannot be chained")).into());
        }
        return parse_chain(types, param, modifier, chain, value, depth);
    }
    if value.is_empty() {
        return Err(invalid(format!("search parameter `{name}` has no value")).into());
    }
    if modifier == Some("missing") {
        let missing = match value {
            "true" => true,
            "false" => false,
            _ => return Err(invalid("`:missing` takes true or false").into()),
        };
        return Ok(Filter::Missing { keys, kind, missing });
    }
    let negate = modifier == Some("not");
    if negate && kind != ParamKind::Token {
        return Err(Unusable::Unknown(format!("`:not` is only supported on token parameters (`{name}`)")));
    }
    let mut conditions = Vec::new();
    for raw in split_unescaped(value, ',') {
        conditions.push(condition(types, param, kind, if negate { None } else { modifier }, &raw)?);
    }
    let mut keys = keys;
    if modifier == Some("of-type") {
        keys = types.iter().filter_map(|t| registry().param(t, param)?.of_type_key).collect();
    }
    if negate { Ok(Filter::Not { keys, kind, conditions }) } else { Ok(Filter::Param { keys, kind, conditions }) }
}

fn condition(
    types: &[String],
    param: &str,
    kind: ParamKind,
    modifier: Option<&str>,
    raw: &str,
) -> Result<Condition, Unusable> {
    let unsupported = |m: &str| Unusable::Unknown(format!("modifier `:{m}` is not supported on parameter `{param}`"));
    match kind {
        ParamKind::String if param == "phonetic" => {
            // Indexed as Double Metaphone codes (see `index`): the value's code, exactly.
            if let Some(m) = modifier {
                return Err(unsupported(m));
            }
            let code = matching::phonetic::search_code(&unescape(raw)).unwrap_or_default();
            Ok(Condition::String { value: code, mode: StringMatch::Code })
        }
        ParamKind::String => {
            let mode = match modifier {
                None => StringMatch::Start,
                Some("exact") => StringMatch::Exact,
                Some("contains") => StringMatch::Contains,
                Some(m) => return Err(unsupported(m)),
            };
            let text = unescape(raw);
            let value = if mode == StringMatch::Exact { text } else { normalize(&text) };
            Ok(Condition::String { value, mode })
        }
        ParamKind::Token => match modifier {
            None | Some("of-type") => Ok(token(raw, modifier == Some("of-type"))?),
            Some("text") => Ok(Condition::TokenText(normalize(&unescape(raw)))),
            Some(m @ ("below" | "above")) => subsumption(param, m == "below", raw),
            Some(m) => Err(unsupported(m)),
        },
        ParamKind::Reference => reference(types, param, modifier, raw),
        ParamKind::Date => {
            if let Some(m) = modifier {
                return Err(unsupported(m));
            }
            let (prefix, rest) = Prefix::split(raw);
            let range = DateRange::parse(rest)
                .ok_or_else(|| invalid(format!("`{param}` needs a date, dateTime or instant")))?;
            Ok(Condition::Date { prefix, range })
        }
        ParamKind::Number => {
            if let Some(m) = modifier {
                return Err(unsupported(m));
            }
            let (prefix, rest) = Prefix::split(raw);
            let range = NumberRange::parse(rest).ok_or_else(|| invalid(format!("`{param}` needs a number")))?;
            Ok(Condition::Number { prefix, range })
        }
        ParamKind::Quantity => {
            if let Some(m) = modifier {
                return Err(unsupported(m));
            }
            Ok(quantity(param, raw)?)
        }
        ParamKind::Uri => {
            let mode = match modifier {
                None => UriMatch::Exact,
                Some("above") => UriMatch::Above,
                Some("below") => UriMatch::Below,
                Some(m) => return Err(unsupported(m)),
            };
            Ok(Condition::Uri { value: unescape(raw), mode })
        }
        ParamKind::Composite => {
            if let Some(m) = modifier {
                return Err(unsupported(m));
            }
            composite(types, param, raw)
        }
        ParamKind::Special => Err(Unusable::Unknown(format!("special parameter `{param}` is not supported"))),
    }
}

/// `system|code` with `:below`/`:above`, expanded with the CodeSystem's hierarchy. Only the
/// CodeSystems embedded with the definitions have one; for others (SNOMED CT, LOINC…) there is
/// no terminology service yet, so the modifier is reported as unsupported rather than guessed.
fn subsumption(param: &str, below: bool, raw: &str) -> Result<Condition, Unusable> {
    let parts = split_unescaped(raw, '|');
    let [system, code] = parts.as_slice() else {
        return Err(invalid(format!("`{param}:{}` takes system|code", if below { "below" } else { "above" })).into());
    };
    let (system, code) = (unescape(system), unescape(code));
    let Some(cs) = fhir::definitions().code_system(&system) else {
        return Err(Unusable::Unknown(format!(
            "`:above`/`:below` on `{param}`: the code system `{system}` is not available to this server"
        )));
    };
    let codes = if below { cs.descendants(&code) } else { cs.ancestors(&code) };
    let codes = codes.map(|c| c.into_iter().map(str::to_string).collect()).unwrap_or_else(|| vec![code]);
    Ok(Condition::TokenIn { system, codes })
}

fn token(raw: &str, of_type: bool) -> Result<Condition, QueryError> {
    if of_type {
        // type-system|type-code|value: indexed as system `type-system|type-code`, code value.
        let parts = split_unescaped(raw, '|');
        if parts.len() != 3 || parts[2].is_empty() {
            return Err(invalid("`:of-type` takes system|code|value"));
        }
        let system = format!("{}|{}", unescape(&parts[0]), unescape(&parts[1]));
        return Ok(Condition::Token { system: Some(Some(system)), code: Some(unescape(&parts[2])) });
    }
    let parts = split_unescaped(raw, '|');
    match parts.as_slice() {
        [code] => Ok(Condition::Token { system: None, code: Some(unescape(code)) }),
        [system, code] => {
            let system = if system.is_empty() { None } else { Some(unescape(system)) };
            let code = if code.is_empty() { None } else { Some(unescape(code)) };
            if system.is_none() && code.is_none() {
                return Err(invalid("a token value `|` has neither system nor code"));
            }
            Ok(Condition::Token { system: Some(system), code })
        }
        _ => Err(invalid("a token value has more than one unescaped `|`")),
    }
}

fn reference(types: &[String], param: &str, modifier: Option<&str>, raw: &str) -> Result<Condition, Unusable> {
    let value = unescape(raw);
    if modifier == Some("identifier") {
        let parts = split_unescaped(raw, '|');
        return match parts.as_slice() {
            [v] => Ok(Condition::ReferenceIdentifier { system: None, value: unescape(v) }),
            [s, v] => Ok(Condition::ReferenceIdentifier {
                system: Some(if s.is_empty() { None } else { Some(unescape(s)) }),
                value: unescape(v),
            }),
            _ => Err(invalid("`:identifier` takes [system|]value").into()),
        };
    }
    let type_modifier = match modifier {
        None => None,
        Some(t) if fhir::definitions().is_resource_type(t) => Some(t.to_string()),
        Some(m) => return Err(Unusable::Unknown(format!("modifier `:{m}` is not supported on `{param}`"))),
    };
    if value.contains("://") || value.starts_with("urn:") {
        return Ok(match crate::index::reference_value(&value, None) {
            crate::IndexValue::Reference { target_type: Some(t), target_id: Some(id), version, .. } => {
                Condition::Reference { target_type: Some(t), id, version }
            }
            _ => Condition::ReferenceUrl(value.split('|').next().unwrap_or_default().to_string()),
        });
    }
    let parts: Vec<&str> = value.split('/').collect();
    let (target_type, id, version) = match parts.as_slice() {
        [id] => {
            let targets: Vec<String> = types
                .iter()
                .filter_map(|t| registry().param(t, param))
                .flat_map(|p| p.targets.iter().cloned())
                .collect();
            let only = (targets.len() == 1).then(|| targets[0].clone());
            (type_modifier.or(only), id.to_string(), None)
        }
        [t, id] => (Some(t.to_string()), id.to_string(), None),
        [t, id, "_history", v] => (Some(t.to_string()), id.to_string(), Some(v.to_string())),
        _ => return Err(invalid(format!("`{param}`: not a reference")).into()),
    };
    if id.is_empty() || !fhir::reference::is_id(&id) {
        return Err(invalid(format!("`{param}`: not a valid resource id")).into());
    }
    if let Some(t) = &target_type
        && !fhir::definitions().is_resource_type(t)
    {
        return Err(invalid(format!("`{param}`: `{t}` is not a resource type")).into());
    }
    Ok(Condition::Reference { target_type, id, version })
}

fn quantity(param: &str, raw: &str) -> Result<Condition, QueryError> {
    let parts = split_unescaped(raw, '|');
    let (number, system, code) = match parts.as_slice() {
        [n] => (n.as_str(), None, None),
        [n, s, c] => (n.as_str(), (!s.is_empty()).then(|| unescape(s)), (!c.is_empty()).then(|| unescape(c))),
        _ => return Err(invalid(format!("`{param}` takes [prefix]number[|system|code]"))),
    };
    let (prefix, rest) = Prefix::split(number);
    let range = NumberRange::parse(rest).ok_or_else(|| invalid(format!("`{param}` needs a number")))?;
    let canonical = crate::index::canonical_quantity(system.as_deref(), code.as_deref(), range);
    Ok(Condition::Quantity { prefix, range, system, code, canonical })
}

fn composite(types: &[String], param: &str, raw: &str) -> Result<Condition, Unusable> {
    let found: Vec<&CompiledParam> = types.iter().filter_map(|t| registry().param(t, param)).collect();
    let Some(first) = found.first() else {
        return Err(Unusable::Unknown(format!("unknown search parameter `{param}`")));
    };
    let parts = split_unescaped(raw, '$');
    if parts.len() != first.components.len() {
        return Err(invalid(format!("`{param}` takes {} `$`-separated values", first.components.len())).into());
    }
    let mut out = Vec::new();
    for (component, part) in first.components.iter().zip(&parts) {
        let c = condition(types, param, component.kind, None, part)?;
        out.push((component.key, component.kind, c));
    }
    if found.len() > 1 {
        return Err(Unusable::Unknown(format!("composite `{param}` in a search over several types")));
    }
    Ok(Condition::Composite(out))
}

fn parse_chain(
    types: &[String],
    param: &str,
    modifier: Option<&str>,
    chain: &str,
    value: &str,
    depth: usize,
) -> Result<Filter, Unusable> {
    let (next, _) = chain.split_once(['.', ':']).unwrap_or((chain, ""));
    let targets: Vec<String> = match modifier {
        Some(t) if fhir::definitions().is_resource_type(t) => vec![t.to_string()],
        Some(m) => return Err(Unusable::Unknown(format!("modifier `:{m}` cannot start a chain"))),
        None => {
            let mut all: Vec<String> = types
                .iter()
                .filter_map(|t| registry().param(t, param))
                .flat_map(|p| p.targets.iter().cloned())
                .filter(|t| next.starts_with('_') || registry().param(t, next).is_some())
                .collect();
            all.sort();
            all.dedup();
            all
        }
    };
    if targets.is_empty() {
        return Err(invalid(format!("`{param}.{next}`: no target type of `{param}` has `{next}`")).into());
    }
    let keys: Vec<i64> = types.iter().filter_map(|t| registry().param(t, param)).map(|p| p.key).collect();
    // Several target types have the parameter: any of them may match (as if each were named
    // with `:Type`).
    let mut chains = Vec::new();
    for target_type in targets {
        let inner = parse_filter(std::slice::from_ref(&target_type), chain, value, depth + 1)?;
        chains.push(Filter::Chain { keys: keys.clone(), target_type, inner: Box::new(inner) });
    }
    if chains.len() == 1 {
        return Ok(chains.remove(0));
    }
    Ok(Filter::AnyOf(chains))
}

/// `_has:Type:param:rest=value` where `rest` is a parameter of Type or another `_has`.
fn parse_has(types: &[String], rest: &str, value: &str, depth: usize) -> Result<Filter, Unusable> {
    let mut parts = rest.splitn(3, ':');
    let (Some(source), Some(param), Some(inner_name)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid("`_has` takes _has:Type:reference-parameter:parameter=value").into());
    };
    let Some(p) = registry().param(source, param) else {
        return Err(invalid(format!("`_has`: `{source}` has no search parameter `{param}`")).into());
    };
    if p.kind != ParamKind::Reference {
        return Err(invalid(format!("`_has`: `{source}.{param}` is not a reference parameter")).into());
    }
    if !types.iter().any(|t| p.targets.is_empty() || p.targets.contains(t)) {
        return Err(invalid(format!("`_has`: `{source}.{param}` cannot point at the searched type")).into());
    }
    let inner = parse_filter(&[source.to_string()], inner_name, value, depth + 1)?;
    Ok(Filter::Has { source_type: source.to_string(), key: p.key, inner: Box::new(inner) })
}

/// Parses `_include`/`_revinclude` values (`Type:param[:target]` or `*`).
pub fn parse_include(value: &str, iterate: bool, fallback_type: &str) -> Result<Include, QueryError> {
    if value == "*" {
        let keys = registry()
            .params(fallback_type)
            .unwrap_or_default()
            .iter()
            .filter(|p| p.kind == ParamKind::Reference)
            .map(|p| p.key)
            .collect();
        return Ok(Include {
            source_type: fallback_type.to_string(),
            keys,
            target_type: None,
            iterate,
            text: value.to_string(),
        });
    }
    let mut parts = value.split(':');
    let (Some(source), Some(param)) = (parts.next(), parts.next()) else {
        return Err(invalid("`_include` takes Type:parameter[:targetType]"));
    };
    let target_type = parts.next().map(str::to_string);
    if let Some(t) = &target_type
        && !fhir::definitions().is_resource_type(t)
    {
        return Err(invalid(format!("`_include`: `{t}` is not a resource type")));
    }
    let keys = if param == "*" {
        registry()
            .params(source)
            .ok_or_else(|| invalid(format!("`_include`: `{source}` is not a resource type")))?
            .iter()
            .filter(|p| p.kind == ParamKind::Reference)
            .map(|p| p.key)
            .collect()
    } else {
        let p = registry()
            .param(source, param)
            .ok_or_else(|| invalid(format!("`_include`: `{source}` has no search parameter `{param}`")))?;
        if p.kind != ParamKind::Reference {
            return Err(invalid(format!("`_include`: `{source}.{param}` is not a reference parameter")));
        }
        vec![p.key]
    };
    Ok(Include { source_type: source.to_string(), keys, target_type, iterate, text: value.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str, q: &str) -> SearchQuery {
        SearchQuery::parse(Some(t), &parse_pairs(q).unwrap(), false).unwrap()
    }

    #[test]
    fn prefixes() {
        assert_eq!(Prefix::split("ge2019"), (Prefix::Ge, "2019"));
        assert_eq!(Prefix::split("2019"), (Prefix::Eq, "2019"));
        assert_eq!(Prefix::split("gender"), (Prefix::Eq, "gender"));
    }

    #[test]
    fn tokens_and_strings() {
        let q = parse("Observation", "code=http://loinc.org|8480-6,|x&status=final");
        let Filter::Param { conditions, kind, .. } = &q.filters[0] else { panic!() };
        assert_eq!(*kind, ParamKind::Token);
        assert_eq!(
            conditions[0],
            Condition::Token { system: Some(Some("http://loinc.org".into())), code: Some("8480-6".into()) }
        );
        assert_eq!(conditions[1], Condition::Token { system: Some(None), code: Some("x".into()) });
        let q = parse("Patient", "name:exact=Zoë&family=MÜL");
        let Filter::Param { conditions, .. } = &q.filters[1] else { panic!() };
        assert_eq!(conditions[0], Condition::String { value: "mul".into(), mode: StringMatch::Start });
    }

    #[test]
    fn references_take_their_type_from_the_parameter() {
        let q = parse("Observation", "patient=123&subject=Patient/9/_history/2");
        // R4's `patient` may point at Patient or Group, so a bare id matches either.
        let Filter::Param { conditions, .. } = &q.filters[0] else { panic!() };
        assert_eq!(conditions[0], Condition::Reference { target_type: None, id: "123".into(), version: None });
        let Filter::Param { conditions, .. } = &q.filters[1] else { panic!() };
        assert_eq!(
            conditions[0],
            Condition::Reference { target_type: Some("Patient".into()), id: "9".into(), version: Some("2".into()) }
        );
        let q = parse("Encounter", "service-provider=7");
        let Filter::Param { conditions, .. } = &q.filters[0] else { panic!() };
        assert_eq!(
            conditions[0],
            Condition::Reference { target_type: Some("Organization".into()), id: "7".into(), version: None }
        );
    }

    #[test]
    fn chains_and_has() {
        let q = parse("Observation", "subject:Patient.name=smith&_has:Provenance:target:agent=Practitioner/1");
        assert!(matches!(&q.filters[0], Filter::Chain { target_type, .. } if target_type == "Patient"));
        assert!(matches!(&q.filters[1], Filter::Has { source_type, .. } if source_type == "Provenance"));
        // Several target types have `name`: any of them may match.
        let q = parse("Observation", "subject.name=x");
        assert!(matches!(&q.filters[0], Filter::AnyOf(chains) if chains.len() > 1));
        let e = SearchQuery::parse(Some("Observation"), &parse_pairs("subject.nonsense=x").unwrap(), false);
        assert!(e.is_err(), "no target has the parameter");
    }

    #[test]
    fn unknown_parameters_are_ignored_or_refused() {
        let q = parse("Patient", "foo=1&name=x");
        assert_eq!(q.filters.len(), 1);
        assert_eq!(q.ignored.len(), 1);
        assert!(SearchQuery::parse(Some("Patient"), &parse_pairs("foo=1").unwrap(), true).is_err());
    }

    #[test]
    fn bad_values_are_errors() {
        for q in ["birthdate=notadate", "_count=-1", "general-practitioner=a/b/c/d/e", "_total=lots", "name="] {
            assert!(SearchQuery::parse(Some("Patient"), &parse_pairs(q).unwrap(), false).is_err(), "{q}");
        }
    }

    #[test]
    fn composite_values() {
        let q =
            parse("Observation", "code-value-quantity=http://loinc.org|8480-6$gt100|http://unitsofmeasure.org|mm[Hg]");
        let Filter::Param { conditions, .. } = &q.filters[0] else { panic!() };
        let Condition::Composite(parts) = &conditions[0] else { panic!() };
        assert_eq!(parts.len(), 2);
        assert!(matches!(parts[1].2, Condition::Quantity { prefix: Prefix::Gt, .. }));
    }
}
