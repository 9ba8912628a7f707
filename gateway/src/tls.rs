//! HTTPS for the S3 port: a rustls acceptor from PEM files.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// Why the certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// A file holds no usable PEM section.
    #[error("{path}: {reason}")]
    Pem { path: String, reason: String },
    /// rustls refused the pair (for example a key that does not match the certificate).
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// An acceptor serving the certificate chain in `cert` with the private key in `key` (PEM),
/// offering HTTP/1.1.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsError::Read {
            path: p.display().to_string(),
            source,
        })
    };
    let pem_error = |p: &Path, reason: String| TlsError::Pem {
        path: p.display().to_string(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_error(cert, "no CERTIFICATE section".into()));
    }
    let key_der =
        PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| pem_error(key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("tls.crt");
        let key = dir.path().join("tls.key");
        let Err(e) = acceptor(&cert, &key) else {
            panic!("accepted")
        };
        assert!(e.to_string().contains("tls.crt"), "{e}");
        std::fs::write(&cert, "not pem").unwrap();
        std::fs::write(&key, "not pem").unwrap();
        let Err(e) = acceptor(&cert, &key) else {
            panic!("accepted")
        };
        assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
        let issued = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(&cert, issued.cert.pem()).unwrap();
        let Err(e) = acceptor(&cert, &key) else {
            panic!("accepted")
        };
        assert!(e.to_string().contains("tls.key"), "{e}");
        std::fs::write(&key, issued.key_pair.serialize_pem()).unwrap();
        acceptor(&cert, &key).unwrap();
    }
}
