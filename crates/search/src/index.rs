//! Index extraction: every search parameter of a resource's type, evaluated with its official
//! FHIRPath expression, turned into typed index rows (string, token, reference, date, number,
//! quantity, uri; composites as grouped rows of their components).

use crate::registry::{CompiledParam, ParamKind, registry};
use crate::values::{DateRange, NumberRange, normalize, ucum_canonical, ucum_temperature};
use fhirpath::{Environment, Item};
use serde_json::Value;

/// One index row of a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    /// The parameter's key (see [`crate::param_key`]).
    pub param: i64,
    /// For the components of a composite parameter: which composite value they belong to.
    pub group: Option<i64>,
    /// The value the row holds, typed by the parameter's kind.
    pub value: IndexValue,
}

/// The typed value of an index row.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexValue {
    /// `normalized` is what searches compare; `exact` serves `:exact`.
    String {
        /// Accents removed and case folded ([`crate::values::normalize`]): what searches
        /// compare.
        normalized: String,
        /// The text as written in the resource.
        exact: String,
    },
    /// A code with its system, or (system and code empty) only a text for `:text`.
    Token {
        /// The code system (Coding.system, Identifier.system, ContactPoint.system), if given.
        system: Option<String>,
        /// The code, identifier value, contact value or `true`/`false`.
        code: Option<String>,
        /// The display or text that `:text` searches, normalised.
        text: Option<String>,
    },
    /// A reference: to a local resource (type and id, maybe a version), to an absolute URL,
    /// or by identifier only (`identifier` as `(system, value)`).
    Reference {
        /// The resource type of a local reference.
        target_type: Option<String>,
        /// The id of a local reference.
        target_id: Option<String>,
        /// The version of a local reference that pins one (`Type/id/_history/v`).
        version: Option<String>,
        /// The reference's text when it is not local: an absolute URL or a canonical.
        url: Option<String>,
        /// `Reference.identifier` as `(system, value)`.
        identifier: Option<(Option<String>, String)>,
    },
    /// A date, dateTime, instant or Period as the range of instants it covers.
    Date(DateRange),
    /// A number as the range its significant digits imply.
    Number(NumberRange),
    /// A quantity as given and, where its unit is known UCUM, in canonical units.
    Quantity {
        /// The value as the range its significant digits imply.
        value: NumberRange,
        /// The unit's code system (UCUM, or ISO 4217 for Money).
        system: Option<String>,
        /// The unit's code in that system.
        code: Option<String>,
        /// The unit as written for people (`Quantity.unit`).
        unit: Option<String>,
        /// The canonical UCUM unit and the value converted to it.
        canonical: Option<(String, NumberRange)>,
    },
    /// A uri, url or canonical, as written.
    Uri(String),
}

/// How a reference's text is read when indexing: the server's own base URL, so that
/// absolute references to this server index as local ones.
#[derive(Debug, Clone, Default)]
pub struct IndexContext {
    /// The server's base URL (`http://host/fhir`); `None` indexes absolute URLs as external.
    pub base_url: Option<String>,
}

/// The index rows of `resource` (of type `resource_type`), in parameter order. Expressions
/// that fail to evaluate on this resource contribute no rows (the resource has been
/// validated, so such failures come from expression/data mismatches the spec tolerates).
pub fn extract(resource_type: &str, resource: &Value, context: &IndexContext) -> Vec<IndexEntry> {
    let mut out = Vec::new();
    extract_into(resource_type, resource, context, &mut out);
    // Contained resources are indexed too, under their own keys (`_contained=true`).
    for inner in resource.get("contained").and_then(Value::as_array).into_iter().flatten() {
        let Some(inner_type) = inner.get("resourceType").and_then(Value::as_str) else { continue };
        let start = out.len();
        // A marker row: this resource contains a resource of that type.
        let id = inner.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
        out.push(IndexEntry {
            param: crate::registry::contained_marker(inner_type),
            group: None,
            value: IndexValue::Uri(id),
        });
        let start = start + 1;
        extract_into(inner_type, inner, context, &mut out);
        for entry in &mut out[start..] {
            entry.param = registry().contained(entry.param).unwrap_or(entry.param);
        }
    }
    out
}

