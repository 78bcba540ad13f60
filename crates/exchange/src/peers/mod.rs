//! Continuum nodes that share a record: the peers a node knows (`registry`: base URL, the
//! client id it has there, its private key), the SMART backend-services client it reaches
//! them with (`client`), the record locator that asks every peer's `Patient/$match` for a
//! local patient (`locate`), the pull that copies a patient's record from a peer (`pull`),
//! and the push of a referral packet to a peer (`push`).
//!
//! What a peer hands out is decided by the peer: its policy and consents apply to this
//! node's client like to any backend service of it, and it audits what the token read. On
//! this side the caller must be able to open the local patient; the operation is noted on
//! the caller's trail, and what is written is written through the door as the job
//! [`PULL_JOB`], audited in its transaction.

mod client;
mod locate;
mod pull;
mod push;
pub mod registry;

pub use client::{CONNECT_TIMEOUT, MAX_ANSWER_BYTES, REQUEST_TIMEOUT};
pub use locate::{Candidate, Located};
pub use pull::PullReport;
pub use push::PushReport;
pub use registry::{DEFAULT_SCOPE, NewPeer, Peer, PeerRegistry, generate_key, public_jwks};

use crate::Result;
use access::Access;
use std::sync::Arc;

/// The job name a pull writes under.
pub const PULL_JOB: &str = "peer-pull";

/// The peers service of one node.
#[derive(Clone)]
pub struct Peers {
    registry: PeerRegistry,
    tokens: Arc<client::TokenCache>,
    base: Option<String>,
}

impl Peers {
    /// The service over `registry`.
    pub fn new(registry: PeerRegistry) -> Peers {
        Peers { registry, tokens: Arc::default(), base: None }
    }

    /// This node's FHIR base URL (what a push names as the source of what it sends).
    pub fn with_base(mut self, base: impl Into<String>) -> Peers {
        self.base = Some(base.into().trim_end_matches('/').to_string());
        self
    }

    fn base(&self) -> Option<&str> {
        self.base.as_deref()
    }

    /// The registered peers.
    pub fn registry(&self) -> &PeerRegistry {
        &self.registry
    }

    /// `Patient/[id]/$locate`: asks every peer's `Patient/$match` for the local patient `id`
    /// (read through `access`); a peer that fails is listed with its error. Blocking.
    pub fn locate(&self, access: &Access, id: &str) -> Result<Vec<Located>> {
        locate::locate(self, access, id)
    }

    /// `Patient/[id]/$pull?peer=NAME`: copies the record of the patient the peer holds for
    /// the local patient `id` (a certain match only). Blocking.
    pub fn pull(&self, access: &Access, id: &str, peer: &str) -> Result<PullReport> {
        pull::pull(self, access, id, peer)
    }

    /// `Patient/[id]/$push?peer=NAME`: sends the referral packet of the local patient `id`
    /// (read through `access`) to the peer as one transaction. Blocking.
    pub fn push(&self, access: &Access, id: &str, peer: &str, reason: Option<&str>) -> Result<PushReport> {
        push::push(self, access, id, peer, reason)
    }

    fn session(&self, peer: Peer) -> Result<client::Session<'_>> {
        client::Session::open(&self.registry, &self.tokens, peer)
    }
}
