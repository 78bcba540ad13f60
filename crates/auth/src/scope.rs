//! SMART scopes, v1 (`patient/*.read`) and v2 (`patient/Observation.rs?category=laboratory`),
//! and the one question the policy engine asks of them: may this token do interaction X on
//! resource type T, and under which remaining constraints?
//!
//! A v2 scope's search-parameter constraints narrow what it grants. A search that already
//! carries the constraint (same parameter, values within the scope's) satisfies it; otherwise
//! the constraint is handed back as *residual*: the caller must apply it as an extra search
//! filter, or check it against the resource for reads and writes. Handing it back is always
//! safe, never an over-grant.

use std::fmt;

/// The context a resource scope applies in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Context {
    /// `patient/`: the launched patient's compartment.
    Patient,
    /// `user/`: whatever the signed-in user may see.
    User,
    /// `system/`: a backend service acting on its own behalf.
    System,
}

impl Context {
    /// The prefix as written in a scope.
    pub fn as_str(self) -> &'static str {
        match self {
            Context::Patient => "patient",
            Context::User => "user",
            Context::System => "system",
        }
    }
}

/// One of the five SMART v2 permissions; every FHIR interaction needs exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interaction {
    /// `c`: create.
    Create,
    /// `r`: read, vread, instance history.
    Read,
    /// `u`: update, patch.
    Update,
    /// `d`: delete.
    Delete,
    /// `s`: search, type and system history.
    Search,
}

impl Interaction {
    fn bit(self) -> u8 {
        match self {
            Interaction::Create => 1,
            Interaction::Read => 2,
            Interaction::Update => 4,
            Interaction::Delete => 8,
            Interaction::Search => 16,
        }
    }
}

/// A set of permissions (`cruds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Permissions(u8);

impl Permissions {
    /// All five permissions.
    pub const ALL: Permissions = Permissions(31);
    const LETTERS: [(char, Interaction); 5] = [
        ('c', Interaction::Create),
        ('r', Interaction::Read),
        ('u', Interaction::Update),
        ('d', Interaction::Delete),
        ('s', Interaction::Search),
    ];

    /// Whether `interaction` is granted.
    pub fn allows(self, interaction: Interaction) -> bool {
        self.0 & interaction.bit() != 0
    }

    /// Whether every permission of `other` is also in `self`.
    pub fn contains(self, other: Permissions) -> bool {
        self.0 & other.0 == other.0
    }

    /// Parses v2 letters, which must be in `cruds` order, each at most once.
    fn parse_v2(text: &str) -> Option<Permissions> {
        let mut bits = 0u8;
        let mut next = 0;
        for ch in text.chars() {
            let at = Self::LETTERS[next..].iter().position(|(c, _)| *c == ch)? + next;
            bits |= Self::LETTERS[at].1.bit();
            next = at + 1;
        }
        (bits != 0).then_some(Permissions(bits))
    }

    /// The v1 words, as SMART v2 maps them: `read` = `rs`, `write` = `cud`, `*` = `cruds`.
    fn parse_v1(text: &str) -> Option<Permissions> {
        match text {
            "read" => Some(Permissions(Interaction::Read.bit() | Interaction::Search.bit())),
            "write" => {
                Some(Permissions(Interaction::Create.bit() | Interaction::Update.bit() | Interaction::Delete.bit()))
            }
            "*" => Some(Permissions::ALL),
            _ => None,
        }
    }
}

/// A search-parameter constraint of a v2 scope: `name=value[,value…]` (values are alternatives).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Constraint {
    /// The search parameter, possibly with a modifier (`code:in`).
    pub name: String,
    /// The accepted values (a comma-separated list in the scope).
    pub values: Vec<String>,
}

impl Constraint {
    /// Whether a request parameter list already narrows the search to within this constraint.
    fn satisfied_by(&self, params: &[(String, String)]) -> bool {
        params.iter().any(|(name, value)| {
            name == &self.name && value.split(',').all(|v| self.values.iter().any(|allowed| allowed == v))
        })
    }
}

