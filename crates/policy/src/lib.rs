//! The one access decision every door into the record asks: who is calling (a bearer token
//! turned into an [`auth::Principal`]), and may they do this interaction on this resource
//! type, on this resource, on this search?
//!
//! Deny by default. A request is allowed only when all of these hold:
//!
//! 1. **The token's scopes** grant the interaction on the type (SMART v1/v2, with v2
//!    search-parameter constraints applied as filters or checked on the resource).
//! 2. **The caller's kind and roles** allow it ([`roles`]): a patient or proxy works in one
//!    patient's compartment; staff by role (a front desk does not read lab results, a nurse
//!    does not sign prescriptions, an administrator reads the audit trail but not charts); a
//!    backend service acts within its `system/` scopes.
//! 3. **Whose record** it is ([`reach`]): resources in the Patient compartment are visible
//!    only for the patients the caller may open; shared resources (Practitioner,
//!    Organization, Medication, ValueSet…) are readable by every authenticated caller.
//! 4. **Sensitive categories** ([`consent`]): behavioral-health records only for
//!    behavioral-health clinicians, substance-use records only where the patient consented,
//!    and whatever a Consent withholds from the caller's organization stays hidden.
//!
//! Searches are restricted before they run, never filtered afterwards, so that `_total`,
//! paging and `_summary=count` count only what the caller may see; `_include`d resources are
//! checked one by one; chained parameters and `_has` that would look into patient records
//! outside the searched resources' own patients are refused for restricted callers.
//!
//! **Break-the-glass**: staff may open a patient outside their reach for a stated reason;
//! the access is time-limited, flagged on every audit entry it causes, and itself audited.

pub mod consent;
mod guard;
pub mod reach;
mod roles;

use auth::{Authority, BearerError, Context, Identity, Interaction, Principal, Role, Subject};
use consent::Sensitivity;
pub use guard::CallerGuard;
use reach::StaffReach;
use search::query::{Contained, Filter, SearchQuery};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::Records;

/// How long a computed staff reach is reused.
const REACH_TTL: Duration = Duration::from_secs(30);

/// The identifier system under which an Organization names the backend clients (their
/// `client_id`) that act for it: a service token of such a client is held to what the
/// patients' Consents grant or withhold that organization (a peer node's client, say).
pub const CLIENT_ORGANIZATION_SYSTEM: &str = "urn:continuum:smart-client";
/// How long break-the-glass access lasts.
pub const GLASS_DURATION: Duration = Duration::from_secs(60 * 60);

/// Why a request is refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No token, or one that is not valid (401).
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// The resource is outside what the caller may see; answered as if it did not exist (404).
    #[error("resource not found")]
    Hidden,
    /// The lookups behind the decision failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// A caller whose token was accepted, with what it may reach.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who, through which app, with which scopes.
    pub principal: Principal,
    kind: CallerKind,
}

#[derive(Debug, Clone)]
enum CallerKind {
    /// A backend service (client credentials); acting for organizations (see
    /// [`CLIENT_ORGANIZATION_SYSTEM`]), what those organizations' Consents withhold.
    Service { acts_for: Option<Arc<StaffReach>> },
    /// A patient or a proxy: this patient only.
    Patient { patient: String },
    /// Staff.
    Staff { user_id: String, roles: Vec<Role>, reach: Arc<StaffReach>, glass: Vec<String> },
}

/// For one request: the patients it may touch, and what must be hidden of them.
#[derive(Debug, Clone, PartialEq)]
pub enum Reach {
    /// No restriction by patient.
    All,
    /// Only these patients' compartments.
    Patients(Vec<String>),
}

/// What a search must be narrowed by before it runs.
#[derive(Debug, Clone)]
pub struct Restriction {
    /// Extra search parameters (scope constraints, hidden categories), parsed with the
    /// request's own.
    pub pairs: Vec<(String, String)>,
    /// The patients whose compartments the search is limited to.
    pub reach: Reach,
}

impl Caller {
    /// Whether this caller is a backend service with nothing limiting it by patient.
    pub fn is_service(&self) -> bool {
        matches!(self.kind, CallerKind::Service { .. })
    }

