//! The HL7 v2 door of the real binary: `serve --mllp`, ACK implies durable (SIGKILL right after
//! each ACK, restart, the effect is there and nothing is doubled), and `hl7 list` / `hl7 replay`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BINARY: &str = env!("CARGO_BIN_EXE_continuum");

struct Server {
    child: Child,
    mllp: String,
}

/// A test that fails must not leave its server running.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data: &Path) -> Server {
    let mut child = Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0", "--mllp", "127.0.0.1:0", "--data"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start continuum");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mllp = lines
        .by_ref()
        .map(|line| line.unwrap())
        .find(|line| line.contains("over MLLP at"))
        .expect("the MLLP address is printed");
    let mllp = mllp.trim().rsplit(' ').next().unwrap().to_string();
    // Keep reading what the server prints, so that it never writes to a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Server { child, mllp }
}

fn exchange(stream: &mut TcpStream, message: &str) -> String {
    stream.write_all(&hl7v2::mllp::frame(message.as_bytes()).unwrap()).unwrap();
    let mut decoder = hl7v2::mllp::Decoder::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = stream.read(&mut buffer).unwrap();
        assert!(n > 0, "connection closed without an ACK");
        if let Some(frame) = decoder.decode(&buffer[..n]).into_iter().next() {
            return String::from_utf8(frame.unwrap()).unwrap();
        }
    }
}

fn a01(n: usize) -> String {
    format!(
        "MSH|^~\\&|ADT1|GHH|CONT|CONT|20240301120000+0100||ADT^A01^ADT_A01|CRASH-{n}|P|2.5.1\r\
         EVN|A01\rPID|1||M{n}^^^GHH&1.2.3.4&ISO^MR||Crash^Test{n}||19800101|F\r\
         PV1|1|I|W1^1^A||||||||||||||||V{n}^^^GHH&1.2.3.4&ISO^VN\r"
    )
}

fn hl7(data: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(BINARY).arg("hl7").args(args).arg("--data").arg(data).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn an_ack_survives_sigkill_and_failed_messages_replay() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let mut server = start(dir.path());
        let mut stream = TcpStream::connect(&server.mllp).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let ack = exchange(&mut stream, &a01(round));
        assert!(ack.contains("MSA|AA|CRASH-"), "{ack}");
        server.child.kill().unwrap();
        server.child.wait().unwrap();
    }
    // After the kills every acknowledged admission is there, once; resending one is a duplicate.
    let mut server = start(dir.path());
    let mut stream = TcpStream::connect(&server.mllp).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    assert!(exchange(&mut stream, &a01(1)).contains("MSA|AA|CRASH-1"));
    // A merge naming an unknown prior patient fails into the dead-letter queue.
    let a40 = "MSH|^~\\&|ADT1|GHH|CONT|CONT|20240301120000+0100||ADT^A40^ADT_A39|MERGE-1|P|2.5.1\r\
               EVN|A40\rPID|1||M0^^^GHH&1.2.3.4&ISO^MR||Crash^Test0\rMRG|M9^^^GHH&1.2.3.4&ISO^MR\r";
    assert!(exchange(&mut stream, a40).contains("MSA|AE|MERGE-1"));
    assert!(exchange(&mut stream, &a01(9)).contains("MSA|AA|CRASH-9"));
    drop(stream);
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let (ok, list) = hl7(dir.path(), &["list"]);
    assert!(ok);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 6, "{list}");
    assert_eq!(lines.iter().filter(|l| l.contains("processed")).count(), 4, "{list}");
    assert_eq!(lines.iter().filter(|l| l.contains("duplicate")).count(), 1, "{list}");
    let (_, failed) = hl7(dir.path(), &["list", "--failed"]);
    let failed: Vec<&str> = failed.lines().collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].contains("ADT^A40") && failed[0].contains("MERGE-1"), "{failed:?}");
    let id = failed[0].split_whitespace().next().unwrap().to_string();
    let (_, by_type) = hl7(dir.path(), &["list", "--type", "ADT^A01", "--status", "processed"]);
    assert_eq!(by_type.lines().count(), 4);
    // After the fix (the prior patient now exists: M9 was admitted), the replay applies it.
    let (ok, out) = hl7(dir.path(), &["replay", &id]);
    assert!(ok, "{out}");
    assert!(out.contains("processed"), "{out}");
    let (_, failed) = hl7(dir.path(), &["list", "--failed"]);
    assert!(failed.trim().is_empty(), "{failed}");

    let backend = store_sqlite::SqliteBackend::open(dir.path()).unwrap();
    backend.check_integrity().unwrap();
    let records = store::Records::new(std::sync::Arc::new(backend));
    for n in [0, 1, 2, 9] {
        let ids = records.backend().find_by_identifier("Encounter", Some("urn:oid:1.2.3.4"), &format!("V{n}")).unwrap();
        assert_eq!(ids.len(), 1, "visit {n}");
    }
    let prior = records.backend().find_by_identifier("Patient", Some("urn:oid:1.2.3.4"), "M9").unwrap();
    let prior = records.read("Patient", &prior[0]).unwrap();
    assert!(prior.body.as_deref().unwrap().contains("replaced-by"));
}