/// A resource scope such as `patient/Observation.rs?category=laboratory`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceScope {
    /// `patient`, `user` or `system`.
    pub context: Context,
    /// The resource type, `None` for `*`.
    pub resource_type: Option<String>,
    /// What it grants.
    pub permissions: Permissions,
    /// Search-parameter constraints, all of which must hold (v2 only).
    pub constraints: Vec<Constraint>,
}

impl ResourceScope {
    fn applies_to(&self, resource_type: &str) -> bool {
        self.resource_type.as_deref().is_none_or(|t| t == resource_type)
    }

    /// Whether everything `other` grants is also granted by `self`.
    pub fn covers(&self, other: &ResourceScope) -> bool {
        self.context == other.context
            && (self.resource_type.is_none() || self.resource_type == other.resource_type)
            && self.permissions.contains(other.permissions)
            && self.constraints.iter().all(|c| {
                other.constraints.iter().any(|o| o.name == c.name && o.values.iter().all(|v| c.values.contains(v)))
            })
    }
}

/// One scope of a token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ScopeKind {
    /// A resource scope.
    Resource(ResourceScope),
    /// `openid`.
    OpenId,
    /// `fhirUser`.
    FhirUser,
    /// `launch`: EHR launch with a launch context.
    Launch,
    /// `launch/patient`: standalone launch asking for a patient context.
    LaunchPatient,
    /// `launch/encounter`: standalone launch asking for an encounter context.
    LaunchEncounter,
    /// `offline_access`: a refresh token that outlives the session.
    OfflineAccess,
    /// `online_access`: a refresh token for the session.
    OnlineAccess,
    /// `user/hl7-messages.read`: read the HL7 v2 message log (`/admin/hl7/messages`), for an
    /// administrator. Not a FHIR resource scope: `user/*.rs` does not include it.
    Hl7MessageLog,
    /// Anything else (kept as written, grants nothing).
    Other,
}

/// A scope as written, with its meaning.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    text: String,
    kind: ScopeKind,
}

impl Scope {
    /// Parses one space-free scope; unknown or malformed ones become [`ScopeKind::Other`].
    pub fn parse(text: &str) -> Scope {
        let kind = match text {
            "openid" => ScopeKind::OpenId,
            "fhirUser" => ScopeKind::FhirUser,
            "launch" => ScopeKind::Launch,
            "launch/patient" => ScopeKind::LaunchPatient,
            "launch/encounter" => ScopeKind::LaunchEncounter,
            "offline_access" => ScopeKind::OfflineAccess,
            "online_access" => ScopeKind::OnlineAccess,
            "user/hl7-messages.read" => ScopeKind::Hl7MessageLog,
            _ => parse_resource_scope(text).map_or(ScopeKind::Other, ScopeKind::Resource),
        };
        Scope { text: text.to_string(), kind }
    }

    /// The scope as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// What it means.
    pub fn kind(&self) -> &ScopeKind {
        &self.kind
    }

    /// Whether a client allowed `self` may be granted `other`.
    pub fn covers(&self, other: &Scope) -> bool {
        match (&self.kind, &other.kind) {
            (ScopeKind::Resource(a), ScopeKind::Resource(b)) => a.covers(b),
            (ScopeKind::Other, ScopeKind::Other) => self.text == other.text,
            (a, b) => a == b,
        }
    }
}

fn parse_resource_scope(text: &str) -> Option<ResourceScope> {
    let (context, rest) = text.split_once('/')?;
    let context = match context {
        "patient" => Context::Patient,
        "user" => Context::User,
        "system" => Context::System,
        _ => return None,
    };
    let (body, query) = match rest.split_once('?') {
        Some((body, query)) => (body, Some(query)),
        None => (rest, None),
    };
    let (resource_type, permissions) = body.split_once('.')?;
    let resource_type = match resource_type {
        "*" => None,
        t if !t.is_empty() && t.chars().next().is_some_and(|c| c.is_ascii_uppercase()) => {
            if !t.chars().all(|c| c.is_ascii_alphanumeric()) {
                return None;
            }
            Some(t.to_string())
        }
        _ => return None,
    };
    let (permissions, v1) = match Permissions::parse_v1(permissions) {
        Some(p) => (p, true),
        None => (Permissions::parse_v2(permissions)?, false),
    };
    let mut constraints = Vec::new();
    if let Some(query) = query {
        // Constraints are a v2 feature; a v1 scope with a query is malformed.
        if v1 || query.is_empty() {
            return None;
        }
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if name.is_empty() || value.is_empty() {
                return None;
            }
            constraints
                .push(Constraint { name: name.into_owned(), values: value.split(',').map(str::to_string).collect() });
        }
    }
    Some(ResourceScope { context, resource_type, permissions, constraints })
}

