//! MLLP over mutual TLS: a client with a certificate from the client CA is served; one without
//! a certificate, or with one from another CA, is refused in the handshake and nothing is
//! logged; the allow-list still applies.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use hl7_interface::{Interface, ListenerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use store::messages::MessageLog;
use store::{MessageQuery, Records};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CA, and certificates it issues.
struct Ca {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        Ca { issuer: rcgen::CertifiedIssuer::self_signed(params, key).unwrap() }
    }

    /// A certificate for `name` and its key (PKCS#8 DER).
    fn issue(&self, name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(vec![name.to_string()]).unwrap().signed_by(&key, &self.issuer).unwrap();
        (cert, key)
    }
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Sends one admission over TLS as a client holding `identity` (if any); the ACK, or `None`
/// when the handshake or the connection fails.
async fn send(
    to: SocketAddr,
    server_ca: &Ca,
    identity: Option<&(rcgen::Certificate, rcgen::KeyPair)>,
) -> Option<String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server_ca.issuer.der().clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => {
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
            builder.with_client_auth_cert(vec![CertificateDer::from(cert.der().to_vec())], key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(to).await.ok()?;
    let mut stream = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.ok()?;
    let message = "MSH|^~\\&|ADT1|GHH|CONT|CONT|20240301120000+0100||ADT^A01^ADT_A01|TLS-1|P|2.5.1\r\
                   EVN|A01\rPID|1||T1^^^GHH&1.2.3.4&ISO^MR||Tls^Test||19800101|F\r\
                   PV1|1|I|W1^1^A||||||||||||||||VT1^^^GHH&1.2.3.4&ISO^VN\r";
    stream.write_all(&hl7v2::mllp::frame(message.as_bytes()).unwrap()).await.ok()?;
    stream.flush().await.ok()?;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_serves_only_clients_with_a_certificate_of_the_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (server_ca, client_ca, other_ca) = (Ca::new("server CA"), Ca::new("client CA"), Ca::new("other CA"));
    let (server_cert, server_key) = server_ca.issue("localhost");
    let cert = write(dir.path(), "server.pem", &format!("{}{}", server_cert.pem(), server_ca.issuer.pem()));
    let key = write(dir.path(), "server.key", &server_key.serialize_pem());
    let ca = write(dir.path(), "clients.pem", &client_ca.issuer.pem());
    let tls = hl7_interface::tls::server_config(&cert, &key, Some(&ca)).unwrap();
    assert!(hl7_interface::tls::server_config(&cert, &ca, Some(&ca)).is_err(), "a certificate is not a key");

    let backend = Arc::new(store_sqlite::SqliteBackend::open(dir.path()).unwrap());
    let log: Arc<dyn MessageLog> = Arc::new(backend.message_log().unwrap());
    let interface = Arc::new(Interface::new(access::Door::open(Records::new(backend)), Arc::clone(&log)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let config = ListenerConfig { tls: Some(tls), ..ListenerConfig::default() };
    tokio::spawn(hl7_interface::serve(listener, interface, config, std::future::pending()));

    assert_eq!(send(address, &server_ca, None).await, None, "no client certificate");
    assert_eq!(send(address, &server_ca, Some(&other_ca.issue("lab"))).await, None, "another CA's certificate");
    assert!(log.list(&MessageQuery::default()).unwrap().is_empty(), "nothing was read");
    let ack = send(address, &server_ca, Some(&client_ca.issue("lab"))).await.expect("an ACK");
    assert!(ack.contains("MSA|AA|TLS-1"), "{ack}");
    assert_eq!(log.list(&MessageQuery::default()).unwrap().len(), 1);

    // The allow-list applies over TLS too: with a partner elsewhere, loopback is refused.
    let elsewhere = store::InboundPartner {
        name: "elsewhere".into(),
        addresses: vec!["192.0.2.0/24".into()],
        allowed_events: Vec::new(),
    };
    log.put_inbound_partner(&elsewhere).unwrap();
    assert_eq!(send(address, &server_ca, Some(&client_ca.issue("lab"))).await, None);
    assert_eq!(log.list(&MessageQuery::default()).unwrap().len(), 1);
}