    /// The patient a patient or proxy user acts for.
    pub fn own_patient(&self) -> Option<&str> {
        match &self.kind {
            CallerKind::Patient { patient } => Some(patient),
            _ => None,
        }
    }

    /// The staff roles.
    pub fn roles(&self) -> &[Role] {
        match &self.kind {
            CallerKind::Staff { roles, .. } => roles,
            _ => &[],
        }
    }

    /// Whether break-the-glass access to `patient` is open for this caller.
    pub fn under_glass(&self, patient: &str) -> bool {
        matches!(&self.kind, CallerKind::Staff { glass, .. } if glass.iter().any(|p| p == patient))
    }

    /// The patients this caller has break-the-glass access to now.
    pub fn glass_patients(&self) -> &[String] {
        match &self.kind {
            CallerKind::Staff { glass, .. } => glass,
            _ => &[],
        }
    }

    /// Whether the caller's roles admit records labelled behavioral health (patients and
    /// services: their own scopes and compartment decide).
    pub fn sees_behavioral_health(&self) -> bool {
        match &self.kind {
            CallerKind::Staff { roles, .. } => roles.iter().any(|r| roles::sees_behavioral_health(*r)),
            _ => true,
        }
    }
}

use store::compartment::compartment_keys;
pub use store::compartment::{patient_owned, patients_of};

/// Staff reaches computed recently, by user id.
#[derive(Default)]
struct Reaches {
    cached: Mutex<HashMap<String, (Instant, Arc<StaffReach>)>>,
    /// Counts the forgettings: a reach computed while a relationship changed (its searches
    /// read before that commit, the forgetting came before its answer) is not kept, or it
    /// would stay stale for the whole time to live.
    generation: std::sync::atomic::AtomicU64,
}

impl Reaches {
    fn forget(&self) {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        cached.clear();
    }

    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl store::CommitListener for Reaches {
    fn committed(&self, changes: &[store::Committed]) {
        if changes.iter().any(|c| Policy::changes_reach(&c.resource_type)) {
            self.forget();
        }
    }
}

/// The access decision, shared by every door.
pub struct Policy {
    authority: Arc<Authority>,
    records: Records,
    reaches: Arc<Reaches>,
    /// Break-the-glass grants: (user id, patient id) -> until.
    glass: Mutex<HashMap<(String, String), Instant>>,
}

impl Policy {
    /// The policy over `records`, accepting tokens issued by `authority`.
    ///
    /// Computed reaches are forgotten after every committed write that may change them,
    /// whatever wrote it (the REST API, the web app, HL7 v2, an import): the policy listens to
    /// `records`' feed of committed changes.
    pub fn new(authority: Arc<Authority>, records: Records) -> Policy {
        let reaches = Arc::new(Reaches::default());
        records.changes().listen(reaches.clone());
        Policy { authority, records, reaches, glass: Mutex::default() }
    }

    /// The authorization server behind it.
    pub fn authority(&self) -> &Arc<Authority> {
        &self.authority
    }

    /// Turns the `Authorization` header into a caller (blocking: reads the token store and,
    /// for staff, computes their reach).
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, Refusal> {
        let Some(header) = authorization else {
            return Err(Refusal::Unauthenticated("a bearer token is required".into()));
        };
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or_else(|| Refusal::Unauthenticated("the Authorization header must carry a Bearer token".into()))?;
        let principal = match self.authority.validate_bearer(token) {
            Ok(p) => p,
            Err(BearerError::Store(e)) => return Err(Refusal::Store(store::Error::Storage(e.to_string()))),
            Err(e) => return Err(Refusal::Unauthenticated(e.to_string())),
        };
        let kind = match &principal.subject {
            Subject::Service { client_id } => CallerKind::Service { acts_for: self.organizations_reach(client_id)? },
            Subject::User { identity: Identity::Patient { patient }, .. }
            | Subject::User { identity: Identity::Proxy { patient, .. }, .. } => {
                CallerKind::Patient { patient: patient.clone() }
            }
            Subject::User { id, identity: Identity::Staff { roles, organizations, practitioner, .. }, .. } => {
                let reach = self.reach_of(id, organizations, practitioner.as_deref())?;
                CallerKind::Staff { user_id: id.clone(), roles: roles.clone(), reach, glass: self.open_glass(id) }
            }
        };
        Ok(Caller { principal, kind })
    }

