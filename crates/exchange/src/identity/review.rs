//! The duplicate review work list: pairs of records the index found probably one person's,
//! kept in the store's job table (kind [`KIND`]) until a registrar or administrator decides —
//! link, not a match (remembered, so the pair never comes back), or merge.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use store::{JobStore, StoredJob};
use time::OffsetDateTime;

/// The job-table kind of review items.
pub const KIND: &str = "match-review";

/// Where a pair stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Waiting for a decision.
    Open,
    /// Decided: one person; the records were linked.
    Linked,
    /// Decided: two people; never proposed again.
    NotAMatch,
    /// Decided: one person; the first record was merged into the second.
    Merged,
}

/// One field's agreement, as the work list shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldAgreement {
    /// The field (`given`, `birth-date`…).
    pub field: String,
    /// How far it agreed (`exact`, `alias`, `similar`, `partial`, `differ`, `missing`).
    pub level: String,
    /// Its weight in the score.
    pub weight: f64,
}

/// A candidate pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewItem {
    /// The pair's id (`a~b`, the two Patient ids in order).
    pub id: String,
    /// One Patient id.
    pub a: String,
    /// The other Patient id.
    pub b: String,
    /// The match score (0–1).
    pub score: f64,
    /// The summed weight.
    pub weight: f64,
    /// The grade when found.
    pub grade: String,
    /// Each field's agreement.
    pub fields: Vec<FieldAgreement>,
    /// Where it stands.
    pub status: Status,
    /// Who decided (a user or job name), once decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// When it was found or last decided (RFC 3339).
    pub updated: String,
}

/// The id of the pair `a`, `b` (in either order).
pub fn pair_id(a: &str, b: &str) -> String {
    if a <= b { format!("{a}~{b}") } else { format!("{b}~{a}") }
}

/// The work list over a job store.
#[derive(Clone)]
pub struct ReviewList {
    jobs: Arc<dyn JobStore>,
}

impl ReviewList {
    /// The list kept in `jobs`.
    pub fn new(jobs: Arc<dyn JobStore>) -> ReviewList {
        ReviewList { jobs }
    }

    /// The pair, if it was ever proposed.
    pub fn get(&self, a: &str, b: &str) -> store::Result<Option<ReviewItem>> {
        Ok(self.jobs.job(&pair_id(a, b))?.and_then(|j| serde_json::from_str(&j.state).ok()))
    }

    /// Every pair, or only those with `status`; best score first.
    pub fn items(&self, status: Option<Status>) -> store::Result<Vec<ReviewItem>> {
        let mut items: Vec<ReviewItem> = self
            .jobs
            .jobs(KIND)?
            .into_iter()
            .filter_map(|j| serde_json::from_str::<ReviewItem>(&j.state).ok())
            .filter(|i| status.is_none_or(|s| i.status == s))
            .collect();
        items.sort_by(|x, y| y.score.total_cmp(&x.score).then_with(|| x.id.cmp(&y.id)));
        Ok(items)
    }

    /// Saves an item (new or decided).
    pub fn save(&self, item: &ReviewItem) -> store::Result<()> {
        let state = serde_json::to_string(item).map_err(|e| store::Error::Storage(e.to_string()))?;
        self.jobs.save_job(&StoredJob {
            id: item.id.clone(),
            kind: KIND.to_string(),
            state,
            updated_at: OffsetDateTime::now_utc(),
        })
    }
}

/// Now, as stored in items.
pub(crate) fn now_text() -> String {
    OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