/// The index rows of only the parameters `keys` of `resource` (no composites, no contained
/// resources): what a question about a few parameters needs, at a fraction of [`extract`]'s
/// cost.
pub fn extract_params(resource_type: &str, resource: &Value, keys: &[i64], context: &IndexContext) -> Vec<IndexEntry> {
    let mut out = Vec::new();
    let Some(params) = registry().params(resource_type) else { return out };
    let env = Environment::new(resource);
    for param in params.iter().filter(|p| keys.contains(&p.key) && p.kind != ParamKind::Composite) {
        let Some(expression) = &param.expression else { continue };
        let Ok(items) = expression.evaluate_with(&env) else { continue };
        for item in &items {
            param_values(param, item, context, &mut |value| {
                out.push(IndexEntry { param: param.key, group: None, value });
            });
        }
    }
    out
}

fn extract_into(resource_type: &str, resource: &Value, context: &IndexContext, out: &mut Vec<IndexEntry>) {
    let Some(params) = registry().params(resource_type) else {
        return;
    };
    let env = Environment::new(resource);
    for param in params {
        let Some(expression) = &param.expression else { continue };
        let Ok(items) = expression.evaluate_with(&env) else { continue };
        if param.kind == ParamKind::Composite {
            composite(resource, param, &items, context, out);
            continue;
        }
        for item in &items {
            param_values(param, item, context, &mut |value| {
                out.push(IndexEntry { param: param.key, group: None, value });
            });
        }
        if param.kind == ParamKind::Token && param.of_type_key.is_some() {
            for item in &items {
                of_type(item, &mut |value| {
                    out.push(IndexEntry { param: param.of_type_key.unwrap_or_default(), group: None, value });
                });
            }
        }
    }
}

fn composite(
    resource: &Value,
    param: &CompiledParam,
    items: &[Item<'_>],
    ctx: &IndexContext,
    out: &mut Vec<IndexEntry>,
) {
    for (group, item) in items.iter().enumerate() {
        if item.as_node().is_none() {
            continue;
        }
        let env = Environment::new(resource).with_context_item(item.clone());
        for component in &param.components {
            let Ok(parts) = component.expression.evaluate_with(&env) else { continue };
            for part in &parts {
                values_of(component.kind, part, ctx, &mut |value| {
                    out.push(IndexEntry { param: component.key, group: Some(group as i64), value });
                });
            }
        }
    }
}

/// The FHIR type of an item, with System types named as their FHIR primitive.
fn type_of<'i>(item: &'i Item<'_>) -> &'i str {
    match item.fhir_type() {
        "System.String" => "string",
        "System.Boolean" => "boolean",
        "System.Integer" => "integer",
        "System.Decimal" => "decimal",
        "System.Date" => "date",
        "System.DateTime" => "dateTime",
        "System.Time" => "time",
        "System.Quantity" => "Quantity",
        other => other,
    }
}

fn text(value: &Value) -> Option<&str> {
    value.as_str().filter(|s| !s.is_empty())
}

fn field<'v>(value: &'v Value, name: &str) -> Option<&'v str> {
    value.get(name).and_then(text)
}

/// The index values of one item of `param`: its kind's, except for `phonetic`.
fn param_values(param: &CompiledParam, item: &Item<'_>, ctx: &IndexContext, emit: &mut dyn FnMut(IndexValue)) {
    if param.name == "phonetic" && param.kind == ParamKind::String {
        phonetic_codes(item, emit);
    } else {
        values_of(param.kind, item, ctx, emit);
    }
}

fn values_of(kind: ParamKind, item: &Item<'_>, ctx: &IndexContext, emit: &mut dyn FnMut(IndexValue)) {
    let json = item.json();
    let json = json.as_ref();
    let fhir_type = type_of(item);
    match kind {
        ParamKind::String => strings(fhir_type, json, emit),
        ParamKind::Token => tokens(fhir_type, json, emit),
        ParamKind::Reference => references(fhir_type, json, ctx, emit),
        ParamKind::Date => dates(fhir_type, json, emit),
        ParamKind::Number => {
            if let Some(n) = number(json) {
                emit(IndexValue::Number(n));
            }
        }
        ParamKind::Quantity => quantities(fhir_type, json, emit),
        ParamKind::Uri => {
            if let Some(s) = text(json) {
                emit(IndexValue::Uri(s.to_string()));
            }
        }
        ParamKind::Composite | ParamKind::Special => {}
    }
}

