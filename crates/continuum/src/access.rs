//! `continuum user`, `continuum client`, `continuum launch` and `continuum token`: identities
//! and SMART clients in the data directory's `auth.db`, or with `--database postgres://…` in
//! that PostgreSQL database (shared by every server using it), for administrators and scripts.

use anyhow::{Context, Result, bail};
use auth::{AuthConfig, Authority, ClientKind, Identity, NewClient, NewUser, OneTimePassword, Role};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

/// Where the data lives and how the server is reached (for the URLs inside tokens).
#[derive(Debug, Args)]
pub(crate) struct Place {
    /// Data directory.
    #[arg(long, default_value_os_t = crate::default_data_dir())]
    data: PathBuf,
    #[command(flatten)]
    database: crate::DatabaseArg,
    /// Public base URL of the FHIR API.
    #[arg(long, default_value = "http://127.0.0.1:8080/fhir")]
    base_url: String,
}

/// Opens the authorization server of `data`; a first start prints the administrator's
/// one-time password (to stderr, so that standard output stays for the command's answer).
fn open(place: &Place) -> Result<Authority> {
    let (authority, first) = open_authority(&place.data, &place.database, AuthConfig::new(&place.base_url))?;
    if let Some(first) = first {
        eprintln!("{}", one_time_notice(&first));
    }
    Ok(authority)
}

/// Opens the authorization server with `config`: in the PostgreSQL database of `database` when
/// it names one, else in data directory `data`. The secrets key is the file `--secrets-key`,
/// else `secrets.key` in `data` (also for PostgreSQL: the data directory then holds the key
/// only).
pub(crate) fn open_authority(
    data: &Path,
    database: &crate::DatabaseArg,
    config: AuthConfig,
) -> Result<(Authority, Option<OneTimePassword>)> {
    if database.database.is_none() || database.secrets_key.is_none() {
        crate::private_data_dir(data)?;
    }
    let secrets_key = database.secrets_key.clone().unwrap_or_else(|| data.join(auth::SECRETS_KEY_FILE));
    warn_if_shared(&secrets_key);
    if let Some(url) = database.database.as_deref() {
        if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            bail!("--database takes a postgres://USER@HOST:PORT/DB URL");
        }
        return store_postgres::auth::open_authority(url, &secrets_key, config)
            .context("cannot open the authorization data in the PostgreSQL database");
    }
    store_sqlite::auth::open_authority_with_secrets_key(data, &secrets_key, config)
        .with_context(|| format!("cannot open the authorization data in {}", data.display()))
}

/// Warns when a secrets key file others may read exists (one named with `--secrets-key`
/// outside the data directory, which is not mended).
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(path)
            && metadata.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(file = %path.display(), "the secrets key file is readable by others than its owner: chmod 600 it");
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// The words that hand out a one-time password.
pub(crate) fn one_time_notice(first: &OneTimePassword) -> String {
    let expires = time::OffsetDateTime::from_unix_timestamp(first.expires_at)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default();
    format!(
        "Administrator '{}' created with the one-time password: {}\n\
         (shown only now; it must be changed at first sign-in and expires at {expires})",
        first.username, first.password
    )
}

