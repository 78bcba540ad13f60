//! `continuum serve`.

use anyhow::{Context, Result};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Data directory of the embedded store.
    #[arg(long, default_value_os_t = crate::default_data_dir())]
    data: PathBuf,
    #[command(flatten)]
    database: crate::DatabaseArg,
    #[command(flatten)]
    audit_key: crate::audit::AuditKeyArg,
    /// Address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Public base URL of the FHIR API, when behind a proxy (default: http://LISTEN/fhir).
    #[arg(long)]
    base_url: Option<String>,
    /// Largest request body accepted, in MiB.
    #[arg(long, default_value_t = 32)]
    max_body_mib: usize,
    /// Most entries in one transaction or batch Bundle (more are refused with 413).
    #[arg(long, default_value_t = 10_000)]
    max_bundle_entries: usize,
    /// Largest page (`_count`) of a search or history; larger requests are lowered to it.
    #[arg(long, default_value_t = 1000)]
    max_count: usize,
    /// Longest a search may run, in milliseconds, before it is abandoned with 503 (0: no limit).
    #[arg(long, default_value_t = 10_000)]
    search_timeout_ms: u64,
    /// Most requests handled at once; more are refused at once with 503 (0: no cap).
    #[arg(long, default_value_t = 1024)]
    max_in_flight: usize,
    /// Requests per second allowed to each client IP address; more get 429 (0: no limit).
    /// Behind a proxy every client shares its address: raise or disable it there.
    #[arg(long, default_value_t = 1000)]
    rate_limit: u32,
    /// Requests a client may make at once above `--rate-limit`.
    #[arg(long, default_value_t = 2000)]
    rate_burst: u32,
    /// Also receive HL7 v2 messages over MLLP. `--mllp` alone listens on 127.0.0.1:2575 and
    /// `--mllp PORT` on 127.0.0.1:PORT (loopback); any other interface must be named in full
    /// (`--mllp 0.0.0.0:2575`). Only peers on the allow-list are served: the partners of
    /// `continuum hl7 inbound add`, or while none is registered, loopback peers only.
    #[arg(long, value_name = "[ADDR:]PORT", num_args = 0..=1, default_missing_value = "2575", value_parser = mllp_address)]
    mllp: Option<SocketAddr>,
    /// Speak MLLP over TLS with this certificate chain (PEM, leaf first); needs --mllp-tls-key.
    #[arg(long, value_name = "FILE", requires_all = ["mllp", "mllp_tls_key"])]
    mllp_tls_cert: Option<PathBuf>,
    /// The private key of --mllp-tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "mllp_tls_cert")]
    mllp_tls_key: Option<PathBuf>,
    /// Mutual TLS: every MLLP peer must present a certificate issued by one of these CA
    /// certificates (PEM); the allow-list by address applies as well.
    #[arg(long, value_name = "FILE", requires = "mllp_tls_cert")]
    mllp_tls_client_ca: Option<PathBuf>,
    /// Largest MLLP frame accepted, in KiB (bigger ones close the connection).
    #[arg(long, default_value_t = 4096)]
    mllp_max_frame_kib: usize,
    /// Serve HTTPS with this certificate chain (PEM, leaf first) instead of plain HTTP; needs
    /// --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Staff must enter a TOTP code after their password; enrol them with
    /// `continuum user totp NAME` (those not enrolled cannot sign in).
    #[arg(long)]
    require_totp: bool,
    /// Minutes after which a user's session that nothing used ends: its tokens stop working
    /// and the app must sign in again (offline_access sessions are exempt).
    #[arg(long, default_value_t = 30)]
    session_idle_minutes: u32,
    /// Consecutive failed sign-ins (wrong password or code) that lock an account (0: never).
    #[arg(long, default_value_t = 5)]
    lockout_after: u32,
    /// Minutes a locked account stays locked (`continuum user unlock NAME` lifts it sooner).
    #[arg(long, default_value_t = 15)]
    lockout_minutes: u32,
    /// Sign-in form posts allowed per client IP address and minute; more get 429 (0: no limit).
    /// Behind a proxy every client shares its address.
    #[arg(long, default_value_t = 10)]
    sign_in_per_minute: u32,
    /// Serve `/metrics` on this address and port instead of on `--listen` (plain HTTP: bind it
    /// where only the monitoring system reaches).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_listen: Option<SocketAddr>,
    /// `/metrics` asks for `Authorization: Bearer TOKEN`, TOKEN being this file's content
    /// (surrounding white space ignored).
    #[arg(long, value_name = "FILE")]
    metrics_token_file: Option<PathBuf>,
    /// How long a finished Bulk Data job's files and status are kept, in hours.
    #[arg(long, default_value_t = 24, value_name = "HOURS")]
    bulk_keep_hours: u64,
    /// Lines per Bulk Data export file before the next file of the same type begins.
    #[arg(long, default_value_t = 100_000, value_name = "LINES")]
    bulk_lines_per_file: usize,
    /// The patient-matching model (JSON: per field and agreement level `m` and `u`, and the
    /// thresholds of the grades; what is left out keeps its default — see the README's
    /// "Patient identity").
    #[arg(long, value_name = "FILE")]
    match_model: Option<PathBuf>,
    /// Do not run the master patient index (no automatic links or duplicate review list;
    /// `$match` still answers).
    #[arg(long)]
    no_patient_index: bool,
    /// Tell registration staff and administrators how many records a `$match` also matched
    /// outside their reach (never whose), so that they do not register duplicates.
    #[arg(long)]
    match_reveals_outside_reach: bool,
    /// An endpoint FHIR Subscriptions may notify although it is on an address they may not
    /// reach by default (loopback, private, link-local…): an IP address, a CIDR block
    /// (`10.20.0.0/16`) or a host name (`hooks.internal`, `*.internal`); repeatable.
    #[arg(long = "subscription-endpoints", value_name = "PATTERN")]
    subscription_endpoints: Vec<String>,
    /// Who is told of which care alerts: rules per organization, behavioral-health roles,
    /// webhooks (JSON; see the README's "Care coordination"). Default: every current member of
    /// the patient's care team and the owning practice are told of every event.
    #[arg(long, value_name = "FILE")]
    alert_rules: Option<PathBuf>,
    /// The SMTP relay alert e-mails go through (`HOST:PORT`); without it no e-mail is sent
    /// (the in-app inbox and webhooks still are).
    #[arg(long, value_name = "HOST:PORT")]
    smtp_relay: Option<String>,
    /// How the relay is reached: `plain`, `starttls` or `tls`.
    #[arg(long, default_value = "starttls", value_name = "MODE")]
    smtp_security: String,
    /// The sender of alert e-mails.
    #[arg(long, default_value = "Continuum <alerts@continuum.invalid>", value_name = "ADDRESS")]
    smtp_from: String,
    /// Days after which an open referral is overdue: shown so on the referral dashboard, and
    /// raising one follow-up Task for the referring organization.
    #[arg(long, default_value_t = care::referrals::DEFAULT_OVERDUE_DAYS, value_name = "DAYS")]
    referral_overdue_days: u32,
    /// Minutes between two looks of the referral aging job for newly overdue referrals.
    #[arg(long, default_value_t = 60, value_name = "MINUTES")]
    referral_aging_minutes: u64,
    /// Serve the FHIR API WITHOUT access control or audit: no token needed, nothing checked.
    /// Only for benchmarks and test rigs on a trusted machine; never with real patients' data.
    #[arg(long)]
    no_auth: bool,
}

