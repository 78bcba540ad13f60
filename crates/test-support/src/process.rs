//! The `continuum` binary run as a child process, for whole-flow tests: a `continuum serve`
//! that is killed when dropped, and a command run with input.
//!
//! The binary is the one cargo built for the `continuum` package's integration tests: cargo
//! names it in `CARGO_BIN_EXE_continuum` while such a test runs, so only those tests can use
//! this module.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The `continuum` binary under test; panics outside the `continuum` package's integration
/// tests.
pub fn binary() -> PathBuf {
    std::env::var_os("CARGO_BIN_EXE_continuum")
        .map(PathBuf::from)
        .expect("CARGO_BIN_EXE_continuum is set by cargo for the continuum package's integration tests only")
}

/// A running `continuum serve`.
pub struct Server {
    /// The `continuum serve` process.
    pub child: Child,
    /// The FHIR base URL.
    pub base: String,
    /// `HOST:PORT` of the MLLP listener, when started with `--mllp`.
    mllp: Option<String>,
}

impl Server {
    /// The MLLP listener's address.
    pub fn mllp(&self) -> &str {
        self.mllp.as_deref().expect("the server was started with --mllp")
    }
}

/// A test that fails must not leave its server running.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `continuum serve --listen 127.0.0.1:0 --no-auth EXTRA… --data DATA` (a test of
/// something other than access control) and reads the addresses it prints (the MLLP one when
/// `extra` has `--mllp`).
pub fn start(data: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["--no-auth"];
    args.extend_from_slice(extra);
    start_secured(data, &args)
}

/// Starts `continuum serve --listen 127.0.0.1:0 EXTRA… --data DATA` with access control on.
pub fn start_secured(data: &Path, extra: &[&str]) -> Server {
    let mut child = Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .arg("--data")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start continuum");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let base = first.trim().rsplit(' ').next().unwrap().to_string();
    assert!(base.starts_with("http://") || base.starts_with("https://"), "unexpected first line: {first}");
    let mllp = extra.contains(&"--mllp").then(|| {
        let line = lines
            .by_ref()
            .map(|line| line.unwrap())
            .find(|line| line.contains("over MLLP at"))
            .expect("the MLLP address is printed");
        line.trim().rsplit(' ').next().unwrap().to_string()
    });
    // Keep reading what the server prints, so that it never writes to a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Server { child, base, mllp }
}

/// Runs `continuum ARGS --data DATA` with `stdin` (if any) and checks that it succeeds.
pub fn continuum(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(binary())
        .args(args)
        .arg("--data")
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output
}