#[derive(Debug, Args)]
pub(crate) struct UserArgs {
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user (staff with --role and --org, or a patient with --patient, or a proxy with
    /// --related-person and --patient). Prints a one-time password unless --password-stdin.
    Add(UserAdd),
    /// List users.
    List(Place),
    /// Disable a user: no more sign-in, and their tokens stop working.
    Disable {
        #[command(flatten)]
        place: Place,
        /// The username.
        username: String,
    },
    /// Enrol a staff user for TOTP (a code from an authenticator app after the password): prints
    /// the otpauth:// URI and the secret once. Enrolling again replaces the secret.
    Totp {
        #[command(flatten)]
        place: Place,
        /// The username.
        username: String,
        /// Remove the enrolment instead.
        #[arg(long)]
        remove: bool,
    },
    /// Lift a lock-out after repeated failed sign-ins.
    Unlock {
        #[command(flatten)]
        place: Place,
        /// The username.
        username: String,
    },
}

#[derive(Debug, Args)]
struct UserAdd {
    #[command(flatten)]
    place: Place,
    /// Sign-in name.
    username: String,
    /// Staff role (repeat for several): physician, nurse, behavioral-health-clinician,
    /// care-manager, front-desk, billing, quality-analyst, administrator.
    #[arg(long = "role")]
    roles: Vec<String>,
    /// Organization id the staff member belongs to (repeat for several).
    #[arg(long = "org")]
    organizations: Vec<String>,
    /// Practitioner id of the staff member.
    #[arg(long)]
    practitioner: Option<String>,
    /// PractitionerRole id of the staff member (repeat for several).
    #[arg(long = "practitioner-role")]
    practitioner_roles: Vec<String>,
    /// Patient id: the user is this patient (or, with --related-person, acts for them).
    #[arg(long)]
    patient: Option<String>,
    /// RelatedPerson id: the user is a proxy for --patient.
    #[arg(long)]
    related_person: Option<String>,
    /// Read the password from the first line of standard input instead of generating a
    /// one-time password.
    #[arg(long)]
    password_stdin: bool,
}

pub(crate) fn run_user(args: UserArgs) -> Result<()> {
    match args.command {
        UserCommand::Add(add) => {
            let identity = identity(&add)?;
            let password = if add.password_stdin {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).context("cannot read the password")?;
                Some(line.trim_end_matches(['\r', '\n']).to_string())
            } else {
                None
            };
            let authority = open(&add.place)?;
            let (user, one_time) = authority
                .add_user(NewUser { username: add.username, identity, password })
                .context("cannot add the user")?;
            println!("user {} created (id {})", user.username, user.id);
            if let Some(one_time) = one_time {
                println!("one-time password: {}", one_time.password);
                println!("(shown only now; it must be changed at first sign-in)");
            }
            Ok(())
        }
        UserCommand::List(place) => {
            let authority = open(&place)?;
            for user in authority.store().users()? {
                let who = match &user.identity {
                    Identity::Staff { roles, organizations, .. } => format!(
                        "staff   roles={} orgs={}",
                        roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(","),
                        organizations.join(",")
                    ),
                    Identity::Patient { patient } => format!("patient Patient/{patient}"),
                    Identity::Proxy { related_person, patient } => {
                        format!("proxy   RelatedPerson/{related_person} for Patient/{patient}")
                    }
                };
                let mut flags = match (user.disabled, user.must_change_password) {
                    (true, _) => " [disabled]",
                    (false, true) => " [one-time password]",
                    _ => "",
                }
                .to_string();
                if authority.has_totp(&user.id)? {
                    flags.push_str(" [totp]");
                }
                if user.locked_until.is_some_and(|until| until > time::OffsetDateTime::now_utc().unix_timestamp()) {
                    flags.push_str(" [locked]");
                }
                println!("{:<24} {who}{flags}", user.username);
            }
            Ok(())
        }
        UserCommand::Disable { place, username } => {
            open(&place)?.disable_user(&username).context("cannot disable the user")?;
            println!("user {username} disabled");
            Ok(())
        }
        UserCommand::Totp { place, username, remove: true } => {
            open(&place)?.remove_totp(&username).context("cannot remove the TOTP enrolment")?;
            println!("user {username} signs in without a TOTP code");
            Ok(())
        }
        UserCommand::Totp { place, username, remove: false } => {
            let enrolment = open(&place)?.enrol_totp(&username).context("cannot enrol the user for TOTP")?;
            println!("{}", enrolment.uri);
            println!("secret: {}", enrolment.secret_base32);
            println!("(shown only now; add it to the user's authenticator app: SHA-1, 6 digits, 30 seconds)");
            Ok(())
        }
        UserCommand::Unlock { place, username } => {
            open(&place)?.unlock_user(&username).context("cannot unlock the user")?;
            println!("user {username} unlocked");
            Ok(())
        }
    }
}

