//! What the web app's tests share: a clinic (Synthea patients imported, staff users, a
//! secured `continuum serve`) and a cookie-keeping client that signs in through the app's
//! own form. Spawns the `continuum` binary (see `process`).

use crate::process::{Server, continuum, start_secured};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Every user's password.
pub const PASSWORD: &str = "a long enough password";
const SYNTHEA: &str = crate::synthea::SAMPLE;
/// Rosie394 Gutmann970 (Synthea v3): four active allergies, 64 encounters.
pub const ROSIE: &str = "synthea-v3/Rosie394_Tiny880_Gutmann970_0815aec4-d24d-d388-63bd-eada54ce5ff9.json";
/// Rosie's medical record number.
pub const ROSIE_MRN: &str = "0815aec4-d24d-d388-63bd-eada54ce5ff9";
/// Rosie's encounters are provided by this Synthea organization.
const ROSIE_PROVIDER: &str = "https://github.com/synthetichealth/synthea|2836d9ac-c6a6-39d1-8f13-fdf0fc8928f4";
/// Barry Wolf (SMART 2019 Synthea sample): ten HbA1c results, no allergies recorded.
pub const BARRY: &str = "smart-2019/Barry_Wolf_f0c0c377-be9c-4ca2-97c0-7cef574bdb45.json";
/// Barry's first encounter's provider.
const BARRY_PROVIDER: &str = "ANNA JAQUES HOSPITAL";

/// A clinic: the Synthea patients, users and a running server.
pub struct Clinic {
    _dir: tempfile::TempDir,
    /// The data directory.
    pub data: PathBuf,
    /// The secured `continuum serve`.
    pub server: Server,
    /// `http://HOST:PORT`.
    pub origin: String,
    /// Rosie's Patient id.
    pub rosie: String,
    /// Barry's Patient id.
    pub barry: String,
    /// A physician of both patients' organizations.
    pub doc: String,
    /// The organization that provided Rosie's encounters.
    pub rosie_org: String,
}

/// Imports Rosie (with the Synthea organizations and practitioners) and Barry, starts a
/// secured server and adds the users: `doc` (physician of both patients' organizations),
/// `therapist` (behavioral-health clinician of the same), `desk` (front desk of the same), `outsider` (physician of another
/// organization) and `it-admin` (administrator).
pub fn clinic() -> Clinic {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let files: Vec<String> =
        ["synthea-v3/hospitalInformation.json", "synthea-v3/practitionerInformation.json", ROSIE, BARRY]
            .iter()
            .map(|f| format!("{SYNTHEA}/{f}"))
            .collect();
    let mut args = vec!["import"];
    args.extend(files.iter().map(String::as_str));
    continuum(&data, &args, None);
    add_user(&data, "finder", "physician", &[]);
    let server = start_secured(&data, &["--rate-limit", "0", "--sign-in-per-minute", "0"]);
    let origin = server.base.trim_end_matches("/fhir").to_string();
    // The organizations' ids were given by the server: look them up in the directory.
    let finder = token(&data, "finder");
    let rosie_org = only_id(&fhir_get(&server.base, &finder, &format!("Organization?identifier={ROSIE_PROVIDER}")));
    let barry_org = only_id(&fhir_get(&server.base, &finder, &format!("Organization?name:exact={BARRY_PROVIDER}")));
    add_user(&data, "doc", "physician", &[&rosie_org, &barry_org]);
    add_user(&data, "therapist", "behavioral-health-clinician", &[&rosie_org, &barry_org]);
    add_user(&data, "desk", "front-desk", &[&rosie_org, &barry_org]);
    add_user(&data, "outsider", "physician", &["an-organization-without-patients"]);
    add_user(&data, "it-admin", "administrator", &[]);
    let doc = token(&data, "doc");
    let rosie = only_id(&fhir_get(&server.base, &doc, &format!("Patient?identifier={ROSIE_MRN}")));
    let barry = only_id(&fhir_get(&server.base, &doc, "Patient?family=Wolf&given=Barry"));
    Clinic { _dir: dir, data, server, origin, rosie, barry, doc, rosie_org }
}

/// Adds the staff user `name` with `role` in the organizations `orgs` (password [`PASSWORD`]).
pub fn add_user(data: &Path, name: &str, role: &str, orgs: &[&str]) {
    let mut args = vec!["user", "add", name, "--role", role, "--password-stdin"];
    for org in orgs {
        args.extend(["--org", org]);
    }
    continuum(data, &args, Some(&format!("{PASSWORD}\n")));
}

