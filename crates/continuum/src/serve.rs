//! `continuum serve`.

use anyhow::{Context, Result};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Data directory of the embedded store.
    #[arg(long, default_value_os_t = crate::default_data_dir())]
    data: PathBuf,
    /// Address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Public base URL of the FHIR API, when behind a proxy (default: http://LISTEN/fhir).
    #[arg(long)]
    base_url: Option<String>,
    /// Largest request body accepted, in MiB.
    #[arg(long, default_value_t = 32)]
    max_body_mib: usize,
    /// Also receive HL7 v2 messages over MLLP on this address and port.
    #[arg(long)]
    mllp: Option<SocketAddr>,
    /// Largest MLLP frame accepted, in KiB (bigger ones close the connection).
    #[arg(long, default_value_t = 4096)]
    mllp_max_frame_kib: usize,
}

pub(crate) fn run(args: ServeArgs) -> Result<()> {
    let (records, backend) = crate::open_store(&args.data)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let address = listener.local_addr()?;
        let base_url = args.base_url.unwrap_or_else(|| format!("http://{address}/fhir"));
        let limits = server::Limits { max_body_bytes: args.max_body_mib * 1024 * 1024, ..server::Limits::default() };
        let state = server::AppState::new(records.clone(), base_url.clone(), limits);
        let (authority, first_admin) = crate::access::open_authority(&args.data, &base_url)?;
        let auth_routes = auth::router(Arc::new(authority));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let mllp = match args.mllp {
            Some(at) => {
                let log: Arc<dyn store::MessageLog> =
                    Arc::new(backend.message_log().context("cannot open the HL7 message log")?);
                let interface = Arc::new(interface::Interface::new(records, log));
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
                let config = interface::ListenerConfig {
                    max_frame_len: args.mllp_max_frame_kib * 1024,
                    ..interface::ListenerConfig::default()
                };
                Some((mllp_address, interface::serve(listener, interface, config, until_stopped())))
            }
            None => None,
        };
        println!("Continuum is serving FHIR R4 at {base_url}");
        if let Some(first) = first_admin {
            println!("{}", crate::access::one_time_notice(&first));
        }
        let signal = async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        };
        tokio::spawn(signal);
        let http = server::serve_with(listener, state, auth_routes, until_stopped());
        match mllp {
            Some((mllp_address, mllp)) => {
                println!("Continuum is receiving HL7 v2 over MLLP at {mllp_address}");
                let (http, mllp) = tokio::join!(http, mllp);
                http.context("server failed")?;
                mllp.context("MLLP listener failed")?;
            }
            None => http.await.context("server failed")?,
        }
        println!("Continuum stopped");
        Ok(())
    })
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