/// The `phonetic` parameter (Patient, Person, Practitioner, RelatedPerson: "a portion of either
/// family or given name using some kind of phonetic matching algorithm"): the Double Metaphone
/// codes of every part of the names' family and given names ([`matching::phonetic`]), stored
/// exactly; a search value is turned into its code ([`crate::query`]).
fn phonetic_codes(item: &Item<'_>, emit: &mut dyn FnMut(IndexValue)) {
    let json = item.json();
    let json = json.as_ref();
    let mut names: Vec<&str> = Vec::new();
    match json {
        Value::String(s) => names.push(s),
        Value::Object(_) => {
            if let Some(family) = field(json, "family") {
                names.push(family);
            }
            names.extend(json.get("given").and_then(Value::as_array).into_iter().flatten().filter_map(text));
        }
        _ => {}
    }
    let mut seen: Vec<String> = Vec::new();
    for name in names {
        for code in matching::phonetic::codes_of_name(name) {
            if !seen.contains(&code) {
                seen.push(code.clone());
                emit(IndexValue::String { normalized: code.clone(), exact: code });
            }
        }
    }
}

fn string_value(s: &str) -> IndexValue {
    IndexValue::String { normalized: normalize(s), exact: s.to_string() }
}

fn strings(fhir_type: &str, json: &Value, emit: &mut dyn FnMut(IndexValue)) {
    let parts: &[&str] = match fhir_type {
        "HumanName" => &["text", "family", "given", "prefix", "suffix"],
        "Address" => &["text", "line", "city", "district", "state", "postalCode", "country"],
        _ => {
            if let Some(s) = text(json) {
                emit(string_value(s));
            }
            return;
        }
    };
    for part in parts {
        match json.get(*part) {
            Some(Value::String(s)) if !s.is_empty() => emit(string_value(s)),
            Some(Value::Array(list)) => list.iter().filter_map(text).for_each(|s| emit(string_value(s))),
            _ => {}
        }
    }
}

fn token(system: Option<&str>, code: Option<&str>, text: Option<&str>) -> IndexValue {
    IndexValue::Token {
        system: system.map(str::to_string),
        code: code.map(str::to_string),
        text: text.map(normalize).filter(|t| !t.is_empty()),
    }
}

fn tokens(fhir_type: &str, json: &Value, emit: &mut dyn FnMut(IndexValue)) {
    match fhir_type {
        "Coding" => emit(token(field(json, "system"), field(json, "code"), field(json, "display"))),
        "CodeableConcept" => {
            for coding in json.get("coding").and_then(Value::as_array).into_iter().flatten() {
                emit(token(field(coding, "system"), field(coding, "code"), field(coding, "display")));
            }
            if let Some(t) = field(json, "text") {
                emit(token(None, None, Some(t)));
            }
        }
        "Identifier" => {
            let type_text = json.get("type").and_then(|t| field(t, "text"));
            if field(json, "value").is_some() || type_text.is_some() {
                emit(token(field(json, "system"), field(json, "value"), type_text));
            }
        }
        "ContactPoint" => {
            if let Some(v) = field(json, "value") {
                emit(token(field(json, "system"), Some(v), None));
            }
        }
        "boolean" => {
            if let Some(b) = json.as_bool() {
                emit(token(None, Some(if b { "true" } else { "false" }), None));
            }
        }
        _ => {
            if let Some(s) = text(json) {
                emit(token(None, Some(s), None));
            }
        }
    }
}

/// `:of-type` rows of an Identifier: system is `type-system|type-code`, code the value.
fn of_type(item: &Item<'_>, emit: &mut dyn FnMut(IndexValue)) {
    if type_of(item) != "Identifier" {
        return;
    }
    let json = item.json();
    let Some(value) = field(&json, "value") else { return };
    for coding in json.get("type").and_then(|t| t.get("coding")).and_then(Value::as_array).into_iter().flatten() {
        if let Some(code) = field(coding, "code") {
            let system = format!("{}|{code}", field(coding, "system").unwrap_or_default());
            emit(token(Some(&system), Some(value), None));
        }
    }
}

