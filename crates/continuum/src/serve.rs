//! `continuum serve`.

use anyhow::{Context, Result};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

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
}

pub(crate) fn run(args: ServeArgs) -> Result<()> {
    let records = crate::open_records(&args.data)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let address = listener.local_addr()?;
        let base_url = args.base_url.unwrap_or_else(|| format!("http://{address}/fhir"));
        let limits = server::Limits { max_body_bytes: args.max_body_mib * 1024 * 1024, ..server::Limits::default() };
        let state = server::AppState::new(records, base_url.clone(), limits);
        println!("Continuum is serving FHIR R4 at {base_url}");
        server::serve(listener, state, shutdown_signal()).await.context("server failed")?;
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
