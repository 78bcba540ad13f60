//! Search criteria of conditional operations (`If-None-Exist`, conditional update and delete,
//! conditional references). `_id` and `identifier` alone are answered from the identifier
//! table; any other search parameter runs the full search inside the write's transaction.
//! Parameters the server does not know are refused rather than silently ignored (ignoring one
//! would widen the match).

use crate::{Error, Result, Transaction};
use percent_encoding::percent_decode_str;
use search::query::{split_unescaped, unescape};
use std::collections::BTreeSet;

/// Result parameters that do not change which resources match.
const RESULT_PARAMS: &[&str] = &[
    "_format",
    "_pretty",
    "_summary",
    "_elements",
    "_count",
    "_sort",
    "_include",
    "_revinclude",
    "_total",
    "_contained",
    "_containedType",
];

/// Most matches a conditional operation looks at (more is an error for all of them anyway,
/// except conditional delete, which deletes at most this many at once).
const MAX_MATCHES: usize = 1000;

/// Parsed criteria: all listed conditions must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Criteria {
    /// Every `(name, value)` pair given (decoded), for the full search when other
    /// parameters than `_id` and `identifier` are present.
    pub pairs: Vec<(String, String)>,
    /// Whether a parameter other than `_id` and plain `identifier` is present.
    pub needs_search: bool,
    /// `_id=…` conditions; each entry is one OR-list of ids (a repeated `_id` is an AND).
    pub ids: Vec<Vec<String>>,
    /// `identifier=[system]|value` conditions; each entry is one OR-list of `(system, value)`
    /// where `system: None` means any system and `Some("")` means no system (`|value`).
    pub identifiers: Vec<Vec<(Option<String>, String)>>,
}

impl Criteria {
    /// Parses a query string such as `identifier=http://x|123&_id=abc` (percent-encoded, with
    /// FHIR's `\,` `\|` `\\` escapes; a leading `?` is allowed).
    pub fn parse(query: &str) -> Result<Criteria> {
        let query = query.strip_prefix('?').unwrap_or(query);
        let mut criteria = Criteria::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode(name)?;
            if RESULT_PARAMS.contains(&name.as_str()) {
                continue;
            }
            let value = decode(value)?;
            if value.is_empty() && !name.ends_with(":missing") {
                return Err(Error::invalid(format!("search parameter `{name}` has no value")));
            }
            match name.as_str() {
                "_id" => {
                    let ids = split_unescaped(&value, ',').into_iter().map(|id| unescape(&id)).collect();
                    criteria.ids.push(non_empty(ids, &name)?);
                }
                "identifier" => {
                    let tokens =
                        split_unescaped(&value, ',').iter().map(|t| identifier_token(t)).collect::<Result<_>>()?;
                    criteria.identifiers.push(tokens);
                }
                _ => criteria.needs_search = true,
            }
            criteria.pairs.push((name, value));
        }
        Ok(criteria)
    }

    /// Whether there are no conditions at all (such criteria would match everything).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.identifiers.is_empty() && !self.needs_search
    }

    /// Ids of the live resources of `resource_type` that match, sorted, as seen inside `tx`.
    pub fn find(&self, tx: &mut dyn Transaction, resource_type: &str) -> Result<Vec<String>> {
        self.find_with(tx, resource_type, false)
    }

    /// [`Criteria::find`] for a conditional reference, which only reads (see
    /// [`Transaction::find_by_identifier_to_read`]).
    pub fn find_to_read(&self, tx: &mut dyn Transaction, resource_type: &str) -> Result<Vec<String>> {
        self.find_with(tx, resource_type, true)
    }

    fn find_with(&self, tx: &mut dyn Transaction, resource_type: &str, to_read: bool) -> Result<Vec<String>> {
        if self.needs_search {
            let query =
                search::SearchQuery::parse(Some(resource_type), &self.pairs, true).map_err(|e| Error::Invalid(e.0))?;
            let mut ids = tx.search_ids(&query, MAX_MATCHES)?;
            ids.sort();
            return tx.visible(resource_type, ids);
        }
        let mut found: Option<BTreeSet<String>> = None;
        for group in &self.identifiers {
            let mut ids = BTreeSet::new();
            for (system, value) in group {
                ids.extend(if to_read {
                    tx.find_by_identifier_to_read(resource_type, system.as_deref(), value)?
                } else {
                    tx.find_by_identifier(resource_type, system.as_deref(), value)?
                });
            }
            found = Some(match found {
                Some(previous) => previous.intersection(&ids).cloned().collect(),
                None => ids,
            });
        }
        for group in &self.ids {
            found = Some(match found {
                Some(previous) => previous.into_iter().filter(|id| group.contains(id)).collect(),
                None => {
                    let mut live = BTreeSet::new();
                    for id in group {
                        if matches!(tx.current_version(resource_type, id)?, Some((_, false))) {
                            live.insert(id.clone());
                        }
                    }
                    live
                }
            });
        }
        tx.visible(resource_type, found.unwrap_or_default().into_iter().collect())
    }
}

