//! The outbound channels of alerts, behind one trait ([`AlertSender`]): e-mail through an SMTP
//! relay (`lettre`) and webhooks (an HTTP POST of JSON). Each takes its notifications from the
//! outbox (`email:…`, `webhook:…`), in order per channel, at least once, retrying with backoff;
//! after [`MOST_ATTEMPTS`] failures a notification is dead (the in-app inbox still has the
//! alert; the failure is counted and logged without content).
//!
//! What leaves the server carries no PHI: an e-mail's subject and body only say that there is
//! a new alert in Continuum; a webhook gets the event's code, whether it is urgent, and the
//! ids of the Communications written (which only someone allowed to read them can open).

use super::deliver::backoff;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use store::notify::{Notification, Notifications};
use time::OffsetDateTime;

/// The channel prefix of alert e-mails (`email:Practitioner/x`).
pub const EMAIL_PREFIX: &str = "email:";
/// The channel prefix of webhooks (`webhook:NAME`).
pub const WEBHOOK_PREFIX: &str = "webhook:";
/// Attempts before a notification is given up.
pub const MOST_ATTEMPTS: u32 = 12;
/// The subject of every alert e-mail.
pub const EMAIL_SUBJECT: &str = "You have a new alert in Continuum";
/// The body of every alert e-mail.
pub const EMAIL_BODY: &str = "You have a new alert in Continuum.\r\n\r\nSign in to Continuum to read it.\r\n";

/// Why a notification could not be sent: fixed words, never content.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The notification is malformed (it will never succeed).
    #[error("the notification cannot be sent: {0}")]
    Malformed(&'static str),
    /// The relay or endpoint could not be reached or refused (retried).
    #[error("{0}")]
    Failed(&'static str),
}

/// Something that sends one outbox notification.
pub trait AlertSender: Send + Sync + 'static {
    /// The channel prefix it serves.
    fn prefix(&self) -> &'static str;
    /// Sends one notification.
    fn send(&self, notification: &Notification) -> Result<(), SendError>;
}

/// E-mail through an SMTP relay.
pub struct EmailSender {
    transport: lettre::SmtpTransport,
    from: lettre::message::Mailbox,
}

/// How the relay is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain SMTP (a relay on the same host or a trusted network).
    Plain,
    /// STARTTLS required.
    StartTls,
    /// TLS from the first byte (SMTPS).
    Tls,
}

impl EmailSender {
    /// A sender through the relay at `host:port`, from `from` (`Continuum <alerts@clinic.example>`).
    pub fn new(host: &str, port: u16, security: SmtpSecurity, from: &str) -> Result<EmailSender, SendError> {
        use lettre::transport::smtp::client::{Tls, TlsParameters};
        let from = from.parse().map_err(|_| SendError::Malformed("the sender address is not an e-mail address"))?;
        let builder = lettre::SmtpTransport::builder_dangerous(host).port(port).timeout(Some(Duration::from_secs(20)));
        let builder = match security {
            SmtpSecurity::Plain => builder,
            SmtpSecurity::StartTls | SmtpSecurity::Tls => {
                let parameters = TlsParameters::new(host.to_string())
                    .map_err(|_| SendError::Malformed("the relay's TLS settings"))?;
                builder.tls(if security == SmtpSecurity::Tls {
                    Tls::Wrapper(parameters)
                } else {
                    Tls::Required(parameters)
                })
            }
        };
        Ok(EmailSender { transport: builder.build(), from })
    }
}

impl AlertSender for EmailSender {
    fn prefix(&self) -> &'static str {
        EMAIL_PREFIX
    }

    fn send(&self, notification: &Notification) -> Result<(), SendError> {
        use lettre::Transport;
        let payload: Value =
            serde_json::from_str(&notification.payload).map_err(|_| SendError::Malformed("payload"))?;
        let to = payload
            .get("to")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<lettre::message::Mailbox>().ok())
            .ok_or(SendError::Malformed("the recipient address"))?;
        let message = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(EMAIL_SUBJECT)
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(EMAIL_BODY.to_string())
            .map_err(|_| SendError::Malformed("the message"))?;
        self.transport.send(&message).map(drop).map_err(|e| {
            if e.is_permanent() {
                SendError::Malformed("the relay refused the message")
            } else {
                SendError::Failed("the relay could not be reached")
            }
        })
    }
}

