//! `continuum-bench pull`: issue 19's pull figure (goal: a 2,000-resource record pulled
//! between two nodes on loopback in under 2 s).
//!
//! Two release `continuum serve` processes (the binary beside this one, or `--server`) with
//! access control on, each with its own data directory, set up as a user would: node A holds a
//! scaled Synthea patient carrying three lifetimes of records (2,000+ resources) imported with
//! `continuum import`; node B holds its own record of the same person (name, birth date, sex,
//! SSN) and registers A as a peer (`peer keygen`, `client add --jwks` at A, `peer add` at B).
//! A physician of B then calls `POST Patient/{id}/$pull?peer=node-a`, timed from request to
//! answer: B's token request to A, `$match` at A, every page of A's `$everything` (A's policy
//! and audit on each), B's one transaction writing the copies with their Provenance. The same
//! pull is repeated (nothing changed at A: every copy found unchanged). Printed: resources
//! received, seconds, resources/s.

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;
use test_support::synthea::{Scaler, is_heavy};

const GOAL_SECONDS: f64 = 2.0;

#[derive(Debug, Args)]
pub(crate) struct PullBenchArgs {
    /// The `continuum` binary to serve with (default: the one beside this benchmark).
    #[arg(long)]
    server: Option<PathBuf>,
    /// Pulls timed (each into a fresh node B).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cli(binary: &Path, data: &Path, args: &[&str], input: Option<&str>) -> Result<String> {
    use std::io::Write;
    let mut child = Command::new(binary)
        .args(args)
        .arg("--data")
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(input) = input {
        child.stdin.take().context("stdin")?.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("continuum {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// Starts a secured node and reads its base URL from the first line it prints.
fn serve(binary: &Path, data: &Path) -> Result<(Node, String)> {
    let mut child = Command::new(binary)
        .args(["serve", "--listen", "127.0.0.1:0", "--rate-limit", "0", "--no-patient-index", "--data"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let first = lines.next().context("the server printed nothing")??;
    let base = first.trim().rsplit(' ').next().unwrap_or_default().to_string();
    std::thread::spawn(move || lines.for_each(drop));
    Ok((Node(child), base))
}

pub(crate) fn run(args: PullBenchArgs) -> Result<()> {
    let binary = match &args.server {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.parent().context("the bench binary has no folder")?.join("continuum"),
    };
    if !binary.exists() {
        bail!("no server binary at {}: `cargo build --release -p continuum`, or --server", binary.display());
    }
    let scratch = tempfile::tempdir()?;
    let (a, keys_a, keys_b) = (scratch.path().join("a"), scratch.path().join("keys-a"), scratch.path().join("keys-b"));
    // Node A: the shared Synthea directory files, then one patient with three lifetimes.
    let scaler = Scaler::new(&test_support::synthea::sample_folders()?, test_support::synthea::DEFAULT_SEED)?;
    let k = (0..200).find(|k| is_heavy(*k)).context("a heavy patient")?;
    let bundle = scaler.bundle(k)?;
    let patient = bundle["entry"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["resource"]["resourceType"] == "Patient"))
        .map(|e| e["resource"].clone())
        .context("the bundle has a Patient")?;
    let file = scratch.path().join("patient.json");
    std::fs::write(&file, serde_json::to_vec(&bundle)?)?;
    let mut import: Vec<String> = vec!["import".into()];
    import.extend(scaler.shared().iter().map(|p| p.display().to_string()));
    import.push(file.display().to_string());
    let import: Vec<&str> = import.iter().map(String::as_str).collect();
    cli(&binary, &a, &import, None)?;
    for keys in [&keys_a, &keys_b] {
        let out = Command::new(&binary).args(["peer", "keygen"]).arg(keys).output()?;
        if !out.status.success() {
            bail!("peer keygen failed");
        }
    }
    let jwks_b = keys_b.join("jwks.json").display().to_string();
    cli(
        &binary,
        &a,
        &["client", "add", "--id", "node-b", "--name", "Node B", "--scope", "system/*.rs", "--jwks", &jwks_b],
        None,
    )?;
    let (_node_a, base_a) = serve(&binary, &a)?;

    let ssn: Vec<Value> = patient["identifier"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["system"] == "http://hl7.org/fhir/sid/us-ssn")
        .cloned()
        .collect();
    let local = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Organization", "id": "org-b", "name": "Node B clinic"}, "request": {"method": "PUT", "url": "Organization/org-b"}},
        {"resource": {"resourceType": "Patient", "id": "local-1", "identifier": ssn, "name": patient["name"], "gender": patient["gender"],
            "birthDate": patient["birthDate"], "address": patient["address"], "managingOrganization": {"reference": "Organization/org-b"}},
         "request": {"method": "PUT", "url": "Patient/local-1"}}
    ]});
    let local_file = scratch.path().join("local.json");
    std::fs::write(&local_file, serde_json::to_vec(&local)?)?;
    let key_b = keys_b.join("key.pem").display().to_string();
    let http = reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(300)).build()?;
    let mut times = Vec::new();
    for run in 0..args.runs.max(1) {
        let b = scratch.path().join(format!("b{run}"));
        cli(&binary, &b, &["import", local_file.to_str().context("path")?], None)?;
        cli(
            &binary,
            &b,
            &["user", "add", "doc-b", "--role", "physician", "--org", "org-b", "--password-stdin"],
            Some("a long enough password\n"),
        )?;
        cli(&binary, &b, &["peer", "add", "node-a", "--url", &base_a, "--client-id", "node-b", "--key", &key_b], None)?;
        let token =
            cli(&binary, &b, &["token", "--user", "doc-b", "--scope", "user/*.cruds"], None)?.trim().to_string();
        let (_node_b, base_b) = serve(&binary, &b)?;
        let pull = || -> Result<(f64, u64, Value)> {
            let started = Instant::now();
            let answer = http.post(format!("{base_b}/Patient/local-1/$pull?peer=node-a")).bearer_auth(&token).send()?;
            let seconds = started.elapsed().as_secs_f64();
            let status = answer.status();
            let body: Value = answer.json()?;
            if !status.is_success() {
                bail!("the pull failed ({status}): {body}");
            }
            let received = body["parameter"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["name"] == "received")
                .filter_map(|p| p["part"][1]["valueInteger"].as_u64())
                .sum();
            Ok((seconds, received, body))
        };
        let (first, received, _) = pull()?;
        let (again, _, _) = pull()?;
        println!(
            "run {}: {received} resources pulled in {first:.2} s ({:.0} resources/s); the same pull again (all unchanged) {again:.2} s",
            run + 1,
            received as f64 / first
        );
        times.push(first);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "pull of one 2,000+-resource record between two nodes: median {median:.2} s (goal < {GOAL_SECONDS} s): {}",
        if median < GOAL_SECONDS { "goal met" } else { "goal missed" }
    );
    Ok(())
}
