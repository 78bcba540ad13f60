//! The HL7 v2 message log for administrators over HTTP (`continuum hl7 list` is the same on the
//! command line):
//!
//! - `GET /admin/hl7/messages?status=&patient=&type=&since=&_count=&before=` — messages newest
//!   first, without their content, filtered by status (repeatable or comma-separated:
//!   `received processed failed rejected duplicate`, or `dead-letter` for failed and rejected),
//!   Patient id, message type (`ADT^A01`, or `ADT` for every ADT trigger) and receipt time
//!   (`since`: a date or an RFC 3339 instant); a `next` link pages on by id.
//! - `GET /admin/hl7/messages/{id}` — one message with its raw content.
//!
//! Who may look is decided by the binary's [`AdminGate`] (the authorization server knows who is
//! an administrator and what a token's scopes are: `continuum serve` asks for an administrator's
//! token carrying the scope [`SCOPE`]); without a bearer token the answer is 401, with one that
//! may not look 403, both as an `OperationOutcome`.
//!
//! Every request is audited when the routes are given an [`Auditor`]: an `AuditEvent` (subtype
//! `hl7-message-log` of `urn:continuum:audit`) naming who asked, from where, the query or the
//! message's patient, and the outcome (refusals included).

use crate::error::ApiError;
use access::Auditor;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use fhir::IssueCode;
use std::net::SocketAddr;
use std::sync::Arc;
use store::audit::{Action, Agent, Happening, Outcome, Subtype};
use store::messages::{MessageLog, MessageQuery, MessageStatus, StoredMessage};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The scope a token needs, besides its user's administrator role, to read the message log:
/// the log holds whole messages, so reading it is granted on purpose, never with the role alone.
pub const SCOPE: &str = "user/hl7-messages.read";

/// Why a request for the log was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// No valid bearer token (401).
    Unauthenticated,
    /// A valid token that may not read the log (403); the caller, for the audit trail.
    Forbidden(Agent),
}

/// Decides whether the bearer token of a request may read the message log.
pub trait AdminGate: Send + Sync + 'static {
    /// The caller (for the audit trail) when `bearer` (the token after `Bearer `, if any) may
    /// read the message log.
    fn check(&self, bearer: Option<&str>) -> Result<Agent, Refusal>;
}

/// Largest page of the message list.
const MAX_COUNT: usize = 1000;

#[derive(Clone)]
struct LogState {
    log: Arc<dyn MessageLog>,
    gate: Arc<dyn AdminGate>,
    auditor: Option<Arc<Auditor>>,
}

/// The routes of the message log; every request is audited through `auditor` when given.
pub fn routes(log: Arc<dyn MessageLog>, gate: Arc<dyn AdminGate>, auditor: Option<Arc<Auditor>>) -> Router {
    Router::new()
        .route("/admin/hl7/messages", get(list))
        .route("/admin/hl7/messages/{id}", get(show))
        .with_state(LogState { log, gate, auditor })
}

/// The caller when the gate lets the request through, else the answer refusing it (audited).
async fn admit(
    state: &LogState,
    headers: &HeaderMap,
    extensions: &Extensions,
    query: Option<&str>,
) -> Result<Agent, Response> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let address = extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
    let refused = match state.gate.check(bearer) {
        Ok(mut actor) => {
            actor.address = address;
            return Ok(actor);
        }
        Err(refused) => refused,
    };
    let (actor, response) = match refused {
        Refusal::Unauthenticated => {
            let mut response =
                ApiError::new(StatusCode::UNAUTHORIZED, IssueCode::Login, "a bearer token is required").into_response();
            response.headers_mut().insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer"));
            (Agent { name: "unauthenticated".into(), ..Agent::default() }, response)
        }
        Refusal::Forbidden(actor) => {
            let text = "reading the message log needs an administrator's token with the scope user/hl7-messages.read";
            (actor, ApiError::new(StatusCode::FORBIDDEN, IssueCode::Forbidden, text).into_response())
        }
    };
    let actor = Agent { address, ..actor };
    Err(answered(state, &actor, Outcome::MinorFailure, query, None, response).await)
}

/// Appends the access to the audit trail (when the routes have an auditor), then answers with
/// `response` — or 503 when the entry could not be appended: nothing is served unaudited.
async fn answered(
    state: &LogState,
    actor: &Agent,
    outcome: Outcome,
    query: Option<&str>,
    patient: Option<&str>,
    response: Response,
) -> Response {
    let Some(auditor) = &state.auditor else { return response };
    let happening = Happening {
        action: Action::Read,
        subtype: Subtype::Continuum("hl7-message-log"),
        outcome,
        entities: &[],
        query,
        patient,
        reason: None,
    };
    match auditor.record(vec![store::audit::event(actor, &happening, OffsetDateTime::now_utc())]).await {
        Ok(()) => response,
        Err(unavailable) => crate::ApiError::from(unavailable).into_response(),
    }
}

/// The error of a message-log lookup whose blocking task failed.
fn task_failed() -> store::Error {
    store::Error::Storage("the message log task failed".into())
}

/// Parses `since`: an RFC 3339 instant or a date (midnight UTC).
pub fn parse_since(text: &str) -> Option<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(t);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, &format).ok().map(|d| d.midnight().assume_utc())
}

