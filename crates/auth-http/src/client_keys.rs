//! The keys of backend clients that publish them at a `jwks_uri`: fetched before their
//! assertion is checked (the check itself, in `auth`, runs on a blocking thread and does no I/O
//! but the store's).

use auth::Authority;
use std::sync::Arc;
use std::time::Duration;

/// How long a client's `jwks_uri` may take to answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Fetches the JWK Set of the client named by an assertion, if it publishes one at a
/// `jwks_uri` and no fresh copy is kept, and hands it to the authority. A fetch that fails is
/// logged (without the address) and the assertion is then refused for want of a key.
pub(crate) async fn prefetch(authority: &Arc<Authority>, assertion: &str, client_id: Option<&str>) {
    let (assertion, client_id) = (assertion.to_string(), client_id.map(str::to_string));
    // A blocking store call: off the async threads (the PostgreSQL client blocks on a runtime
    // of its own, which cannot run inside this one).
    let Ok(Ok(Some((client_id, uri)))) =
        crate::blocking(authority, move |a| a.jwks_to_fetch(&assertion, client_id.as_deref())).await
    else {
        return;
    };
    let fetched = async {
        let http = reqwest::Client::builder().timeout(FETCH_TIMEOUT).build().ok()?;
        http.get(&uri).send().await.ok()?.error_for_status().ok()?.json::<serde_json::Value>().await.ok()
    }
    .await;
    match fetched {
        Some(jwks) => authority.remember_jwks(client_id, jwks),
        None => tracing::warn!("cannot fetch a client's jwks_uri"),
    }
}