pub(crate) fn run(args: ServeArgs) -> Result<()> {
    let crate::Store { records, message_log, outbox, sqlite, audit, jobs, notifications, subscriptions } =
        crate::open_store(&args.data, &args.database)?;
    // Every audit entry this server appends is keyed (a rewrite of the trail without the key
    // is found by `continuum audit verify`).
    let key = args.audit_key.load_or_create(&args.data)?;
    let records = crate::audit::keyed(records, &*audit, key, "continuum-serve")?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(server::tls::config_from_pem(cert, key).with_context(|| {
            format!("cannot use the TLS certificate {} with the key {}", cert.display(), key.display())
        })?),
        _ => None,
    };
    let metrics_token = match &args.metrics_token_file {
        Some(file) => {
            let token = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the metrics token file {}", file.display()))?;
            let token = token.trim().to_string();
            if token.len() < 16 {
                anyhow::bail!("the metrics token in {} must be at least 16 characters", file.display());
            }
            Some(token)
        }
        None => None,
    };
    let mllp_tls = match (&args.mllp_tls_cert, &args.mllp_tls_key) {
        (Some(cert), Some(key)) => Some(
            hl7_interface::tls::server_config(cert, key, args.mllp_tls_client_ca.as_deref())
                .context("cannot use the MLLP TLS files (--mllp-tls-cert, --mllp-tls-key, --mllp-tls-client-ca)")?,
        ),
        _ => None,
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let address = listener.local_addr()?;
        let limits = limits(&args);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base_url = args.base_url.clone().unwrap_or_else(|| format!("{scheme}://{address}/fhir"));
        if let Some(sqlite) = &sqlite {
            sqlite.set_search_timeout((limits.search_timeout != Duration::MAX).then_some(limits.search_timeout));
        }
        let mut state = server::AppState::new(records.clone(), base_url.clone(), limits)
            .with_queues(Arc::clone(&message_log), Arc::clone(&outbox));
        if let Some(token) = metrics_token {
            state = state.with_metrics_token(token);
        }
        let metrics_listener = match args.metrics_listen {
            Some(at) => {
                state = state.without_metrics_route();
                Some(tokio::net::TcpListener::bind(at).await.with_context(|| format!("cannot listen on {at}"))?)
            }
            None => None,
        };
        let (authority, first_admin) = {
            // Off the async threads: the PostgreSQL client blocks on a runtime of its own.
            let (data, database, config) = (args.data.clone(), args.database.clone(), auth_config(&args, &base_url));
            tokio::task::spawn_blocking(move || crate::access::open_authority(&data, &database, config))
                .await
                .context("opening the authorization data panicked")??
        };
        let authority = Arc::new(authority);
        let mut audit_task = None;
        let mut web_app = None;
        let mut log_auditor = None;
        if args.no_auth {
            tracing::warn!("the FHIR API is served without access control or audit (--no-auth)");
            tracing::warn!("the clinician web app (/app) is not served: it needs access control");
        } else {
            let policy = Arc::new(policy::Policy::new(Arc::clone(&authority), records.clone()));
            state = state.with_policy(Arc::clone(&policy));
            authority.set_sign_in_audit(Arc::new(SignInTrail(records.clone())));
            let (auditor, task) = server::audit::Auditor::start(records.clone(), audit);
            state = state.with_auditor(Arc::clone(&auditor));
            log_auditor = Some(Arc::clone(&auditor));
            audit_task = Some(task);
            drop((policy, auditor));
            // The web app goes through the same door as the FHIR API.
            let config = web::WebConfig {
                // Over HTTPS, ours (--tls-cert) or a proxy's (--base-url https://…).
                secure_cookies: base_url.starts_with("https://"),
                sign_in_attempts_per_minute: args.sign_in_per_minute,
            };
            web_app = Some(web::WebApp::new(state.door().clone(), config).context("the web app needs a policy")?);
        }
        // Patient matching, and the index that links the records of one person as they are
        // written (through the door as it now stands).
        let model = match &args.match_model {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
                matching::Model::from_json(&text).with_context(|| format!("{} is not a matching model", path.display()))?
            }
            None => matching::Model::default(),
        };
        let identity = Arc::new(exchange::identity::Identity::new(
            model,
            format!("{base_url}{}", exchange::identity::ENTERPRISE_SYSTEM_PATH),
        )
        .reveal_matches_outside_reach(args.match_reveals_outside_reach));
        state = state.with_identity(Arc::clone(&identity));
        let index = exchange::identity::PatientIndex::new(identity, state.door().clone(), jobs.clone());
        if !args.no_patient_index {
            index.start().context("cannot start the patient index")?;
        }
        state = state.with_patient_index(index.clone());
        let web_app = web_app.map(|app| {
            app.with_patient_index(index.clone()).with_referral_overdue_days(args.referral_overdue_days)
        });
        // Care alerts: queued by the alert hook inside each triggering write, delivered to
        // the care team's inboxes (and e-mail, webhooks) by threads of their own.
        start_alerts(&args, state.door().clone(), Arc::clone(&notifications))?;
        // Behavioral-health screening: the PHQ-9 and GAD-7 Questionnaires (a conditional create
        // on their url), and the scorer of responses written through any door.
        {
            let door = state.door().clone();
            tokio::task::spawn_blocking(move || {
                let access = door.enter(::access::Who::Job(care::screening::scorer::JOB));
                let loaded = care::screening::load_questionnaires(&access);
                access.settle_queued();
                loaded
            })
            .await
            .context("loading the screening questionnaires panicked")?
            .map_err(|e| anyhow::anyhow!("cannot load the screening questionnaires: {e}"))?;
            care::screening::scorer::Scorer::new(state.door().clone(), jobs.clone())
                .start()
                .context("cannot start the screening scorer")?;
        }
        // Referrals: closed when their report arrives whatever the door (a follower right
        // behind the commits, its checkpoint in the job table), and a follow-up Task raised
        // once for each referral open past --referral-overdue-days (a periodic job); both on
        // threads of their own, through the door as the job `referrals`.
        let referral_closer = care::referrals::ReferralCloser::new(state.door().clone(), jobs.clone());
        referral_closer.start().context("cannot start the referral closer")?;
        let referral_aging = care::referrals::ReferralAging::new(
            state.door().clone(),
            args.referral_overdue_days,
            Duration::from_secs(args.referral_aging_minutes.max(1).saturating_mul(60)),
        );
        referral_aging.start().context("cannot start the referral aging job")?;
        // Bulk Data jobs enter the door as it now stands (policy and auditor set); files
        // beside the store, in the data directory.
        // Peer nodes: their entries in the job table, their keys in `peers/` of the data
        // directory.
        let registry = exchange::peers::PeerRegistry::new(jobs.clone(), crate::peers::key_dir(&args.data));
        state = state.with_peers(exchange::peers::Peers::new(registry).with_base(base_url.clone()));
        let bulk = {
            let mut config = exchange::bulk::BulkConfig::in_data_dir(&args.data);
            config.keep_for = Duration::from_secs(args.bulk_keep_hours.saturating_mul(3600));
            config.lines_per_file = args.bulk_lines_per_file.max(1);
            let door = state.door().clone();
            tokio::task::spawn_blocking(move || exchange::bulk::Bulk::open(door, jobs, config))
            .await
            .context("opening the bulk data jobs panicked")?
            .context("cannot open the bulk data jobs")?
        };
        state = state.with_bulk(bulk);
        // FHIR Subscriptions: the active ones loaded (their hook is on the records since
        // `open_store`), the sender started through the door as it now stands, as the job
        // `subscriptions`; `$status`, `$events` and the websocket served.
        let subscription_sender = {
            let allow = subscriptions::AllowList::parse(&args.subscription_endpoints).map_err(|pattern| {
                anyhow::anyhow!("--subscription-endpoints: `{pattern}` is not an IP address, a CIDR block or a host name")
            })?;
            subscriptions.set_allow_list(allow);
            let (registry, loading, outbox) = (Arc::clone(&subscriptions), records.clone(), Arc::clone(&notifications));
            tokio::task::spawn_blocking(move || registry.load(&loading, &*outbox))
                .await
                .context("loading the subscriptions panicked")?
                .context("cannot load the subscriptions")?;
            let config = subscriptions::DeliveryConfig::new(base_url.clone());
            state = state.with_subscriptions(subscriptions::Service::new(
                Arc::clone(&subscriptions),
                Arc::clone(&notifications),
                base_url.clone(),
            ));
            subscriptions::Sender::start(Arc::clone(&subscriptions), notifications, state.door().clone(), config)
                .context("cannot start the subscription sender")?
        };
        // Reading the message log is audited like any access to the record.
        let admin_routes = server::message_log::routes(
            Arc::clone(&message_log),
            Arc::new(AdministratorsOnly(Arc::clone(&authority))),
            log_auditor,
        );
        let mut auth_routes = auth_http::router(authority).merge(admin_routes);
        if let Some(app) = web_app {
            auth_routes = auth_routes.merge(web::router(app));
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        // Outbound ADT notifications queued by any write are delivered to the partners
        // (`continuum hl7 partner add`) while the server runs.
        let sender = tokio::spawn(hl7_interface::outbound::deliver(
            outbox,
            hl7_interface::outbound::SenderConfig::default(),
            until_stopped(),
        ));
        let mllp = match args.mllp {
            Some(at) => {
                // The interface goes through the same door, as a job of its own: what it reads
                // and writes is audited under its name.
                let interface = Arc::new(hl7_interface::Interface::new(state.door().clone(), message_log));
                let recovering = Arc::clone(&interface);
                let settled = tokio::task::spawn_blocking(move || recovering.recover())
                    .await
                    .context("HL7 recovery panicked")?
                    .context("cannot settle the HL7 messages left unfinished")?;
                if settled > 0 {
                    tracing::info!(settled, "HL7 messages left unfinished were settled");
                }
                let listener =
                    tokio::net::TcpListener::bind(at).await.with_context(|| format!("cannot listen on {at}"))?;
                let mllp_address = listener.local_addr()?;
                if !mllp_address.ip().is_loopback() {
                    tracing::info!(listener = %mllp_address, "the MLLP listener is reachable from other machines; only registered inbound partners are served");
                }
                let config = hl7_interface::ListenerConfig {
                    max_frame_len: args.mllp_max_frame_kib * 1024,
                    tls: mllp_tls,
                    ..hl7_interface::ListenerConfig::default()
                };
                Some((mllp_address, hl7_interface::serve(listener, interface, config, until_stopped())))
            }
            None => None,
        };
        say(&format!("Continuum is serving FHIR R4 at {base_url}"));
        if let Some((mllp_address, _)) = &mllp {
            say(&format!("Continuum is receiving HL7 v2 over MLLP at {mllp_address}"));
        }
        if let Some(first) = first_admin {
            say(&crate::access::one_time_notice(&first));
        }
        if !args.no_auth {
            say(&format!("Continuum's clinician web app is at {scheme}://{address}/app"));
        }
        let metrics_task = match metrics_listener {
            Some(listener) => {
                say(&format!("Continuum serves its metrics at http://{}/metrics", listener.local_addr()?));
                Some(tokio::spawn(server::serve_metrics(listener, state.clone(), until_stopped())))
            }
            None => None,
        };
        let signal = async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        };
        tokio::spawn(signal);
        let http = async move {
            match tls {
                Some(tls) => server::serve_tls_with(listener, tls, state, auth_routes, until_stopped()).await,
                None => server::serve_with(listener, state, auth_routes, until_stopped()).await,
            }
        };
        match mllp {
            Some((_, mllp)) => {
                let (http, mllp) = tokio::join!(http, mllp);
                http.context("server failed")?;
                mllp.context("MLLP listener failed")?;
            }
            None => http.await.context("server failed")?,
        }
        index.stop();
        referral_closer.stop();
        referral_aging.stop();
        let _ = sender.await;
        let _ = tokio::task::spawn_blocking(move || subscription_sender.stop()).await;
        if let Some(task) = metrics_task {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(%error, "the metrics listener failed"),
                Err(error) => tracing::error!(%error, "the metrics listener panicked"),
            }
        }
        if let Some(task) = audit_task {
            // The last queued entries are appended before the process ends.
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        say("Continuum stopped");
        Ok(())
    })
}

