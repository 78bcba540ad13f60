//! A throwaway PostgreSQL primary with one streaming-replication standby on loopback ports,
//! made with the machine's own `initdb`, `pg_ctl` and `pg_basebackup` (Debian's PostgreSQL
//! packages), for the replica benchmark and test. Both servers stop and their files go when
//! the value is dropped. As root, the programs run as the `postgres` user (PostgreSQL refuses
//! root).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A primary and one standby.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    primary_port: u16,
    standby_port: u16,
}

/// The name of the database the cluster is made with.
const DATABASE: &str = "continuum";

impl Cluster {
    /// Makes and starts the primary, clones it into a standby with `pg_basebackup -R`, starts
    /// that, and creates the database (with its patient-owned tables in `partitions` hash
    /// partitions when given: `continuum.partitions`, see docs/scale-out.md).
    pub fn start(partitions: Option<u32>) -> Result<Cluster, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temporary folder: {e}"))?;
        if running_as_root() {
            let status = Command::new("chown").arg("postgres:postgres").arg(dir.path()).status();
            if !status.is_ok_and(|s| s.success()) {
                return Err("cannot give the cluster's folder to the postgres user".into());
            }
        }
        let cluster = Cluster { dir, bin: postgres_bin()?, primary_port: free_port()?, standby_port: free_port()? };
        let primary = cluster.path("primary");
        cluster.run("initdb", &["-D", &primary, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "-N"])?;
        cluster.configure("primary", cluster.primary_port)?;
        cluster.start_node("primary")?;
        let port = cluster.primary_port.to_string();
        let standby = cluster.path("standby");
        cluster.run(
            "pg_basebackup",
            &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-D", &standby, "-R", "-X", "stream", "-c", "fast"],
        )?;
        cluster.configure("standby", cluster.standby_port)?;
        cluster.start_node("standby")?;
        let mut admin = postgres::Client::connect(&cluster.url(cluster.primary_port, "postgres"), postgres::NoTls)
            .map_err(|e| format!("connect to the new primary: {e}"))?;
        admin.batch_execute(&format!("CREATE DATABASE {DATABASE}")).map_err(|e| format!("create database: {e}"))?;
        if let Some(n) = partitions {
            admin
                .batch_execute(&format!("ALTER DATABASE {DATABASE} SET continuum.partitions = '{n}'"))
                .map_err(|e| format!("set partitions: {e}"))?;
        }
        Ok(cluster)
    }

    /// The primary's database URL.
    pub fn primary(&self) -> String {
        self.url(self.primary_port, DATABASE)
    }

    /// The standby's database URL.
    pub fn standby(&self) -> String {
        self.url(self.standby_port, DATABASE)
    }

    /// Starts `primary` or `standby` again after [`Cluster::stop_node`].
    pub fn start_node(&self, node: &str) -> Result<(), String> {
        let (data, log) = (self.path(node), self.path(&format!("{node}.log")));
        self.run("pg_ctl", &["-D", &data, "-l", &log, "-w", "-t", "60", "start"])
    }

    /// Stops `primary` or `standby` (`fast` shutdown).
    pub fn stop_node(&self, node: &str) -> Result<(), String> {
        self.run("pg_ctl", &["-D", &self.path(node), "-w", "-m", "fast", "stop"])
    }

    /// Waits until the standby has replayed everything the primary has written so far.
    pub fn wait_for_replay(&self) -> Result<(), String> {
        let connect = |url: String| postgres::Client::connect(&url, postgres::NoTls).map_err(|e| e.to_string());
        let (mut primary, mut standby) = (connect(self.primary())?, connect(self.standby())?);
        let lsn = |client: &mut postgres::Client, sql: &str| -> Result<i64, String> {
            client.query_one(sql, &[]).map_err(|e| e.to_string())?.try_get(0).map_err(|e| e.to_string())
        };
        let target = lsn(&mut primary, "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8")?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while lsn(&mut standby, "SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::int8")? < target {
            if Instant::now() > deadline {
                return Err("the standby did not catch up within 120 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    fn url(&self, port: u16, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/{db}")
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let output = self.command(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} {args:?} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// Loopback only, its own port and socket folder; no fsync (a throwaway cluster).
    fn configure(&self, node: &str, port: u16) -> Result<(), String> {
        let conf = Path::new(&self.path(node)).join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).map_err(|e| format!("{}: {e}", conf.display()))?;
        text.push_str(&format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\nfsync = off\n",
            self.dir.path().display()
        ));
        std::fs::write(&conf, text).map_err(|e| format!("{}: {e}", conf.display()))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in ["standby", "primary"] {
            let data = self.path(node);
            let _ = self.command("pg_ctl").args(["-D", &data, "-m", "immediate", "stop"]).output();
        }
    }
}

/// The newest installed PostgreSQL's server programs.
fn postgres_bin() -> Result<PathBuf, String> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| "PostgreSQL's server packages are not installed (/usr/lib/postgresql)".to_string())?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| "initdb is not installed".to_string())
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}
