//! The rustls side of the TLS policy, shared by both connection kinds.
//!
//! rustls always verifies certificates unless told otherwise, while libpq's `prefer` and
//! `require` deliberately do not (they only encrypt), and `verify-ca` checks the chain
//! but not the host name. Those two relaxed policies are the custom verifiers below; the
//! handshake signatures are still checked in every mode, so a relaxed mode never accepts a
//! peer that cannot prove it holds the certificate's key.
//!
//! This module also computes the `tls-server-end-point` channel binding (RFC 5929) used by
//! SCRAM-SHA-256-PLUS: a hash of the server's certificate, with the certificate's own
//! signature hash (MD5 and SHA-1 upgraded to SHA-256).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::{Error, Kind, Result};

/// How much TLS to insist on and what to verify, with libpq's meaning.
///
/// | mode          | TLS                      | certificate checked against roots | host name checked |
/// |---------------|--------------------------|-----------------------------------|-------------------|
/// | `disable`     | never                    | –                                 | –                 |
/// | `prefer`      | if the server offers it  | no                                | no                |
/// | `require`     | always                   | no (yes with an explicit `sslrootcert`, as libpq) | no |
/// | `verify-ca`   | always                   | yes                               | no                |
/// | `verify-full` | always                   | yes                               | yes               |
///
/// TLS is never used on Unix-domain sockets, whatever the mode (libpq behaves the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SslMode {
    /// Plain connections only.
    Disable,
    /// TLS when the server supports it, plain otherwise; no certificate checks (libpq's
    /// default).
    #[default]
    Prefer,
    /// TLS or fail; the certificate is not checked unless a root certificate is given.
    Require,
    /// TLS with a certificate chaining to a trusted root; any host name.
    VerifyCa,
    /// TLS with a certificate chaining to a trusted root and naming the host connected to.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling (`verify-full`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether a server without TLS is refused.
    pub fn requires_tls(self) -> bool {
        matches!(
            self,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
        )
    }

    /// The mode tokio-postgres is given: it decides whether to ask for TLS; what to verify
    /// is decided by the rustls configuration we hand it.
    pub(crate) fn for_tokio_postgres(self) -> tokio_postgres::config::SslMode {
        match self {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<SslMode> {
        match s {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(Error::config(format!(
                "sslmode {other:?} is not supported; use disable, prefer, require, verify-ca \
                 or verify-full"
            ))),
        }
    }
}

/// The files a TLS policy names: trusted roots (`sslrootcert`) and the client's own
/// certificate and key (`sslcert`, `sslkey`), presented when the server asks for one
/// (`clientcert=verify-ca|verify-full` in `pg_hba.conf`, or `cert` authentication).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    pub(crate) root_cert: Option<PathBuf>,
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
}

/// Builds the rustls client configuration for a TLS policy.
///
/// Roots are loaded only when something is verified: from `root_cert` (PEM) if given,
/// else from the system store. `require` with an explicit root file verifies the chain, as
/// libpq does. A client certificate is loaded when one is named, and its key must be
/// private to its owner, as libpq insists.
pub(crate) fn client_config(mode: SslMode, files: &TlsFiles) -> Result<Arc<ClientConfig>> {
    let root_cert = files.root_cert.as_deref();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::with_source(Kind::Tls, "cannot set up TLS", e))?;
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, root_cert) {
        (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, None) => {
            Arc::new(NameUnchecked {
                roots: None,
                provider,
            })
        }
        (SslMode::Require | SslMode::VerifyCa, _) => Arc::new(NameUnchecked {
            roots: Some(Arc::new(load_roots(root_cert)?)),
            provider,
        }),
        (SslMode::VerifyFull, _) => {
            WebPkiServerVerifier::builder_with_provider(Arc::new(load_roots(root_cert)?), provider)
                .build()
                .map_err(|e| Error::with_source(Kind::Tls, "cannot set up TLS verification", e))?
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match client_identity(files)? {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(|e| {
            Error::with_source(
                Kind::Config,
                "the client certificate (sslcert) and key (sslkey) do not belong together",
                e,
            )
        })?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The client certificate chain and key, if `sslcert` is set.
fn client_identity(
    files: &TlsFiles,
) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>> {
    let Some(cert) = files.cert.as_deref() else {
        return Ok(None);
    };
    let Some(key) = files.key.as_deref() else {
        return Err(Error::config(format!(
            "client certificate {} (sslcert) given without its private key; set sslkey",
            cert.display()
        )));
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| {
            Error::with_source(
                Kind::Config,
                format!(
                    "cannot read the client certificate (sslcert) {}",
                    cert.display()
                ),
                e,
            )
        })?;
    if chain.is_empty() {
        return Err(Error::config(format!(
            "sslcert {} holds no PEM certificate",
            cert.display()
        )));
    }
    check_key_permissions(key)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        Error::with_source(
            Kind::Config,
            format!(
                "cannot read the private key (sslkey) {}; it must be an unencrypted PEM key \
                 (PKCS#8, PKCS#1 or SEC1)",
                key.display()
            ),
            e,
        )
    })?;
    Ok(Some((chain, key)))
}

/// libpq's rule for a key file: no access for group or others (`0600`), or, for a file
/// owned by root, read access for its group at most (`0640`, for keys shared with a
/// service account through a group).
fn check_key_permissions(key: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(key).map_err(|e| {
        Error::with_source(
            Kind::Config,
            format!("cannot read the private key (sslkey) {}", key.display()),
            e,
        )
    })?;
    if !meta.is_file() {
        return Err(Error::config(format!(
            "private key (sslkey) {} is not a regular file",
            key.display()
        )));
    }
    let mode = meta.mode() & 0o777;
    let private = if meta.uid() == 0 {
        mode & 0o037 == 0
    } else {
        mode & 0o077 == 0
    };
    if !private {
        return Err(Error::config(format!(
            "private key (sslkey) {} has group or world access (mode {mode:04o}); make it \
             u=rw (chmod 0600), or u=rw,g=r (0640) if root owns it",
            key.display()
        )));
    }
    Ok(())
}

/// The server name rustls sends (SNI) and, under verify-full, checks the certificate for.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(host.to_owned()).map_err(|e| {
        Error::with_source(
            Kind::Config,
            format!("host {host:?} is neither a DNS name nor an IP address usable for TLS"),
            e,
        )
    })
}

