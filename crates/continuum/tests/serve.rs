//! `continuum serve`: prints its base URL, answers, and stops cleanly on SIGTERM and SIGINT.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

const BINARY: &str = env!("CARGO_BIN_EXE_continuum");

fn serve_then_signal(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let base = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(base.starts_with("http://127.0.0.1:") && base.ends_with("/fhir"), "{line}");

    let metadata = reqwest::blocking::get(format!("{base}/metadata")).unwrap();
    assert_eq!(metadata.status().as_u16(), 200);

    let status = Command::new("kill").arg(format!("-{signal}")).arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exit after SIG{signal}: {exit:?}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("Continuum stopped"), "{rest}");
}

#[test]
fn stops_cleanly_on_sigterm() {
    serve_then_signal("TERM");
}

#[test]
fn stops_cleanly_on_sigint() {
    serve_then_signal("INT");
}
