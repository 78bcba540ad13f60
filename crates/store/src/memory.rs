//! An in-memory [`Transaction`] for unit tests of the write path.

use crate::{Change, NewVersion, ResourceVersion, Result, Transaction};
use std::collections::HashMap;
use std::sync::Arc;

/// `(system, value)` pairs of one resource.
type Identifiers = Vec<(Option<String>, String)>;

/// Versions and identifiers kept in maps; `put` appends like a backend would.
#[derive(Default)]
pub(crate) struct MemoryTx {
    versions: HashMap<(String, String), Vec<ResourceVersion>>,
    identifiers: HashMap<(String, String), Identifiers>,
    sequence: i64,
}

impl MemoryTx {
    /// Ids of live resources of `resource_type`, sorted.
    pub(crate) fn live(&self, resource_type: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .versions
            .iter()
            .filter(|((t, _), v)| t == resource_type && !v.last().expect("never empty").is_deleted())
            .map(|((_, id), _)| id.clone())
            .collect();
        ids.sort();
        ids
    }
}

impl Transaction for MemoryTx {
    fn current(&mut self, resource_type: &str, id: &str) -> Result<Option<ResourceVersion>> {
        Ok(self.versions.get(&(resource_type.to_string(), id.to_string())).and_then(|v| v.last().cloned()))
    }

    fn find_by_identifier(&mut self, resource_type: &str, system: Option<&str>, value: &str) -> Result<Vec<String>> {
        let mut ids: Vec<String> = self
            .identifiers
            .iter()
            .filter(|((t, _), found)| {
                t == resource_type
                    && found
                        .iter()
                        .any(|(s, v)| v == value && system.is_none_or(|want| s.as_deref().unwrap_or("") == want))
            })
            .map(|((_, id), _)| id.clone())
            .collect();
        ids.sort();
        Ok(ids)
    }

    fn version(&mut self, resource_type: &str, id: &str, version: u64) -> Result<Option<ResourceVersion>> {
        let versions = self.versions.get(&(resource_type.to_string(), id.to_string()));
        Ok(versions.and_then(|v| v.iter().find(|v| v.version == version).cloned()))
    }

    fn put(&mut self, v: &NewVersion<'_>) -> Result<i64> {
        self.sequence += 1;
        let key = (v.resource_type.to_string(), v.id.to_string());
        self.identifiers.remove(&key);
        if v.change != Change::Deleted && !v.identifiers.is_empty() {
            self.identifiers.insert(key.clone(), v.identifiers.to_vec());
        }
        self.versions.entry(key).or_default().push(ResourceVersion {
            resource_type: v.resource_type.to_string(),
            id: v.id.to_string(),
            version: v.version,
            last_updated: v.last_updated,
            change: v.change,
            body: v.body.map(Arc::from),
            sequence: self.sequence,
        });
        Ok(self.sequence)
    }
}