    /// The caller a system job acts for when it delivers to someone who is not making a
    /// request (a Subscription's owner): the user whose sign-in name is `name`, else the
    /// backend client whose id is `name`, as they stand now (roles, organizations, reach,
    /// Consents), with the read scopes of their kind (`user/*.read`, `patient/*.read`,
    /// `system/*.read`) — the scopes of the token they wrote with are not kept. `None` when
    /// neither exists or they are disabled.
    pub fn caller_for(&self, name: &str, client_id: Option<&str>) -> Result<Option<Caller>, Refusal> {
        let store_error = |e: auth::Error| Refusal::Store(store::Error::Storage(e.to_string()));
        if let Some(client_id) = client_id {
            match self.authority.store().client(client_id).map_err(store_error)? {
                Some(client) if !client.disabled => {}
                _ => return Ok(None),
            }
        }
        if let Some(user) = self.authority.store().user_by_username(name).map_err(store_error)? {
            if user.disabled {
                return Ok(None);
            }
            let (scope, patient) = match user.identity.patient() {
                Some(patient) => ("patient/*.read", Some(patient.to_string())),
                None => ("user/*.read", None),
            };
            let kind = match &user.identity {
                Identity::Patient { patient } | Identity::Proxy { patient, .. } => {
                    CallerKind::Patient { patient: patient.clone() }
                }
                Identity::Staff { roles, organizations, practitioner, .. } => {
                    let reach = self.reach_of(&user.id, organizations, practitioner.as_deref())?;
                    CallerKind::Staff {
                        user_id: user.id.clone(),
                        roles: roles.clone(),
                        reach,
                        glass: self.open_glass(&user.id),
                    }
                }
            };
            let principal = Principal {
                subject: Subject::User { id: user.id, username: user.username, identity: user.identity },
                client_id: client_id.map(str::to_string),
                scopes: auth::ScopeSet::parse(scope),
                patient,
                encounter: None,
                expires_at: i64::MAX,
            };
            return Ok(Some(Caller { principal, kind }));
        }
        match self.authority.store().client(name).map_err(store_error)? {
            Some(client) if !client.disabled => {
                let principal = Principal {
                    subject: Subject::Service { client_id: name.to_string() },
                    client_id: Some(name.to_string()),
                    scopes: auth::ScopeSet::parse("system/*.read"),
                    patient: None,
                    encounter: None,
                    expires_at: i64::MAX,
                };
                let kind = CallerKind::Service { acts_for: self.organizations_reach(name)? };
                Ok(Some(Caller { principal, kind }))
            }
            _ => Ok(None),
        }
    }

