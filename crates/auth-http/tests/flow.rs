//! Whole flows over HTTP against the authorization server on 127.0.0.1:0: standalone and EHR
//! launch with PKCE through the sign-in and consent forms, refresh, revocation, introspection,
//! and backend services with RS384 and ES384 client assertions. Keys are generated here.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

mod common;

use auth::{ClientKind, Identity, NewClient, NewUser, Role};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use rand_core::OsRng;
use serde_json::{Value, json};

#[tokio::test]
async fn discovery_documents_are_served_under_the_fhir_base() {
    let server = start().await;
    let config: Value = server
        .http
        .get(format!("{}/.well-known/smart-configuration", server.fhir))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["token_endpoint"], format!("{}/auth/token", server.base));
    assert_eq!(config["code_challenge_methods_supported"], json!(["S256"]));
    assert!(config["capabilities"].as_array().unwrap().contains(&json!("launch-ehr")));
    let jwks: Value = server.http.get(format!("{}/auth/jwks", server.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
}

#[tokio::test]
async fn standalone_launch_with_pkce_refresh_revoke_and_introspect() {
    let server = start().await;
    server.add_patient_user("pat", "p-1");
    server.add_public_app("app", "openid fhirUser launch/patient offline_access patient/*.rs");
    let scope = "openid fhirUser launch/patient offline_access patient/*.rs";
    let (code, verifier) = standalone_code(&server, "app", "pat", scope).await;

    let (status, tokens) = server
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", "app"),
            ("code_verifier", &verifier),
        ])
        .await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["patient"], "p-1");
    assert_eq!(tokens["scope"], scope);
    assert_eq!(tokens["expires_in"], 3600);
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();

    // The id_token is signed by the key published at /auth/jwks and names the user.
    let jwks: jsonwebtoken::jwk::JwkSet =
        server.http.get(format!("{}/auth/jwks", server.base)).send().await.unwrap().json().await.unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["app"]);
    validation.set_issuer(&[&server.fhir]);
    let id_token = jsonwebtoken::decode::<Value>(tokens["id_token"].as_str().unwrap(), &key, &validation).unwrap();
    assert_eq!(id_token.claims["fhirUser"], format!("{}/Patient/p-1", server.fhir));

    // The principal the policy engine will see.
    let principal = server.authority.validate_bearer(&access).unwrap();
    assert_eq!(principal.patient.as_deref(), Some("p-1"));
    assert_eq!(principal.client_id.as_deref(), Some("app"));
    assert!(!principal.scopes.decide(auth::Interaction::Read, "Observation", &[]).is_denied());
    assert!(principal.scopes.decide(auth::Interaction::Create, "Observation", &[]).is_denied());

    let seen = server.introspect(&access, &access).await;
    assert_eq!(seen["active"], true);
    assert_eq!(seen["patient"], "p-1");
    assert_eq!(seen["client_id"], "app");

    // Refresh rotates the refresh token.
    let (status, refreshed) =
        server.token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh), ("client_id", "app")]).await;
    assert_eq!(status, 200, "{refreshed}");
    let access2 = refreshed["access_token"].as_str().unwrap().to_string();
    let refresh2 = refreshed["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(refresh, refresh2);
    assert_eq!(refreshed["patient"], "p-1");
    assert_eq!(server.introspect(&access, &refresh).await["active"], false, "the old one is retired");

    // Revoking the refresh token ends the whole grant.
    let revoked = server.post_form("/auth/revoke", &[("token", &refresh2), ("client_id", "app")], None).await;
    assert_eq!(revoked.status(), 200);
    assert_eq!(server.introspect(&access, &access2).await["active"], false);
    assert_eq!(server.introspect(&access, &access).await["active"], false);
    assert!(server.authority.validate_bearer(&access2).is_err());
}

