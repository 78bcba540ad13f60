//! The listener's allow-list and what each partner may do, over real sockets: peers connect
//! from distinct loopback addresses (127.0.0.2, 127.0.0.3, …), each registered as a partner
//! or not, and the effects are checked through the message log and `Records`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use hl7_interface::{Interface, ListenerConfig};
use serde_json::Value;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use store::messages::{MessageLog, MessageStatus};
use store::{InboundPartner, MessageQuery, Records};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the crate logged (every test of this file shares the one global subscriber).
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&logs);
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || Sink(Arc::clone(&sink)))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

struct Harness {
    _dir: tempfile::TempDir,
    records: Records,
    log: Arc<dyn MessageLog>,
    address: SocketAddr,
}

fn partner(name: &str, address: &str, events: &[&str]) -> InboundPartner {
    InboundPartner {
        name: name.into(),
        addresses: vec![address.into()],
        allowed_events: events.iter().map(|e| e.to_string()).collect(),
    }
}

/// A listener with partners `x` (127.0.0.2, no destructive event) and `y` (127.0.0.3/32,
/// allowed merges).
async fn start() -> Harness {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(store_sqlite::SqliteBackend::open(dir.path()).unwrap());
    let log: Arc<dyn MessageLog> = Arc::new(backend.message_log().unwrap());
    log.put_inbound_partner(&partner("x", "127.0.0.2", &[])).unwrap();
    log.put_inbound_partner(&partner("y", "127.0.0.3/32", &["A40"])).unwrap();
    let records = Records::new(backend);
    let interface = Arc::new(Interface::new(access::Door::open(records.clone()), Arc::clone(&log)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(hl7_interface::serve(listener, interface, ListenerConfig::default(), std::future::pending()));
    Harness { _dir: dir, records, log, address }
}

/// A connection to `to` from the loopback address `from`.
async fn connect(from: &str, to: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Sends one framed message; the ACK, or `None` when the connection closes without one.
async fn send(stream: &mut TcpStream, message: &str) -> Option<String> {
    let framed = hl7v2::mllp::frame(message.as_bytes()).unwrap();
    if stream.write_all(&framed).await.is_err() {
        return None;
    }
    let mut decoder = hl7v2::mllp::Decoder::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buffer)).await.ok()?.ok()?;
        if n == 0 {
            return None;
        }
        if let Some(frame) = decoder.decode(&buffer[..n]).into_iter().next() {
            return Some(String::from_utf8(frame.unwrap()).unwrap());
        }
    }
}

fn msa(ack: &str) -> (String, String) {
    let message = hl7v2::Message::parse(ack).unwrap();
    (message.get("MSA-1").unwrap_or_default(), message.get("MSA-2").unwrap_or_default())
}

const GHH: &str = "urn:oid:1.2.3.4";

/// An admission of patient `mrn` (family name `family`), control id `control`.
fn a01(control: &str, mrn: &str, family: &str) -> String {
    format!(
        "MSH|^~\\&|ADT1|GHH|CONT|CONT|20240301120000+0100||ADT^A01^ADT_A01|{control}|P|2.5.1\r\
         EVN|A01\rPID|1||{mrn}^^^GHH&1.2.3.4&ISO^MR||{family}^Test||19800101|F\r\
         PV1|1|I|W1^1^A||||||||||||||||V-{mrn}^^^GHH&1.2.3.4&ISO^VN\r"
    )
}

/// A merge of `prior` into `survivor`.
fn a40(control: &str, survivor: &str, prior: &str) -> String {
    format!(
        "MSH|^~\\&|ADT1|GHH|CONT|CONT|20240301120000+0100||ADT^A40^ADT_A39|{control}|P|2.5.1\r\
         EVN|A40\rPID|1||{survivor}^^^GHH&1.2.3.4&ISO^MR||Merge^Test\rMRG|{prior}^^^GHH&1.2.3.4&ISO^MR\r"
    )
}