/// Parses a reference's text: local `Type/id[/_history/v]`, absolute URL (local again when
/// it starts with the server's base), or a canonical `url|version`.
pub fn reference_value(reference: &str, base_url: Option<&str>) -> IndexValue {
    let local = base_url
        .and_then(|base| reference.strip_prefix(base.trim_end_matches('/')))
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(reference);
    let mut parts = local.split('/');
    let (t, id, history, version) = (parts.next(), parts.next(), parts.next(), parts.next());
    let is_type = |t: &str| fhir::definitions().is_resource_type(t);
    match (t, id, history, version, parts.next()) {
        (Some(t), Some(id), None, None, None) if is_type(t) && fhir::reference::is_id(id) => local_ref(t, id, None),
        (Some(t), Some(id), Some("_history"), Some(v), None) if is_type(t) && fhir::reference::is_id(id) => {
            local_ref(t, id, Some(v))
        }
        _ => IndexValue::Reference {
            target_type: None,
            target_id: None,
            version: None,
            url: Some(reference.to_string()),
            identifier: None,
        },
    }
}

fn local_ref(t: &str, id: &str, version: Option<&str>) -> IndexValue {
    IndexValue::Reference {
        target_type: Some(t.to_string()),
        target_id: Some(id.to_string()),
        version: version.map(str::to_string),
        url: None,
        identifier: None,
    }
}

fn references(fhir_type: &str, json: &Value, ctx: &IndexContext, emit: &mut dyn FnMut(IndexValue)) {
    match fhir_type {
        "Reference" => {
            if let Some(r) = field(json, "reference").filter(|r| !r.starts_with('#')) {
                emit(reference_value(r, ctx.base_url.as_deref()));
            }
            if let Some(identifier) = json.get("identifier")
                && let Some(value) = field(identifier, "value")
            {
                emit(IndexValue::Reference {
                    target_type: field(json, "type").map(str::to_string),
                    target_id: None,
                    version: None,
                    url: None,
                    identifier: Some((field(identifier, "system").map(str::to_string), value.to_string())),
                });
            }
        }
        // canonical and uri: the URL, without a `|version` for matching.
        _ => {
            if let Some(s) = text(json) {
                emit(reference_value(s, ctx.base_url.as_deref()));
            }
        }
    }
}

fn dates(fhir_type: &str, json: &Value, emit: &mut dyn FnMut(IndexValue)) {
    match fhir_type {
        "Period" => {
            let start = field(json, "start").and_then(DateRange::parse);
            let end = field(json, "end").and_then(DateRange::parse);
            if let Some(range) = DateRange::between(start, end) {
                emit(IndexValue::Date(range));
            }
        }
        "Timing" => {
            let events: Vec<DateRange> = json
                .get("event")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|e| text(e).and_then(DateRange::parse))
                .collect();
            let bounds = json.get("repeat").and_then(|r| r.get("boundsPeriod"));
            let from_bounds = bounds.and_then(|b| {
                DateRange::between(
                    field(b, "start").and_then(DateRange::parse),
                    field(b, "end").and_then(DateRange::parse),
                )
            });
            let low = events.iter().map(|e| e.low).chain(from_bounds.map(|b| b.low)).min();
            let high = events.iter().map(|e| e.high).chain(from_bounds.map(|b| b.high)).max();
            if let (Some(low), Some(high)) = (low, high) {
                emit(IndexValue::Date(DateRange { low, high }));
            }
        }
        _ => {
            if let Some(range) = text(json).and_then(DateRange::parse) {
                emit(IndexValue::Date(range));
            }
        }
    }
}

/// A JSON number (kept as its source text thanks to arbitrary precision) as a range.
fn number(json: &Value) -> Option<NumberRange> {
    match json {
        Value::Number(n) => NumberRange::parse(&n.to_string()),
        Value::String(s) => NumberRange::parse(s),
        _ => None,
    }
}

fn quantities(fhir_type: &str, json: &Value, emit: &mut dyn FnMut(IndexValue)) {
    match fhir_type {
        "Money" => {
            if let Some(value) = json.get("value").and_then(number) {
                let currency = field(json, "currency");
                emit(IndexValue::Quantity {
                    value,
                    system: currency.map(|_| "urn:iso:std:iso:4217".to_string()),
                    code: currency.map(str::to_string),
                    unit: None,
                    canonical: None,
                });
            }
        }
        "Range" => {
            for end in ["low", "high"] {
                if let Some(q) = json.get(end) {
                    quantities("Quantity", q, emit);
                }
            }
        }
        _ => {
            let Some(value) = json.get("value").and_then(number) else { return };
            let system = field(json, "system");
            let code = field(json, "code");
            emit(IndexValue::Quantity {
                value,
                system: system.map(str::to_string),
                code: code.map(str::to_string),
                unit: field(json, "unit").map(str::to_string),
                canonical: canonical_quantity(system, code, value),
            });
        }
    }
}

