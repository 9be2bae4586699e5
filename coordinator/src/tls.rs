//! Certificates and TLS for the QUIC ingest: the cluster CA, server and node
//! certificates (issued with rcgen so operators need no openssl recipes), the
//! mutual-TLS server configuration, and the node identity read from a peer's
//! client certificate.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("certificate generation failed: {0}")]
    Generate(String),
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("peer certificate: {0}")]
    Peer(String),
    #[error("{0} already exists; refusing to overwrite it")]
    Exists(PathBuf),
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::File { path: path.to_owned(), reason: e.to_string() }
}

/// Loads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    distdiag_common::pem::load_certs(path)
        .map_err(|e| TlsError::File { path: e.path, reason: e.reason })
}

/// Loads the private key of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    distdiag_common::pem::load_key(path)
        .map_err(|e| TlsError::File { path: e.path, reason: e.reason })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// QUIC server configuration that requires a client certificate signed by `ca`.
pub fn server_config(
    ca: &Path,
    cert: &Path,
    key: &Path,
    idle_timeout_ms: u32,
) -> Result<quinn::ServerConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c).map_err(|e| file_err(ca, e))?;
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    tls.alpn_protocols = vec![distdiag_common::proto::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(quinn::VarInt::from_u32(idle_timeout_ms).into()));
    transport.max_concurrent_uni_streams(0u8.into());
    transport.max_concurrent_bidi_streams(4u8.into());
    sc.transport_config(Arc::new(transport));
    Ok(sc)
}

/// TLS configuration of the HTTPS API listener: the given chain and key,
/// no client certificate (the API authenticates with bearer tokens),
/// HTTP/1.1.
pub fn https_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| TlsError::Config(format!("{} and {}: {e}", cert.display(), key.display())))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

/// The node name carried by a client certificate: its subject common name.
pub fn node_name(cert: &CertificateDer<'_>) -> Result<String, TlsError> {
    let (_, x) =
        x509_parser::parse_x509_certificate(cert).map_err(|e| TlsError::Peer(e.to_string()))?;
    let cn = x
        .subject()
        .iter_common_name()
        .next()
        .ok_or_else(|| TlsError::Peer("certificate has no common name".into()))?
        .as_str()
        .map_err(|e| TlsError::Peer(e.to_string()))?
        .to_owned();
    validate_node_name(&cn).map_err(TlsError::Peer)?;
    Ok(cn)
}

/// Node names: 1..=64 characters of `[A-Za-z0-9._-]`, not starting with `.` or `-`.
pub fn validate_node_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid node name {name:?}: use 1-64 characters of [A-Za-z0-9._-]"))
    }
}

/// File names of a certificate directory.
#[derive(Debug, Clone)]
pub struct CertPaths {
    pub dir: PathBuf,
}

impl CertPaths {
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }
    pub fn node_cert(&self, node: &str) -> PathBuf {
        self.dir.join(format!("node-{node}.pem"))
    }
    pub fn node_key(&self, node: &str) -> PathBuf {
        self.dir.join(format!("node-{node}.key"))
    }
}

fn gen(e: rcgen::Error) -> TlsError {
    TlsError::Generate(e.to_string())
}

fn write_new(path: &Path, contents: &str, secret: bool) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                TlsError::Exists(path.to_owned())
            } else {
                file_err(path, e)
            }
        })?;
    f.write_all(contents.as_bytes()).map_err(|e| file_err(path, e))
}

/// Creates a cluster CA in `dir` (ca.pem, ca.key). Refuses to overwrite.
pub fn init_ca(paths: &CertPaths, cluster: &str) -> Result<(), TlsError> {
    std::fs::create_dir_all(&paths.dir).map_err(|e| file_err(&paths.dir, e))?;
    let key = KeyPair::generate().map_err(gen)?;
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(gen)?;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.distinguished_name.push(DnType::CommonName, format!("distdiag CA {cluster}"));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let cert = p.self_signed(&key).map_err(gen)?;
    write_new(&paths.ca_key(), &key.serialize_pem(), true)?;
    write_new(&paths.ca_cert(), &cert.pem(), false)?;
    Ok(())
}

fn issuer(paths: &CertPaths) -> Result<Issuer<'static, KeyPair>, TlsError> {
    let ca_pem =
        std::fs::read_to_string(paths.ca_cert()).map_err(|e| file_err(&paths.ca_cert(), e))?;
    let key_pem =
        std::fs::read_to_string(paths.ca_key()).map_err(|e| file_err(&paths.ca_key(), e))?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| file_err(&paths.ca_key(), e))?;
    Issuer::from_ca_cert_pem(&ca_pem, key).map_err(|e| file_err(&paths.ca_cert(), e))
}

/// Issues the coordinator's server certificate for the given DNS names / IPs.
pub fn issue_server(paths: &CertPaths, names: &[String]) -> Result<(), TlsError> {
    if names.is_empty() {
        return Err(TlsError::Generate(
            "a server certificate needs at least one name or address".into(),
        ));
    }
    let issuer = issuer(paths)?;
    let key = KeyPair::generate().map_err(gen)?;
    let mut p = CertificateParams::new(names.to_vec()).map_err(gen)?;
    p.distinguished_name.push(DnType::CommonName, names[0].clone());
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = p.signed_by(&key, &issuer).map_err(gen)?;
    write_new(&paths.server_key(), &key.serialize_pem(), true)?;
    write_new(&paths.server_cert(), &cert.pem(), false)?;
    Ok(())
}

/// Issues a node (client) certificate whose common name is the node name.
pub fn issue_node(paths: &CertPaths, node: &str) -> Result<(PathBuf, PathBuf), TlsError> {
    validate_node_name(node).map_err(TlsError::Generate)?;
    let issuer = issuer(paths)?;
    let key = KeyPair::generate().map_err(gen)?;
    let mut p = CertificateParams::new(vec![node.to_owned()]).map_err(gen)?;
    p.distinguished_name.push(DnType::CommonName, node);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = p.signed_by(&key, &issuer).map_err(gen)?;
    write_new(&paths.node_key(node), &key.serialize_pem(), true)?;
    write_new(&paths.node_cert(node), &cert.pem(), false)?;
    Ok((paths.node_cert(node), paths.node_key(node)))
}

/// Whether `s` parses as an IP address (server names may be either).
pub fn is_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_node_certificates_carry_the_node_name() {
        let dir = tempfile::tempdir().unwrap();
        let paths = CertPaths { dir: dir.path().to_owned() };
        init_ca(&paths, "test").unwrap();
        issue_server(&paths, &["localhost".into(), "127.0.0.1".into()]).unwrap();
        issue_node(&paths, "db-1").unwrap();
        let cert = &load_certs(&paths.node_cert("db-1")).unwrap()[0];
        assert_eq!(node_name(cert).unwrap(), "db-1");
        assert!(matches!(init_ca(&paths, "again"), Err(TlsError::Exists(_))));
        assert!(issue_node(&paths, "bad name").is_err());
        server_config(&paths.ca_cert(), &paths.server_cert(), &paths.server_key(), 10_000).unwrap();
    }

    #[test]
    fn node_names_are_validated() {
        for ok in ["n1", "db-1.zone_a", "A"] {
            assert!(validate_node_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", ".x", "a b", "a/b", &"x".repeat(65)] {
            assert!(validate_node_name(bad).is_err(), "{bad}");
        }
    }
}
