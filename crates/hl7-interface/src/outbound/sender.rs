//! The outbox sender: a tokio task that polls the outbox for due messages and sends each to
//! its partner over MLLP, one at a time per connection, waiting for the partner's ACK.
//! `AA`/`CA` ends delivery; `AE`/`AR`, a wrong ACK, a timeout or a network error counts a
//! failed attempt, retried after an exponential backoff until the last attempt, after which
//! the message is dead (`continuum hl7 outbox --failed`). A message is marked delivered only
//! after its ACK arrives, so a crash in between sends it again: at least once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use store::outbox::{OutboundMessage, Outbox};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How the sender retries.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// How often the outbox is looked at.
    pub poll: Duration,
    /// How long a partner has to connect and to answer a message.
    pub ack_timeout: Duration,
    /// Attempts before a message is dead.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub first_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            poll: Duration::from_millis(200),
            ack_timeout: Duration::from_secs(10),
            max_attempts: 10,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// Messages taken from the outbox per round.
const BATCH: usize = 500;
/// Largest ACK frame read.
const MAX_ACK: usize = 1024 * 1024;

/// Drains `outbox` until `shutdown` resolves.
pub async fn deliver(outbox: Arc<dyn Outbox>, config: SenderConfig, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut connections: HashMap<String, TcpStream> = HashMap::new();
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(config.poll) => {}
        }
        let polled = Arc::clone(&outbox);
        let due = tokio::task::spawn_blocking(move || {
            let partners = polled.partners()?;
            Ok::<_, store::Error>((polled.due(OffsetDateTime::now_utc(), BATCH)?, partners))
        })
        .await;
        let (due, partners) = match due {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::warn!(kind = ?e.kind(), "the outbox could not be read");
                continue;
            }
            Err(_) => continue,
        };
        if due.is_empty() {
            continue;
        }
        let addresses: HashMap<String, String> = partners.into_iter().map(|p| (p.name, p.address)).collect();
        // Per partner in queue order; after a failure the partner's later messages wait for
        // the next round.
        let mut failed_partners: Vec<String> = Vec::new();
        for message in due {
            if failed_partners.contains(&message.partner) {
                continue;
            }
            let Some(address) = addresses.get(&message.partner) else { continue };
            let outcome = send(&mut connections, address, &message, &config).await;
            let outbox = Arc::clone(&outbox);
            let id = message.id;
            let result = match outcome {
                Ok(()) => tokio::task::spawn_blocking(move || outbox.delivered(id)).await,
                Err(error) => {
                    failed_partners.push(message.partner.clone());
                    connections.remove(address);
                    let retry_at = retry_at(&config, message.attempts + 1);
                    tracing::info!(id, partner = %message.partner, error, "outbound message not delivered");
                    tokio::task::spawn_blocking(move || outbox.attempt_failed(id, error, retry_at)).await
                }
            };
            if !matches!(result, Ok(Ok(()))) {
                tracing::warn!(id, "the outcome of an outbound message could not be recorded");
            }
        }
    }
}

/// When attempt `attempts + 1` is due, or `None` when `attempts` were the last.
fn retry_at(config: &SenderConfig, attempts: u32) -> Option<OffsetDateTime> {
    if attempts >= config.max_attempts {
        return None;
    }
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
    let wait = config.first_backoff.saturating_mul(factor).min(config.max_backoff);
    Some(OffsetDateTime::now_utc() + wait)
}

/// Sends one message on the partner's connection (opened if needed) and reads its ACK.
async fn send(
    connections: &mut HashMap<String, TcpStream>,
    address: &str,
    message: &OutboundMessage,
    config: &SenderConfig,
) -> Result<(), &'static str> {
    if !connections.contains_key(address) {
        let stream = tokio::time::timeout(config.ack_timeout, TcpStream::connect(address))
            .await
            .map_err(|_| "connecting to the partner timed out")?
            .map_err(|_| "the partner could not be reached")?;
        let _ = stream.set_nodelay(true);
        connections.insert(address.to_string(), stream);
    }
    let stream = connections.get_mut(address).ok_or("no connection")?;
    let frame = hl7v2::mllp::frame(message.payload.as_bytes()).map_err(|_| "the message cannot be framed")?;
    let exchange = async {
        stream.write_all(&frame).await.map_err(|_| "the message could not be sent")?;
        read_ack(stream).await
    };
    let ack = tokio::time::timeout(config.ack_timeout, exchange).await.map_err(|_| "no ACK in time")??;
    let ack = hl7v2::Message::parse_bytes(&ack).map_err(|_| "the ACK is not a valid HL7 message")?;
    if ack.get("MSA-2").as_deref() != Some(message.control_id.as_str()) {
        return Err("the ACK answers another message");
    }
    match ack.get("MSA-1").as_deref() {
        Some("AA" | "CA") => Ok(()),
        Some("AE" | "CE") => Err("the partner answered AE"),
        Some("AR" | "CR") => Err("the partner answered AR"),
        _ => Err("the ACK has no known MSA-1 code"),
    }
}

async fn read_ack(stream: &mut TcpStream) -> Result<Vec<u8>, &'static str> {
    let mut decoder = hl7v2::mllp::Decoder::with_max_frame_len(MAX_ACK);
    let mut buffer = [0u8; 8192];
    loop {
        let n = stream.read(&mut buffer).await.map_err(|_| "the connection failed")?;
        if n == 0 {
            return Err("the partner closed the connection without an ACK");
        }
        if let Some(frame) = decoder.decode(&buffer[..n]).into_iter().next() {
            return frame.map_err(|_| "the ACK frame is invalid");
        }
    }
}