    /// For a backend client that acts for organizations (Organizations whose `identifier`
    /// holds its client id under [`CLIENT_ORGANIZATION_SYSTEM`]): what their Consents
    /// withhold, computed like a member of staff's of those organizations; `None` for a
    /// client acting for none.
    fn organizations_reach(&self, client_id: &str) -> Result<Option<Arc<StaffReach>>, Refusal> {
        let organizations: Vec<String> = reach::ids_of(
            &self.records,
            "Organization",
            &[("identifier", format!("{CLIENT_ORGANIZATION_SYSTEM}|{client_id}"))],
        )?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
        if organizations.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.reach_of(&format!("client:{client_id}"), &organizations, None)?))
    }

    fn reach_of(&self, user: &str, orgs: &[String], practitioner: Option<&str>) -> Result<Arc<StaffReach>, Refusal> {
        if let Some((at, reach)) = self.reaches.cached.lock().unwrap_or_else(|e| e.into_inner()).get(user)
            && at.elapsed() < REACH_TTL
        {
            return Ok(reach.clone());
        }
        let generation = self.reaches.generation();
        let reach = Arc::new(reach::compute(&self.records, orgs, practitioner)?);
        let mut cached = self.reaches.cached.lock().unwrap_or_else(|e| e.into_inner());
        if self.reaches.generation() == generation {
            cached.insert(user.to_string(), (Instant::now(), reach.clone()));
        }
        Ok(reach)
    }

    fn open_glass(&self, user: &str) -> Vec<String> {
        let mut glass = self.glass.lock().unwrap_or_else(|e| e.into_inner());
        glass.retain(|_, until| *until > Instant::now());
        glass.keys().filter(|(u, _)| u == user).map(|(_, p)| p.clone()).collect()
    }

    /// The write-path guard of `caller`: hand it to [`store::Records::guarded`] so that every
    /// version the caller writes is checked as stored.
    pub fn guard(self: &Arc<Self>, caller: Arc<Caller>) -> Arc<dyn store::AccessGuard> {
        Arc::new(CallerGuard::new(self.clone(), caller))
    }

    /// Forgets computed reaches (after a write that may change a relationship or a Consent).
    pub fn forget_reaches(&self) {
        self.reaches.forget();
    }

    /// Whether a write of `resource_type` may change who sees what.
    pub fn changes_reach(resource_type: &str) -> bool {
        matches!(
            resource_type,
            "Patient"
                | "Consent"
                | "CareTeam"
                | "Encounter"
                | "Appointment"
                | "ServiceRequest"
                | "Organization"
                | "PractitionerRole"
                | "Communication"
        )
    }

    /// Opens break-the-glass access to `patient` for a member of staff, for [`GLASS_DURATION`].
    /// The reason is required (the caller audits it).
    pub fn break_glass(&self, caller: &Caller, patient: &str, reason: &str) -> Result<Duration, Refusal> {
        let CallerKind::Staff { user_id, roles, .. } = &caller.kind else {
            return Err(Refusal::Forbidden("break-the-glass is for clinical staff".into()));
        };
        let clinical = roles
            .iter()
            .any(|r| matches!(r, Role::Physician | Role::Nurse | Role::BehavioralHealthClinician | Role::CareManager));
        if !clinical {
            return Err(Refusal::Forbidden("break-the-glass is for clinical staff".into()));
        }
        if reason.trim().len() < 4 {
            return Err(Refusal::Forbidden("break-the-glass needs a stated reason".into()));
        }
        self.records.read("Patient", patient)?;
        self.glass
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((user_id.clone(), patient.to_string()), Instant::now() + GLASS_DURATION);
        Ok(GLASS_DURATION)
    }

    /// Type-level check: may the caller do `interaction` on `resource_type` at all? Returns the
    /// scope constraints still to apply (as search parameters) and the patients it reaches.
    pub fn authorize(
        &self,
        caller: &Caller,
        interaction: Interaction,
        resource_type: &str,
        params: &[(String, String)],
    ) -> Result<Restriction, Refusal> {
        let decision = caller.principal.scopes.decide(interaction, resource_type, params);
        if decision.is_denied() {
            return Err(Refusal::Forbidden(format!(
                "the token's scopes do not allow {} on {resource_type}",
                interaction_name(interaction)
            )));
        }
        let owned = patient_owned(resource_type);
        // The grant used: unconditional ones first; with only conditional ones, the first.
        let grant = &decision.grants()[0];
        let mut pairs: Vec<(String, String)> =
            grant.residual.iter().map(|c| (c.name.clone(), c.values.join(","))).collect();
        let reach = match &caller.kind {
            CallerKind::Service { .. } => {
                if !decision.grants().iter().any(|g| g.context == Context::System) {
                    return Err(Refusal::Forbidden("a backend service needs system/ scopes".into()));
                }
                if resource_type == "AuditEvent" && is_write(interaction) {
                    return Err(Refusal::Forbidden("the audit trail is written by the server only".into()));
                }
                Reach::All
            }
            CallerKind::Patient { patient } => {
                if is_write(interaction) && !roles::PATIENT_WRITES.contains(&resource_type) {
                    return Err(Refusal::Forbidden(format!("patients do not write {resource_type} resources")));
                }
                if owned { Reach::Patients(vec![patient.clone()]) } else { Reach::All }
            }
            CallerKind::Staff { roles: staff_roles, reach, glass, .. } => {
                // A patient's Binary (the bytes of their document) is written by those who
                // write their documents.
                let as_type = if resource_type == "Binary" { "DocumentReference" } else { resource_type };
                let owned = owned || resource_type == "Binary";
                let allowed = staff_roles.iter().any(|r| {
                    if owned {
                        roles::role_allows_patient_data(*r, interaction, as_type)
                    } else {
                        roles::role_allows_shared(*r, interaction, resource_type)
                    }
                });
                if !allowed {
                    return Err(Refusal::Forbidden(format!(
                        "your role does not allow {} on {resource_type}",
                        interaction_name(interaction)
                    )));
                }
                if !owned {
                    Reach::All
                } else if resource_type == "AuditEvent" {
                    // Administrators search the whole trail.
                    Reach::All
                } else {
                    let user_context = decision.grants().iter().any(|g| g.context == Context::User);
                    let mut patients: Vec<String> = if user_context {
                        reach.patients.iter().cloned().collect()
                    } else {
                        // patient/ scopes: the launch patient only, if the user may open it.
                        match &caller.principal.patient {
                            Some(p) if reach.patients.contains(p) || glass.contains(p) => vec![p.clone()],
                            _ => Vec::new(),
                        }
                    };
                    if user_context {
                        patients.extend(glass.iter().filter(|p| !reach.patients.contains(*p)).cloned());
                    }
                    patients.sort();
                    Reach::Patients(patients)
                }
            }
        };
        // A Binary is shared data in R4, but one whose `securityContext` names a patient (the
        // exact bytes of a patient's document) is read as that patient's: people see only those
        // of the patients they reach (`check_resource`), and may not search Binaries at all
        // (no search parameter links one to its patient to narrow a search by).
        let reach = match &caller.kind {
            _ if resource_type != "Binary" => reach,
            CallerKind::Service { .. } => reach,
            _ if interaction == Interaction::Search => {
                return Err(Refusal::Forbidden(
                    "Binary search is not available to you; read a Binary by its id".into(),
                ));
            }
            CallerKind::Patient { patient } => Reach::Patients(vec![patient.clone()]),
            // Reached as patient data above.
            CallerKind::Staff { .. } => reach,
        };
        // A search that names its patients needs only their compartments (a smaller filter than
        // every patient the caller may open).
        let reach = match reach {
            Reach::Patients(patients) => {
                let named = named_patients(params);
                if named.is_empty() {
                    Reach::Patients(patients)
                } else {
                    Reach::Patients(patients.into_iter().filter(|p| named.contains(&p.as_str())).collect())
                }
            }
            all => all,
        };
        if owned {
            let codes: Vec<String> = self
                .hidden_categories(caller, &reach, params)
                .into_iter()
                .flat_map(|c| c.codes().iter().map(|code| format!("{}|{code}", consent::ACT_CODE)))
                .collect();
            if !codes.is_empty() {
                // One `:not` with every code: none of them.
                pairs.push(("_security:not".into(), codes.join(",")));
            }
        }
        Ok(Restriction { pairs, reach })
    }

    /// The categories to hide from a search or read reaching `reach`: the union over the
    /// patients it touches (the one named by a `patient`/`subject` parameter when there is one).
    fn hidden_categories(&self, caller: &Caller, reach: &Reach, params: &[(String, String)]) -> Vec<Sensitivity> {
        if let CallerKind::Service { acts_for: Some(organizations) } = &caller.kind {
            // A service acting for organizations reaches every patient: what the named
            // patients withhold from them, or, when none is named, what any patient withholds
            // (never less than a named search would hide).
            let named = named_patients(params);
            let mut hidden = Vec::new();
            let mut add = |categories: Vec<Sensitivity>| {
                for category in categories {
                    if !hidden.contains(&category) {
                        hidden.push(category);
                    }
                }
            };
            if named.is_empty() {
                organizations.withheld.values().for_each(|c| add(c.clone()));
                add(vec![Sensitivity::SubstanceUse]);
            } else {
                named.iter().for_each(|p| add(organizations.hidden(p, true)));
            }
            return hidden;
        }
        let CallerKind::Staff { reach: staff, .. } = &caller.kind else { return Vec::new() };
        let Reach::Patients(patients) = reach else { return Vec::new() };
        let named = named_patients(params);
        let touched: Vec<&String> = if named.is_empty() {
            patients.iter().collect()
        } else {
            patients.iter().filter(|p| named.contains(&p.as_str())).collect()
        };
        let sees_bh = caller.sees_behavioral_health();
        let mut hidden = Vec::new();
        for patient in touched {
            if caller.under_glass(patient) {
                continue;
            }
            for category in staff.hidden(patient, sees_bh) {
                if !hidden.contains(&category) {
                    hidden.push(category);
                }
            }
        }
        hidden
    }

    /// Narrows a parsed search to what `caller` may see, before it runs: each searched type by
    /// its own rule (scope constraints, hidden categories, the patients it reaches), the
    /// containers a `_contained` search returns by theirs, and every chain and `_has` by the
    /// rule of the type it looks into, on every searched type (shared ones included). A chain
    /// or `_has` into a type the caller may not search at all is refused.
    pub fn narrow(
        &self,
        caller: &Caller,
        interaction: Interaction,
        query: &mut SearchQuery,
        params: &[(String, String)],
    ) -> Result<(), Refusal> {
        if query.types.is_empty() {
            return Err(Refusal::Forbidden("name the resource types to search with _type".into()));
        }
        for filter in query.filters.iter_mut().chain(query.contained_filters.iter_mut()) {
            self.narrow_links(caller, filter)?;
        }
        let mut restrictions = Vec::with_capacity(query.types.len());
        for t in &query.types {
            restrictions.push((t.clone(), self.authorize(caller, interaction, t, params)?));
        }
        let containers = if query.contained == Contained::No {
            None
        } else {
            // Containers are of any type: those the caller may search, each by its own rule.
            let mut allowed = Vec::new();
            for t in fhir::definitions().resource_types() {
                match self.authorize(caller, Interaction::Search, t, &[]) {
                    Ok(restriction) => allowed.push((t.to_string(), restriction)),
                    Err(Refusal::Forbidden(_)) | Err(Refusal::Hidden) => {}
                    Err(e) => return Err(e),
                }
            }
            Some(narrowing(&allowed, true)?)
        };
        match (query.contained, containers) {
            (Contained::Only, Some(containers)) => query.filters.extend(containers),
            (Contained::Both, Some(containers)) => {
                query.filters.extend(narrowing(&restrictions, false)?);
                query.contained_filters.extend(containers);
            }
            _ => query.filters.extend(narrowing(&restrictions, false)?),
        }
        Ok(())
    }

    /// Narrows the resources a chain or `_has` looks into to those the caller may search.
    fn narrow_links(&self, caller: &Caller, filter: &mut Filter) -> Result<(), Refusal> {
        let (looked_into, inner) = match filter {
            Filter::Chain { target_type, inner, .. } => (target_type.clone(), inner),
            Filter::Has { source_type, inner, .. } => (source_type.clone(), inner),
            Filter::AnyOf(filters) | Filter::AllOf(filters) => {
                return filters.iter_mut().try_for_each(|f| self.narrow_links(caller, f));
            }
            _ => return Ok(()),
        };
        self.narrow_links(caller, inner)?;
        let restriction = match self.authorize(caller, Interaction::Search, &looked_into, &[]) {
            Ok(r) => r,
            Err(Refusal::Forbidden(_)) => {
                return Err(Refusal::Forbidden(format!(
                    "chained parameters and _has into {looked_into} are not available to you"
                )));
            }
            Err(e) => return Err(e),
        };
        let extra = narrowing(&[(looked_into, restriction)], false)?;
        if !extra.is_empty() {
            let mut all = vec![std::mem::replace(&mut **inner, Filter::Nothing)];
            all.extend(extra);
            **inner = Filter::AllOf(all);
        }
        Ok(())
    }

    /// Resource-level check of one resource the caller reads or writes (after [`authorize`]
    /// allowed the type): it must belong to a patient in the restriction's reach and carry no
    /// hidden category, and meet the scope's remaining constraints.
    ///
    /// [`authorize`]: Policy::authorize
    pub fn check_resource(
        &self,
        caller: &Caller,
        restriction: &Restriction,
        resource_type: &str,
        resource: &Value,
    ) -> Result<(), Refusal> {
        if resource_type == "Binary"
            && let Reach::Patients(patients) = &restriction.reach
        {
            // Its patient is its `securityContext`; one without a patient's is shared data.
            let context = resource.pointer("/securityContext/reference").and_then(Value::as_str);
            return match context {
                None => Ok(()),
                Some(reference) => match reference.strip_prefix("Patient/") {
                    Some(owner) if patients.iter().any(|p| p == owner) => Ok(()),
                    _ => Err(Refusal::Hidden),
                },
            };
        }
        if let Reach::Patients(patients) = &restriction.reach
            && patient_owned(resource_type)
        {
            let owners = patients_of(resource_type, resource);
            if owners.is_empty() || !owners.iter().any(|o| patients.contains(o)) {
                return Err(Refusal::Hidden);
            }
            let labels = consent::labels(resource);
            if !labels.is_empty() {
                let hidden =
                    self.hidden_categories(caller, &restriction.reach, &[("patient".into(), owners.join(","))]);
                if labels.iter().any(|l| hidden.contains(l)) {
                    return Err(Refusal::Hidden);
                }
            }
        }
        if let CallerKind::Service { acts_for: Some(_) } = &caller.kind
            && patient_owned(resource_type)
        {
            let labels = consent::labels(resource);
            if !labels.is_empty() {
                let owners = patients_of(resource_type, resource);
                let hidden =
                    self.hidden_categories(caller, &restriction.reach, &[("patient".into(), owners.join(","))]);
                if labels.iter().any(|l| hidden.contains(l)) {
                    return Err(Refusal::Hidden);
                }
            }
        }
        let constraints: Vec<&(String, String)> =
            restriction.pairs.iter().filter(|(n, _)| !n.starts_with("_security")).collect();
        if !constraints.is_empty() {
            let id = resource.get("id").and_then(Value::as_str).unwrap_or_default();
            let mut pairs = vec![("_id".to_string(), id.to_string())];
            pairs.extend(constraints.into_iter().cloned());
            let query =
                SearchQuery::parse(Some(resource_type), &pairs, false).map_err(|e| store::Error::Invalid(e.0))?;
            if self.records.backend().search(&query, 1)?.is_empty() {
                return Err(Refusal::Hidden);
            }
        }
        Ok(())
    }

    /// Whether the caller may see `resource` (an included resource, a history entry): the
    /// read check of its type and of the resource itself.
    pub fn may_read(&self, caller: &Caller, resource_type: &str, resource: &Value) -> Result<bool, Refusal> {
        let restriction = match self.authorize(caller, Interaction::Read, resource_type, &[]) {
            Ok(r) => r,
            Err(Refusal::Forbidden(_)) | Err(Refusal::Hidden) => return Ok(false),
            Err(e) => return Err(e),
        };
        match self.check_resource(caller, &restriction, resource_type, resource) {
            Ok(()) => Ok(true),
            Err(Refusal::Hidden) | Err(Refusal::Forbidden(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether `patient` is reachable by the caller for reads (for `$everything`).
    pub fn may_open_patient(&self, caller: &Caller, patient: &str) -> Result<bool, Refusal> {
        let restriction = self.authorize(caller, Interaction::Read, "Patient", &[])?;
        Ok(match &restriction.reach {
            Reach::All => true,
            Reach::Patients(p) => p.iter().any(|p| p == patient),
        })
    }
}

/// The patients a request names with `patient=` or `subject=Patient/…` (one parameter
/// each; alternatives separated by commas).
fn named_patients(params: &[(String, String)]) -> Vec<&str> {
    params
        .iter()
        .filter(|(n, _)| n == "patient" || n == "subject" || n == "subject:Patient" || n == "patient:Patient")
        .flat_map(|(_, v)| v.split(','))
        .map(|v| v.strip_prefix("Patient/").unwrap_or(v))
        .filter(|v| fhir::reference::is_id(v))
        .collect()
}

fn is_write(interaction: Interaction) -> bool {
    matches!(interaction, Interaction::Create | Interaction::Update | Interaction::Delete)
}

fn interaction_name(interaction: Interaction) -> &'static str {
    match interaction {
        Interaction::Create => "create",
        Interaction::Read => "read",
        Interaction::Update => "update",
        Interaction::Delete => "delete",
        Interaction::Search => "search",
    }
}

/// The filters that limit a search over the types of `restrictions` to what each type's
/// restriction allows: the filters as they are for one type; for several, one alternative
/// per group of types that share a restriction (`any_type`: the rows may be of any type, as
/// containers are, so even one type is named).
pub fn narrowing(restrictions: &[(String, Restriction)], any_type: bool) -> Result<Vec<Filter>, Refusal> {
    let mut groups: Vec<(Vec<String>, &Restriction)> = Vec::new();
    for (t, restriction) in restrictions {
        let owned = patient_owned(t);
        match groups.iter_mut().find(|(types, r)| {
            r.pairs == restriction.pairs && r.reach == restriction.reach && patient_owned(&types[0]) == owned
        }) {
            Some((types, _)) => types.push(t.clone()),
            None => groups.push((vec![t.clone()], restriction)),
        }
    }
    if groups.len() == 1 && !any_type {
        let (types, restriction) = &groups[0];
        return restriction_filters(restriction, types);
    }
    let mut alternatives = Vec::with_capacity(groups.len());
    for (types, restriction) in &groups {
        let mut all = vec![Filter::OfType(types.clone())];
        all.extend(restriction_filters(restriction, types)?);
        alternatives.push(Filter::AllOf(all));
    }
    Ok(vec![if alternatives.is_empty() { Filter::Nothing } else { Filter::AnyOf(alternatives) }])
}

/// The filters of one restriction on resources of `types` (which share it): its extra
/// parameters (scope constraints, hidden categories), parsed apart from the request's own so
/// that they never show in a Bundle's links, and the patients it reaches.
fn restriction_filters(restriction: &Restriction, types: &[String]) -> Result<Vec<Filter>, Refusal> {
    let mut filters = Vec::new();
    if !restriction.pairs.is_empty() {
        let parsed = match types {
            [one] => SearchQuery::parse(Some(one), &restriction.pairs, true),
            _ => {
                let mut pairs = vec![("_type".to_string(), types.join(","))];
                pairs.extend(restriction.pairs.iter().cloned());
                SearchQuery::parse(None, &pairs, true)
            }
        };
        let parsed = parsed
            .map_err(|_| Refusal::Forbidden("the token's scope constraints do not apply to this search".into()))?;
        filters.extend(parsed.filters);
    }
    let Reach::Patients(patients) = &restriction.reach else { return Ok(filters) };
    let owned: Vec<&String> = types.iter().filter(|t| patient_owned(t)).collect();
    if owned.is_empty() {
        return Ok(filters);
    }
    // A Patient is reached by its id (its `link`s name other Patient resources).
    let keys: Vec<i64> = owned.iter().filter(|t| **t != "Patient").flat_map(|t| compartment_keys(t)).collect();
    let mut any = Vec::new();
    if !keys.is_empty() && !patients.is_empty() {
        any.push(Filter::Compartment { keys, target_type: "Patient".into(), ids: patients.clone() });
    }
    if owned.iter().any(|t| *t == "Patient") && !patients.is_empty() {
        if types.len() == 1 {
            any.push(Filter::Id(patients.clone()));
        } else {
            any.extend(patients.iter().map(|p| Filter::Is { resource_type: "Patient".into(), id: p.clone() }));
        }
    }
    filters.push(match any.len() {
        0 => Filter::Nothing,
        1 => any.remove(0),
        _ => Filter::AnyOf(any),
    });
    Ok(filters)
}
