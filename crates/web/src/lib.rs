//! The clinician web app, served at `/app` by `continuum serve`: sign-in, patient search, the
//! chart (banner, summary, longitudinal timeline, trends), documentation (visit notes,
//! vitals, problem, allergy and medication lists), documents (the CCD downloaded, a referral
//! note kept as an outgoing document), the reconciliation of items from imported documents,
//! shared care plans (goals, activities, change history), the PHQ-9/GAD-7 form, the care team,
//! the alert inbox, the discharges without follow-up, the task inbox with the team work lists,
//! and the referral dashboard.
//!
//! Server-rendered HTML (maud: every interpolated value is escaped), no JavaScript needed;
//! charts are SVG drawn with plotters. The app is one more door into the same record:
//!
//! - **who**: a staff user signs in with the authorization server's checks (argon2id,
//!   lock-out, TOTP) and holds an ordinary access token of the first-party client
//!   `continuum-web` in an `HttpOnly`, `SameSite=Strict` cookie; each request turns it into a
//!   [`policy::Caller`] exactly as a bearer token of the API is, so idle sessions end alike;
//! - **what**: every read and write goes through the one door, [`access::Access`], as the
//!   API's do (type-level decision, searches narrowed to the caller's reach and hidden
//!   categories, each resource checked, each write checked and audited in its own
//!   transaction); what a page read is audited before the page is shown, with an entry of
//!   its own for the page;
//! - **forms**: every post of a signed-in session carries a CSRF value derived from the
//!   session's token; bad input is answered on the form, nothing stored.

mod care_plan;
mod care_team;
mod clinical;
mod display;
mod documents;
mod duplicates;
mod error;
mod forms;
mod layout;
mod notes;
mod pages;
mod plots;
mod reconcile;
mod referrals;
mod screening;
mod session;
mod tasks;
mod timeline;
mod trends;

pub use error::WebError;

use axum::Router;
use axum::routing::{get, post};
use policy::Policy;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// How many recently opened patients are remembered per user.
const RECENT: usize = 8;

/// Everything the app's handlers share.
#[derive(Clone)]
pub struct WebApp {
    inner: Arc<Inner>,
}

struct Inner {
    /// The one door to the record, shared with the FHIR API.
    door: access::Door,
    /// The door's policy (the app has no open mode): sign-in and sessions.
    policy: Arc<Policy>,
    /// Cookies get `Secure` (the server speaks HTTPS).
    secure_cookies: bool,
    throttle: Option<session::Throttle>,
    /// The master patient index, whose duplicate review list the app shows.
    patient_index: Option<exchange::identity::PatientIndex>,
    /// Recently opened patients per user id, newest first (in memory, per node).
    recent: Mutex<HashMap<String, VecDeque<String>>>,
    /// Days after which an open referral is shown overdue (`--referral-overdue-days`).
    referral_overdue_days: u32,
}

/// How the app is set up.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Cookies marked `Secure`: set when the server is reached over HTTPS.
    pub secure_cookies: bool,
    /// Sign-in form posts allowed per client address and minute (0: no throttle).
    pub sign_in_attempts_per_minute: u32,
}

impl WebApp {
    /// The app reaching the record through `door` (which must have a policy: `None`
    /// otherwise, as the app has no open mode). What it reads is audited through the door's
    /// auditor (none: only writes are, by the store).
    pub fn new(door: access::Door, config: WebConfig) -> Option<WebApp> {
        let policy = door.policy()?.clone();
        Some(WebApp {
            inner: Arc::new(Inner {
                door,
                policy,
                secure_cookies: config.secure_cookies,
                throttle: session::Throttle::new(config.sign_in_attempts_per_minute),
                patient_index: None,
                recent: Mutex::default(),
                referral_overdue_days: care::referrals::DEFAULT_OVERDUE_DAYS,
            }),
        })
    }

    /// Shows the duplicate review list of `index` (call before the app is shared).
    #[allow(clippy::expect_used, reason = "a builder step, called before the app is cloned: the only reference")]
    pub fn with_patient_index(mut self, index: exchange::identity::PatientIndex) -> WebApp {
        let inner = Arc::get_mut(&mut self.inner).expect("with_patient_index is called before the app is shared");
        inner.patient_index = Some(index);
        self
    }

    /// Shows referrals open longer than `days` as overdue (call before the app is shared;
    /// the same age as the aging job's).
    #[allow(clippy::expect_used, reason = "a builder step, called before the app is cloned: the only reference")]
    pub fn with_referral_overdue_days(mut self, days: u32) -> WebApp {
        let inner =
            Arc::get_mut(&mut self.inner).expect("with_referral_overdue_days is called before the app is shared");
        inner.referral_overdue_days = days;
        self
    }

    fn referral_overdue_days(&self) -> u32 {
        self.inner.referral_overdue_days
    }

    fn patient_index(&self) -> Option<exchange::identity::PatientIndex> {
        self.inner.patient_index.clone()
    }

