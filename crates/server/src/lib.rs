//! The FHIR R4 REST edge: an axum `Router` over [`store::Records`]. Only this crate knows HTTP.
//! Handlers parse the request, call the one write path (or a read) on a blocking thread, and
//! turn the result into a FHIR response; every error leaves as an `OperationOutcome`.

pub mod audit;
mod bulk_data;
mod caller;
mod capability;
mod error;
mod extract;
mod format;
mod headers;
mod history;
mod identity;
mod limits;
mod merge;
pub mod message_log;
mod observe;
mod peers;
mod rest;
mod search;
mod subscriptions;
pub mod tls;

pub use error::ApiError;
pub use headers::APP_CONTENT_SECURITY_POLICY;
pub use limits::RateLimit;
pub use observe::metrics_router;
pub use peers::report_parameters;

use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use store::Records;

/// Limits applied to requests. Every refusal answers an `OperationOutcome`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body accepted, in bytes (bigger ones get 413).
    pub max_body_bytes: usize,
    /// Largest `_count` honoured on search and history; larger ones are lowered to it (and a
    /// search says so in its outcome entry).
    pub max_count: usize,
    /// Most entries a transaction or batch Bundle may have (more get 413 before any is processed).
    pub max_bundle_entries: usize,
    /// Longest a search may run before it is abandoned with 503 and `Retry-After`
    /// (`Duration::MAX`: no limit).
    pub search_timeout: Duration,
    /// Most requests handled at once; more get 503 with `Retry-After` at once (0: no cap).
    pub max_in_flight: usize,
    /// Requests per client IP address; more get 429 with `Retry-After` (`None`: no limit).
    pub rate_limit: Option<RateLimit>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 32 * 1024 * 1024,
            max_count: 1000,
            max_bundle_entries: 10_000,
            search_timeout: Duration::from_secs(10),
            max_in_flight: 1024,
            rate_limit: Some(RateLimit { per_second: 1000, burst: 2000 }),
        }
    }
}

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

struct StateInner {
    records: Records,
    /// The one door every FHIR interaction goes through.
    door: access::Door,
    base_url: String,
    limits: Limits,
    metrics: observe::Metrics,
    /// The HL7 message log and outbox whose sizes `/metrics` reports, when the server has them.
    queues: Option<Queues>,
    /// The access decision; `None`: an open server (tests of the REST layer, benchmarks).
    policy: Option<Arc<policy::Policy>>,
    /// Appends the audit entries of reads, searches and refusals.
    auditor: Option<Arc<access::Auditor>>,
    /// The bearer token `/metrics` asks for, once set.
    metrics_token: std::sync::OnceLock<Vec<u8>>,
    /// Whether `/metrics` is served beside the API (else on a listener of its own).
    metrics_here: std::sync::atomic::AtomicBool,
    /// The Bulk Data jobs, when the server offers Bulk Data.
    bulk: Option<exchange::bulk::Bulk>,
    /// Patient matching (`$match`) and the index of persons.
    identity: Arc<exchange::identity::Identity>,
    /// The master patient index and its review list, when the server keeps one.
    patient_index: Option<exchange::identity::PatientIndex>,
    /// The peer nodes (`$locate`, `$pull`), when the server has them.
    peers: Option<exchange::peers::Peers>,
    /// FHIR Subscriptions' `$status`, `$events` and websocket.
    subscriptions: Option<::subscriptions::Service>,
}

impl StateInner {
    /// The door, once the policy or the auditor changed (a policy without an auditor still
    /// decides; an auditor without a policy has nobody to audit).
    fn rebuild_door(&mut self) {
        self.door = match &self.policy {
            Some(policy) => access::Door::secured(self.records.clone(), policy.clone(), self.auditor.clone()),
            None => access::Door::open(self.records.clone()),
        };
    }
}

/// The interface's queues, for monitoring.
#[derive(Clone)]
struct Queues {
    message_log: Arc<dyn store::MessageLog>,
    outbox: Arc<dyn store::Outbox>,
}

