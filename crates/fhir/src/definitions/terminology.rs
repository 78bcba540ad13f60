//! Expansion of the embedded ValueSets (those used by required bindings) into code sets.

use super::raw;
use crate::hash::{FastMap, FastSet};
use std::collections::BTreeMap;

/// A ValueSet with its codes expanded, when that was possible from the embedded definitions.
#[derive(Debug)]
pub struct ValueSet {
    /// The canonical URL (without version).
    pub url: String,
    /// `None` when the set draws on terminology that is not embedded (UCUM, BCP-47, MIME
    /// types...) or on filters that cannot be evaluated here: such sets are not checked.
    expansion: Option<Vec<SystemCodes>>,
}

#[derive(Debug)]
struct SystemCodes {
    system: String,
    codes: FastSet<Box<str>>,
}

impl ValueSet {
    /// Whether membership in this set can be decided from the embedded definitions.
    pub fn is_checkable(&self) -> bool {
        self.expansion.is_some()
    }

    /// Whether `system|code` is in the set (`None` when the set is not checkable).
    pub fn contains(&self, system: &str, code: &str) -> Option<bool> {
        let expansion = self.expansion.as_ref()?;
        Some(expansion.iter().any(|s| s.system == system && s.codes.contains(code)))
    }

    /// Whether `code` is in the set from any of its systems (for `code`-typed elements, which
    /// carry no system; `None` when the set is not checkable).
    pub fn contains_code(&self, code: &str) -> Option<bool> {
        let expansion = self.expansion.as_ref()?;
        Some(expansion.iter().any(|s| s.codes.contains(code)))
    }

    /// The code systems the set draws from (empty when not checkable).
    pub fn systems(&self) -> impl Iterator<Item = &str> {
        self.expansion.iter().flatten().map(|s| s.system.as_str())
    }

    /// Number of codes in the expansion (0 when not checkable).
    pub fn len(&self) -> usize {
        self.expansion.iter().flatten().map(|s| s.codes.len()).sum()
    }

    /// Whether the expansion holds no codes (also true when not checkable).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A CodeSystem's concepts with their hierarchy.
#[derive(Debug)]
pub struct CodeSystem {
    complete: bool,
    /// Every code, in definition order, with the index of its parent (nested concepts).
    codes: Vec<(String, Option<usize>)>,
}

impl CodeSystem {
    fn from_raw(raw: &raw::Terminology) -> Self {
        fn walk(concepts: &[raw::Concept], parent: Option<usize>, out: &mut Vec<(String, Option<usize>)>) {
            for concept in concepts {
                out.push((concept.code.clone(), parent));
                let me = out.len() - 1;
                walk(&concept.concept, Some(me), out);
            }
        }
        let mut codes = Vec::new();
        walk(&raw.concept, None, &mut codes);
        CodeSystem { complete: raw.content.as_deref() == Some("complete"), codes }
    }

    /// `code` and every code below it (`:below`); `None` when the system lacks `code`.
    pub fn descendants(&self, code: &str) -> Option<Vec<&str>> {
        let found = self.subsumed(code, true);
        if found.is_empty() { None } else { Some(found) }
    }

    /// `code` and every code above it (`:above`); `None` when the system lacks `code`.
    pub fn ancestors(&self, code: &str) -> Option<Vec<&str>> {
        let mut at = self.codes.iter().position(|(c, _)| c == code)?;
        let mut out = vec![self.codes[at].0.as_str()];
        while let Some(parent) = self.codes[at].1 {
            out.push(self.codes[parent].0.as_str());
            at = parent;
        }
        Some(out)
    }

    /// `code` and (with `include_self` false, only) everything below it.
    fn subsumed(&self, code: &str, include_self: bool) -> Vec<&str> {
        let Some(root) = self.codes.iter().position(|(c, _)| c == code) else {
            return Vec::new();
        };
        let mut inside = vec![false; self.codes.len()];
        inside[root] = true;
        // Children always come after their parent, so one forward pass marks all descendants.
        for i in root + 1..self.codes.len() {
            if let Some(p) = self.codes[i].1 {
                inside[i] = inside[p];
            }
        }
        self.codes
            .iter()
            .enumerate()
            .filter(|&(i, _)| inside[i] && (include_self || i != root))
            .map(|(_, (c, _))| c.as_str())
            .collect()
    }
}

/// Codes grouped by system; `None` = cannot be computed.
type Codes = BTreeMap<String, FastSet<Box<str>>>;

struct Expander<'a> {
    value_sets: FastMap<&'a str, &'a raw::Terminology>,
    code_systems: FastMap<&'a str, CodeSystem>,
    done: FastMap<String, Option<Codes>>,
    in_progress: Vec<String>,
}