/// Refresh token rotation with reuse detection (OAuth 2.0 Security BCP): each refresh retires
/// the refresh token it used; presenting a retired one again revokes the whole grant, the
/// newest access and refresh tokens included.
#[tokio::test]
async fn a_retired_refresh_token_presented_again_revokes_the_whole_grant() {
    let server = start().await;
    server.add_patient_user("pat", "p-1");
    let scope = "launch/patient patient/*.rs offline_access";
    server.add_public_app("app", scope);
    let (code, verifier) = standalone_code(&server, "app", "pat", scope).await;
    let (status, tokens) = exchange(&server, "app", &code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    let first = tokens["refresh_token"].as_str().unwrap().to_string();
    let refresh = |token: String| {
        let server = &server;
        async move {
            server.token(&[("grant_type", "refresh_token"), ("refresh_token", &token), ("client_id", "app")]).await
        }
    };
    let (status, second) = refresh(first.clone()).await;
    assert_eq!(status, 200, "{second}");
    let (status, third) = refresh(second["refresh_token"].as_str().unwrap().to_string()).await;
    assert_eq!(status, 200, "{third}");
    let newest_access = third["access_token"].as_str().unwrap().to_string();
    let newest_refresh = third["refresh_token"].as_str().unwrap().to_string();
    assert!(server.authority.validate_bearer(&newest_access).is_ok());

    let (status, reused) = refresh(first).await;
    assert_eq!((status, reused["error"].as_str()), (400, Some("invalid_grant")), "a retired token is refused");
    assert!(
        matches!(server.authority.validate_bearer(&newest_access), Err(auth::BearerError::Revoked)),
        "the reuse revoked the newest access token of the grant"
    );
    let (status, after) = refresh(newest_refresh).await;
    assert_eq!((status, after["error"].as_str()), (400, Some("invalid_grant")), "and its newest refresh token");
}

#[tokio::test]
async fn wrong_verifier_wrong_redirect_and_code_reuse_are_rejected() {
    let server = start().await;
    server.add_patient_user("pat", "p-1");
    server.add_public_app("app", "launch/patient patient/*.rs");
    let scope = "launch/patient patient/*.rs";

    let (code, _) = standalone_code(&server, "app", "pat", scope).await;
    let (wrong_verifier, _) = pkce();
    let (status, body) = server
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", "app"),
            ("code_verifier", &wrong_verifier),
        ])
        .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));

    let (code, verifier) = standalone_code(&server, "app", "pat", scope).await;
    let (status, body) = server
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://app.example/other"),
            ("client_id", "app"),
            ("code_verifier", &verifier),
        ])
        .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));

    // An unregistered redirect URI is never redirected to.
    let (_, challenge) = pkce();
    let mut params = authorize_params(&server, "app", scope, &challenge);
    params[2] = ("redirect_uri", "http://evil.example/callback");
    let page = open_authorize(&server, &params).await.err().unwrap();
    assert_eq!(page.status(), 400);
    assert!(page.headers().get("location").is_none());

    // Without PKCE the app is told so at its redirect URI.
    let params: Vec<_> = authorize_params(&server, "app", scope, &challenge)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("code_challenge"))
        .collect();
    let refused = open_authorize(&server, &params).await.err().unwrap();
    assert_eq!(refused.status(), 303);
    let location = refused.headers()["location"].to_str().unwrap();
    assert_eq!(query_param(location, "error").as_deref(), Some("invalid_request"));
    assert_eq!(query_param(location, "state").as_deref(), Some("xyz-state"));

    // A code works once; its replay fails and revokes what the first exchange bought.
    let (code, verifier) = standalone_code(&server, "app", "pat", scope).await;
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", &*code),
        ("redirect_uri", REDIRECT),
        ("client_id", "app"),
        ("code_verifier", &*verifier),
    ];
    let (status, first) = server.token(&exchange).await;
    assert_eq!(status, 200);
    let access = first["access_token"].as_str().unwrap().to_string();
    assert!(server.authority.validate_bearer(&access).is_ok());
    let (status, body) = server.token(&exchange).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    assert!(server.authority.validate_bearer(&access).is_err());
}

