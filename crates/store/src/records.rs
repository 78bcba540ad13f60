//! [`Records`]: the one write path and the reads beside it.

use crate::{Backend, HistoryQuery, ResourceVersion, Result};
use fhir::Issue;
use serde_json::Value;
use std::sync::Arc;

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// A new resource was created (201).
    Created,
    /// A new version of an existing resource was written (200).
    Updated,
    /// A conditional create matched an existing resource; nothing was written (200).
    Matched,
    /// A deletion version was written (200/204).
    Deleted,
    /// Delete of a resource that was already deleted or never existed: nothing written (204).
    NothingToDelete,
}

/// The result of a write: what happened and the version now current.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    pub kind: WriteKind,
    /// The version written (or matched); `None` only for `NothingToDelete`.
    pub version: Option<ResourceVersion>,
}

/// The write path and reads over one backend.
#[derive(Clone)]
pub struct Records {
    backend: Arc<dyn Backend>,
}

impl Records {
    /// Records stored in `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Records { backend }
    }

    /// The backend underneath.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Validation issues of `resource` (what `$validate` answers), without storing anything.
    pub fn validate(&self, resource: &Value) -> Vec<Issue> {
        fhir::validate(resource)
    }

    /// The current version; `NotFound` or `Gone` otherwise.
    pub fn read(&self, _resource_type: &str, _id: &str) -> Result<ResourceVersion> {
        unimplemented!()
    }

    /// One version (a deleted version answers `Gone`).
    pub fn vread(&self, _resource_type: &str, _id: &str, _version: u64) -> Result<ResourceVersion> {
        unimplemented!()
    }

    /// Creates `resource` with a server-assigned id. With `if_none_exist` (a query string), an
    /// existing match is returned instead (`Matched`); several matches fail (412).
    pub fn create(&self, _resource: Value, _if_none_exist: Option<&str>) -> Result<WriteOutcome> {
        unimplemented!()
    }

    /// Updates (or creates, with the client's id) `resource_type/id`. `if_match` is the expected
    /// current version (412 when different).
    pub fn update(&self, _resource_type: &str, _id: &str, _resource: Value, _if_match: Option<u64>) -> Result<WriteOutcome> {
        unimplemented!()
    }

    /// Conditional update: no match creates, one match updates it, several fail (412).
    pub fn conditional_update(&self, _resource_type: &str, _criteria: &str, _resource: Value) -> Result<WriteOutcome> {
        unimplemented!()
    }

    /// Applies a JSON Patch (RFC 6902) document to the current version and stores the result.
    pub fn patch(&self, _resource_type: &str, _id: &str, _patch: &Value, _if_match: Option<u64>) -> Result<WriteOutcome> {
        unimplemented!()
    }

    /// Deletes (a deletion version is added to history).
    pub fn delete(&self, _resource_type: &str, _id: &str, _if_match: Option<u64>) -> Result<WriteOutcome> {
        unimplemented!()
    }

    /// Conditional delete: deletes every match (zero matches is not an error).
    pub fn conditional_delete(&self, _resource_type: &str, _criteria: &str) -> Result<Vec<WriteOutcome>> {
        unimplemented!()
    }

    /// History entries, newest first.
    pub fn history(&self, query: &HistoryQuery) -> Result<Vec<ResourceVersion>> {
        self.backend.history(query)
    }

    /// Processes a `batch` or `transaction` Bundle and returns the response Bundle.
    pub fn process_bundle(&self, _bundle: Value) -> Result<Value> {
        unimplemented!()
    }

    /// Stores resources that carry their own ids (bulk load, e.g. NDJSON) as creates or
    /// updates, validated, in one transaction; references are not checked.
    pub fn load(&self, _resources: Vec<Value>) -> Result<usize> {
        unimplemented!()
    }
}