fn load_roots(root_cert: Option<&Path>) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| {
                    Error::with_source(
                        Kind::Config,
                        format!(
                            "cannot read root certificates (sslrootcert) from {}",
                            path.display()
                        ),
                        e,
                    )
                })?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(Error::config(format!(
                    "sslrootcert {} holds no usable PEM certificate",
                    path.display()
                )));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(Error::new(
                    Kind::Tls,
                    "no system root certificates found to verify the server; set sslrootcert \
                     to the CA that signed the server certificate",
                ));
            }
        }
    }
    Ok(roots)
}

/// Checks handshake signatures, and the certificate's chain to `roots` when there are
/// roots, but never the name the certificate carries: libpq `prefer` / `require` (no roots)
/// and `verify-ca`.
#[derive(Debug)]
struct NameUnchecked {
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for NameUnchecked {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The rustls error somewhere in an error's source chain (tokio-rustls and tokio-postgres
/// wrap it in io errors).
pub(crate) fn find_rustls_error<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(found) = err.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        // io::Error hides its payload from `source()` in some versions; look inside.
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(inner);
        }
        current = err.source();
    }
    None
}

/// What to tell the user about a failed handshake with `host`.
pub(crate) fn remedy(cause: &rustls::Error, host: &str) -> String {
    use rustls::CertificateError as C;
    match cause {
        rustls::Error::InvalidCertificate(C::NotValidForName)
        | rustls::Error::InvalidCertificate(C::NotValidForNameContext { .. }) => format!(
            "the server certificate does not name host {host:?}; connect by a name the \
             certificate lists, or use sslmode=verify-ca to check only the CA"
        ),
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            "the server certificate is not signed by a trusted root; set sslrootcert to the \
             CA that signed it"
                .to_owned()
        }
        rustls::Error::InvalidCertificate(C::Expired)
        | rustls::Error::InvalidCertificate(C::ExpiredContext { .. }) => {
            "the server certificate has expired".to_owned()
        }
        _ => "tls handshake failed".to_owned(),
    }
}

