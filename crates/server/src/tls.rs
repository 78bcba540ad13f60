//! HTTPS: the same application served over TLS 1.2/1.3 with rustls and its `ring` provider
//! (not aws-lc-rs, which builds C with cmake). axum's own `serve` speaks plain TCP only, so
//! this is its accept loop with a TLS handshake in front: each connection is handshaken in its
//! own task (a slow or silent client holds up no one else), carries the client's address as
//! `ConnectInfo<SocketAddr>` like the plain server (the rate limits key on it), and is served
//! as HTTP/1.1 by hyper. On shutdown the listener closes and the open connections finish their
//! requests first.

use axum::Router;
use axum::extract::connect_info::IntoMakeServiceWithConnectInfo;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tower::Service;

/// How long a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS settings for a certificate chain and its private key, both PEM files (the chain
/// leaf first, as certificate authorities deliver it; the key PKCS#8, PKCS#1 or SEC1). Errors
/// name what is wrong, never the files' content.
pub fn config_from_pem(certificate_chain: &Path, private_key: &Path) -> io::Result<Arc<rustls::ServerConfig>> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let certificates = CertificateDer::pem_file_iter(certificate_chain)
        .map_err(|e| pem_error(e, "the certificate file"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(e, "the certificate file"))?;
    if certificates.is_empty() {
        return Err(invalid("the certificate file holds no PEM certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(private_key).map_err(|e| pem_error(e, "the private key file"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| invalid("no TLS protocol version is available"))?
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .map_err(|_| invalid("the private key does not fit the certificate, or is of an unsupported kind"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn pem_error(error: rustls_pki_types::pem::Error, file: &str) -> io::Error {
    match error {
        rustls_pki_types::pem::Error::Io(e) => io::Error::new(e.kind(), format!("cannot read {file}")),
        rustls_pki_types::pem::Error::NoItemsFound => {
            io::Error::new(io::ErrorKind::InvalidData, format!("{file} holds no usable PEM item"))
        }
        _ => io::Error::new(io::ErrorKind::InvalidData, format!("{file} is not valid PEM")),
    }
}

/// Serves `app` over TLS on `listener` until `shutdown` resolves, then lets the open
/// connections finish.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let mut make_service: IntoMakeServiceWithConnectInfo<Router, SocketAddr> =
        app.into_make_service_with_connect_info::<SocketAddr>();
    let connections = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Infallible: it only attaches the client's address to a clone of the router.
        let Ok(service) = make_service.call(client).await;
        let acceptor = acceptor.clone();
        let watcher = connections.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                // Plain HTTP to this port, a scanner, a client that gave up: nothing to answer.
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake timed out");
                    return;
                }
            };
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(service));
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(error = %e, "HTTPS connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.shutdown().await;
    Ok(())
}

/// An accept error: per-connection ones (the client already gone) are skipped; others, such as
/// running out of file descriptors, are waited out a little, as axum's own loop does.
async fn accept_failed(error: &io::Error) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %error, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