#[tokio::test]
async fn forms_need_the_csrf_cookie_and_disabled_users_cannot_sign_in() {
    let server = start().await;
    server.add_patient_user("pat", "p-1");
    server.add_public_app("app", "launch/patient patient/*.rs");
    let (_, challenge) = pkce();
    let browser = open_authorize(&server, &authorize_params(&server, "app", "launch/patient patient/*.rs", &challenge))
        .await
        .ok()
        .unwrap();

    let forged =
        [("request", &*browser.request), ("csrf", &*browser.csrf), ("username", "pat"), ("password", PASSWORD)];
    let response = server.post_form("/auth/login", &forged, None).await;
    assert_eq!(response.status(), 403, "no cookie: a cross-site post");

    assert_eq!(browser.login(&server, "pat", "not the password").await.status(), 401);
    assert_eq!(browser.login(&server, "nobody", PASSWORD).await.status(), 401);

    server.authority.disable_user("pat").unwrap();
    let response = browser.login(&server, "pat", PASSWORD).await;
    assert_eq!(response.status(), 401);
    assert!(response.text().await.unwrap().contains("not right"));
}

#[tokio::test]
async fn ehr_launch_binds_patient_and_encounter_and_one_time_passwords_must_change() {
    let server = start().await;
    server.add_staff_user("doc");
    server.add_public_app("ehr-app", "launch openid fhirUser user/*.rs patient/*.rs");
    let launch = server.authority.create_launch(Some("p-9"), Some("enc-3")).unwrap();
    assert_eq!(server.authority.store().launch(&launch).unwrap(), None, "the launch value is stored as a hash");
    let (verifier, challenge) = pkce();
    let mut params = authorize_params(&server, "ehr-app", "launch openid fhirUser patient/*.rs", &challenge);
    params.push(("launch", &launch));
    let browser = open_authorize(&server, &params).await.ok().unwrap();
    assert_eq!(browser.login(&server, "doc", PASSWORD).await.status(), 200);
    let location = browser.approve(&server, &["launch", "openid", "fhirUser", "patient/*.rs"], None).await;
    let code = query_param(&location, "code").unwrap();
    let (status, tokens) = server
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", "ehr-app"),
            ("code_verifier", &verifier),
        ])
        .await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["patient"], "p-9");
    assert_eq!(tokens["encounter"], "enc-3");
    assert!(tokens.get("refresh_token").is_none(), "no offline_access asked");
    let principal = server.authority.validate_bearer(tokens["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(principal.roles(), [Role::Physician]);
    assert_eq!(principal.organizations(), ["org-1"]);
    assert_eq!(principal.fhir_user().as_deref(), Some("Practitioner/prac-1"));

    // A user created without a password gets a one-time one, to be replaced at first sign-in.
    let (_, one_time) = server
        .authority
        .add_user(NewUser {
            username: "nurse".into(),
            identity: Identity::Patient { patient: "p-2".into() },
            password: None,
        })
        .unwrap();
    let one_time = one_time.unwrap();
    let (_, challenge) = pkce();
    let browser =
        open_authorize(&server, &authorize_params(&server, "ehr-app", "patient/*.rs", &challenge)).await.ok().unwrap();
    let page = browser.login(&server, "nurse", &one_time.password).await.text().await.unwrap();
    assert!(page.contains("Choose a password"));
    let refused = server
        .post_form(
            "/auth/consent",
            &[
                ("request", &*browser.request),
                ("csrf", &*browser.csrf),
                ("decision", "approve"),
                ("scope", "patient/*.rs"),
            ],
            Some(&browser.cookie),
        )
        .await;
    assert_eq!(refused.status(), 403, "no consent before the password is changed");
    let changed = server
        .post_form(
            "/auth/password",
            &[
                ("request", &*browser.request),
                ("csrf", &*browser.csrf),
                ("new_password", PASSWORD),
                ("confirm", PASSWORD),
            ],
            Some(&browser.cookie),
        )
        .await;
    assert!(changed.text().await.unwrap().contains("Allow access?"));
    let location = browser.approve(&server, &["patient/*.rs"], None).await;
    assert!(query_param(&location, "code").is_some());
}

/// A backend-services client with one key; signs assertions with it.
struct Backend {
    kid: String,
    alg: jsonwebtoken::Algorithm,
    key: jsonwebtoken::EncodingKey,
    jwk: Value,
}

fn rs384_backend() -> Backend {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    let private = rsa::RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
    let der = private.to_pkcs1_der().unwrap();
    let jwk = json!({
        "kty": "RSA", "kid": "rsa-1", "alg": "RS384", "use": "sig",
        "n": URL_SAFE_NO_PAD.encode(private.n().to_bytes_be()),
        "e": URL_SAFE_NO_PAD.encode(private.e().to_bytes_be()),
    });
    Backend {
        kid: "rsa-1".into(),
        alg: jsonwebtoken::Algorithm::RS384,
        key: jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes()),
        jwk,
    }
}