impl<'a> Expander<'a> {
    fn expand(&mut self, url: &str) -> Option<Codes> {
        let url = canonical(url);
        if let Some(done) = self.done.get(url) {
            return done.clone();
        }
        if self.in_progress.iter().any(|u| u == url) {
            return None;
        }
        let vs = *self.value_sets.get(url)?;
        self.in_progress.push(url.to_owned());
        let result = vs.compose.as_ref().and_then(|compose| {
            let mut codes = Codes::new();
            for part in &compose.include {
                for (system, set) in self.compose_set(part)? {
                    codes.entry(system).or_default().extend(set);
                }
            }
            for part in &compose.exclude {
                for (system, set) in self.compose_set(part)? {
                    if let Some(have) = codes.get_mut(&system) {
                        have.retain(|c| !set.contains(c));
                    }
                }
            }
            Some(codes)
        });
        self.in_progress.pop();
        self.done.insert(url.to_owned(), result.clone());
        result
    }

    fn compose_set(&mut self, part: &raw::ComposeSet) -> Option<Codes> {
        let mut result: Option<Codes> = match &part.system {
            Some(system) => {
                let codes: FastSet<Box<str>> = if !part.concept.is_empty() {
                    // An explicit list is usable even when the system itself is not embedded.
                    part.concept.iter().map(|c| c.code.as_str().into()).collect()
                } else {
                    let cs = self.code_systems.get(system.as_str()).filter(|cs| cs.complete)?;
                    let mut codes: FastSet<Box<str>> = cs.codes.iter().map(|(c, _)| c.as_str().into()).collect();
                    for filter in &part.filter {
                        let allowed: FastSet<&str> = match (filter.op.as_str(), filter.property.as_str()) {
                            ("is-a", "concept") => cs.subsumed(&filter.value, true).into_iter().collect(),
                            ("descendent-of", "concept") => cs.subsumed(&filter.value, false).into_iter().collect(),
                            ("is-not-a", "concept") => {
                                let below: FastSet<&str> = cs.subsumed(&filter.value, true).into_iter().collect();
                                cs.codes.iter().map(|(c, _)| c.as_str()).filter(|c| !below.contains(c)).collect()
                            }
                            ("regex", "code") => {
                                let re = regex::Regex::new(&format!("^(?:{})$", filter.value)).ok()?;
                                cs.codes.iter().map(|(c, _)| c.as_str()).filter(|c| re.is_match(c)).collect()
                            }
                            _ => return None,
                        };
                        codes.retain(|c| allowed.contains(&**c));
                    }
                    codes
                };
                Some(BTreeMap::from([(system.clone(), codes)]))
            }
            None => None,
        };
        // Several value sets in one include are intersected (with each other and the system).
        for url in &part.value_set {
            let other = self.expand(url)?;
            result = Some(match result {
                None => other,
                Some(mut mine) => {
                    mine.retain(|system, _| other.contains_key(system));
                    for (system, codes) in mine.iter_mut() {
                        let theirs = &other[system];
                        codes.retain(|c| theirs.contains(c));
                    }
                    mine
                }
            });
        }
        result
    }
}

fn canonical(url: &str) -> &str {
    url.split_once('|').map_or(url, |(u, _)| u)
}

/// The CodeSystems among `items` with a concept hierarchy of their own, keyed by URL.
pub(crate) fn code_systems(items: &[raw::Terminology]) -> FastMap<Box<str>, CodeSystem> {
    items
        .iter()
        .filter(|i| i.resource_type == "CodeSystem" && !i.concept.is_empty())
        .map(|i| (i.url.as_str().into(), CodeSystem::from_raw(i)))
        .collect()
}

