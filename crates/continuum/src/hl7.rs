//! `continuum hl7`: the HL7 v2 interface for administrators — the message log (list what
//! arrived with its status, type and patient, show one message, replay a failed one after a
//! fix), the inbound partners allowed to send to the MLLP listener (its allow-list, and the
//! destructive events each may send), the partners that receive outbound ADT notifications,
//! the outbound queue, and the ORU^R01 of a DiagnosticReport.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use server::message_log::time_text;
use std::path::PathBuf;
use store::messages::{InboundPartner, MessageLog, MessageQuery, MessageStatus, StoredMessage};
use store::outbox::{OutboundQuery, OutboundStatus, Outbox, Partner};
use time::OffsetDateTime;

#[derive(Debug, Args)]
pub(crate) struct Hl7Args {
    /// Data directory of the embedded store.
    #[arg(long, global = true, default_value_os_t = crate::default_data_dir())]
    data: PathBuf,
    #[command(flatten)]
    database: crate::DatabaseArg,
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
    /// Partners allowed to send messages to the MLLP listener (`serve --mllp`): its allow-list.
    Inbound {
        #[command(subcommand)]
        command: InboundCommand,
    },
    /// Partners that receive outbound ADT notifications over MLLP.
    Partner {
        #[command(subcommand)]
        command: PartnerCommand,
    },
    /// The outbound queue, newest first: messages delivered, waiting for a retry, or dead.
    Outbox(OutboxArgs),
    /// Print the ORU^R01 message of a DiagnosticReport (with its Observations and Patient).
    Oru {
        /// The DiagnosticReport's id.
        report: String,
    },
}