impl AppState {
    /// State serving `records` under `base_url` (e.g. `http://127.0.0.1:8080/fhir`).
    pub fn new(records: Records, base_url: impl Into<String>, limits: Limits) -> Self {
        let base_url = base_url.into().trim_end_matches('/').to_string();
        // Absolute references to this server's own base count as local ones.
        let records = records.with_base(base_url.clone());
        let identity = Arc::new(exchange::identity::Identity::with_defaults(&base_url));
        AppState {
            inner: Arc::new(StateInner {
                door: access::Door::open(records.clone()),
                records,
                base_url,
                limits,
                metrics: observe::Metrics::new(),
                queues: None,
                policy: None,
                auditor: None,
                metrics_token: std::sync::OnceLock::new(),
                metrics_here: std::sync::atomic::AtomicBool::new(true),
                bulk: None,
                identity,
                patient_index: None,
                peers: None,
                subscriptions: None,
            }),
        }
    }

    /// Also reports the sizes of the HL7 message log and of the outbound queue (the backlog
    /// of undelivered messages) on `/metrics`. Call before the state is shared.
    #[allow(clippy::expect_used, reason = "a builder step, called before the state is cloned: the only reference")]
    pub fn with_queues(mut self, message_log: Arc<dyn store::MessageLog>, outbox: Arc<dyn store::Outbox>) -> Self {
        let inner = Arc::get_mut(&mut self.inner).expect("with_queues is called before the state is shared");
        inner.queues = Some(Queues { message_log, outbox });
        self
    }

    /// Puts every FHIR interaction behind `policy`: a bearer token is required, and what it
    /// may reach is checked on every request. Call before the state is shared.
    #[allow(clippy::expect_used, reason = "a builder step, called before the state is cloned: the only reference")]
    pub fn with_policy(mut self, policy: Arc<policy::Policy>) -> Self {
        let inner = Arc::get_mut(&mut self.inner).expect("with_policy is called before the state is shared");
        inner.policy = Some(policy);
        inner.rebuild_door();
        self
    }

    /// Audits every FHIR request through `auditor` (writes are audited by the store, as the
    /// caller). Call before the state is shared.
    #[allow(clippy::expect_used, reason = "a builder step, called before the state is cloned: the only reference")]
    pub fn with_auditor(mut self, auditor: Arc<access::Auditor>) -> Self {
        let inner = Arc::get_mut(&mut self.inner).expect("with_auditor is called before the state is shared");
        inner.auditor = Some(auditor);
        inner.rebuild_door();
        self
    }

    /// Offers Bulk Data (`$export`, `$import`) through `bulk`, whose jobs must enter this
    /// state's door ([`AppState::door`]): call after the policy and the auditor are set, and
    /// before the state is shared.
    #[allow(clippy::expect_used, reason = "a builder step, called before the state is cloned: the only reference")]
    pub fn with_bulk(mut self, bulk: exchange::bulk::Bulk) -> Self {
        let inner = Arc::get_mut(&mut self.inner).expect("with_bulk is called before the state is shared");
        inner.bulk = Some(bulk);
        self
    }

    /// Matches patients with `identity` (its model and person-id system) instead of the
    /// defaults.
    #[allow(clippy::expect_used, reason = "a builder step, called before the state is cloned: the only reference")]
    pub fn with_identity(mut self, identity: Arc<exchange::identity::Identity>) -> Self {
        let inner = Arc::get_mut(&mut self.inner).expect("with_identity is called before the state is shared");
        inner.identity = identity;
        self
    }

    /// Offers the duplicate review work list of `index`.
    #[allow(clippy::expect_used, reason = "a builder step, called before the state is cloned: the only reference")]
    pub fn with_patient_index(mut self, index: exchange::identity::PatientIndex) -> Self {
        let inner = Arc::get_mut(&mut self.inner).expect("with_patient_index is called before the state is shared");
        inner.patient_index = Some(index);
        self
    }

    /// Offers the record locator and the pull from `peers`.
    #[allow(clippy::expect_used, reason = "a builder step, called before the state is cloned: the only reference")]
    pub fn with_peers(mut self, peers: exchange::peers::Peers) -> Self {
        let inner = Arc::get_mut(&mut self.inner).expect("with_peers is called before the state is shared");
        inner.peers = Some(peers);
        self
    }