/// An access token of `user` for the FHIR API (to check what the app stored).
pub fn token(data: &Path, user: &str) -> String {
    let out = continuum(data, &["token", "--user", user, "--scope", "user/*.cruds"], None);
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `GET {base}/{path}` with `token`; panics unless it succeeds.
pub fn fhir_get(base: &str, token: &str, path: &str) -> Value {
    let response = reqwest::blocking::Client::new().get(format!("{base}/{path}")).bearer_auth(token).send().unwrap();
    assert!(response.status().is_success(), "GET {path}: {}", response.status());
    response.json().unwrap()
}

/// Creates `resource` with `token`; panics unless it succeeds.
pub fn fhir_post(base: &str, token: &str, resource: &Value) -> Value {
    let kind = resource["resourceType"].as_str().unwrap();
    let response = reqwest::blocking::Client::new()
        .post(format!("{base}/{kind}"))
        .bearer_auth(token)
        .header("content-type", "application/fhir+json")
        .body(resource.to_string())
        .send()
        .unwrap();
    assert!(response.status().is_success(), "POST {kind}: {}", response.status());
    response.json().unwrap()
}

/// The resources a search found.
pub fn resources(bundle: &Value) -> Vec<Value> {
    bundle["entry"].as_array().into_iter().flatten().map(|e| e["resource"].clone()).collect()
}

fn only_id(bundle: &Value) -> String {
    let found = resources(bundle);
    assert_eq!(found.len(), 1, "exactly one match expected: {bundle}");
    found[0]["id"].as_str().unwrap().to_string()
}

/// How many resources a search matches.
pub fn count(clinic: &Clinic, path: &str) -> u64 {
    let sep = if path.contains('?') { '&' } else { '?' };
    fhir_get(&clinic.server.base, &clinic.doc, &format!("{path}{sep}_summary=count"))["total"].as_u64().unwrap()
}

/// A page as the app answered it.
pub struct Page {
    /// The status code.
    pub status: u16,
    /// The `Location` header.
    pub location: Option<String>,
    /// The HTML.
    pub body: String,
}

impl Page {
    /// The CSRF value of the page's first form.
    pub fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").expect("the page has a form") + 19;
        self.body[at..at + 32].to_string()
    }

    /// The `datetime` of each timeline entry on the page (`2019-04-01T09:30:00Z`), in order.
    pub fn entry_times(&self) -> Vec<&str> {
        self.body.split("<time datetime=\"").skip(1).map(|t| &t[..20]).collect()
    }

    /// Panics unless the page shows `text`.
    pub fn assert_has(&self, text: &str) {
        assert!(self.body.contains(text), "the page (status {}) lacks {text:?}:\n{}", self.status, self.body);
    }

    /// Panics if the page shows `text`.
    pub fn assert_lacks(&self, text: &str) {
        assert!(!self.body.contains(text), "the page (status {}) has {text:?}:\n{}", self.status, self.body);
    }
}

/// A browser without JavaScript: keeps the session cookie, does not follow redirects.
pub struct Visitor {
    http: reqwest::blocking::Client,
    origin: String,
    cookies: Vec<(String, String)>,
}

impl Visitor {
    /// A visitor of the app at `origin` without a session.
    pub fn new(origin: &str) -> Visitor {
        let http = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Visitor { http, origin: origin.to_string(), cookies: Vec::new() }
    }

    /// Signs in through the form; panics unless the app lets the user in.
    pub fn signed_in(origin: &str, user: &str) -> Visitor {
        let mut visitor = Visitor::new(origin);
        let answer = visitor.sign_in(user, PASSWORD);
        assert_eq!(answer.status, 303, "{user} signs in: {}", answer.body);
        visitor
    }

    /// Posts the sign-in form (after fetching it for its CSRF value); the app's answer.
    pub fn sign_in(&mut self, user: &str, password: &str) -> Page {
        let form = self.get("/app/sign-in");
        assert_eq!(form.status, 200);
        let csrf = form.csrf();
        self.post(
            "/app/sign-in",
            &[("csrf", &csrf), ("next", "/app/patients"), ("username", user), ("password", password)],
        )
    }

    /// `GET {origin}{path}`.
    pub fn get(&mut self, path: &str) -> Page {
        let request = self.http.get(format!("{}{path}", self.origin));
        self.send(request)
    }

    /// Posts `form` to `{origin}{path}`.
    pub fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let request = self.http.post(format!("{}{path}", self.origin)).form(form);
        self.send(request)
    }

    /// Posts a form of a signed-in page, with the CSRF value of `from`.
    pub fn submit(&mut self, from: &Page, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = from.csrf();
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(fields);
        self.post(path, &form)
    }

    fn send(&mut self, mut request: reqwest::blocking::RequestBuilder) -> Page {
        if !self.cookies.is_empty() {
            let header: Vec<String> = self.cookies.iter().map(|(n, v)| format!("{n}={v}")).collect();
            request = request.header("cookie", header.join("; "));
        }
        let response = request.send().unwrap();
        for set in response.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let pair = set.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != name);
            if !value.is_empty() && !set.contains("Max-Age=0") {
                self.cookies.push((name.to_string(), value.to_string()));
            }
        }
        let status = response.status().as_u16();
        let location = response.headers().get("location").map(|l| l.to_str().unwrap().to_string());
        Page { status, location, body: response.text().unwrap() }
    }
}