fn es384_backend() -> Backend {
    use p384::pkcs8::EncodePrivateKey;
    let private = p384::ecdsa::SigningKey::random(&mut OsRng);
    let der = private.to_pkcs8_der().unwrap();
    let point = private.verifying_key().to_encoded_point(false);
    let (x, y): (&[u8], &[u8]) = (point.x().unwrap(), point.y().unwrap());
    let jwk = json!({
        "kty": "EC", "crv": "P-384", "kid": "ec-1", "alg": "ES384", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
    });
    Backend {
        kid: "ec-1".into(),
        alg: jsonwebtoken::Algorithm::ES384,
        key: jsonwebtoken::EncodingKey::from_ec_der(der.as_bytes()),
        jwk,
    }
}

impl Backend {
    fn assertion(&self, client_id: &str, aud: &str, exp_in: i64, jti: &str) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut header = jsonwebtoken::Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        let claims = json!({"iss": client_id, "sub": client_id, "aud": aud, "exp": now + exp_in, "jti": jti});
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

async fn backend_services(backend: Backend) {
    let server = start().await;
    server
        .authority
        .add_client(NewClient {
            id: Some("bulk".into()),
            name: "Bulk exporter".into(),
            kind: ClientKind::Confidential,
            redirect_uris: vec![],
            allowed_scopes: "system/*.rs".into(),
            jwks: Some(json!({ "keys": [backend.jwk] })),
            jwks_uri: None,
            with_secret: false,
        })
        .unwrap();
    let aud = format!("{}/auth/token", server.base);
    let server = &server;
    let grant = |assertion: String| async move {
        let form = [
            ("grant_type", "client_credentials"),
            ("scope", "system/*.rs system/Patient.cud"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", &assertion),
        ];
        server.token(&form).await
    };

    let (status, tokens) = grant(backend.assertion("bulk", &aud, 240, "jti-1")).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["scope"], "system/*.rs", "only allowed system scopes");
    assert!(tokens.get("refresh_token").is_none());
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let principal = server.authority.validate_bearer(&access).unwrap();
    assert_eq!(principal.subject, auth::Subject::Service { client_id: "bulk".into() });
    assert!(principal.scopes.decide(auth::Interaction::Search, "Patient", &[]).unconditional_in(auth::Context::System));

    let (status, body) = grant(backend.assertion("bulk", &aud, 240, "jti-1")).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "replayed jti");
    let (status, _) = grant(backend.assertion("bulk", &aud, -120, "jti-2")).await;
    assert_eq!(status, 401, "expired");
    let (status, _) = grant(backend.assertion("bulk", &aud, 3600, "jti-3")).await;
    assert_eq!(status, 401, "lives too long");
    let (status, _) = grant(backend.assertion("bulk", &format!("{}/other", server.base), 240, "jti-4")).await;
    assert_eq!(status, 401, "wrong audience");
    let (status, _) = grant(backend.assertion("someone-else", &aud, 240, "jti-5")).await;
    assert_eq!(status, 401, "unknown issuer");
    let stranger = if backend.alg == jsonwebtoken::Algorithm::RS384 { es384_backend() } else { rs384_backend() };
    let (status, _) =
        grant(Backend { kid: backend.kid.clone(), ..stranger }.assertion("bulk", &aud, 240, "jti-6")).await;
    assert_eq!(status, 401, "signed with another algorithm");
    let impostor = if backend.alg == jsonwebtoken::Algorithm::RS384 { rs384_backend() } else { es384_backend() };
    let (status, _) =
        grant(Backend { kid: backend.kid.clone(), ..impostor }.assertion("bulk", &aud, 240, "jti-8")).await;
    assert_eq!(status, 401, "signed by another key of the same kind");

