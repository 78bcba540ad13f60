//! MLLP over TLS, optionally mutual: the listener's rustls settings (the `ring` provider, TLS
//! 1.2 and 1.3) from PEM files. With a client CA, every peer must present a certificate that
//! CA issued, or the handshake fails before a byte of HL7 is read; the allow-list by address
//! ([`crate::partners`]) applies as well.

use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// Why the TLS settings could not be made. The texts name the file's role, never its content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{0} cannot be read or holds no usable PEM item")]
    Pem(&'static str),
    /// The key does not fit the certificate, or a certificate cannot be used.
    #[error("{0}")]
    Config(&'static str),
}

/// The listener's TLS settings: its certificate chain (leaf first) and key, and when
/// `client_ca` is given, the CA certificates whose client certificates are required.
pub fn server_config(
    certificate_chain: &Path,
    private_key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = read_certificates(certificate_chain, "the MLLP certificate file")?;
    let key = PrivateKeyDer::from_pem_file(private_key).map_err(|_| TlsError::Pem("the MLLP private key file"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|_| TlsError::Config("no TLS protocol version is available"))?;
    let builder = match client_ca {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in read_certificates(path, "the MLLP client CA file")? {
                roots.add(ca).map_err(|_| TlsError::Config("a client CA certificate cannot be used"))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|_| TlsError::Config("the client CA certificates cannot verify clients"))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|_| TlsError::Config("the private key does not fit the certificate, or is of an unsupported kind"))?;
    Ok(Arc::new(config))
}

fn read_certificates(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|_| TlsError::Pem(what))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsError::Pem(what))?;
    if certificates.is_empty() {
        return Err(TlsError::Pem(what));
    }
    Ok(certificates)
}
