//! What the whole-flow tests share: an authorization server on 127.0.0.1:0, a browser on its
//! forms, PKCE.
#![allow(dead_code)] // each test file uses its own part of this

use auth::{AuthConfig, Authority, ClientKind, Identity, NewClient, NewUser, Role};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand_core::OsRng;
use serde_json::{Value, json};
use sha2::Digest;
use std::net::SocketAddr;
use std::sync::Arc;

pub const REDIRECT: &str = "http://app.example/callback";
pub const PASSWORD: &str = "a long enough password";

pub struct Server {
    /// `http://127.0.0.1:PORT`, where requests go.
    pub base: String,
    /// The FHIR base URL the authority serves (the `aud`).
    pub fhir: String,
    pub authority: Arc<Authority>,
    pub http: reqwest::Client,
    _place: Place,
}

/// Where an authority keeps its data; clones share it (a restart, a second server).
#[derive(Clone)]
pub enum Place {
    /// `auth.db` in a temporary directory.
    Dir(Arc<tempfile::TempDir>),
    /// A PostgreSQL database, and the directory of the secrets key its servers share.
    Postgres(String, Arc<tempfile::TempDir>),
}

impl Place {
    pub fn new_dir() -> Place {
        Place::Dir(Arc::new(tempfile::tempdir().unwrap()))
    }

    pub fn postgres(url: &str) -> Place {
        Place::Postgres(url.to_string(), Arc::new(tempfile::tempdir().unwrap()))
    }
}

/// A fresh authorization server with the default settings.
pub async fn start() -> Server {
    let (server, admin) = serve(Place::new_dir(), |_| {}).await;
    assert!(admin, "first start creates the administrator");
    server
}

/// An authorization server on `place` with settings changed by `configure`, served with the
/// client's address (as `continuum serve` does); also whether it created the administrator.
pub async fn serve(place: Place, configure: impl FnOnce(&mut AuthConfig) + Send + 'static) -> (Server, bool) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = AuthConfig::new(format!("{base}/fhir"));
    configure(&mut config);
    let fhir = config.fhir_base_url.clone();
    let opened = place.clone();
    // Off the async threads: the PostgreSQL client blocks on a runtime of its own.
    let (authority, admin) = tokio::task::spawn_blocking(move || match &opened {
        Place::Dir(dir) => store_sqlite::auth::open_authority(dir.path(), config),
        Place::Postgres(url, keys) => {
            store_postgres::auth::open_authority(url, &keys.path().join("secrets.key"), config)
        }
    })
    .await
    .unwrap()
    .unwrap();
    let authority = Arc::new(authority);
    let app = auth_http::router(Arc::clone(&authority));
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap()
    });
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    (Server { base, fhir, authority, http, _place: place }, admin.is_some())
}

impl Server {
    pub fn add_patient_user(&self, username: &str, patient: &str) {
        self.authority
            .add_user(NewUser {
                username: username.into(),
                identity: Identity::Patient { patient: patient.into() },
                password: Some(PASSWORD.into()),
            })
            .unwrap();
    }

    pub fn add_staff_user(&self, username: &str) {
        self.authority
            .add_user(NewUser {
                username: username.into(),
                identity: Identity::Staff {
                    roles: vec![Role::Physician],
                    organizations: vec!["org-1".into()],
                    practitioner: Some("prac-1".into()),
                    practitioner_roles: vec!["role-1".into()],
                },
                password: Some(PASSWORD.into()),
            })
            .unwrap();
    }

    pub fn add_public_app(&self, id: &str, scopes: &str) {
        self.authority
            .add_client(NewClient {
                id: Some(id.into()),
                name: "Test <App>".into(),
                kind: ClientKind::Public,
                redirect_uris: vec![REDIRECT.into()],
                allowed_scopes: scopes.into(),
                jwks: None,
                jwks_uri: None,
                with_secret: false,
            })
            .unwrap();
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)], cookie: Option<&str>) -> reqwest::Response {
        let mut request = self.http.post(format!("{}{path}", self.base)).form(form);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send().await.unwrap()
    }

    pub async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let response = self.post_form("/auth/token", form, None).await;
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    pub async fn introspect(&self, bearer: &str, token: &str) -> Value {
        let response = self
            .http
            .post(format!("{}/auth/introspect", self.base))
            .bearer_auth(bearer)
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        if response.status() == 401 {
            return json!({"active": false, "caller": "rejected"});
        }
        response.json().await.unwrap()
    }
}