    /// The FHIR API's base URL (the authorization server's audience), which names this
    /// installation as the custodian of the documents it makes.
    fn fhir_base_url(&self) -> String {
        self.inner.policy.authority().config().fhir_base_url.clone()
    }

    fn remember_recent(&self, user_id: &str, patient: &str) {
        let mut recent = self.inner.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let list = recent.entry(user_id.to_string()).or_default();
        list.retain(|p| p != patient);
        list.push_front(patient.to_string());
        list.truncate(RECENT);
    }

    fn recent(&self, user_id: &str) -> Vec<String> {
        let recent = self.inner.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        recent.get(user_id).map(|l| l.iter().cloned().collect()).unwrap_or_default()
    }
}

/// The app's routes, all under `/app`, to merge beside the FHIR API. Serve them with
/// `ConnectInfo<SocketAddr>` so that the sign-in throttle and the audit see client addresses.
pub fn router(app: WebApp) -> Router {
    Router::new()
        .route("/app", get(pages::home))
        .route("/app/", get(pages::home))
        .route("/app/static/app.css", get(layout::stylesheet))
        .route("/app/sign-in", get(session::sign_in_form).post(session::sign_in))
        .route("/app/sign-in/code", post(session::sign_in_code))
        .route("/app/sign-out", post(session::sign_out))
        .route("/app/patients", get(pages::patient_search))
        .route("/app/patients/{id}", get(pages::summary))
        .route("/app/patients/{id}/break-glass", post(pages::break_glass))
        .route("/app/patients/{id}/timeline", get(timeline::page))
        .route("/app/patients/{id}/trends", get(trends::page))
        .route("/app/patients/{id}/notes/new", get(notes::new_note))
        .route("/app/patients/{id}/notes", post(notes::create_note))
        .route("/app/patients/{id}/notes/{note}", get(notes::show_note).post(notes::update_note))
        .route("/app/patients/{id}/notes/{note}/amend", get(notes::amend_form).post(notes::amend))
        .route("/app/patients/{id}/vitals", get(forms::vitals_form).post(forms::record_vitals))
        .route("/app/patients/{id}/lists", get(forms::lists))
        .route("/app/patients/{id}/problems", post(forms::add_problem))
        .route("/app/patients/{id}/problems/{item}/resolve", post(forms::resolve_problem))
        .route("/app/patients/{id}/allergies", post(forms::add_allergy))
        .route("/app/patients/{id}/allergies/{item}/inactivate", post(forms::inactivate_allergy))
        .route("/app/patients/{id}/medications", post(forms::add_medication))
        .route("/app/patients/{id}/medications/{item}/discontinue", post(forms::discontinue_medication))
        .route("/app/patients/{id}/ccd", get(documents::download_ccd))
        .route("/app/patients/{id}/referral-document", post(documents::send_referral))
        .route("/app/patients/{id}/documents/{reference}", get(documents::download_document))
        .route("/app/duplicates", get(duplicates::page).post(duplicates::decide))
        .route("/app/patients/{id}/care-team", get(care_team::page).post(care_team::add))
        .route("/app/patients/{id}/care-team/end", post(care_team::end))
        .route("/app/alerts", get(care_team::alerts))
        .route("/app/alerts/{id}/read", post(care_team::mark_read))
        .route("/app/discharges", get(care_team::discharges))
        .route("/app/patients/{id}/reconcile", get(reconcile::page))
        .route("/app/patients/{id}/reconcile/{type}/{item}", post(reconcile::decide))
        .route("/app/patients/{id}/care-plans", get(care_plan::list).post(care_plan::create))
        .route("/app/patients/{id}/care-plans/{plan}", get(care_plan::show))
        .route("/app/patients/{id}/care-plans/{plan}/status", post(care_plan::set_status))
        .route("/app/patients/{id}/care-plans/{plan}/goals", post(care_plan::add_goal))
        .route("/app/patients/{id}/care-plans/{plan}/goals/{goal}/status", post(care_plan::set_goal_status))
        .route("/app/patients/{id}/care-plans/{plan}/activities", post(care_plan::add_activity))
        .route("/app/patients/{id}/care-plans/{plan}/activities/{index}/status", post(care_plan::set_activity_status))
        .route("/app/patients/{id}/care-plans/{plan}/activities/{index}/remove", post(care_plan::remove_activity))
        .route("/app/patients/{id}/screening", get(screening::page).post(screening::submit))
        .route("/app/tasks", get(tasks::inbox))
        .route("/app/tasks/{id}", post(tasks::act))
        .route("/app/referrals", get(referrals::dashboard))
        .route("/app/referrals/{id}", get(referrals::detail))
        .route("/app/referrals/{id}/steps", post(referrals::take_step))
        .route("/app/patients/{id}/referrals/new", get(referrals::new_referral))
        .route("/app/patients/{id}/referrals", post(referrals::send_referral))
        .route("/app/patients/{id}/tasks/new", get(tasks::new_task))
        .route("/app/patients/{id}/tasks", post(tasks::create_task))
        .with_state(app)
}
