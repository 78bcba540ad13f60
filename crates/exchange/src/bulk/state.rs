//! A bulk job's state as kept in the store ([`store::JobStore`], as JSON), and its owner.

use access::{Access, Who};
use serde::{Deserialize, Serialize};

/// The kind of a bulk job in the store.
pub(crate) const KIND: &str = "bulk";

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Phase {
    /// Running (or waiting to run).
    InProgress,
    /// Done: the manifest is ready and the files are served.
    Complete,
    /// Stopped by an error; `failure` says why.
    Failed,
}

/// What a job does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "operation")]
pub(crate) enum Operation {
    /// `$export`.
    Export(super::export::ExportRequest),
    /// `$import`.
    Import(super::import::ImportPlan),
}

/// One file a job wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OutputFile {
    /// The resource type of its lines (`OperationOutcome` for error files).
    #[serde(rename = "type")]
    pub resource_type: String,
    /// Its name in the job's folder.
    pub file: String,
    /// How many lines it holds.
    pub count: u64,
}

/// A job's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JobState {
    /// What it does.
    pub operation: Operation,
    /// Who asked ([`owner_of`]); only they see its status and files.
    pub owner: String,
    /// The kick-off request's URL.
    pub request: String,
    /// Where it stands.
    pub phase: Phase,
    /// The instant the export's snapshot stands at (the import's kick-off), as FHIR `instant`.
    pub transaction_time: String,
    /// The store's cut at `transaction_time` (exports).
    pub cut: i64,
    /// A short text for `X-Progress`.
    pub progress: String,
    /// The files of resources written (exports) or the counts written per type (imports).
    pub output: Vec<OutputFile>,
    /// The files of OperationOutcomes (refused lines, types not readable).
    pub error: Vec<OutputFile>,
    /// Why it failed.
    pub failure: Option<String>,
    /// When its files and state are deleted (Unix seconds), once complete or failed.
    pub expires_at: Option<i64>,
}

/// The owner of the jobs a caller starts: the same person or app, whatever token it uses
/// next.
pub(crate) fn owner_of(access: &Access) -> String {
    match access.who() {
        Who::Anyone => "anyone".into(),
        Who::Job(name) => format!("job:{name}"),
        Who::Caller { caller, .. } => {
            let principal = &caller.principal;
            let subject = match &principal.subject {
                auth::Subject::User { id, .. } => format!("user:{id}"),
                auth::Subject::Service { client_id } => format!("service:{client_id}"),
            };
            match &principal.client_id {
                Some(client) => format!("{subject}|{client}"),
                None => subject,
            }
        }
    }
}