/// Expands every ValueSet in `items` (a mix of ValueSets and CodeSystems), keyed by URL.
pub(crate) fn expand_all(items: &[raw::Terminology]) -> FastMap<Box<str>, ValueSet> {
    let mut expander = Expander {
        value_sets: FastMap::default(),
        code_systems: FastMap::default(),
        done: FastMap::default(),
        in_progress: Vec::new(),
    };
    for item in items {
        match item.resource_type.as_str() {
            "ValueSet" => {
                expander.value_sets.entry(item.url.as_str()).or_insert(item);
            }
            "CodeSystem" => {
                expander.code_systems.entry(item.url.as_str()).or_insert_with(|| CodeSystem::from_raw(item));
            }
            _ => {}
        }
    }
    let urls: Vec<&str> = expander.value_sets.keys().copied().collect();
    urls.into_iter()
        .map(|url| {
            let expansion = expander
                .expand(url)
                .map(|codes| codes.into_iter().map(|(system, codes)| SystemCodes { system, codes }).collect());
            (url.into(), ValueSet { url: url.to_owned(), expansion })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn terminology(value: serde_json::Value) -> raw::Terminology {
        serde_json::from_value(value).unwrap()
    }

    fn fixture() -> FastMap<Box<str>, ValueSet> {
        let items = vec![
            terminology(json!({
                "resourceType": "CodeSystem", "url": "http://x/cs", "content": "complete",
                "concept": [
                    {"code": "a", "concept": [{"code": "a1", "concept": [{"code": "a1x"}]}, {"code": "a2"}]},
                    {"code": "b"}
                ]
            })),
            terminology(json!({
                "resourceType": "CodeSystem", "url": "http://x/fragment", "content": "fragment",
                "concept": [{"code": "f"}]
            })),
            terminology(json!({
                "resourceType": "ValueSet", "url": "http://x/all",
                "compose": {"include": [{"system": "http://x/cs"}]}
            })),
            terminology(json!({
                "resourceType": "ValueSet", "url": "http://x/some",
                "compose": {
                    "include": [{"valueSet": ["http://x/all|4.0.1"]}, {"system": "http://x/other", "concept": [{"code": "z"}]}],
                    "exclude": [{"system": "http://x/cs", "concept": [{"code": "b"}]}]
                }
            })),
            terminology(json!({
                "resourceType": "ValueSet", "url": "http://x/below-a",
                "compose": {"include": [{"system": "http://x/cs", "filter": [{"property": "concept", "op": "descendent-of", "value": "a"}]}]}
            })),
            terminology(json!({
                "resourceType": "ValueSet", "url": "http://x/external",
                "compose": {"include": [{"system": "urn:ietf:bcp:13"}]}
            })),
            terminology(json!({
                "resourceType": "ValueSet", "url": "http://x/partial",
                "compose": {"include": [{"system": "http://x/fragment"}]}
            })),
        ];
        expand_all(&items)
    }

    #[test]
    fn expands_whole_code_systems_with_nested_concepts() {
        let sets = fixture();
        let all = &sets["http://x/all"];
        assert_eq!(all.len(), 5);
        for code in ["a", "a1", "a1x", "a2", "b"] {
            assert_eq!(all.contains("http://x/cs", code), Some(true), "{code}");
        }
        assert_eq!(all.contains("http://x/other", "a"), Some(false));
        assert_eq!(all.contains_code("c"), Some(false));
    }

    #[test]
    fn handles_imports_concept_lists_and_excludes() {
        let sets = fixture();
        let some = &sets["http://x/some"];
        assert_eq!(some.contains("http://x/cs", "a1x"), Some(true));
        assert_eq!(some.contains("http://x/cs", "b"), Some(false));
        assert_eq!(some.contains("http://x/other", "z"), Some(true));
        assert_eq!(some.contains_code("z"), Some(true));
    }

    #[test]
    fn evaluates_hierarchy_filters() {
        let sets = fixture();
        let below = &sets["http://x/below-a"];
        assert_eq!(below.contains_code("a"), Some(false));
        assert_eq!(below.contains_code("a1x"), Some(true));
        assert_eq!(below.contains_code("b"), Some(false));
    }

    #[test]
    fn marks_external_or_incomplete_systems_as_not_checkable() {
        let sets = fixture();
        assert!(!sets["http://x/external"].is_checkable());
        assert_eq!(sets["http://x/external"].contains_code("text/plain"), None);
        assert!(!sets["http://x/partial"].is_checkable());
        assert!(sets["http://x/all"].is_checkable());
    }
}