/// The one Patient with MRN `mrn`: its id, version and body.
fn patient(records: &Records, mrn: &str) -> (String, u64, Value) {
    let ids = records.backend().find_by_identifier("Patient", Some(GHH), mrn).unwrap();
    assert_eq!(ids.len(), 1, "one patient {mrn}");
    let version = records.read("Patient", &ids[0]).unwrap();
    let body = serde_json::from_str(version.body.as_deref().unwrap()).unwrap();
    (ids[0].clone(), version.version, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_outside_the_allow_list_is_refused_and_logged() {
    let h = start().await;
    for outsider in ["127.0.0.4", "127.0.0.1"] {
        let mut stream = connect(outsider, h.address).await;
        let ack = send(&mut stream, &a01("OUT-1", "OUT1", "Outsider")).await;
        assert_eq!(ack, None, "{outsider}: closed without an ACK");
    }
    assert!(h.log.list(&MessageQuery::default()).unwrap().is_empty(), "nothing logged");
    assert!(h.records.backend().find_by_identifier("Patient", Some(GHH), "OUT1").unwrap().is_empty());
    let text = logged();
    let refusals: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("not on the allow-list") && l.contains(&format!("listener={}", h.address)))
        .collect();
    assert!(refusals.iter().any(|l| l.contains("peer=127.0.0.4:")), "{text}");
    assert!(refusals.iter().any(|l| l.contains("peer=127.0.0.1:")), "{text}");
    assert!(refusals.iter().all(|l| l.contains("WARN")), "{refusals:?}");
    assert!(!text.contains("Outsider") && !text.contains("OUT1"), "no message content in the log: {text}");

    // A registered partner on the same listener is served.
    let mut stream = connect("127.0.0.2", h.address).await;
    let ack = send(&mut stream, &a01("IN-1", "IN1", "Insider")).await.expect("an ACK");
    assert_eq!(msa(&ack), ("AA".into(), "IN-1".into()));
    let logged = h.log.list(&MessageQuery::default()).unwrap();
    assert_eq!((logged.len(), logged[0].partner.as_str()), (1, "x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_needs_a_partner_allowed_to_merge() {
    let h = start().await;
    let mut x = connect("127.0.0.2", h.address).await;
    assert_eq!(msa(&send(&mut x, &a01("M-1", "KEEP", "Survivor")).await.unwrap()).0, "AA");
    assert_eq!(msa(&send(&mut x, &a01("M-2", "GONE", "Prior")).await.unwrap()).0, "AA");
    let before = h.records.backend().count_by_type().unwrap();
    let (keep, keep_version, _) = patient(&h.records, "KEEP");
    let (gone, gone_version, gone_body) = patient(&h.records, "GONE");

    // x may not merge: AR, and neither patient (nor anything else) changes.
    let ack = send(&mut x, &a40("MERGE-X", "KEEP", "GONE")).await.expect("an ACK");
    assert_eq!(msa(&ack), ("AR".into(), "MERGE-X".into()), "{ack}");
    assert!(ack.contains("\rERR|"), "{ack}");
    assert_eq!(patient(&h.records, "KEEP").1, keep_version);
    let (_, version, body) = patient(&h.records, "GONE");
    assert_eq!((version, &body), (gone_version, &gone_body));
    assert!(body.get("link").is_none() && body.get("active") != Some(&Value::Bool(false)));
    assert_eq!(h.records.backend().count_by_type().unwrap(), before);
    let refused = &h.log.list(&MessageQuery::default()).unwrap()[0];
    assert_eq!((refused.status, refused.partner.as_str()), (MessageStatus::Rejected, "x"));

    // y may: the prior patient is retired and linked to the survivor.
    let mut y = connect("127.0.0.3", h.address).await;
    let ack = send(&mut y, &a40("MERGE-Y", "KEEP", "GONE")).await.expect("an ACK");
    assert_eq!(msa(&ack), ("AA".into(), "MERGE-Y".into()), "{ack}");
    let (_, _, body) = patient(&h.records, "GONE");
    assert_eq!(body["active"], false);
    assert_eq!(body["link"][0]["type"], "replaced-by");
    assert_eq!(body["link"][0]["other"]["reference"], format!("Patient/{keep}"));
    assert_ne!(keep, gone);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_control_id_does_not_drop_another_partners_message() {
    let h = start().await;
    // x sends first with the control id (and header) that y is about to use.
    let mut x = connect("127.0.0.2", h.address).await;
    assert_eq!(msa(&send(&mut x, &a01("SAME-1", "FORGED", "Forged")).await.unwrap()).0, "AA");
    // y's own message with that control id is applied, not dropped as a duplicate.
    let mut y = connect("127.0.0.3", h.address).await;
    let ack = send(&mut y, &a01("SAME-1", "GENUINE", "Genuine")).await.expect("an ACK");
    assert_eq!(msa(&ack), ("AA".into(), "SAME-1".into()));
    let (_, _, genuine) = patient(&h.records, "GENUINE");
    assert_eq!(genuine["name"][0]["family"], "Genuine");
    let logged = h.log.list(&MessageQuery::default()).unwrap();
    assert_eq!(logged[0].partner, "y");
    assert_eq!(logged[0].status, MessageStatus::Processed);
    // y sending it again is a duplicate of y's own message.
    assert_eq!(msa(&send(&mut y, &a01("SAME-1", "GENUINE", "Genuine")).await.unwrap()).0, "AA");
    let again = &h.log.list(&MessageQuery::default()).unwrap()[0];
    assert_eq!((again.status, again.outcome.duplicate_of), (MessageStatus::Duplicate, Some(logged[0].id)));
    assert_eq!(h.records.backend().find_by_identifier("Encounter", Some(GHH), "V-GENUINE").unwrap().len(), 1);
}
