//! Health, readiness and metrics for operators:
//!
//! - `GET /healthz` — the process answers (200).
//! - `GET /readyz` — the store answers a read (200), else 503 with an `OperationOutcome`.
//! - `GET /metrics` — OpenMetrics text (which Prometheus scrapes): requests by FHIR interaction
//!   and status, their latency histogram by interaction, requests in flight, and the HL7
//!   message log and outbound queue by status.
//!
//! Labels never carry ids, values or query strings: the interaction is classified from the
//! method and the shape of the path, so the label sets stay small and free of patient data.
//!
//! A scrape answers from memory: the request figures are counters kept as requests pass, and
//! the queue gauges are counted (through the status indexes) at most once per
//! [`QUEUE_COUNT_EVERY`], however often anyone scrapes. There is no count of live resources
//! per type: it scanned the whole store on every scrape (a cheap way to load the database
//! from outside), and a count kept in memory from this process's writes would drift from the
//! truth as soon as another server sharing the PostgreSQL database, `continuum import` or a
//! rolled-back transaction wrote, which is where it would be read. Authorized users count
//! resources with FHIR (`GET /fhir/Patient?_summary=count`); the database's own statistics
//! give operators table sizes.
//!
//! `/metrics` may be served on a listener of its own ([`metrics_router`], `continuum serve
//! --metrics-listen`) rather than beside the API, and may ask for a bearer token
//! ([`crate::AppState::with_metrics_token`], `--metrics-token-file`), compared in constant
//! time.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fhir::IssueCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The least time between two counts of the HL7 queues.
pub const QUEUE_COUNT_EVERY: Duration = Duration::from_secs(15);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    interaction: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InteractionLabels {
    interaction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

/// Upper bounds of the latency buckets, in seconds (0.5 ms to 10 s).
const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The server's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<InteractionLabels, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
    hl7_messages: Family<StatusLabels, Gauge>,
    outbox: Family<StatusLabels, Gauge>,
    bulk_jobs: Gauge,
    bulk_exported: Gauge,
    bulk_imported: Gauge,
    /// When the queues were last counted (`None`: never).
    queues_counted: Mutex<Option<Instant>>,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("continuum");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered, by FHIR interaction and status", requests.clone());
        let durations = Family::<InteractionLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests, by FHIR interaction",
            durations.clone(),
        );
        let in_flight = Gauge::default();
        registry.register("http_requests_in_flight", "HTTP requests being handled", in_flight.clone());
        let hl7_messages = Family::<StatusLabels, Gauge>::default();
        registry.register("hl7_messages", "HL7 v2 messages in the message log, by status", hl7_messages.clone());
        let outbox = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "outbox_messages",
            "Outbound HL7 v2 messages, by status (pending is the backlog still to deliver)",
            outbox.clone(),
        );
        let bulk_jobs = Gauge::default();
        registry.register("bulk_jobs_running", "Bulk Data export and import jobs running", bulk_jobs.clone());
        let bulk_exported = Gauge::default();
        registry.register(
            "bulk_exported_resources",
            "Resources written into Bulk Data export files since the server started",
            bulk_exported.clone(),
        );
        let bulk_imported = Gauge::default();
        registry.register(
            "bulk_imported_resources",
            "Resources written by Bulk Data imports since the server started",
            bulk_imported.clone(),
        );
        Metrics {
            registry,
            requests,
            durations,
            in_flight,
            hl7_messages,
            outbox,
            bulk_jobs,
            bulk_exported,
            bulk_imported,
            queues_counted: Mutex::new(None),
        }
    }
}

/// Counts and times every request (the outermost layer, so refusals by the limits count too).
pub(crate) async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let interaction = interaction(request.method(), request.uri().path());
    let metrics = &state.inner.metrics;
    metrics.in_flight.inc();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.in_flight.dec();
    metrics.durations.get_or_create(&InteractionLabels { interaction }).observe(started.elapsed().as_secs_f64());
    metrics.requests.get_or_create(&RequestLabels { interaction, status: response.status().as_u16() }).inc();
    response
}

pub(crate) async fn healthz() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "{\"status\":\"pass\"}").into_response()
}

pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let records = state.records().clone();
    let probe = tokio::task::spawn_blocking(move || records.backend().current("Patient", "readiness-probe")).await;
    match probe {
        Ok(Ok(_)) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "{\"status\":\"pass\"}").into_response()
        }
        _ => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, IssueCode::Transient, "the store does not answer")
            .into_response(),
    }
}

pub(crate) async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(token) = state.metrics_token()
        && !bearer_matches(&headers, token)
    {
        let mut refusal =
            ApiError::new(StatusCode::UNAUTHORIZED, IssueCode::Login, "the metrics token is missing or wrong")
                .into_response();
        refusal.headers_mut().insert(header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        return refusal;
    }
    if let Some(queues) = state.inner.queues.clone()
        && state.inner.metrics.queues_due()
    {
        let counted = tokio::task::spawn_blocking(move || {
            Ok::<_, store::Error>((queues.message_log.count_by_status()?, queues.outbox.count_by_status()?))
        })
        .await;
        if let Ok(Ok((messages, outbound))) = counted {
            let metrics = &state.inner.metrics;
            // Every status is reported, 0 when none is in it, so that a drained queue reads 0.
            for status in store::MessageStatus::ALL {
                let n = messages.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n);
                metrics.hl7_messages.get_or_create(&StatusLabels { status: status.as_str() }).set(clamp(n));
            }
            for status in store::outbox::OutboundStatus::ALL {
                let n = outbound.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n);
                metrics.outbox.get_or_create(&StatusLabels { status: status.as_str() }).set(clamp(n));
            }
        }
    }
    if let Some(bulk) = state.bulk() {
        use std::sync::atomic::Ordering::Relaxed;
        let (counters, metrics) = (bulk.metrics(), &state.inner.metrics);
        metrics.bulk_jobs.set(clamp(counters.running.load(Relaxed)));
        metrics.bulk_exported.set(clamp(counters.exported.load(Relaxed)));
        metrics.bulk_imported.set(clamp(counters.imported.load(Relaxed)));
    }
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &state.inner.metrics.registry).is_err() {
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, IssueCode::Exception, "metrics could not be encoded")
            .into_response();
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
        .into_response()
}