#[derive(Debug, Subcommand)]
enum InboundCommand {
    /// Add an inbound partner, or replace the one of that name. The listener admits its
    /// connections from the next one on; once any partner is registered, peers not listed
    /// (loopback included) are refused.
    Add {
        /// Its name (letters, digits, '.', '-', '_'): its messages are logged and
        /// de-duplicated under it.
        name: String,
        /// The peer addresses it connects from: IP addresses or CIDR blocks, comma-separated
        /// (`10.1.2.3,10.9.0.0/16`).
        #[arg(long = "from", value_delimiter = ',', required = true)]
        from: Vec<String>,
        /// The destructive events it may send, comma-separated: A40 (merge patients), A11
        /// (cancel admission), A13 (cancel discharge), S15 (cancel appointment). Others of
        /// these are refused with AR and change nothing.
        #[arg(long, value_delimiter = ',')]
        allow_events: Vec<String>,
    },
    /// List the inbound partners.
    List,
    /// Remove an inbound partner: its connections are refused from then on.
    Remove {
        /// Its name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum PartnerCommand {
    /// Add a partner, or replace the one of that name. `serve` delivers to it from then on.
    Add {
        /// Its name (unique).
        name: String,
        /// `HOST:PORT` of its MLLP listener.
        #[arg(long)]
        address: String,
        /// The ADT events it takes, comma-separated (default: all of A01, A03, A04, A08).
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
    },
    /// List the partners.
    List,
    /// Remove a partner and its pending messages.
    Remove {
        /// Its name.
        name: String,
    },
}

#[derive(Debug, Args)]
struct OutboxArgs {
    /// Only dead messages (every attempt failed).
    #[arg(long)]
    failed: bool,
    /// Only messages for this partner.
    #[arg(long)]
    partner: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    limit: usize,
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
    let crate::Store { records, message_log, outbox, .. } = crate::open_store(&args.data, &args.database)?;
    let log = message_log.as_ref();
    match args.command {
        Hl7Command::List(list) => print_list(log, &list),
        Hl7Command::Show { id } => {
            let message = log.get(id)?.with_context(|| format!("no message {id} in the log"))?;
            println!("{}", summary(&message));
            println!("{}", String::from_utf8_lossy(&message.raw).replace('\r', "\n"));
            Ok(())
        }
        Hl7Command::Partner { command } => partner(outbox.as_ref(), command),
        Hl7Command::Inbound { command } => inbound(log, command),
        Hl7Command::Outbox(args) => {
            let statuses = if args.failed { vec![OutboundStatus::Dead] } else { Vec::new() };
            let query = OutboundQuery { statuses, partner: args.partner, limit: args.limit };
            for m in outbox.list(&query)? {
                println!(
                    "{:>6}  {}  {:<9}  {:<12}  {:<8}  {:<14}  attempts={}  {}{}",
                    m.id,
                    time_text(m.created_at),
                    m.status.as_str(),
                    m.partner,
                    m.message_type,
                    m.control_id,
                    m.attempts,
                    m.resource,
                    m.last_error.map(|e| format!("  error={e}")).unwrap_or_default(),
                );
            }
            Ok(())
        }
        Hl7Command::Oru { report } => {
            let message = hl7_interface::outbound::oru_r01(&records, &report)
                .with_context(|| format!("no ORU for DiagnosticReport/{report}"))?;
            println!("{}", message.replace('\r', "\n"));
            Ok(())
        }
        Hl7Command::Replay { id } => {
            // No server runs here, so no policy or auditor: the replay's writes are still
            // audited in their own transaction under the interface's name.
            let door = ::access::Door::open(records.as_actor(store::Agent::system(hl7_interface::JOB)));
            let interface = hl7_interface::Interface::new(door, message_log.clone());
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

fn partner(outbox: &dyn Outbox, command: PartnerCommand) -> Result<()> {
    match command {
        PartnerCommand::Add { name, address, events } => {
            let port = address.rsplit_once(':').and_then(|(host, port)| (!host.is_empty()).then_some(port));
            if port.and_then(|p| p.parse::<u16>().ok()).is_none_or(|p| p == 0) {
                bail!("--address wants HOST:PORT of the partner's MLLP listener");
            }
            let events: Vec<String> = if events.is_empty() {
                hl7_interface::outbound::ADT_EVENTS.iter().map(|e| e.to_string()).collect()
            } else {
                events.iter().map(|e| e.trim().to_ascii_uppercase()).collect()
            };
            if let Some(unknown) = events.iter().find(|e| !hl7_interface::outbound::ADT_EVENTS.contains(&e.as_str())) {
                bail!(
                    "unknown event `{unknown}`: outbound events are {}",
                    hl7_interface::outbound::ADT_EVENTS.join(", ")
                );
            }
            outbox.put_partner(&Partner { name: name.clone(), address, events })?;
            println!("partner {name} added");
        }
        PartnerCommand::List => {
            for p in outbox.partners()? {
                println!("{:<16}  {:<24}  {}", p.name, p.address, p.events.join(","));
            }
        }
        PartnerCommand::Remove { name } => {
            if !outbox.remove_partner(&name)? {
                bail!("no partner {name}");
            }
            println!("partner {name} removed");
        }
    }
    Ok(())
}

fn inbound(log: &dyn MessageLog, command: InboundCommand) -> Result<()> {
    match command {
        InboundCommand::Add { name, from, allow_events } => {
            let partner = InboundPartner {
                name: name.clone(),
                addresses: from.iter().map(|a| a.trim().to_string()).filter(|a| !a.is_empty()).collect(),
                allowed_events: allow_events.iter().map(|e| e.trim().to_ascii_uppercase()).collect(),
            };
            if partner.addresses.is_empty() {
                bail!("--from wants the partner's IP addresses or CIDR blocks");
            }
            hl7_interface::partners::check_partner(&partner)?;
            log.put_inbound_partner(&partner)?;
            println!("inbound partner {name} added");
        }
        InboundCommand::List => {
            for p in log.inbound_partners()? {
                let events = if p.allowed_events.is_empty() { "-".to_string() } else { p.allowed_events.join(",") };
                println!("{:<16}  {:<32}  allow-events={}", p.name, p.addresses.join(","), events);
            }
        }
        InboundCommand::Remove { name } => {
            if !log.remove_inbound_partner(&name)? {
                bail!("no inbound partner {name}");
            }
            println!("inbound partner {name} removed");
        }
    }
    Ok(())
}

fn parse_since(text: &str) -> Result<OffsetDateTime> {
    server::message_log::parse_since(text).context("--since wants YYYY-MM-DD or an RFC 3339 time")
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
            println!("{}", server::message_log::message_json(&message));
        } else {
            println!("{}", summary(&message));
        }
    }
    Ok(())
}

/// One line: id, time, status, type, control id, ACK, partner, patient, error.
fn summary(m: &StoredMessage) -> String {
    let o = &m.outcome;
    let mut line = format!(
        "{:>6}  {}  {:<9}  {:<8}  {:<16}  {:<2}  partner={}  patient={}",
        m.id,
        time_text(m.received_at),
        m.status.as_str(),
        m.message_type,
        m.control_id,
        o.ack_code,
        if m.partner.is_empty() { "-" } else { &m.partner },
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