/// Sign-in attempts (successful or not) in the audit trail, as `login` AuditEvents.
struct SignInTrail(store::Records);

impl auth::SignInAudit for SignInTrail {
    fn attempted(&self, attempt: &auth::SignInAttempt<'_>) {
        let identity = attempt.user.map(|u| &u.identity);
        let patient = identity.and_then(|i| i.patient().map(str::to_string));
        let actor = store::Agent {
            who: identity.and_then(|i| i.fhir_user()),
            name: attempt.username.to_string(),
            ..store::Agent::default()
        };
        let happening = store::audit::Happening {
            action: store::audit::Action::Execute,
            subtype: store::audit::Subtype::Login,
            outcome: if attempt.succeeded {
                store::audit::Outcome::Success
            } else {
                store::audit::Outcome::MinorFailure
            },
            entities: &[],
            query: None,
            patient: patient.as_deref(),
            reason: None,
        };
        let entry = store::audit::event(&actor, &happening, time::OffsetDateTime::now_utc());
        if let Err(error) = self.0.append_audit(vec![entry]) {
            tracing::error!(%error, "a sign-in attempt could not be audited");
        }
    }
}

/// Prints a line to standard output and flushes it. A closed or full standard output (a
/// supervisor that read the first line and went away) must not stop a running server, so
/// errors are ignored, unlike `println!`, which panics.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// `--mllp`'s value: `ADDR:PORT`, or a port alone on loopback.
fn mllp_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse::<SocketAddr>().map_err(|_| "--mllp wants PORT (on 127.0.0.1) or ADDR:PORT".to_string())
}

