//! A real external HL7 v2 client over MLLP: python-hl7 (installed from PyPI by this test into
//! Cargo's scratch folder, so the test needs `python3` with `pip` and the package index; it
//! fails, never skips, without them) sends the interface's sample messages to `continuum serve
//! --mllp` and parses the ACKs with its own parser (`tests/external/mllp_client.py`).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use std::path::PathBuf;
use std::process::Command;

use test_support::process::{binary, start};

/// The python-hl7 release the client is written against.
const PYTHON_HL7: &str = "hl7==0.4.5";

/// python-hl7 in a folder of its own under Cargo's scratch space (installed once).
fn python_hl7() -> PathBuf {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("python-hl7-0.4.5");
    if !target.join("hl7").join("client.py").exists() {
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--target"])
            .arg(&target)
            .arg(PYTHON_HL7)
            .status()
            .expect("python3 runs");
        assert!(status.success(), "pip could not install {PYTHON_HL7}");
    }
    target
}

#[test]
fn python_hl7_client_gets_correct_acks() {
    let library = python_hl7();
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["--mllp", "127.0.0.1:0"]);
    let (host, port) = server.mllp().rsplit_once(':').unwrap();
    let samples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../hl7-interface/tests/data");
    let files = ["ADT-A01-01.hl7", "ADT-A03-01.hl7", "ORU-R01-RMGEAD.hl7", "VXU-V04-01.hl7", "SIU-S12-01.hl7"];
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/external/mllp_client.py");
    let output = Command::new("python3")
        .arg(&script)
        .args([host, port])
        .args(files.iter().map(|f| samples.join(f)))
        .env("PYTHONPATH", &library)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "client failed: {}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    let answers: Vec<Vec<&str>> = stdout.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(answers.len(), files.len() + 2, "{stdout}");
    for (file, answer) in files.iter().zip(&answers) {
        assert_eq!(answer[0], *file);
        assert_eq!(answer[2], "AA", "{file} was not accepted: {stdout}");
        assert_eq!(answer[3], answer[1], "{file}: the ACK answers its own control id");
    }
    let unknown = &answers[files.len()];
    assert_eq!((unknown[2], unknown[3]), ("AR", "PY-UNKNOWN"), "an unknown event is rejected");
    let no_pid = &answers[files.len() + 1];
    assert_eq!((no_pid[2], no_pid[3]), ("AE", "PY-NOPID"), "a message without PID is an error");

    // What the client sent is in the log, and the records it implies exist.
    let listed = Command::new(binary()).args(["hl7", "list", "--json", "--data"]).arg(dir.path()).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    let statuses: Vec<serde_json::Value> = listed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(statuses.len(), files.len() + 2);
    // The sample A03 reuses the A01's control id (MSG00001) from the same sender: it is
    // acknowledged as a duplicate and not applied.
    assert_eq!(statuses.iter().filter(|m| m["status"] == "processed").count(), files.len() - 1, "{listed}");
    assert_eq!(statuses.iter().filter(|m| m["status"] == "duplicate").count(), 1, "{listed}");
    assert_eq!(statuses.iter().filter(|m| m["status"] == "rejected" || m["status"] == "failed").count(), 2);
}
