//! `continuum peer`: the other Continuum nodes this one shares records with (their entries in
//! the store's job table, their private keys in `DATA/peers/NAME.pem`, mode 0600), a key pair
//! to register at a peer, and a pull run from the command line.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use exchange::peers::{NewPeer, PeerRegistry, Peers};
use std::path::{Path, PathBuf};

/// The folder of the peers' private keys in the data directory.
pub(crate) fn key_dir(data: &Path) -> PathBuf {
    data.join("peers")
}

#[derive(Debug, Args)]
pub(crate) struct PeerArgs {
    #[command(subcommand)]
    command: PeerCommand,
}

#[derive(Debug, Args)]
struct Place {
    /// Data directory.
    #[arg(long, default_value_os_t = crate::default_data_dir())]
    data: PathBuf,
    #[command(flatten)]
    database: crate::DatabaseArg,
}

#[derive(Debug, Subcommand)]
enum PeerCommand {
    /// Register a peer node (or replace its registration).
    Add(PeerAdd),
    /// List the registered peers.
    List(Place),
    /// Remove a peer and its key.
    Remove {
        /// The peer's name.
        name: String,
        #[command(flatten)]
        place: Place,
    },
    /// Make a P-384 key pair: `DIR/key.pem` (private, mode 0600; for `peer add --key` here)
    /// and `DIR/jwks.json` (public; for `client add --jwks` at the peer).
    Keygen {
        /// The folder to write them in (created if absent).
        dir: PathBuf,
    },
    /// Copy a patient's record from a peer (its certain match of the local patient).
    Pull {
        /// The peer's name.
        name: String,
        /// The local patient's id.
        #[arg(long)]
        patient: String,
        #[command(flatten)]
        place: Place,
    },
}

#[derive(Debug, Args)]
struct PeerAdd {
    /// Its name here (letters, digits, `-`, `_`, `.`).
    name: String,
    /// Its FHIR base URL (http or https), e.g. https://node-b.example.org/fhir.
    #[arg(long)]
    url: String,
    /// The client id this node is registered under at the peer.
    #[arg(long)]
    client_id: String,
    /// The private key (PEM, P-384) whose public half the peer registered for the client;
    /// read now and kept in DATA/peers/NAME.pem (mode 0600).
    #[arg(long)]
    key: PathBuf,
    /// Scopes to ask for.
    #[arg(long, default_value = exchange::peers::DEFAULT_SCOPE)]
    scope: String,
    /// The Organization the peer speaks for (Organization/ID), named in the Provenance of
    /// what comes from it.
    #[arg(long)]
    organization: Option<String>,
    #[command(flatten)]
    place: Place,
}

fn registry(place: &Place) -> Result<PeerRegistry> {
    let store = crate::open_store(&place.data, &place.database)?;
    Ok(PeerRegistry::new(store.jobs, key_dir(&place.data)))
}

pub(crate) fn run(args: PeerArgs) -> Result<()> {
    match args.command {
        PeerCommand::Add(add) => {
            let key_pem = std::fs::read_to_string(&add.key)
                .with_context(|| format!("cannot read the key file {}", add.key.display()))?;
            // Checked before the store is opened: a refused peer leaves nothing behind.
            exchange::peers::public_jwks(&key_pem).map_err(|e| anyhow::anyhow!("{e}"))?;
            let peer = registry(&add.place)?
                .add(NewPeer {
                    name: add.name,
                    url: add.url,
                    client_id: add.client_id,
                    scope: Some(add.scope),
                    organization: add.organization,
                    key_pem,
                })
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("peer {} at {} (client {})", peer.name, peer.url, peer.client_id);
            Ok(())
        }
        PeerCommand::List(place) => {
            for peer in registry(&place)?.list().map_err(|e| anyhow::anyhow!("{e}"))? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    peer.name,
                    peer.url,
                    peer.client_id,
                    peer.scope,
                    peer.organization.as_deref().unwrap_or("-")
                );
            }
            Ok(())
        }
        PeerCommand::Remove { name, place } => {
            if !registry(&place)?.remove(&name).map_err(|e| anyhow::anyhow!("{e}"))? {
                bail!("no peer named {name}");
            }
            println!("removed {name}");
            Ok(())
        }
        PeerCommand::Keygen { dir } => {
            let (pem, jwks) = exchange::peers::generate_key().map_err(|e| anyhow::anyhow!("{e}"))?;
            crate::private_data_dir(&dir)?;
            let key = dir.join("key.pem");
            std::fs::write(&key, pem).with_context(|| format!("cannot write {}", key.display()))?;
            crate::private_data_dir(&dir)?;
            let public = dir.join("jwks.json");
            std::fs::write(&public, serde_json::to_string_pretty(&jwks)?)
                .with_context(|| format!("cannot write {}", public.display()))?;
            println!("private key: {}", key.display());
            println!("public JWK Set: {}", public.display());
            Ok(())
        }
        PeerCommand::Pull { name, patient, place } => {
            let store = crate::open_store(&place.data, &place.database)?;
            let peers = Peers::new(PeerRegistry::new(store.jobs, key_dir(&place.data)));
            // The operator on this machine, like `continuum import`: the door without policy.
            let access = access::Door::open(store.records).enter(access::Who::Anyone);
            let report = peers.pull(&access, &patient, &name).map_err(|e| {
                let details: Vec<String> = e.issues().iter().map(|i| i.diagnostics.clone()).collect();
                anyhow::anyhow!("{}", details.join("; "))
            })?;
            println!("{}", serde_json::to_string_pretty(&server::report_parameters(&report))?);
            Ok(())
        }
    }
}
