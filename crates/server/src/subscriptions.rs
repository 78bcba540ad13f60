//! The HTTP edge of FHIR Subscriptions (the rules live in the `subscriptions` crate):
//! `Subscription/[id]/$status`, `Subscription/[id]/$events` and the R4 websocket channel
//! (`[base]/$subscription-websocket`: the client sends `bind ID`, is answered `bound ID`, then
//! gets `ping ID` per notification; a secured server wants the bearer token on the upgrade
//! request, and binds only subscriptions the caller may read). Parses, calls the service on
//! the blocking pool, renders.

use crate::caller::Caller;
use crate::extract::Negotiated;
use crate::format::fhir_json_response;
use crate::rest::blocking_checked;
use crate::search::query_pairs;
use crate::{ApiError, AppState};
use ::subscriptions::Service;
use ::subscriptions::spec::Content;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

/// The path of the websocket endpoint under the FHIR base.
pub(crate) const WEBSOCKET_PATH: &str = "/$subscription-websocket";

fn service(state: &AppState) -> Result<Service, ApiError> {
    state.subscriptions().cloned().ok_or_else(|| ApiError::not_found("this server has no subscriptions"))
}

fn checked_id(id: &str) -> Result<(), ApiError> {
    if fhir::reference::is_id(id) { Ok(()) } else { Err(ApiError::bad_request("invalid resource id")) }
}

/// `GET|POST [base]/Subscription/[id]/$status`.
pub(crate) async fn status(
    State(state): State<AppState>,
    Caller(access): Caller,
    Negotiated(query): Negotiated,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    checked_id(&id)?;
    if let Some((name, _)) = query_pairs(&query).iter().find(|(n, _)| n != "_format" && n != "_pretty") {
        return Err(ApiError::bad_request(format!("$status does not take `{name}`")));
    }
    let service = service(&state)?;
    let bundle = blocking_checked(move || Ok(service.status(&access, &id)?)).await?;
    Ok(fhir_json_response(StatusCode::OK, &bundle))
}

/// `GET|POST [base]/Subscription/[id]/$events?eventsSinceNumber=&eventsUntilNumber=&content=`.
pub(crate) async fn events(
    State(state): State<AppState>,
    Caller(access): Caller,
    Negotiated(query): Negotiated,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    checked_id(&id)?;
    let (mut since, mut until, mut content) = (None, None, None);
    for (name, value) in query_pairs(&query) {
        let number = || {
            value
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| ApiError::bad_request(format!("`{name}` must be an event number")))
        };
        match name.as_str() {
            "eventsSinceNumber" => since = Some(number()?),
            "eventsUntilNumber" => until = Some(number()?),
            "content" => {
                content = Some(match value.as_str() {
                    "empty" => Content::Empty,
                    "id-only" => Content::IdOnly,
                    "full-resource" => Content::FullResource,
                    _ => return Err(ApiError::bad_request("`content` must be empty, id-only or full-resource")),
                })
            }
            "_format" | "_pretty" => {}
            _ => return Err(ApiError::bad_request(format!("$events does not take `{name}`"))),
        }
    }
    let service = service(&state)?;
    let bundle = blocking_checked(move || Ok(service.events(&access, &id, since, until, content)?)).await?;
    Ok(fhir_json_response(StatusCode::OK, &bundle))
}

/// `GET [base]/$subscription-websocket` (an upgrade to a websocket).
pub(crate) async fn websocket(
    State(state): State<AppState>,
    Caller(access): Caller,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let service = service(&state)?;
    Ok(upgrade.on_upgrade(move |socket| serve_socket(socket, service, access)))
}

async fn serve_socket(mut socket: WebSocket, service: Service, access: access::Access) {
    let (lines, mut outgoing) = tokio::sync::mpsc::unbounded_channel::<String>();
    loop {
        tokio::select! {
            received = socket.recv() => {
                let text = match received {
                    Some(Ok(Message::Text(text))) => text.as_str().to_string(),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                let Some(id) = text.trim().strip_prefix("bind ").map(|id| id.trim().to_string()) else {
                    if socket.send(Message::Text("error unknown command".into())).await.is_err() {
                        break;
                    }
                    continue;
                };
                let (binding, handle, bind_id) = (service.clone(), access.clone(), id.clone());
                let bound = blocking_checked(move || {
                    let bound = binding.bind(&handle, &bind_id).map_err(ApiError::from);
                    let _ = handle.settle_queued();
                    bound
                })
                .await;
                let answer = match bound {
                    Ok(mut receiver) => {
                        let forward = lines.clone();
                        tokio::spawn(async move {
                            while let Some(line) = receiver.recv().await {
                                if forward.send(line).is_err() {
                                    break;
                                }
                            }
                        });
                        format!("bound {id}")
                    }
                    Err(_) => format!("error {id}"),
                };
                if socket.send(Message::Text(answer.into())).await.is_err() {
                    break;
                }
            }
            Some(line) = outgoing.recv() => {
                if socket.send(Message::Text(line.into())).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// Adds what subscriptions offer to the CapabilityStatement: the websocket URL, the topics,
/// and `$status` / `$events` on Subscription.
pub(crate) fn advertise(state: &AppState, statement: &mut Value) {
    if state.subscriptions().is_none() {
        return;
    }
    let base = state.base_url();
    let websocket = match base.split_once("://") {
        Some(("https", rest)) => format!("wss://{rest}{WEBSOCKET_PATH}"),
        Some((_, rest)) => format!("ws://{rest}{WEBSOCKET_PATH}"),
        None => format!("{base}{WEBSOCKET_PATH}"),
    };
    let Some(rest) = statement.get_mut("rest").and_then(|r| r.get_mut(0)) else { return };
    rest["extension"] = Value::Array(::subscriptions::capability_extensions(&websocket));
    if let Some(resources) = rest.get_mut("resource").and_then(Value::as_array_mut)
        && let Some(subscription) =
            resources.iter_mut().find(|r| r.get("type").and_then(Value::as_str) == Some("Subscription"))
    {
        let operations = subscription.get_mut("operation").and_then(Value::as_array_mut);
        let added = [
            serde_json::json!({"name": "status", "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status"}),
            serde_json::json!({"name": "events", "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events"}),
        ];
        match operations {
            Some(list) => list.extend(added),
            None => subscription["operation"] = Value::Array(added.to_vec()),
        }
        subscription["supportedProfile"] = serde_json::json!([::subscriptions::spec::BACKPORT_PROFILE]);
    }
}