/// A value in UCUM canonical units, when its unit is a known UCUM code.
pub fn canonical_quantity(
    system: Option<&str>,
    code: Option<&str>,
    value: NumberRange,
) -> Option<(String, NumberRange)> {
    if system.is_some_and(|s| s != crate::values::UCUM_SYSTEM) {
        return None;
    }
    let code = code?;
    if let Some((canonical, factor)) = ucum_canonical(code) {
        return Some((canonical.to_string(), value.scaled(factor)));
    }
    let low = ucum_temperature(code, value.low)?;
    let high = ucum_temperature(code, value.high)?;
    let v = ucum_temperature(code, value.value)?;
    Some(("K".to_string(), NumberRange { value: v, low, high }))
}

/// What `_text` and `_content` search: the narrative's text (tags stripped) and every string
/// value of the resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FullText {
    /// The text of `Resource.text.div` with its tags stripped: what `_text` searches.
    pub narrative: String,
    /// Every other string value of the resource (not ids, references or base64 `data`): what
    /// `_content` searches.
    pub content: String,
}

impl FullText {
    /// The full text of `resource`.
    pub fn of(resource: &Value) -> FullText {
        let narrative = resource.get("text").and_then(|t| t.get("div")).and_then(Value::as_str).map(strip_tags);
        let mut content = String::new();
        strings_of(resource, &mut content, 0);
        FullText { narrative: narrative.unwrap_or_default(), content }
    }
}

/// The text of XHTML, tags removed and the common entities decoded.
fn strip_tags(xhtml: &str) -> String {
    let mut out = String::with_capacity(xhtml.len());
    let mut in_tag = false;
    for c in xhtml.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&nbsp;", " ")
}

fn strings_of(value: &Value, out: &mut String, depth: usize) {
    if depth > 64 {
        return;
    }
    match value {
        Value::String(s) => {
            out.push_str(s);
            out.push(' ');
        }
        Value::Array(items) => items.iter().for_each(|v| strings_of(v, out, depth + 1)),
        Value::Object(map) => {
            for (key, v) in map {
                // The narrative is searched by `_text`; ids and references are not content, nor
                // is `data` (in R4 always base64 — Binary, Attachment, Signature — or
                // SampledData's numbers): a document's bytes would make a huge, useless index.
                let narrative = depth == 0 && key == "text";
                if !narrative && !matches!(key.as_str(), "id" | "reference" | "resourceType" | "data") {
                    strings_of(v, out, depth + 1);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn blood_pressure() -> Value {
        json!({
            "resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2019-05-12T10:00:00Z",
            "component": [
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                 "valueQuantity": {"value": 142, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                 "valueQuantity": {"value": 91, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}
            ]
        })
    }

    fn rows(resource: &Value, name: &str) -> Vec<IndexEntry> {
        let t = resource["resourceType"].as_str().unwrap();
        let key = crate::param_key(t, name);
        extract(t, resource, &IndexContext::default()).into_iter().filter(|e| e.param == key).collect()
    }

    #[test]
    fn composite_components_share_a_group() {
        let obs = blood_pressure();
        let codes = rows(&obs, "component-code-value-quantity#0");
        let values = rows(&obs, "component-code-value-quantity#1");
        assert_eq!(codes.len(), 2, "{codes:?}");
        assert_eq!(values.len(), 2, "{values:?}");
        assert_eq!(codes[0].group, values[0].group);
        assert_ne!(codes[0].group, codes[1].group);
    }

    #[test]
    fn references_dates_and_tokens() {
        let obs = blood_pressure();
        let subject = rows(&obs, "subject");
        assert_eq!(
            subject[0].value,
            IndexValue::Reference {
                target_type: Some("Patient".into()),
                target_id: Some("p1".into()),
                version: None,
                url: None,
                identifier: None
            }
        );
        assert_eq!(rows(&obs, "patient").len(), 1);
        assert!(matches!(rows(&obs, "date")[0].value, IndexValue::Date(_)));
        assert!(matches!(&rows(&obs, "code")[0].value, IndexValue::Token { code: Some(c), .. } if c == "85354-9"));
    }
}
