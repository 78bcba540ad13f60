//! `continuum hl7`: the HL7 v2 message log for administrators — list what arrived (with its
//! status, type, patient), show one message, and replay a failed one after a fix.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use store::messages::{MessageLog, MessageQuery, MessageStatus, StoredMessage};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Debug, Args)]
pub(crate) struct Hl7Args {
    /// Data directory of the embedded store.
    #[arg(long, global = true, default_value_os_t = crate::default_data_dir())]
    data: PathBuf,
    #[command(subcommand)]
    command: Hl7Command,
}

#[derive(Debug, Subcommand)]
enum Hl7Command {
    /// List received messages, newest first.
    List(ListArgs),
    /// Print one message as received, with its status.
    Show {
        /// The message's log id.
        id: i64,
    },
    /// Process a failed (dead-letter) message again.
    Replay {
        /// The message's log id.
        id: i64,
    },
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Only the dead-letter queue (failed and rejected messages).
    #[arg(long)]
    failed: bool,
    /// Only messages with this status (received, processed, failed, rejected, duplicate).
    #[arg(long)]
    status: Vec<String>,
    /// Only messages about this Patient id.
    #[arg(long)]
    patient: Option<String>,
    /// Only this message type, e.g. `ADT^A01` or `ORU`.
    #[arg(long = "type")]
    message_type: Option<String>,
    /// Only messages received since this date (`2024-03-01`) or time (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Hl7Args) -> Result<()> {
    let (records, backend) = crate::open_store(&args.data)?;
    let log = backend.message_log().context("cannot open the message log")?;
    match args.command {
        Hl7Command::List(list) => print_list(&log, &list),
        Hl7Command::Show { id } => {
            let message = log.get(id)?.with_context(|| format!("no message {id} in the log"))?;
            println!("{}", summary(&message));
            println!("{}", String::from_utf8_lossy(&message.raw).replace('\r', "\n"));
            Ok(())
        }
        Hl7Command::Replay { id } => {
            let log: std::sync::Arc<dyn MessageLog> = std::sync::Arc::new(log);
            let interface = interface::Interface::new(records, log.clone());
            let handled = interface.replay(id)?;
            let message = log.get(id)?.context("the message disappeared from the log")?;
            println!("{}", summary(&message));
            if handled.status != Some(MessageStatus::Processed) {
                bail!("message {id} failed again");
            }
            Ok(())
        }
    }
}

fn parse_since(text: &str) -> Result<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(text, &format).with_context(|| "--since wants YYYY-MM-DD or an RFC 3339 time")?;
    Ok(date.midnight().assume_utc())
}

fn print_list(log: &dyn MessageLog, args: &ListArgs) -> Result<()> {
    let mut statuses = Vec::new();
    if args.failed {
        statuses.extend([MessageStatus::Failed, MessageStatus::Rejected]);
    }
    for name in &args.status {
        statuses.push(MessageStatus::parse(name).with_context(|| format!("unknown status `{name}`"))?);
    }
    let query = MessageQuery {
        statuses,
        patient: args.patient.clone(),
        message_type: args.message_type.clone(),
        since: args.since.as_deref().map(parse_since).transpose()?,
        limit: args.limit,
        ..MessageQuery::default()
    };
    for message in log.list(&query)? {
        if args.json {
            println!("{}", json(&message));
        } else {
            println!("{}", summary(&message));
        }
    }
    Ok(())
}

fn time_text(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// One line: id, time, status, type, control id, ACK, patient, error.
fn summary(m: &StoredMessage) -> String {
    let o = &m.outcome;
    let mut line = format!(
        "{:>6}  {}  {:<9}  {:<8}  {:<16}  {:<2}  patient={}",
        m.id,
        time_text(m.received_at),
        m.status.as_str(),
        m.message_type,
        m.control_id,
        o.ack_code,
        o.patient.as_deref().unwrap_or("-"),
    );
    if let Some(original) = o.duplicate_of {
        line.push_str(&format!("  duplicate-of={original}"));
    }
    if let Some(error) = &o.error {
        line.push_str(&format!("  error={error}"));
    }
    line
}

/// The message as JSON for the admin API and `--json` (without its raw content).
pub(crate) fn json(m: &StoredMessage) -> serde_json::Value {
    serde_json::json!({
        "id": m.id,
        "receivedAt": time_text(m.received_at),
        "updatedAt": time_text(m.updated_at),
        "sender": m.sender,
        "controlId": m.control_id,
        "type": m.message_type,
        "status": m.status.as_str(),
        "attempts": m.attempts,
        "ack": m.outcome.ack_code,
        "error": m.outcome.error,
        "patient": m.outcome.patient,
        "resources": m.outcome.resources,
        "duplicateOf": m.outcome.duplicate_of,
    })
}