/// Webhooks: the payload's `url` gets a POST of the rest of the payload as JSON.
pub struct WebhookSender {
    /// Made on the sender's own thread at its first send: a blocking client may be neither made
    /// nor dropped on an async runtime's thread.
    http: std::sync::OnceLock<reqwest::blocking::Client>,
}

impl WebhookSender {
    /// A webhook sender (connect 5 s, request 15 s, no redirects followed).
    pub fn new() -> Result<WebhookSender, SendError> {
        Ok(WebhookSender { http: std::sync::OnceLock::new() })
    }

    fn client(&self) -> Result<&reqwest::blocking::Client, SendError> {
        if let Some(client) = self.http.get() {
            return Ok(client);
        }
        let client = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("continuum-alerts/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| SendError::Failed("the HTTP client could not be made"))?;
        Ok(self.http.get_or_init(|| client))
    }
}

impl AlertSender for WebhookSender {
    fn prefix(&self) -> &'static str {
        WEBHOOK_PREFIX
    }

    fn send(&self, notification: &Notification) -> Result<(), SendError> {
        let mut payload: Value =
            serde_json::from_str(&notification.payload).map_err(|_| SendError::Malformed("payload"))?;
        let url = payload
            .as_object_mut()
            .and_then(|p| p.remove("url"))
            .and_then(|u| u.as_str().map(str::to_string))
            .ok_or(SendError::Malformed("the webhook URL"))?;
        payload["number"] = notification.number.into();
        let response = self
            .client()?
            .post(&url)
            .header("Content-Type", "application/json")
            .body(payload.to_string())
            .send()
            .map_err(|_| SendError::Failed("the webhook could not be reached"))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(SendError::Failed("the webhook answered with an error"))
        }
    }
}

/// Runs `sender` over its channels of the outbox on a thread of its own, as long as the
/// process (polling every `every`: alerts are not latency-critical outside the app).
pub fn start(
    notifications: Arc<dyn Notifications>,
    sender: Arc<dyn AlertSender>,
    every: Duration,
) -> std::io::Result<()> {
    let name = format!("alert-{}", sender.prefix().trim_end_matches(':'));
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            loop {
                match send_due(&*notifications, &*sender) {
                    Ok(n) if n > 0 => continue,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "the alert outbox could not be read"),
                }
                std::thread::sleep(every);
            }
        })
        .map(drop)
}

/// Sends what is due of `sender`'s channels now; how many were delivered.
pub fn send_due(notifications: &dyn Notifications, sender: &dyn AlertSender) -> store::Result<usize> {
    let due = notifications.due(OffsetDateTime::now_utc(), sender.prefix(), 50)?;
    let mut held = std::collections::HashSet::new();
    let mut delivered = 0;
    for notification in &due {
        if held.contains(&notification.channel) {
            continue;
        }
        match sender.send(notification) {
            Ok(()) => {
                notifications.delivered(notification.id)?;
                delivered += 1;
            }
            Err(e) => {
                held.insert(notification.channel.clone());
                let permanent = matches!(e, SendError::Malformed(_));
                let retry_at = (!permanent && notification.attempts + 1 < MOST_ATTEMPTS)
                    .then(|| OffsetDateTime::now_utc() + backoff(notification.attempts));
                tracing::warn!(channel = sender.prefix(), error = %e, "an alert could not be sent");
                notifications.attempt_failed(notification.id, &e.to_string(), retry_at)?;
            }
        }
    }
    Ok(delivered)
}