fn decode(text: &str) -> Result<String> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| Error::invalid("search criteria are not valid UTF-8 once percent-decoded"))
}

fn non_empty<T>(values: Vec<T>, name: &str) -> Result<Vec<T>>
where
    T: AsRef<str>,
{
    if values.iter().any(|v| v.as_ref().is_empty()) {
        return Err(Error::invalid(format!("search parameter `{name}` has an empty value")));
    }
    Ok(values)
}

/// `system|value`, `|value` or `value` (still escaped) as `(system, value)`.
fn identifier_token(token: &str) -> Result<(Option<String>, String)> {
    let mut parts = split_unescaped(token, '|');
    let (system, value) = match parts.len() {
        1 => (None, unescape(&parts.remove(0))),
        2 => {
            let value = unescape(&parts.remove(1));
            (Some(unescape(&parts.remove(0))), value)
        }
        _ => return Err(Error::invalid("an identifier has more than one unescaped `|`")),
    };
    if value.is_empty() {
        if system.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(Error::NotSupported("identifier search by system alone (`system|`)".into()));
        }
        return Err(Error::invalid("search parameter `identifier` has an empty value"));
    }
    Ok((system, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(system: Option<&str>, value: &str) -> (Option<String>, String) {
        (system.map(str::to_string), value.to_string())
    }

    #[test]
    fn parses_ids_and_identifiers() {
        let c = Criteria::parse("identifier=http://x|123&_id=a,b").unwrap();
        assert_eq!(c.ids, vec![vec!["a".to_string(), "b".to_string()]]);
        assert_eq!(c.identifiers, vec![vec![ident(Some("http://x"), "123")]]);
        assert!(!c.is_empty());
    }

    #[test]
    fn identifier_forms() {
        let c = Criteria::parse("identifier=|v1,v2,s|v3").unwrap();
        assert_eq!(c.identifiers, vec![vec![ident(Some(""), "v1"), ident(None, "v2"), ident(Some("s"), "v3")]]);
    }

    #[test]
    fn repeated_parameters_are_separate_conditions() {
        let c = Criteria::parse("?identifier=a|1&identifier=b|2&_id=x&_id=y").unwrap();
        assert_eq!(c.identifiers.len(), 2);
        assert_eq!(c.ids, vec![vec!["x".to_string()], vec!["y".to_string()]]);
    }

    #[test]
    fn percent_decoding_and_escapes() {
        let c = Criteria::parse("identifier=http%3A%2F%2Fx%7Ca%5C%2Cb").unwrap();
        assert_eq!(c.identifiers, vec![vec![ident(Some("http://x"), "a,b")]]);
        let c = Criteria::parse("identifier=sys\\|tem|v").unwrap();
        assert_eq!(c.identifiers, vec![vec![ident(Some("sys|tem"), "v")]]);
    }

    #[test]
    fn result_parameters_are_ignored() {
        let c = Criteria::parse("_format=json&_id=a&_count=3").unwrap();
        assert_eq!(c.ids, vec![vec!["a".to_string()]]);
        assert!(Criteria::parse("_format=json").unwrap().is_empty());
        assert!(Criteria::parse("").unwrap().is_empty());
    }

    #[test]
    fn other_parameters_need_the_full_search() {
        assert!(Criteria::parse("identifier=a|b&name=smith").unwrap().needs_search);
        assert!(Criteria::parse("identifier:exact=a").unwrap().needs_search);
        assert!(!Criteria::parse("identifier=a|b&_id=x").unwrap().needs_search);
    }

    #[test]
    fn empty_values_are_invalid() {
        assert_eq!(Criteria::parse("_id=").unwrap_err().kind(), crate::ErrorKind::Invalid);
        assert_eq!(Criteria::parse("identifier").unwrap_err().kind(), crate::ErrorKind::Invalid);
        assert_eq!(Criteria::parse("_id=a,,b").unwrap_err().kind(), crate::ErrorKind::Invalid);
        assert_eq!(Criteria::parse("identifier=sys|").unwrap_err().kind(), crate::ErrorKind::NotSupported);
        assert_eq!(Criteria::parse("identifier=a|b|c").unwrap_err().kind(), crate::ErrorKind::Invalid);
    }
}
