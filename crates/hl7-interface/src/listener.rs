//! The MLLP listener: a tokio TCP server that unframes messages with
//! [`hl7v2::mllp::Decoder`], hands each to [`Interface::handle`] on a blocking thread, and
//! sends the ACK back framed. Messages of one connection are handled in order (one ACK per
//! message, in order); connections run independently, so a bad one harms no other.
//!
//! Only peers on the allow-list are served ([`crate::partners`]): the inbound partners
//! registered when the connection arrives, found by the peer's address (or, while none is
//! registered, loopback peers only). Any other connection is closed before a byte of it is
//! read, and a warning names the peer's address and the listener, nothing else.
//!
//! With TLS ([`ListenerConfig::tls`], see [`crate::tls`]) the handshake follows admission; a
//! failed handshake (with mutual TLS: no client certificate, or one the client CA did not
//! issue) closes the connection with a warning naming the peer's address and the listener.
//!
//! Limits per connection: the largest frame (bigger ones close the connection: nothing in them
//! can be read or acknowledged), an idle timeout, and a bound on bytes of garbage between
//! frames. A bound on connections refuses new ones beyond it.

use crate::Interface;
use crate::partners::Peer;
use hl7v2::mllp::Decoder;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Limits of the listener.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Largest frame accepted, in bytes.
    pub max_frame_len: usize,
    /// Most connections at once; more are closed on accept.
    pub max_connections: usize,
    /// A connection silent for this long is closed.
    pub idle_timeout: Duration,
    /// Bytes outside frames tolerated on one connection before it is closed.
    pub max_garbage: u64,
    /// TLS settings ([`crate::tls::server_config`]); `None` serves plain TCP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// How long a peer may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            max_frame_len: 4 * 1024 * 1024,
            max_connections: 256,
            idle_timeout: Duration::from_secs(300),
            max_garbage: 64 * 1024,
            tls: None,
        }
    }
}

/// Serves MLLP on `listener` until `shutdown` resolves; connections in progress finish their
/// current message.
pub async fn serve(
    listener: TcpListener,
    interface: Arc<Interface>,
    config: ListenerConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let config = Arc::new(config);
    let local = listener.local_addr()?;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e.kind(), "MLLP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!("MLLP connection refused: too many connections");
            drop(stream);
            continue;
        };
        let interface = Arc::clone(&interface);
        let config = Arc::clone(&config);
        tokio::spawn(async move {
            let Some(peer) = admit(&interface, remote, local).await else {
                drop(stream);
                drop(permit);
                return;
            };
            let _ = stream.set_nodelay(true);
            let ended = match &config.tls {
                None => connection(stream, &interface, &config, peer).await,
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(tls));
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => connection(stream, &interface, &config, peer).await,
                        _ => {
                            tracing::warn!(peer = %remote, listener = %local, "MLLP connection refused: the TLS handshake failed");
                            Ok(())
                        }
                    }
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e.kind(), "MLLP connection ended with an error");
            }
            drop(permit);
        });
    }
}

/// The partner a connection from `remote` belongs to, or `None` (logged) when it is refused.
async fn admit(interface: &Arc<Interface>, remote: SocketAddr, local: SocketAddr) -> Option<Peer> {
    let reading = Arc::clone(interface);
    let allow = match tokio::task::spawn_blocking(move || reading.allow_list()).await {
        Ok(Ok(allow)) => allow,
        Ok(Err(e)) => {
            tracing::error!(kind = ?e.kind(), listener = %local, "the MLLP allow-list could not be read; connection closed");
            return None;
        }
        Err(_) => return None,
    };
    let peer = allow.admit(remote.ip());
    if peer.is_none() {
        tracing::warn!(peer = %remote, listener = %local, "MLLP connection refused: the peer is not on the allow-list");
    }
    peer
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    interface: &Arc<Interface>,
    config: &ListenerConfig,
    peer: Peer,
) -> std::io::Result<()> {
    let peer = Arc::new(peer);
    let mut decoder = Decoder::with_max_frame_len(config.max_frame_len);
    let mut buffer = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    loop {
        let read = match tokio::time::timeout(config.idle_timeout, stream.read(&mut buffer)).await {
            Ok(read) => read?,
            Err(_) => return Ok(()),
        };
        if read == 0 {
            if decoder.finish().is_err() {
                tracing::info!("MLLP connection closed inside a frame; the partial frame was dropped");
            }
            return Ok(());
        }
        for frame in decoder.decode(&buffer[..read]) {
            match frame {
                Ok(content) => {
                    let (interface, peer) = (Arc::clone(interface), Arc::clone(&peer));
                    let handled = tokio::task::spawn_blocking(move || interface.handle(&content, &peer))
                        .await
                        .map_err(|_| std::io::Error::other("message handling panicked"))?;
                    let Some(ack) = handled.ack else {
                        // Not stored: close without an ACK so that the sender sends it again.
                        return Ok(());
                    };
                    out.clear();
                    if hl7v2::mllp::write_frame(ack.as_bytes(), &mut out).is_err() {
                        return Ok(());
                    }
                    stream.write_all(&out).await?;
                    stream.flush().await?;
                }
                Err(hl7v2::Error::FrameTooLarge { .. }) => {
                    tracing::warn!(limit = config.max_frame_len, "MLLP frame too large; connection closed");
                    return Ok(());
                }
                Err(e) => tracing::info!(error = %e, "MLLP framing error; frame dropped"),
            }
        }
        if decoder.skipped_bytes() > config.max_garbage {
            tracing::warn!("too many bytes outside MLLP frames; connection closed");
            return Ok(());
        }
    }
}