    // The client can introspect with a fresh assertion.
    let response = server
        .post_form(
            "/auth/introspect",
            &[
                ("token", &access),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", &backend.assertion("bulk", &aud, 240, "jti-7")),
            ],
            None,
        )
        .await;
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["active"], true);
    assert_eq!(seen["client_id"], "bulk");
}

#[tokio::test]
async fn backend_services_with_an_rs384_assertion() {
    backend_services(rs384_backend()).await;
}

#[tokio::test]
async fn backend_services_with_an_es384_assertion() {
    backend_services(es384_backend()).await;
}

#[tokio::test]
async fn minted_tokens_are_accepted_by_introspection() {
    let server = start().await;
    server.add_staff_user("doc");
    let minted = server.authority.mint_token("doc", "user/*.rs bogus", None, 600).unwrap();
    assert_eq!(minted.scope, "user/*.rs");
    let seen = server.introspect(&minted.access_token, &minted.access_token).await;
    assert_eq!(seen["active"], true);
    assert_eq!(seen["username"], "doc");
    assert_eq!(seen["fhirUser"], format!("{}/Practitioner/prac-1", server.fhir));
    // Introspection needs an authenticated caller.
    let anonymous = server.post_form("/auth/introspect", &[("token", &minted.access_token)], None).await;
    assert_eq!(anonymous.status(), 401);
    server.authority.disable_user("doc").unwrap();
    assert!(matches!(server.authority.validate_bearer(&minted.access_token), Err(auth::BearerError::Disabled)));
}

#[tokio::test]
async fn staff_choose_the_patient_of_a_standalone_launch() {
    let server = start().await;
    server.add_staff_user("doc");
    server.add_public_app("app", "launch/patient patient/*.rs");
    let (verifier, challenge) = pkce();
    let browser = open_authorize(&server, &authorize_params(&server, "app", "launch/patient patient/*.rs", &challenge))
        .await
        .ok()
        .unwrap();
    let consent = browser.login(&server, "doc", PASSWORD).await.text().await.unwrap();
    assert!(consent.contains("name=\"patient\""), "{consent}");
    let location = browser.approve(&server, &["launch/patient", "patient/*.rs"], Some("p-5")).await;
    let code = query_param(&location, "code").unwrap();
    let (status, tokens) = server
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", "app"),
            ("code_verifier", &verifier),
        ])
        .await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["patient"], "p-5");
    assert_eq!(tokens["need_patient_banner"], true);
}

#[tokio::test]
async fn backend_keys_can_be_fetched_from_a_jwks_uri() {
    let server = start().await;
    let backend = es384_backend();
    let keys = json!({ "keys": [backend.jwk] });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_uri = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let published =
        axum::Router::new().route("/jwks.json", axum::routing::get(move || async move { axum::Json(keys) }));
    tokio::spawn(async move { axum::serve(listener, published).await.unwrap() });
    server
        .authority
        .add_client(NewClient {
            id: Some("remote-keys".into()),
            name: "Remote keys".into(),
            kind: ClientKind::Confidential,
            redirect_uris: vec![],
            allowed_scopes: "system/Patient.rs".into(),
            jwks: None,
            jwks_uri: Some(jwks_uri),
            with_secret: false,
        })
        .unwrap();
    let aud = format!("{}/auth/token", server.base);
    let assertion = backend.assertion("remote-keys", &aud, 120, "remote-1");
    let (status, tokens) = server
        .token(&[
            ("grant_type", "client_credentials"),
            ("scope", "system/Patient.rs"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", &assertion),
        ])
        .await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["scope"], "system/Patient.rs");
}