    /// Offers `Subscription/[id]/$status`, `$events` and the websocket channel of `service`.
    #[allow(clippy::expect_used, reason = "a builder step, called before the state is cloned: the only reference")]
    pub fn with_subscriptions(mut self, service: ::subscriptions::Service) -> Self {
        let inner = Arc::get_mut(&mut self.inner).expect("with_subscriptions is called before the state is shared");
        inner.subscriptions = Some(service);
        self
    }

    fn subscriptions(&self) -> Option<&::subscriptions::Service> {
        self.inner.subscriptions.as_ref()
    }

    fn peers(&self) -> Option<&exchange::peers::Peers> {
        self.inner.peers.as_ref()
    }

    fn patient_index(&self) -> Option<&exchange::identity::PatientIndex> {
        self.inner.patient_index.as_ref()
    }

    fn identity(&self) -> &Arc<exchange::identity::Identity> {
        &self.inner.identity
    }

    fn bulk(&self) -> Option<&exchange::bulk::Bulk> {
        self.inner.bulk.as_ref()
    }

    /// `/metrics` answers only requests with `Authorization: Bearer <token>` (compared in
    /// constant time). The first token set stays; call before serving.
    pub fn with_metrics_token(self, token: impl Into<Vec<u8>>) -> Self {
        let _ = self.inner.metrics_token.set(token.into());
        self
    }

    /// `/metrics` is not served beside the API: serve [`metrics_router`] on a listener of its
    /// own. Call before [`app`] builds the routes.
    pub fn without_metrics_route(self) -> Self {
        self.inner.metrics_here.store(false, std::sync::atomic::Ordering::Relaxed);
        self
    }

    fn metrics_token(&self) -> Option<&[u8]> {
        self.inner.metrics_token.get().map(Vec::as_slice)
    }

    /// The door every FHIR interaction of this server goes through (the web app shares it).
    pub fn door(&self) -> &access::Door {
        &self.inner.door
    }

    fn records(&self) -> &Records {
        &self.inner.records
    }

    fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    fn limits(&self) -> &Limits {
        &self.inner.limits
    }
}

/// The whole HTTP application: the FHIR API under `/fhir`, and `/healthz`, `/readyz` and
/// `/metrics` for operators.
pub fn app(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/healthz", axum::routing::get(observe::healthz))
        .route("/readyz", axum::routing::get(observe::readyz));
    if state.inner.metrics_here.load(std::sync::atomic::Ordering::Relaxed) {
        router = router.route("/metrics", axum::routing::get(observe::metrics));
    }
    router
        .nest("/fhir", rest::routes().layer(axum::middleware::from_fn_with_state(state.clone(), audit::audit)))
        // Transactions and batches are posted to the base, which clients spell with or without `/`.
        .route(
            "/fhir/",
            axum::routing::get(rest::search_system)
                .post(rest::system_bundle)
                .layer(axum::middleware::from_fn_with_state(state.clone(), audit::audit)),
        )
        .fallback(rest::not_found)
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, Router::new(), shutdown).await
}

/// Like [`serve`], with `extra` routes merged beside the FHIR API (the authorization
/// server's endpoints, which live in their own crate). `extra` must have no fallback.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: AppState,
    extra: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, protected(state, extra).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves `/metrics` of `state` alone on `listener` (plain HTTP, e.g. on an address only the
/// monitoring network reaches) until `shutdown` resolves. Build `state`'s main listener
/// with [`AppState::without_metrics_route`] then.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = metrics_router(state).layer(axum::middleware::from_fn(headers::secure));
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}

/// Like [`serve_with`], over TLS with `tls` (see [`tls::config_from_pem`]): HTTPS only on
/// this listener; plain HTTP to it fails at the handshake.
pub async fn serve_tls_with(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: AppState,
    extra: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tls::serve(listener, tls, protected(state, extra), shutdown).await
}

/// The application with `extra` merged, behind the limits and the metrics, every answer with
/// its security headers (`headers.rs`).
fn protected(state: AppState, extra: Router) -> Router {
    let limits = state.limits().clone();
    limits::protect(app(state.clone()).merge(extra), &limits)
        .layer(axum::middleware::from_fn_with_state(state, observe::track))
        .layer(axum::middleware::from_fn(headers::secure))
}