/// The scopes of a request, a client registration or a token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet {
    scopes: Vec<Scope>,
}

/// What one scope allows for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The context of the scope that grants it.
    pub context: Context,
    /// Constraints the request does not already satisfy: apply them as filters (search) or
    /// check them against the resource (read, create, update, delete). Empty: unconditional.
    pub residual: Vec<Constraint>,
}

/// The answer to "may this token do interaction X on type T": the grants of every scope that
/// allows it (none: deny). Any one grant suffices.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    grants: Vec<Grant>,
}

impl Decision {
    /// No scope allows the request.
    pub fn is_denied(&self) -> bool {
        self.grants.is_empty()
    }

    /// Every grant, one per allowing scope (the unconditional ones first).
    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    /// Whether some scope in `context` allows the request without further constraint.
    pub fn unconditional_in(&self, context: Context) -> bool {
        self.grants.iter().any(|g| g.context == context && g.residual.is_empty())
    }
}

impl ScopeSet {
    /// Parses a space-separated scope string (duplicates dropped, order kept).
    pub fn parse(text: &str) -> ScopeSet {
        let mut scopes: Vec<Scope> = Vec::new();
        for word in text.split_ascii_whitespace() {
            if !scopes.iter().any(|s| s.text == word) {
                scopes.push(Scope::parse(word));
            }
        }
        ScopeSet { scopes }
    }