#[tokio::test]
async fn confidential_clients_authenticate_with_their_secret() {
    let server = start().await;
    let (_, secret) = server
        .authority
        .add_client(NewClient {
            id: Some("svc".into()),
            name: "Service".into(),
            kind: ClientKind::Confidential,
            redirect_uris: vec![],
            allowed_scopes: "system/*.rs".into(),
            jwks: None,
            jwks_uri: None,
            with_secret: true,
        })
        .unwrap();
    let secret = secret.unwrap();
    let form = [("grant_type", "client_credentials"), ("scope", "system/*.rs")];
    let basic = |secret: &str| {
        server.http.post(format!("{}/auth/token", server.base)).basic_auth("svc", Some(secret)).form(&form).send()
    };
    assert_eq!(basic(&secret).await.unwrap().status(), 200);
    let wrong = basic("not-the-secret").await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().contains_key("www-authenticate"));
    let (status, _) =
        server.token(&[("grant_type", "client_credentials"), ("scope", "system/*.rs"), ("client_id", "svc")]).await;
    assert_eq!(status, 401, "a confidential client must authenticate");
}

/// `POST /auth/token` with HTTP Basic `user:password` when given.
async fn token_with_basic(server: &Server, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> (u16, Value) {
    let mut request = server.http.post(format!("{}/auth/token", server.base)).form(form);
    if let Some((user, password)) = basic {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// A code exchange that does not name the client in the form.
fn code_exchange<'a>(code: &'a str, verifier: &'a str) -> [(&'static str, &'a str); 4] {
    [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", REDIRECT), ("code_verifier", verifier)]
}

/// What requests-oauthlib does by default: the code exchange names the public client with HTTP
/// Basic and an empty password, and the refresh names no client at all (SMART App Launch:
/// public apps cannot authenticate, so a refresh sends only grant_type, refresh_token and
/// perhaps scope). A confidential client's refresh token still needs its credentials.
#[tokio::test]
async fn public_apps_refresh_without_naming_themselves_and_may_send_an_empty_basic_password() {
    let server = start().await;
    server.add_patient_user("pat", "p-1");
    let scope = "launch/patient offline_access patient/*.rs";
    server.add_public_app("app", scope);
    let (code, verifier) = standalone_code(&server, "app", "pat", scope).await;
    let form = code_exchange(&code, &verifier);
    let (status, tokens) = token_with_basic(&server, &form, Some(("app", ""))).await;
    assert_eq!(status, 200, "an empty Basic password names a public client: {tokens}");
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();

    let (status, refreshed) = server.token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)]).await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(refreshed["patient"], "p-1");
    assert_eq!(refreshed["scope"], scope);
    let access = refreshed["access_token"].as_str().unwrap();
    assert_eq!(server.authority.validate_bearer(access).unwrap().client_id.as_deref(), Some("app"));
    let (status, again) = server.token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)]).await;
    assert_eq!((status, again["error"].as_str()), (400, Some("invalid_grant")), "rotation still spends the old one");
    let (status, unknown) = server.token(&[("grant_type", "refresh_token"), ("refresh_token", "not-a-token")]).await;
    assert_eq!((status, unknown["error"].as_str()), (400, Some("invalid_grant")));

    // A public client presenting a non-empty secret is still refused: it has none.
    let (code, verifier) = standalone_code(&server, "app", "pat", scope).await;
    let form = code_exchange(&code, &verifier);
    assert_eq!(token_with_basic(&server, &form, Some(("app", "guessed"))).await.0, 401);

    let (_, secret) = server
        .authority
        .add_client(NewClient {
            id: Some("web".into()),
            name: "Test <App>".into(),
            kind: ClientKind::Confidential,
            redirect_uris: vec![REDIRECT.into()],
            allowed_scopes: scope.into(),
            jwks: None,
            jwks_uri: None,
            with_secret: true,
        })
        .unwrap();
    let secret = secret.unwrap();
    let (code, verifier) = standalone_code(&server, "web", "pat", scope).await;
    let form = code_exchange(&code, &verifier);
    let (status, tokens) = token_with_basic(&server, &form, Some(("web", &secret))).await;
    assert_eq!(status, 200, "{tokens}");
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh)];
    for basic in [None, Some(("web", ""))] {
        let (status, body) = token_with_basic(&server, &form, basic).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client")),
            "a confidential client authenticates"
        );
    }
    let (status, body) = token_with_basic(&server, &form, Some(("web", &secret))).await;
    assert_eq!(status, 200, "{body}");
}