/// A PKCE verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    let verifier = format!("{}{}", URL_SAFE_NO_PAD.encode(rand_bytes()), "-._~");
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

pub fn rand_bytes() -> [u8; 32] {
    use rand_core::RngCore;
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no field {name} in {html}")) + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

pub fn query_param(location: &str, name: &str) -> Option<String> {
    let query = location.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// A browser on the sign-in and consent pages: returns the page after authorize and the cookie.
pub struct Browser {
    /// The CSRF cookie's whole `Set-Cookie` header.
    pub set_cookie: String,
    /// The cookie as the browser sends it back (`name=value`).
    pub cookie: String,
    pub request: String,
    pub csrf: String,
}

pub async fn open_authorize(server: &Server, params: &[(&str, &str)]) -> Result<Browser, reqwest::Response> {
    let response = server.http.get(format!("{}/auth/authorize", server.base)).query(params).send().await.unwrap();
    if response.status() != 200 {
        return Err(response);
    }
    let set_cookie = response.headers().get("set-cookie").unwrap().to_str().unwrap().to_string();
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let html = response.text().await.unwrap();
    assert!(html.contains("Test &lt;App&gt;"), "the client name is escaped");
    Ok(Browser { set_cookie, cookie, request: hidden(&html, "request"), csrf: hidden(&html, "csrf") })
}

impl Browser {
    /// Posts the second-factor form.
    pub async fn code(&self, server: &Server, code: &str) -> reqwest::Response {
        let form = [("request", &*self.request), ("csrf", &*self.csrf), ("code", code)];
        server.post_form("/auth/totp", &form, Some(&self.cookie)).await
    }

    pub async fn login(&self, server: &Server, username: &str, password: &str) -> reqwest::Response {
        let form = [("request", &*self.request), ("csrf", &*self.csrf), ("username", username), ("password", password)];
        server.post_form("/auth/login", &form, Some(&self.cookie)).await
    }

    /// Approves every scope on the consent page; returns the redirect Location.
    pub async fn approve(&self, server: &Server, scopes: &[&str], patient: Option<&str>) -> String {
        let mut form = vec![("request", &*self.request), ("csrf", &*self.csrf), ("decision", "approve")];
        form.extend(scopes.iter().map(|s| ("scope", *s)));
        if let Some(patient) = patient {
            form.push(("patient", patient));
        }
        let response = server.post_form("/auth/consent", &form, Some(&self.cookie)).await;
        assert_eq!(response.status(), 303);
        response.headers()["location"].to_str().unwrap().to_string()
    }
}

/// Exchanges an authorization code of public client `client`; the status and answer.
pub async fn exchange(server: &Server, client: &str, code: &str, verifier: &str) -> (u16, Value) {
    server
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", client),
            ("code_verifier", verifier),
        ])
        .await
}

pub fn authorize_params<'a>(
    server: &'a Server,
    client: &'a str,
    scope: &'a str,
    challenge: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", REDIRECT),
        ("scope", scope),
        ("state", "xyz-state"),
        ("aud", &server.fhir),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]
}

/// Runs a standalone launch up to the code; returns (code, verifier).
pub async fn standalone_code(server: &Server, client: &str, username: &str, scope: &str) -> (String, String) {
    let (verifier, challenge) = pkce();
    let browser = open_authorize(server, &authorize_params(server, client, scope, &challenge)).await.ok().unwrap();
    let consent = browser.login(server, username, PASSWORD).await;
    assert_eq!(consent.status(), 200);
    let html = consent.text().await.unwrap();
    assert!(html.contains("Allow access?"));
    let scopes: Vec<&str> = scope.split(' ').collect();
    let location = browser.approve(server, &scopes, None).await;
    assert!(location.starts_with(REDIRECT));
    assert_eq!(query_param(&location, "state").as_deref(), Some("xyz-state"));
    (query_param(&location, "code").expect("a code"), verifier)
}
