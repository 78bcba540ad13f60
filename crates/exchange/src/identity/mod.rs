//! Patient identity across organizations: the matcher behind `Patient/$match` (the
//! [`matching`] model run over the store's indexes, through the door), the master patient
//! index that links the records of one person as they are written (`index`), and the
//! duplicate review work list (`review`), and the merge and unmerge of two records of one
//! person (`merge`: `Patient/$merge`, HL7 A40).

mod frequencies;
pub mod index;
mod matcher;
pub mod merge;
pub mod review;

pub use index::{Decision, Pass, PatientIndex, may_review};
pub use matcher::{MAX_COUNT, Match, MatchAnswer, MatchRequest};
pub use merge::{MergeOutcome, MergeRequest, MergedPatients, UnmergeOutcome, merge, unmerge};
pub use review::{ReviewItem, ReviewList, Status};

use access::Access;
use frequencies::Frequencies;
use matching::Model;
use serde_json::Value;

/// The identifier system of the person ids this installation's index gives (its base URL
/// with this path: `https://ehr.example.org/fhir/person-id`), unless configured.
pub const ENTERPRISE_SYSTEM_PATH: &str = "/person-id";

/// The identity service: the model and the name frequencies it weighs by.
pub struct Identity {
    model: Model,
    enterprise_system: String,
    frequencies: Frequencies,
    reveal_outside_reach: bool,
}

impl Identity {
    /// The service with `model`, giving person ids under `enterprise_system`.
    pub fn new(model: Model, enterprise_system: impl Into<String>) -> Identity {
        Identity {
            model,
            enterprise_system: enterprise_system.into(),
            frequencies: Frequencies::default(),
            reveal_outside_reach: false,
        }
    }

    /// Lets registration staff and administrators learn that a `$match` also matched records
    /// outside their reach (how many, never whom), so that they do not register a duplicate;
    /// off unless the installation turns it on.
    pub fn reveal_matches_outside_reach(mut self, reveal: bool) -> Identity {
        self.reveal_outside_reach = reveal;
        self
    }

    /// The default model, with person ids under `base_url` + [`ENTERPRISE_SYSTEM_PATH`].
    pub fn with_defaults(base_url: &str) -> Identity {
        Identity::new(Model::default(), format!("{}{ENTERPRISE_SYSTEM_PATH}", base_url.trim_end_matches('/')))
    }

    /// The model in use.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The system of the person ids.
    pub fn enterprise_system(&self) -> &str {
        &self.enterprise_system
    }

    /// The records matching `request.patient` that the caller may see, best first
    /// (`Patient/$match`).
    pub fn find(&self, access: &Access, request: &MatchRequest) -> crate::Result<MatchAnswer> {
        matcher::find(self, access, request)
    }

    /// Reads the `Parameters` of a `Patient/$match` request (or a bare Patient).
    pub fn request_of(body: Value) -> crate::Result<MatchRequest> {
        MatchRequest::from_parameters(body)
    }
}