    /// The scopes, in the order written.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.scopes.iter()
    }

    /// Whether there are no scopes.
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    /// Whether a scope of this kind (e.g. [`ScopeKind::OpenId`]) is present.
    pub fn has(&self, kind: &ScopeKind) -> bool {
        self.scopes.iter().any(|s| &s.kind == kind)
    }

    /// Whether the scope written `text` is present.
    pub fn contains(&self, text: &str) -> bool {
        self.scopes.iter().any(|s| s.text == text)
    }

    /// The resource scopes.
    pub fn resource_scopes(&self) -> impl Iterator<Item = &ResourceScope> {
        self.scopes.iter().filter_map(|s| match &s.kind {
            ScopeKind::Resource(r) => Some(r),
            _ => None,
        })
    }

    /// The requested scopes that `self` (a client's allowed scopes) covers; unknown scopes
    /// are dropped.
    pub fn grantable(&self, requested: &ScopeSet) -> ScopeSet {
        let scopes = requested
            .scopes
            .iter()
            .filter(|r| r.kind != ScopeKind::Other && self.scopes.iter().any(|a| a.covers(r)))
            .cloned()
            .collect();
        ScopeSet { scopes }
    }

    /// Keeps only the scopes `keep` accepts.
    pub fn filtered(&self, keep: impl Fn(&Scope) -> bool) -> ScopeSet {
        ScopeSet { scopes: self.scopes.iter().filter(|s| keep(s)).cloned().collect() }
    }

    /// May a token with these scopes do `interaction` on `resource_type`, given the request's
    /// search parameters (`params`, empty for non-searches)?
    pub fn decide(&self, interaction: Interaction, resource_type: &str, params: &[(String, String)]) -> Decision {
        let mut grants: Vec<Grant> = self
            .resource_scopes()
            .filter(|s| s.permissions.allows(interaction) && s.applies_to(resource_type))
            .map(|s| Grant {
                context: s.context,
                residual: s.constraints.iter().filter(|c| !c.satisfied_by(params)).cloned().collect(),
            })
            .collect();
        grants.sort_by_key(|g| g.residual.len());
        grants.dedup();
        Decision { grants }
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.scopes.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(&scope.text)?;
        }
        Ok(())
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut set = ScopeSet::default();
        for scope in iter {
            if !set.scopes.contains(&scope) {
                set.scopes.push(scope);
            }
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    fn resource(text: &str) -> ResourceScope {
        match Scope::parse(text).kind {
            ScopeKind::Resource(r) => r,
            other => panic!("{text} parsed as {other:?}"),
        }
    }

    #[test]
    fn v1_words_map_to_v2_permissions() {
        let read = resource("patient/*.read");
        assert_eq!(read.context, Context::Patient);
        assert_eq!(read.resource_type, None);
        assert_eq!(read.permissions, resource("patient/*.rs").permissions);
        assert_eq!(resource("user/Observation.write").permissions, resource("user/Observation.cud").permissions);
        assert_eq!(resource("system/Patient.*").permissions, Permissions::ALL);
    }

    #[test]
    fn the_message_log_scope_is_its_own() {
        let log = Scope::parse("user/hl7-messages.read");
        assert_eq!(log.kind(), &ScopeKind::Hl7MessageLog);
        assert!(!Scope::parse("user/*.rs").covers(&log), "not a resource scope");
        assert!(!Scope::parse("user/*.*").covers(&log));
        assert!(log.covers(&Scope::parse("user/hl7-messages.read")));
    }

    #[test]
    fn v2_letters_must_be_in_order_and_known() {
        assert!(matches!(Scope::parse("patient/Observation.rs").kind, ScopeKind::Resource(_)));
        assert!(matches!(Scope::parse("patient/Observation.cruds").kind, ScopeKind::Resource(_)));
        for bad in [
            "patient/Observation.sr",
            "patient/Observation.rr",
            "patient/Observation.x",
            "patient/Observation.",
            "patient/observation.rs",
            "clinic/Observation.rs",
            "patient/Observation",
            "patient/Obs-ervation.rs",
            "patient/Observation.read?category=laboratory",
            "patient/Observation.rs?",
            "patient/Observation.rs?category=",
        ] {
            assert_eq!(Scope::parse(bad).kind, ScopeKind::Other, "{bad}");
        }
    }

    #[test]
    fn special_scopes_are_recognised() {
        let set = ScopeSet::parse("openid fhirUser launch launch/patient offline_access system/*.rs openid");
        assert_eq!(set.iter().count(), 6, "duplicates dropped");
        assert!(set.has(&ScopeKind::OpenId));
        assert!(set.has(&ScopeKind::FhirUser));
        assert!(set.has(&ScopeKind::Launch));
        assert!(set.has(&ScopeKind::LaunchPatient));
        assert!(set.has(&ScopeKind::OfflineAccess));
        assert_eq!(set.to_string(), "openid fhirUser launch launch/patient offline_access system/*.rs");
    }

    #[test]
    fn v1_read_allows_read_and_search_but_not_write() {
        let set = ScopeSet::parse("patient/*.read");
        assert!(set.decide(Interaction::Read, "Observation", &[]).unconditional_in(Context::Patient));
        assert!(!set.decide(Interaction::Search, "Condition", &[]).is_denied());
        assert!(set.decide(Interaction::Create, "Observation", &[]).is_denied());
        assert!(set.decide(Interaction::Update, "Observation", &[]).is_denied());
        assert!(set.decide(Interaction::Delete, "Observation", &[]).is_denied());
    }

    #[test]
    fn v1_write_is_typed() {
        let set = ScopeSet::parse("user/Observation.write");
        assert!(set.decide(Interaction::Create, "Observation", &[]).unconditional_in(Context::User));
        assert!(set.decide(Interaction::Create, "Patient", &[]).is_denied());
        assert!(set.decide(Interaction::Read, "Observation", &[]).is_denied());
    }

    #[test]
    fn v2_permissions_are_exact() {
        let set = ScopeSet::parse("patient/Observation.rs user/Patient.u");
        assert!(!set.decide(Interaction::Read, "Observation", &[]).is_denied());
        assert!(set.decide(Interaction::Create, "Observation", &[]).is_denied());
        assert!(set.decide(Interaction::Update, "Patient", &[]).unconditional_in(Context::User));
        assert!(!set.decide(Interaction::Update, "Patient", &[]).unconditional_in(Context::Patient));
        assert!(set.decide(Interaction::Delete, "Patient", &[]).is_denied());
    }

    #[test]
    fn constraints_are_residual_unless_the_search_carries_them() {
        let set = ScopeSet::parse("patient/Observation.rs?category=laboratory");
        let open = set.decide(Interaction::Search, "Observation", &[]);
        assert!(!open.is_denied());
        assert!(!open.unconditional_in(Context::Patient));
        assert_eq!(open.grants()[0].residual[0].name, "category");
        assert_eq!(open.grants()[0].residual[0].values, ["laboratory"]);

        let narrowed = set.decide(Interaction::Search, "Observation", &params(&[("category", "laboratory")]));
        assert!(narrowed.unconditional_in(Context::Patient));

        // A wider search, or another parameter of the same name spelled differently, keeps it.
        let wider = set.decide(Interaction::Search, "Observation", &params(&[("category", "laboratory,vital-signs")]));
        assert!(!wider.unconditional_in(Context::Patient));
        let other = set.decide(Interaction::Search, "Observation", &params(&[("category:not", "laboratory")]));
        assert!(!other.unconditional_in(Context::Patient));

        // Reads must check the constraint against the resource.
        assert_eq!(set.decide(Interaction::Read, "Observation", &[]).grants()[0].residual.len(), 1);
        assert!(set.decide(Interaction::Search, "Condition", &[]).is_denied());
    }

    #[test]
    fn constraint_values_are_alternatives_and_all_constraints_hold() {
        let set = ScopeSet::parse("user/Observation.rs?category=laboratory,vital-signs&status=final");
        let both = set.decide(
            Interaction::Search,
            "Observation",
            &params(&[("category", "vital-signs"), ("status", "final"), ("code", "1234-5")]),
        );
        assert!(both.unconditional_in(Context::User));
        let one = set.decide(Interaction::Search, "Observation", &params(&[("category", "laboratory")]));
        assert_eq!(one.grants()[0].residual.len(), 1);
        assert_eq!(one.grants()[0].residual[0].name, "status");
    }

    #[test]
    fn an_unconstrained_scope_wins_over_a_constrained_one() {
        let set = ScopeSet::parse("patient/Observation.rs?category=laboratory patient/*.rs");
        let decision = set.decide(Interaction::Search, "Observation", &[]);
        assert!(decision.unconditional_in(Context::Patient));
        assert!(decision.grants()[0].residual.is_empty());
    }

    #[test]
    fn system_scopes_only_grant_in_system_context() {
        let set = ScopeSet::parse("system/*.rs");
        let decision = set.decide(Interaction::Read, "Patient", &[]);
        assert!(decision.unconditional_in(Context::System));
        assert!(!decision.unconditional_in(Context::Patient));
        assert!(set.decide(Interaction::Create, "Patient", &[]).is_denied());
    }

    #[test]
    fn client_allowances_cover_narrower_requests_only() {
        let allowed =
            ScopeSet::parse("openid fhirUser launch/patient offline_access patient/*.rs user/Observation.cruds");
        let requested = ScopeSet::parse(
            "openid fhirUser launch/patient patient/Observation.read patient/Condition.rs?clinical-status=active \
             patient/*.cud user/Observation.r system/*.rs online_access made-up",
        );
        assert_eq!(
            allowed.grantable(&requested).to_string(),
            "openid fhirUser launch/patient patient/Observation.read patient/Condition.rs?clinical-status=active \
             user/Observation.r"
        );
        let constrained = ScopeSet::parse("patient/Observation.rs?category=laboratory");
        assert!(constrained.grantable(&ScopeSet::parse("patient/Observation.rs")).is_empty());
        assert_eq!(
            constrained.grantable(&ScopeSet::parse("patient/Observation.r?category=laboratory")).to_string(),
            "patient/Observation.r?category=laboratory"
        );
    }
}