impl Metrics {
    /// Whether the queues are due to be counted again; if so, notes that they are being.
    fn queues_due(&self) -> bool {
        let mut last = self.queues_counted.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < QUEUE_COUNT_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }
}

/// Whether the request carries `Authorization: Bearer <token>`, compared in constant time.
fn bearer_matches(headers: &axum::http::HeaderMap, token: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let Some(given) =
        headers.get(header::AUTHORIZATION).and_then(|v| v.as_bytes().strip_prefix(b"Bearer ")).map(<[u8]>::trim_ascii)
    else {
        return false;
    };
    // `ct_eq` of slices of different lengths is false without looking at the contents: the
    // length may show, the token does not.
    bool::from(given.ct_eq(token))
}

/// `/metrics` alone, for a listener of its own (`continuum serve --metrics-listen`).
pub fn metrics_router(state: AppState) -> axum::Router {
    axum::Router::new().route("/metrics", axum::routing::get(metrics)).with_state(state)
}

fn clamp(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// The FHIR interaction a request is, from its method and the shape of its path only.
pub(crate) fn interaction(method: &Method, path: &str) -> &'static str {
    let Some(rest) = path.strip_prefix("/fhir") else {
        return match path {
            "/healthz" | "/readyz" | "/metrics" => "health",
            p if p.starts_with("/auth/") => "auth",
            p if p.starts_with("/admin/") => "admin",
            _ => "other",
        };
    };
    if !rest.is_empty() && !rest.starts_with('/') {
        return "other";
    }
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    if parts.first().is_some_and(|p| *p == ".well-known") {
        return "auth";
    }
    if parts.last().is_some_and(|p| p.starts_with('$')) {
        return "operation";
    }
    let (get, post, put, delete, patch) = (
        method == Method::GET,
        method == Method::POST,
        method == Method::PUT,
        method == Method::DELETE,
        method == Method::PATCH,
    );
    match parts.as_slice() {
        ["bulk-status" | "bulk-files", ..] => "operation",
        [] if post => "batch-transaction",
        [] if get => "search-system",
        ["metadata"] if get => "capabilities",
        ["_history"] if get => "history-system",
        [_, "_search"] if get || post => "search-type",
        [_, "_history"] if get => "history-type",
        [_] if get => "search-type",
        [_] if post => "create",
        [_] if put => "update",
        [_] if delete => "delete",
        [_] if patch => "patch",
        [_, _] if get => "read",
        [_, _] if put => "update",
        [_, _] if delete => "delete",
        [_, _] if patch => "patch",
        [_, _, "_history"] if get => "history-instance",
        [_, _, "_history", _] if get => "vread",
        [_, _, _] if get => "search-compartment",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::interaction;
    use axum::http::Method;

    #[test]
    fn interactions_from_method_and_path_shape() {
        let cases = [
            (Method::GET, "/fhir/Patient/123", "read"),
            (Method::GET, "/fhir/Patient/123/_history/2", "vread"),
            (Method::GET, "/fhir/Patient/123/_history", "history-instance"),
            (Method::GET, "/fhir/Patient/_history", "history-type"),
            (Method::GET, "/fhir/_history", "history-system"),
            (Method::GET, "/fhir/Patient", "search-type"),
            (Method::POST, "/fhir/Patient/_search", "search-type"),
            (Method::GET, "/fhir/Patient/123/Observation", "search-compartment"),
            (Method::GET, "/fhir", "search-system"),
            (Method::POST, "/fhir/", "batch-transaction"),
            (Method::POST, "/fhir/Patient", "create"),
            (Method::PUT, "/fhir/Patient/1", "update"),
            (Method::PUT, "/fhir/Patient", "update"),
            (Method::DELETE, "/fhir/Patient/1", "delete"),
            (Method::PATCH, "/fhir/Patient/1", "patch"),
            (Method::GET, "/fhir/metadata", "capabilities"),
            (Method::GET, "/fhir/Patient/1/$everything", "operation"),
            (Method::POST, "/fhir/Patient/$validate", "operation"),
            (Method::GET, "/fhir/.well-known/smart-configuration", "auth"),
            (Method::POST, "/auth/token", "auth"),
            (Method::GET, "/admin/hl7/messages", "admin"),
            (Method::GET, "/metrics", "health"),
            (Method::GET, "/fhirx/Patient", "other"),
            (Method::GET, "/etc/passwd", "other"),
        ];
        for (method, path, expected) in cases {
            assert_eq!(interaction(&method, path), expected, "{method} {path}");
        }
    }
}
