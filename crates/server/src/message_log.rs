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
//! an administrator); without a bearer token the answer is 401, with one that is not an
//! administrator's 403, both as an `OperationOutcome`.

use crate::error::ApiError;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use fhir::IssueCode;
use std::sync::Arc;
use store::messages::{MessageLog, MessageQuery, MessageStatus, StoredMessage};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Why a request for the log was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No valid bearer token (401).
    Unauthenticated,
    /// A valid token, but not an administrator's (403).
    Forbidden,
}

/// Decides whether the bearer token of a request belongs to an administrator.
pub trait AdminGate: Send + Sync + 'static {
    /// `Ok` when `bearer` (the token after `Bearer `, if any) may read the message log.
    fn check(&self, bearer: Option<&str>) -> Result<(), Refusal>;
}

/// Largest page of the message list.
const MAX_COUNT: usize = 1000;

#[derive(Clone)]
struct LogState {
    log: Arc<dyn MessageLog>,
    gate: Arc<dyn AdminGate>,
}

/// The routes of the message log.
pub fn routes(log: Arc<dyn MessageLog>, gate: Arc<dyn AdminGate>) -> Router {
    Router::new()
        .route("/admin/hl7/messages", get(list))
        .route("/admin/hl7/messages/{id}", get(show))
        .with_state(LogState { log, gate })
}

/// The answer refusing the request, or `None` when the gate lets it through.
fn refusal(state: &LogState, headers: &HeaderMap) -> Option<Response> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let refused = state.gate.check(bearer).err()?;
    Some(match refused {
        Refusal::Unauthenticated => {
            let mut response =
                ApiError::new(StatusCode::UNAUTHORIZED, IssueCode::Login, "a bearer token is required").into_response();
            response.headers_mut().insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer"));
            response
        }
        Refusal::Forbidden => {
            ApiError::new(StatusCode::FORBIDDEN, IssueCode::Forbidden, "only administrators may read the message log")
                .into_response()
        }
    })
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

async fn list(State(state): State<LogState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    if let Some(refused) = refusal(&state, &headers) {
        return refused;
    }
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect();
    let query = match query_of(&pairs) {
        Ok(query) => query,
        Err(error) => return error.into_response(),
    };
    let limit = query.limit;
    let log = Arc::clone(&state.log);
    let listed = tokio::task::spawn_blocking(move || log.list(&query)).await;
    let messages = match listed {
        Ok(Ok(messages)) => messages,
        Ok(Err(error)) => return ApiError::from(error).into_response(),
        Err(_) => return ApiError::from(store::Error::Storage("the message log task failed".into())).into_response(),
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
    Json(body).into_response()
}

async fn show(State(state): State<LogState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(refused) = refusal(&state, &headers) {
        return refused;
    }
    let Ok(id) = id.parse::<i64>() else { return ApiError::bad_request("a message id is a number").into_response() };
    let log = Arc::clone(&state.log);
    match tokio::task::spawn_blocking(move || log.get(id)).await {
        Ok(Ok(Some(message))) => {
            let mut body = message_json(&message);
            body["raw"] = serde_json::json!(String::from_utf8_lossy(&message.raw));
            Json(body).into_response()
        }
        Ok(Ok(None)) => ApiError::not_found("no such message in the log").into_response(),
        Ok(Err(error)) => ApiError::from(error).into_response(),
        Err(_) => ApiError::from(store::Error::Storage("the message log task failed".into())).into_response(),
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