/// The message log's gate: a valid access token of a staff user holding the administrator role
/// and granted the scope `user/hl7-messages.read`.
struct AdministratorsOnly(Arc<auth::Authority>);

impl server::message_log::AdminGate for AdministratorsOnly {
    fn check(&self, bearer: Option<&str>) -> Result<store::Agent, server::message_log::Refusal> {
        use server::message_log::Refusal;
        let bearer = bearer.ok_or(Refusal::Unauthenticated)?;
        // A blocking store call from an async handler (the runtime is multi-threaded).
        let principal =
            tokio::task::block_in_place(|| self.0.validate_bearer(bearer)).map_err(|_| Refusal::Unauthenticated)?;
        let name = principal.subject.name().to_string();
        let actor = store::Agent {
            who: principal.fhir_user(),
            name,
            client_id: principal.client_id.clone(),
            ..store::Agent::default()
        };
        let administrator = principal.roles().contains(&auth::Role::Administrator)
            && matches!(&principal.subject, auth::Subject::User { identity: auth::Identity::Staff { .. }, .. });
        if administrator && principal.scopes.contains(server::message_log::SCOPE) {
            Ok(actor)
        } else {
            Err(Refusal::Forbidden(actor))
        }
    }
}

/// The authorization server's settings from the command line.
fn auth_config(args: &ServeArgs, base_url: &str) -> auth::AuthConfig {
    let mut config = auth::AuthConfig::new(base_url);
    config.require_totp_for_staff = args.require_totp;
    config.session_idle_seconds = i64::from(args.session_idle_minutes.max(1)) * 60;
    config.max_failed_sign_ins = args.lockout_after;
    config.lockout_seconds = i64::from(args.lockout_minutes) * 60;
    config.sign_in_attempts_per_minute = args.sign_in_per_minute;
    config
}

