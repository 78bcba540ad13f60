//! How common a name is among the indexed patients, counted through the store's indexes and
//! remembered for a while: the frequency-adjusted weights of [`matching::Model`].

use access::{Access, Who};
use search::query::SearchQuery;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use store::audit::Subtype;

/// How long a count is trusted.
const KEPT: Duration = Duration::from_secs(600);
/// How many names are remembered before the oldest half is forgotten.
const CAPACITY: usize = 50_000;
/// Below this many patients, names are weighed by the model alone.
const MIN_POPULATION: u64 = 1_000;
/// The job the counts are made as (they are never shown to anyone).
pub(crate) const JOB: &str = "patient-index";

#[derive(Default)]
pub(crate) struct Frequencies {
    counts: Mutex<HashMap<(u8, String), (u64, Instant)>>,
    total: Mutex<Option<(u64, Instant)>>,
}

/// Frequencies for one comparison run: the door to count through.
pub(crate) struct Counting<'a> {
    pub(crate) frequencies: &'a Frequencies,
    pub(crate) counter: Access,
}

impl<'a> Counting<'a> {
    pub(crate) fn new(frequencies: &'a Frequencies, access: &Access) -> Counting<'a> {
        Counting { frequencies, counter: access.door().enter(Who::Job(JOB)) }
    }

    fn count(&self, params: Vec<(String, String)>) -> Option<u64> {
        let mut params = params;
        params.push(("_summary".into(), "count".into()));
        let query = SearchQuery::parse(Some("Patient"), &params, false).ok()?;
        let page = self.counter.search(query, &params, 0, Subtype::SearchType).ok()?;
        // Counts read nothing of anyone: not audited as reads.
        self.counter.settle_queued();
        page.total
    }

    fn total(&self) -> Option<u64> {
        let mut total = self.frequencies.total.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((n, at)) = *total
            && at.elapsed() < KEPT
        {
            return Some(n);
        }
        let n = self.count(Vec::new())?;
        *total = Some((n, Instant::now()));
        Some(n)
    }

    fn share(&self, kind: u8, param: &str, name: &str) -> Option<f64> {
        let total = self.total()?;
        if total < MIN_POPULATION {
            // Too few records for a share to mean anything: the model's own `u`.
            return None;
        }
        let key = (kind, name.to_string());
        if let Some((n, at)) = self.frequencies.counts.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
            && at.elapsed() < KEPT
        {
            return Some(*n as f64 / total as f64);
        }
        let n = self.count(vec![(param.to_string(), name.to_string())])?;
        let mut counts = self.frequencies.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.len() >= CAPACITY {
            let now = Instant::now();
            counts.retain(|_, (_, at)| now.duration_since(*at) < KEPT / 2);
        }
        counts.insert(key, (n, Instant::now()));
        Some(n as f64 / total as f64)
    }
}

impl matching::NameFrequencies for Counting<'_> {
    fn given(&self, name: &str) -> Option<f64> {
        self.share(0, "given", name)
    }

    fn family(&self, name: &str) -> Option<f64> {
        self.share(1, "family", name)
    }
}
