//! Back-pressure at the door: a per-client rate limit (429) and a cap on requests in flight
//! (503), both answered at once with `Retry-After` and an `OperationOutcome`, so an overloaded
//! server sheds work instead of queueing it without bound. Body size, Bundle size, `_count` and
//! the search timeout are checked where those requests are handled.

use crate::{ApiError, Limits};
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fhir::IssueCode;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Requests a client may make, per client IP address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests allowed at once above the sustained rate.
    pub burst: u32,
}

/// Client addresses remembered before the idle ones are forgotten.
const FORGET_ABOVE: usize = 10_000;

struct Guards {
    rate: Option<(DefaultKeyedRateLimiter<IpAddr>, DefaultClock)>,
    checks: AtomicU64,
    in_flight: Option<Arc<Semaphore>>,
}

/// Wraps `router` in the rate limit and the in-flight cap of `limits`.
pub(crate) fn protect(router: Router, limits: &Limits) -> Router {
    let rate = limits.rate_limit.and_then(|rate| {
        let per_second = NonZeroU32::new(rate.per_second)?;
        let burst = NonZeroU32::new(rate.burst).unwrap_or(per_second);
        let quota = Quota::per_second(per_second).allow_burst(burst);
        Some((DefaultKeyedRateLimiter::keyed(quota), DefaultClock::default()))
    });
    let in_flight = (limits.max_in_flight > 0).then(|| Arc::new(Semaphore::new(limits.max_in_flight)));
    if rate.is_none() && in_flight.is_none() {
        return router;
    }
    let guards = Arc::new(Guards { rate, checks: AtomicU64::new(0), in_flight });
    router.layer(axum::middleware::from_fn_with_state(guards, guard))
}

async fn guard(State(guards): State<Arc<Guards>>, request: Request, next: Next) -> Response {
    if let Some((limiter, clock)) = &guards.rate
        && let Some(ConnectInfo(client)) = request.extensions().get::<ConnectInfo<SocketAddr>>()
    {
        if guards.checks.fetch_add(1, Ordering::Relaxed) % 1024 == 0 && limiter.len() > FORGET_ABOVE {
            limiter.retain_recent();
        }
        if let Err(not_until) = limiter.check_key(&client.ip()) {
            let wait = not_until.wait_time_from(clock.now());
            let error = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                IssueCode::Throttled,
                "too many requests from this client; retry later",
            );
            return with_retry_after(error, wait);
        }
    }
    let _permit = match &guards.in_flight {
        Some(semaphore) => match Arc::clone(semaphore).try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                let error = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    IssueCode::Transient,
                    "the server is at its limit of requests in progress; retry later",
                );
                return with_retry_after(error, Duration::from_secs(1));
            }
        },
        None => None,
    };
    next.run(request).await
}

/// The error's response with `Retry-After` in whole seconds (at least 1).
fn with_retry_after(error: ApiError, wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = error.into_response();
    if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// 503 for a search that ran past the limit.
pub(crate) fn search_timed_out() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        IssueCode::TooCostly,
        "the search took longer than this server allows; narrow it or retry later",
    )
}