/// The `tls-server-end-point` channel binding data for a server certificate (DER), or
/// `None` when its signature algorithm names no usable hash (e.g. Ed25519, RSASSA-PSS),
/// in which case SCRAM-SHA-256-PLUS cannot be used.
pub(crate) fn tls_server_end_point(cert_der: &[u8]) -> Option<Vec<u8>> {
    use x509_cert::der::oid::ObjectIdentifier as Oid;
    use x509_cert::der::Decode;

    const MD5_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.4");
    const SHA1_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.5");
    const SHA256_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.11");
    const SHA384_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.12");
    const SHA512_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.13");
    const SHA1_ECDSA: Oid = Oid::new_unwrap("1.2.840.10045.4.1");
    const SHA256_ECDSA: Oid = Oid::new_unwrap("1.2.840.10045.4.3.2");
    const SHA384_ECDSA: Oid = Oid::new_unwrap("1.2.840.10045.4.3.3");
    const SHA512_ECDSA: Oid = Oid::new_unwrap("1.2.840.10045.4.3.4");

    let cert = x509_cert::Certificate::from_der(cert_der).ok()?;
    let algorithm = match cert.signature_algorithm.oid {
        // RFC 5929 §4.1: MD5 and SHA-1 are replaced by SHA-256.
        MD5_RSA | SHA1_RSA | SHA256_RSA | SHA1_ECDSA | SHA256_ECDSA => &ring::digest::SHA256,
        SHA384_RSA | SHA384_ECDSA => &ring::digest::SHA384,
        SHA512_RSA | SHA512_ECDSA => &ring::digest::SHA512,
        _ => return None,
    };
    Some(ring::digest::digest(algorithm, cert_der).as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_build_for_every_mode_without_roots_when_nothing_is_verified() {
        for mode in [SslMode::Disable, SslMode::Prefer, SslMode::Require] {
            assert!(client_config(mode, &TlsFiles::default()).is_ok(), "{mode}");
        }
    }

    #[test]
    fn missing_or_empty_root_files_are_config_errors() {
        let roots = |path: &Path| TlsFiles {
            root_cert: Some(path.to_owned()),
            ..TlsFiles::default()
        };
        let e = client_config(
            SslMode::VerifyFull,
            &roots(Path::new("/nonexistent/ca.pem")),
        )
        .unwrap_err();
        assert!(e.is_config(), "{e}");
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        let file = tempfile::NamedTempFile::new().unwrap();
        let e = client_config(SslMode::VerifyCa, &roots(file.path())).unwrap_err();
        assert!(e.is_config(), "{e}");
        assert!(e.to_string().contains("no usable PEM certificate"), "{e}");
    }

    #[test]
    fn client_keys_must_be_private_and_come_with_their_certificate() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("client.crt");
        let key = dir.path().join("client.key");
        std::fs::write(&cert, "not pem").unwrap();
        std::fs::write(&key, "not pem").unwrap();
        let files = |key: Option<&Path>| TlsFiles {
            cert: Some(cert.clone()),
            key: key.map(Path::to_owned),
            ..TlsFiles::default()
        };
        let e = client_config(SslMode::Require, &files(None)).unwrap_err();
        assert!(e.to_string().contains("without its private key"), "{e}");
        let e = client_config(SslMode::Require, &files(Some(&key))).unwrap_err();
        assert!(e.to_string().contains("holds no PEM certificate"), "{e}");
        let pair = rcgen_free_pair();
        std::fs::write(&cert, pair.0).unwrap();
        std::fs::write(&key, pair.1).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o604)).unwrap();
        let e = client_config(SslMode::Require, &files(Some(&key))).unwrap_err();
        assert!(e.is_config(), "{e}");
        assert!(e.to_string().contains("group or world access"), "{e}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        client_config(SslMode::Require, &files(Some(&key))).unwrap();
    }

    /// A self-signed certificate and its key (PEM), fixed, so the unit tests need no
    /// certificate generator.
    fn rcgen_free_pair() -> (&'static str, &'static str) {
        (
            "-----BEGIN CERTIFICATE-----
MIIBejCCAR+gAwIBAgIUHEWofzNa9qtqlGAjk6T+gewc5P8wCgYIKoZIzj0EAwIw
ETEPMA0GA1UEAwwGY2xpZW50MCAXDTI2MTIwNTA4NDU1NFoYDzIxMjYxMTExMDg0
NTU0WjARMQ8wDQYDVQQDDAZjbGllbnQwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC
AAQg9+nYTYthTN9s0H7avZKEZKQQVyW3WAwJ8mcevHoxNNSpDP/f9hGnV4dScN85
0lpERy/qNehuGgbNthorc8Dao1MwUTAdBgNVHQ4EFgQUAeMog64ZkFV8rGTJ0Qcg
0ufOu4gwHwYDVR0jBBgwFoAUAeMog64ZkFV8rGTJ0Qcg0ufOu4gwDwYDVR0TAQH/
BAUwAwEB/zAKBggqhkjOPQQDAgNJADBGAiEA0e9ikdkrKmTzdcneN3sglLNdYi+x
Aku8rfk3ZmK71JgCIQCuzNRyjxR32leoaE97vMrWdSuNu6AqK7+WBc+Z445B0g==
-----END CERTIFICATE-----\n",
            "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgWFKTcbgIGtwokf0a
Nr/81GTqC3OG0WQgVI0DUhS/+kShRANCAAQg9+nYTYthTN9s0H7avZKEZKQQVyW3
WAwJ8mcevHoxNNSpDP/f9hGnV4dScN850lpERy/qNehuGgbNthorc8Da
-----END PRIVATE KEY-----\n",
        )
    }

    #[test]
    fn garbage_certificates_have_no_channel_binding() {
        assert_eq!(tls_server_end_point(b""), None);
        assert_eq!(tls_server_end_point(b"\x30\x03\x02\x01\x00"), None);
    }

    #[test]
    fn server_names_accept_dns_names_and_ips() {
        assert!(server_name("localhost").is_ok());
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("::1").is_ok());
        assert!(server_name("bad name").unwrap_err().is_config());
    }
}
