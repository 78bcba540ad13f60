//! Exporting records, HTTP-free: the service behind `Patient/[id]/$everything` (and, later,
//! Bulk Data export). It reads the operation's parameters and runs it through the door
//! ([`access::Access::everything`]), which allows, narrows and audits it; edges render the
//! page it returns (a `searchset` Bundle for the FHIR API).

use access::{Access, Error, Everything};
use search::query::SearchQuery;
use store::SearchPage;

/// `Patient/[id]/$everything` with `_since`, `_type`, `_count` and `_page` (`pairs`: the
/// request's parameters), returning the query run (for paging links), the page, and the page
/// size used (`_count`, at most `max_count`; `max_count` when not given).
pub fn everything(
    access: &Access,
    patient: &str,
    pairs: &[(String, String)],
    max_count: usize,
) -> Result<(SearchQuery, SearchPage, usize), Error> {
    let (mut asked, count) = read_parameters(pairs)?;
    let count = count.unwrap_or(max_count).min(max_count);
    // The whole person: the records the patient index linked to this one (`seealso`), each
    // resource still under its own record (its source), those the caller may open.
    asked.linked = access.linked_records(patient)?;
    let (query, page) = access.everything(patient, asked, count)?;
    Ok((query, page, count))
}

/// The parameters of `$everything`: what to ask the door for, and `_count`.
pub fn read_parameters(pairs: &[(String, String)]) -> Result<(Everything, Option<usize>), Error> {
    let mut asked = Everything::default();
    let mut count = None;
    for (name, value) in pairs {
        match name.as_str() {
            "_since" => {
                asked.since = Some(
                    search::values::DateRange::parse(value)
                        .ok_or_else(|| Error::invalid("_since must be an instant"))?,
                )
            }
            "_type" => asked.types = Some(value.split(',').map(|t| t.trim().to_string()).collect()),
            "_count" => {
                count =
                    Some(value.parse::<usize>().map_err(|_| Error::invalid("_count must be a non-negative integer"))?)
            }
            "_page" => asked.page = Some(value.clone()),
            "_format" | "_pretty" => {}
            other => return Err(Error::invalid(format!("$everything does not take `{other}`"))),
        }
    }
    asked.echo = pairs.iter().filter(|(n, _)| n != "_page" && n != "_count").cloned().collect();
    Ok((asked, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parameters_are_read_and_echoed_without_paging() {
        let (asked, count) =
            read_parameters(&pairs(&[("_type", "Observation, Condition"), ("_count", "5"), ("_page", "abc")])).unwrap();
        assert_eq!(asked.types.as_deref(), Some(&["Observation".to_string(), "Condition".to_string()][..]));
        assert_eq!(count, Some(5));
        assert_eq!(asked.page.as_deref(), Some("abc"));
        assert_eq!(asked.echo, pairs(&[("_type", "Observation, Condition")]));
    }

    #[test]
    fn unknown_or_malformed_parameters_are_refused() {
        assert!(matches!(read_parameters(&pairs(&[("name", "x")])), Err(Error::Invalid(_))));
        assert!(matches!(read_parameters(&pairs(&[("_count", "-1")])), Err(Error::Invalid(_))));
        assert!(matches!(read_parameters(&pairs(&[("_since", "yesterday")])), Err(Error::Invalid(_))));
    }
}
