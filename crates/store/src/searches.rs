//! Running searches: matches in order, paging that stays stable while others write, totals,
//! and `_include` / `_revinclude`.
//!
//! Paging keeps the ordered keys of a search's matches (up to [`SNAPSHOT_LIMIT`]) in memory
//! under a random id; the `next`/`previous` links name that id and an offset. Later pages are
//! slices of the same list, so writes in between neither shift nor duplicate results (a
//! resource deleted meanwhile drops out; one updated shows its current version). A search
//! with more matches than the limit, or whose snapshot was evicted, is re-run at the offset.

use crate::{Error, Records, ResourceVersion, Result};
use fhir::Issue;
use search::query::{Include, SearchQuery, Summary, Total};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

/// Most matches a snapshot keeps.
pub const SNAPSHOT_LIMIT: usize = 10_000;
/// Snapshots kept at once (oldest evicted first).
const SNAPSHOTS: usize = 512;
/// Most `:iterate` rounds of includes.
const ITERATE_ROUNDS: usize = 4;
/// Most resources a page includes.
const MAX_INCLUDED: usize = 5_000;

/// Snapshots by id (with the fingerprint of the search that made them), and their ids oldest
/// first.
type SnapshotMap = (HashMap<String, (u64, Arc<Vec<i64>>)>, VecDeque<String>);

/// What a snapshot is bound to: the searched types, filters and order. A page token only
/// serves the search that made it, so that a token handed to another caller (whose access
/// narrows the filters) cannot page through someone else's matches.
fn fingerprint(query: &SearchQuery) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    format!("{:?}|{:?}|{:?}|{:?}", query.types, query.filters, query.sort, query.contained_filters).hash(&mut hasher);
    hasher.finish()
}

/// The in-memory snapshots of recent searches.
#[derive(Default)]
pub(crate) struct Snapshots {
    inner: Mutex<SnapshotMap>,
}

impl Snapshots {
    fn get(&self, id: &str, fingerprint: u64) -> Option<Arc<Vec<i64>>> {
        let inner = self.inner.lock().ok()?;
        let (bound, keys) = inner.0.get(id)?;
        (*bound == fingerprint).then(|| keys.clone())
    }

    fn put(&self, fingerprint: u64, keys: Vec<i64>) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        if let Ok(mut inner) = self.inner.lock() {
            let (map, order) = &mut *inner;
            map.insert(id.clone(), (fingerprint, Arc::new(keys)));
            order.push_back(id.clone());
            while order.len() > SNAPSHOTS {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
        id
    }
}

/// One page of search results.
#[derive(Debug, Default)]
pub struct SearchPage {
    /// The matches of this page, in order.
    pub matches: Vec<ResourceVersion>,
    /// Resources added by `_include` / `_revinclude`.
    pub included: Vec<ResourceVersion>,
    /// `Bundle.total`, when known.
    pub total: Option<u64>,
    /// Position of the first match of this page.
    pub offset: usize,
    /// Page token of the next page (for `_page=`).
    pub next: Option<String>,
    /// Page token of the previous page.
    pub previous: Option<String>,
    /// Parameters ignored, to report.
    pub ignored: Vec<Issue>,
}

/// Where a page starts: a snapshot and an offset (`snapshot:offset`), or an offset alone.
/// Anything else is refused rather than read as the first page.
fn parse_page(page: Option<&str>) -> Result<(Option<&str>, usize)> {
    let (snapshot, offset) = match page {
        None => return Ok((None, 0)),
        Some(p) => match p.split_once(':') {
            Some((snapshot, offset)) => (Some(snapshot), offset),
            None => (None, p),
        },
    };
    let offset = offset.parse().map_err(|_| Error::invalid("`_page` is not a page of this server's searches"))?;
    Ok((snapshot, offset))
}

impl Records {
    /// Runs `query`, returning the page of at most `count` matches its `_page` names.
    pub fn search(&self, query: &SearchQuery, count: usize) -> Result<SearchPage> {
        let backend = self.backend();
        let mut page = SearchPage { ignored: query.ignored.clone(), ..SearchPage::default() };
        if query.summary == Summary::Count {
            page.total = Some(backend.search_count(query)?);
            return Ok(page);
        }
        let (snapshot_id, offset) = parse_page(query.page.as_deref())?;
        page.offset = offset;
        let bound = fingerprint(query);
        let cached = snapshot_id.and_then(|id| self.snapshots().get(id, bound).map(|keys| (id.to_string(), keys)));
        let (snapshot, keys, complete) = match cached {
            Some((id, keys)) => (Some(id), keys, true),
            None if offset == 0 || snapshot_id.is_some() || offset + count <= SNAPSHOT_LIMIT => {
                let keys = backend.search(query, SNAPSHOT_LIMIT + 1)?;
                if keys.len() <= SNAPSHOT_LIMIT {
                    let keys = Arc::new(keys);
                    let id = self.snapshots().put(bound, keys.to_vec());
                    (Some(id), keys, true)
                } else {
                    (None, Arc::new(keys), false)
                }
            }
            None => (None, Arc::new(backend.search(query, offset + count + 1)?), false),
        };
        let end = (offset + count).min(keys.len());
        let slice = if offset < keys.len() { &keys[offset..end] } else { &[][..] };
        let fetched = backend.fetch(slice)?;
        let match_keys: Vec<i64> = fetched.iter().map(|(k, _)| *k).collect();
        page.matches = fetched.into_iter().map(|(_, v)| v).collect();
        page.total = match (complete, query.total) {
            (true, _) => Some(keys.len() as u64),
            (false, Total::Accurate) => Some(backend.search_count(query)?),
            (false, _) => None,
        };
        let token = |offset: usize| match &snapshot {
            Some(id) => format!("{id}:{offset}"),
            None => offset.to_string(),
        };
        if end < keys.len() {
            page.next = Some(token(end));
        }
        if offset > 0 && count > 0 {
            page.previous = Some(token(offset.saturating_sub(count)));
        }
        page.included = self.included(&match_keys, &query.include, &query.revinclude)?;
        Ok(page)
    }

    /// The resources `_include` and `_revinclude` add to a page whose matches are `keys`.
    fn included(&self, keys: &[i64], include: &[Include], revinclude: &[Include]) -> Result<Vec<ResourceVersion>> {
        if include.is_empty() && revinclude.is_empty() {
            return Ok(Vec::new());
        }
        let backend = self.backend();
        let mut seen: HashSet<i64> = keys.iter().copied().collect();
        let mut added = Vec::new();
        let mut frontier = keys.to_vec();
        for round in 0..=ITERATE_ROUNDS {
            let mut found = Vec::new();
            for inc in include.iter().filter(|i| round == 0 || i.iterate) {
                found.extend(backend.include(&frontier, inc)?);
            }
            for inc in revinclude.iter().filter(|i| round == 0 || i.iterate) {
                found.extend(backend.revinclude(&frontier, inc)?);
            }
            let fresh: Vec<i64> = found.into_iter().filter(|k| seen.insert(*k)).collect();
            if fresh.is_empty() || added.len() >= MAX_INCLUDED {
                break;
            }
            added.extend(fresh.iter().copied());
            frontier = fresh;
            if !include.iter().chain(revinclude).any(|i| i.iterate) {
                break;
            }
        }
        added.truncate(MAX_INCLUDED);
        Ok(backend.fetch(&added)?.into_iter().map(|(_, v)| v).collect())
    }
}