/// The server's limits from the command line.
fn limits(args: &ServeArgs) -> server::Limits {
    let search_timeout =
        if args.search_timeout_ms == 0 { Duration::MAX } else { Duration::from_millis(args.search_timeout_ms) };
    server::Limits {
        max_body_bytes: args.max_body_mib * 1024 * 1024,
        max_count: args.max_count,
        max_bundle_entries: args.max_bundle_entries,
        search_timeout,
        max_in_flight: args.max_in_flight,
        rate_limit: (args.rate_limit > 0)
            .then_some(server::RateLimit { per_second: args.rate_limit, burst: args.rate_burst.max(1) }),
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}

/// Starts the delivery of care alerts and their outbound channels (see `care::alerts`).
fn start_alerts(args: &ServeArgs, door: access::Door, notifications: Arc<dyn store::Notifications>) -> Result<()> {
    let config = match &args.alert_rules {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            care::alerts::AlertConfig::from_json(&text).with_context(|| format!("{} is not valid", path.display()))?
        }
        None => care::alerts::AlertConfig::default(),
    };
    let every = Duration::from_millis(500);
    let webhooks = care::alerts::channels::WebhookSender::new().context("cannot make the webhook client")?;
    care::alerts::channels::start(Arc::clone(&notifications), Arc::new(webhooks), every)
        .context("cannot start the webhook sender")?;
    let email = match &args.smtp_relay {
        Some(relay) => {
            let (host, port) = relay
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
                .context("--smtp-relay takes HOST:PORT")?;
            let security = match args.smtp_security.as_str() {
                "plain" => care::alerts::channels::SmtpSecurity::Plain,
                "starttls" => care::alerts::channels::SmtpSecurity::StartTls,
                "tls" => care::alerts::channels::SmtpSecurity::Tls,
                _ => anyhow::bail!("--smtp-security is plain, starttls or tls"),
            };
            let sender = care::alerts::channels::EmailSender::new(&host, port, security, &args.smtp_from)
                .context("cannot use the SMTP relay settings")?;
            care::alerts::channels::start(Arc::clone(&notifications), Arc::new(sender), every)
                .context("cannot start the e-mail sender")?;
            true
        }
        None => false,
    };
    care::alerts::AlertDelivery::new(door, notifications, config)
        .with_email(email)
        .start()
        .context("cannot start the care alerts")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn mllp(args: &[&str]) -> Option<SocketAddr> {
        Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied())).unwrap().serve.mllp
    }

    #[test]
    fn the_mllp_listener_is_on_loopback_unless_an_address_is_named() {
        assert_eq!(mllp(&[]), None);
        assert_eq!(mllp(&["--mllp"]), Some("127.0.0.1:2575".parse().unwrap()));
        assert_eq!(mllp(&["--mllp", "--no-auth"]), Some("127.0.0.1:2575".parse().unwrap()));
        assert_eq!(mllp(&["--mllp", "2600"]), Some("127.0.0.1:2600".parse().unwrap()));
        assert_eq!(mllp(&["--mllp", "0.0.0.0:2575"]), Some("0.0.0.0:2575".parse().unwrap()));
        assert_eq!(mllp(&["--mllp", "[::1]:2575"]), Some("[::1]:2575".parse().unwrap()));
        assert!(Cli::try_parse_from(["serve", "--mllp", "somewhere"]).is_err());
        assert!(Cli::try_parse_from(["serve", "--mllp", "--mllp-tls-cert", "c.pem"]).is_err(), "needs the key");
    }
}