fn identity(add: &UserAdd) -> Result<Identity> {
    let staffish = !add.roles.is_empty() || !add.organizations.is_empty() || add.practitioner.is_some();
    match (&add.patient, &add.related_person) {
        (Some(_), _) if staffish => bail!("a user is either staff (--role, --org) or a patient (--patient)"),
        (Some(patient), None) => Ok(Identity::Patient { patient: patient.clone() }),
        (Some(patient), Some(related_person)) => {
            Ok(Identity::Proxy { related_person: related_person.clone(), patient: patient.clone() })
        }
        (None, Some(_)) => bail!("--related-person needs --patient (whom the proxy acts for)"),
        (None, None) => {
            let roles = add.roles.iter().map(|r| r.parse::<Role>()).collect::<auth::Result<Vec<_>>>()?;
            if roles.is_empty() {
                bail!("a staff user needs at least one --role (or give --patient for a patient user)");
            }
            Ok(Identity::Staff {
                roles,
                organizations: add.organizations.clone(),
                practitioner: add.practitioner.clone(),
                practitioner_roles: add.practitioner_roles.clone(),
            })
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    #[command(subcommand)]
    command: ClientCommand,
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Register a SMART app or backend service.
    Add(ClientAdd),
    /// List registered clients.
    List(Place),
}

#[derive(Debug, Args)]
struct ClientAdd {
    #[command(flatten)]
    place: Place,
    /// The client_id (generated if absent).
    #[arg(long)]
    id: Option<String>,
    /// Name shown on the consent page.
    #[arg(long)]
    name: String,
    /// A public client (browser or native app; PKCE, no secret). Default: confidential.
    #[arg(long)]
    public: bool,
    /// Redirect URI (repeat for several).
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    /// Scopes it may be granted, space-separated (e.g. 'openid fhirUser launch patient/*.rs').
    #[arg(long)]
    scope: String,
    /// File holding its JWK Set (public keys), for private_key_jwt (backend services).
    #[arg(long)]
    jwks: Option<PathBuf>,
    /// URL of its JWK Set, for private_key_jwt.
    #[arg(long)]
    jwks_uri: Option<String>,
    /// Generate a client secret (printed once).
    #[arg(long)]
    secret: bool,
    /// The Organization (its id) this backend client acts for (a peer node's organization):
    /// its token is then held to what patients' Consents grant or withhold that organization.
    /// Recorded on the Organization as an identifier (`urn:continuum:smart-client|CLIENT_ID`).
    #[arg(long, value_name = "ORGANIZATION_ID")]
    organization: Option<String>,
}

pub(crate) fn run_client(args: ClientArgs) -> Result<()> {
    match args.command {
        ClientCommand::Add(add) => {
            let jwks = match &add.jwks {
                Some(path) => Some(
                    serde_json::from_slice(
                        &std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
                    )
                    .context("the JWK Set file is not JSON")?,
                ),
                None => None,
            };
            let kind = if add.public { ClientKind::Public } else { ClientKind::Confidential };
            if kind == ClientKind::Confidential && !add.secret && jwks.is_none() && add.jwks_uri.is_none() {
                bail!("a confidential client needs --secret, --jwks or --jwks-uri (or use --public)");
            }
            // The Organization must exist before the client is registered as acting for it.
            let acts_for = match &add.organization {
                Some(organization) => {
                    let records = crate::open_store(&add.place.data, &add.place.database)?.records;
                    let version = records
                        .read("Organization", organization)
                        .with_context(|| format!("there is no Organization/{organization}"))?;
                    let body: serde_json::Value = serde_json::from_str(version.body.as_deref().unwrap_or("null"))
                        .context("the Organization could not be read")?;
                    Some((records, organization.clone(), version.version, body))
                }
                None => None,
            };
            let authority = open(&add.place)?;
            let (client, secret) = authority
                .add_client(NewClient {
                    id: add.id,
                    name: add.name,
                    kind,
                    redirect_uris: add.redirect_uris,
                    allowed_scopes: add.scope,
                    jwks,
                    jwks_uri: add.jwks_uri,
                    with_secret: add.secret,
                })
                .context("cannot register the client")?;
            if let Some((records, organization, version, mut body)) = acts_for {
                let identifier = serde_json::json!({"system": policy::CLIENT_ORGANIZATION_SYSTEM, "value": client.id});
                let identifiers = body["identifier"].as_array().cloned().unwrap_or_default();
                if !identifiers.contains(&identifier) {
                    let mut identifiers = identifiers;
                    identifiers.push(identifier);
                    body["identifier"] = serde_json::Value::Array(identifiers);
                    records
                        .update("Organization", &organization, body, Some(version))
                        .with_context(|| format!("cannot record the client on Organization/{organization}"))?;
                }
                println!("acts for: Organization/{organization}");
            }
            println!("client_id: {}", client.id);
            if let Some(secret) = secret {
                println!("client_secret: {secret}");
                println!("(shown only now)");
            }
            Ok(())
        }
        ClientCommand::List(place) => {
            for client in open(&place)?.store().clients()? {
                println!(
                    "{:<36} {:<12} {} [{}]{}",
                    client.id,
                    client.kind.as_str(),
                    client.name,
                    client.allowed_scopes,
                    if client.disabled { " [disabled]" } else { "" }
                );
            }
            Ok(())
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct LaunchArgs {
    #[command(flatten)]
    place: Place,
    /// Patient id in context.
    #[arg(long)]
    patient: Option<String>,
    /// Encounter id in context.
    #[arg(long)]
    encounter: Option<String>,
}

/// `continuum launch`: creates an EHR launch context and prints its `launch` value.
pub(crate) fn run_launch(args: LaunchArgs) -> Result<()> {
    let launch = open(&args.place)?.create_launch(args.patient.as_deref(), args.encounter.as_deref())?;
    println!("{launch}");
    Ok(())
}

#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    #[command(flatten)]
    place: Place,
    #[command(flatten)]
    audit_key: crate::audit::AuditKeyArg,
    /// The user the token acts for.
    #[arg(long)]
    user: String,
    /// Scopes, space-separated (e.g. 'user/*.rs'): resource scopes (`patient/`, `user/`;
    /// `system/` only with --allow-system), `openid` and `fhirUser`.
    #[arg(long)]
    scope: String,
    /// Patient in context (defaults to a patient user's own).
    #[arg(long)]
    patient: Option<String>,
    /// Lifetime in minutes.
    #[arg(long, default_value_t = 60)]
    lifetime_minutes: u32,
    /// The longest lifetime this command mints; longer requests are refused.
    #[arg(long, env = "CONTINUUM_TOKEN_MAX_MINUTES", default_value_t = 480)]
    max_lifetime_minutes: u32,
    /// Also allow `system/` scopes (access to every patient's records, beyond the user's
    /// reach); refused otherwise.
    #[arg(long)]
    allow_system: bool,
}

/// Why `scope` may not be minted by `continuum token` (`None`: it may).
fn refused_scope(scope: &auth::scope::Scope, allow_system: bool) -> Option<String> {
    use auth::scope::ScopeKind;
    match scope.kind() {
        ScopeKind::Resource(resource) if resource.context == auth::Context::System && !allow_system => {
            Some(format!("`{}` is a system scope (it reaches every patient); add --allow-system", scope.as_str()))
        }
        ScopeKind::Resource(_) | ScopeKind::OpenId | ScopeKind::FhirUser | ScopeKind::Hl7MessageLog => None,
        ScopeKind::Launch | ScopeKind::LaunchPatient | ScopeKind::LaunchEncounter => {
            Some(format!("`{}` belongs to an app's launch, not to a minted token", scope.as_str()))
        }
        ScopeKind::OfflineAccess | ScopeKind::OnlineAccess => {
            Some(format!("`{}`: a minted token has no refresh token", scope.as_str()))
        }
        ScopeKind::Other => Some(format!("`{}` is not a scope this server knows", scope.as_str())),
    }
}

/// `continuum token`: prints a bearer token (only the token, for `$(...)` in scripts). The
/// lifetime is capped and `system/` scopes need --allow-system; every mint is audited (who ran
/// the command, for which user, which scopes and lifetime; never the token), and a token
/// whose mint could not be audited is revoked at once.
pub(crate) fn run_token(args: TokenArgs) -> Result<()> {
    if args.lifetime_minutes == 0 {
        bail!("--lifetime-minutes must be at least 1");
    }
    if args.lifetime_minutes > args.max_lifetime_minutes {
        bail!(
            "--lifetime-minutes {} is above the cap of {} minutes (--max-lifetime-minutes, CONTINUUM_TOKEN_MAX_MINUTES)",
            args.lifetime_minutes,
            args.max_lifetime_minutes
        );
    }
    let scopes = auth::ScopeSet::parse(&args.scope);
    if let Some(why) = scopes.iter().find_map(|s| refused_scope(s, args.allow_system)) {
        bail!("refused: {why}");
    }
    let authority = open(&args.place)?;
    let user = authority
        .store()
        .user_by_username(&args.user)
        .context("cannot read the users")?
        .with_context(|| format!("there is no user '{}'", args.user))?;
    let store = crate::open_store(&args.place.data, &args.place.database)?;
    let key = args.audit_key.load_or_create(&args.place.data)?;
    let records = crate::audit::keyed(store.records, &*store.audit, key, "continuum-token")?;
    let seconds = i64::from(args.lifetime_minutes) * 60;
    let minted = authority
        .mint_token(&args.user, &args.scope, args.patient.as_deref(), seconds)
        .context("cannot mint the token")?;
    let entry = mint_entry(&user, &minted, seconds)?;
    if let Err(error) = records.append_audit(vec![entry]) {
        let revoked = authority.revoke(None, &minted.access_token);
        tracing::error!(%error, revoked = revoked.is_ok(), "a minted token could not be audited");
        bail!("the audit trail is unavailable, so the token was revoked; nothing was printed");
    }
    println!("{}", minted.access_token);
    Ok(())
}

/// The operating-system account running this command (who minted), as far as it says.
fn operator() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

/// The audit entry of a mint: the operator as agent, the user the token acts for as entity,
/// with its scopes and lifetime as details (never the token itself).
fn mint_entry(user: &auth::User, minted: &auth::TokenResponse, seconds: i64) -> Result<store::audit::NewAuditEntry> {
    let actor = store::Agent { name: format!("os:{}", operator()), ..store::Agent::default() };
    let happening = store::audit::Happening {
        action: store::audit::Action::Execute,
        subtype: store::audit::Subtype::Continuum("token-mint"),
        outcome: store::audit::Outcome::Success,
        entities: &[],
        query: None,
        patient: minted.patient.as_deref(),
        reason: None,
    };
    let mut entry = store::audit::event(&actor, &happening, time::OffsetDateTime::now_utc());
    let mut event: serde_json::Value = serde_json::from_str(&entry.event).context("the audit event is not JSON")?;
    let mut what = serde_json::json!({"identifier": {"system": "urn:continuum:user", "value": user.username}});
    if let Some(who) = user.identity.fhir_user() {
        what["reference"] = who.into();
    }
    let minted_for = serde_json::json!({
        "what": what,
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
        "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "6", "display": "User"},
        "description": "the user the minted token acts for",
        "detail": [
            {"type": "scope", "valueString": minted.scope},
            {"type": "expires-in-seconds", "valueString": seconds.to_string()},
        ],
    });
    match event.get_mut("entity").and_then(serde_json::Value::as_array_mut) {
        Some(entities) => entities.insert(0, minted_for),
        None => event["entity"] = serde_json::Value::Array(vec![minted_for]),
    }
    entry.event = event.to_string();
    Ok(entry)
}