fn query_of(pairs: &[(String, String)]) -> Result<MessageQuery, ApiError> {
    let mut query = MessageQuery { limit: 100, ..MessageQuery::default() };
    for (name, value) in pairs {
        match name.as_str() {
            "status" => {
                for status in value.split(',') {
                    if status == "dead-letter" {
                        query.statuses.extend([MessageStatus::Failed, MessageStatus::Rejected]);
                    } else {
                        let parsed = MessageStatus::parse(status)
                            .ok_or_else(|| ApiError::bad_request("unknown status in `status`"))?;
                        query.statuses.push(parsed);
                    }
                }
            }
            "patient" => query.patient = Some(value.clone()),
            "type" => query.message_type = Some(value.clone()),
            "since" => {
                query.since = Some(
                    parse_since(value)
                        .ok_or_else(|| ApiError::bad_request("`since` wants YYYY-MM-DD or an RFC 3339 instant"))?,
                );
            }
            "before" => {
                query.before_id =
                    Some(value.parse().map_err(|_| ApiError::bad_request("`before` wants a message id"))?);
            }
            "_count" => {
                let count: usize = value.parse().map_err(|_| ApiError::bad_request("`_count` wants a number"))?;
                query.limit = count.clamp(1, MAX_COUNT);
            }
            _ => return Err(ApiError::bad_request("unknown parameter (status, patient, type, since, before, _count)")),
        }
    }
    Ok(query)
}

async fn list(
    State(state): State<LogState>,
    headers: HeaderMap,
    extensions: Extensions,
    RawQuery(raw): RawQuery,
) -> Response {
    let raw = raw.unwrap_or_default();
    let actor = match admit(&state, &headers, &extensions, Some(&raw)).await {
        Ok(actor) => actor,
        Err(refused) => return refused,
    };
    let pairs: Vec<(String, String)> =
        form_urlencoded::parse(raw.as_bytes()).map(|(n, v)| (n.into_owned(), v.into_owned())).collect();
    let query = match query_of(&pairs) {
        Ok(query) => query,
        Err(error) => {
            return answered(&state, &actor, Outcome::MinorFailure, Some(&raw), None, error.into_response()).await;
        }
    };
    let patient = query.patient.clone();
    let limit = query.limit;
    let log = Arc::clone(&state.log);
    let listed = tokio::task::spawn_blocking(move || log.list(&query)).await.unwrap_or_else(|_| Err(task_failed()));
    let messages = match listed {
        Ok(messages) => messages,
        Err(error) => {
            let refused = ApiError::from(error).into_response();
            return answered(&state, &actor, Outcome::SeriousFailure, Some(&raw), patient.as_deref(), refused).await;
        }
    };
    let mut body = serde_json::json!({"messages": messages.iter().map(message_json).collect::<Vec<_>>()});
    if messages.len() == limit
        && let Some(last) = messages.last()
    {
        // Same filters, older messages.
        let mut next = form_urlencoded::Serializer::new(String::new());
        next.extend_pairs(pairs.iter().filter(|(name, _)| name != "before"));
        next.append_pair("before", &last.id.to_string());
        body["next"] = serde_json::json!(format!("/admin/hl7/messages?{}", next.finish()));
    }
    answered(&state, &actor, Outcome::Success, Some(&raw), patient.as_deref(), Json(body).into_response()).await
}

async fn show(
    State(state): State<LogState>,
    headers: HeaderMap,
    extensions: Extensions,
    Path(id): Path<String>,
) -> Response {
    // The audit names the message asked for in its query text.
    let asked = format!("id={}", form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>());
    let actor = match admit(&state, &headers, &extensions, Some(&asked)).await {
        Ok(actor) => actor,
        Err(refused) => return refused,
    };
    let Ok(id) = id.parse::<i64>() else {
        return answered(
            &state,
            &actor,
            Outcome::MinorFailure,
            Some(&asked),
            None,
            ApiError::bad_request("a message id is a number").into_response(),
        )
        .await;
    };
    let log = Arc::clone(&state.log);
    match tokio::task::spawn_blocking(move || log.get(id)).await.unwrap_or_else(|_| Err(task_failed())) {
        Ok(Some(message)) => {
            let mut body = message_json(&message);
            body["raw"] = serde_json::json!(String::from_utf8_lossy(&message.raw));
            let patient = message.outcome.patient.as_deref();
            answered(&state, &actor, Outcome::Success, Some(&asked), patient, Json(body).into_response()).await
        }
        Ok(None) => {
            answered(
                &state,
                &actor,
                Outcome::MinorFailure,
                Some(&asked),
                None,
                ApiError::not_found("no such message in the log").into_response(),
            )
            .await
        }
        Err(error) => {
            answered(&state, &actor, Outcome::SeriousFailure, Some(&asked), None, ApiError::from(error).into_response())
                .await
        }
    }
}

/// An instant as RFC 3339 text (the API's and the CLI's form).
pub fn time_text(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// A logged message as JSON, without its raw content (the API and `continuum hl7 list --json`).
pub fn message_json(m: &StoredMessage) -> serde_json::Value {
    serde_json::json!({
        "id": m.id,
        "partner": m.partner,
        "receivedAt": time_text(m.received_at),
        "updatedAt": time_text(m.updated_at),
        "sender": m.sender,
        "controlId": m.control_id,
        "type": m.message_type,
        "status": m.status.as_str(),
        "attempts": m.attempts,
        "ack": m.outcome.ack_code,
        "error": m.outcome.error,
        "patient": m.outcome.patient,
        "resources": m.outcome.resources,
        "duplicateOf": m.outcome.duplicate_of,
    })
}
