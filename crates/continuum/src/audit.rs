//! `continuum audit verify`: checks the audit trail's hash chain and names the first entry
//! that was edited, inserted or removed.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use store::audit::Verification;

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check every entry of the audit trail against its hash chain (exit status 1 when broken).
    Verify {
        /// Data directory of the embedded store.
        #[arg(long, default_value_os_t = crate::default_data_dir())]
        data: PathBuf,
        #[command(flatten)]
        database: crate::DatabaseArg,
    },
}

pub(crate) fn run(args: AuditArgs) -> Result<()> {
    match args.command {
        AuditCommand::Verify { data, database } => {
            let store = crate::open_store(&data, &database)?;
            match store::audit::verify(&*store.audit)? {
                Verification::Intact { entries } => {
                    println!("audit trail intact: {entries} entries, every hash and link checked");
                    Ok(())
                }
                Verification::Broken { sequence, problem } => {
                    println!("audit trail BROKEN at entry {sequence}: {problem}");
                    bail!("the audit trail was tampered with")
                }
            }
        }
    }
}
