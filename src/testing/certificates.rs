//! The local cluster's TLS material, made in-process: a CA and a server certificate for
//! `localhost` and `127.0.0.1` signed by it.
//!
//! rcgen instead of the `openssl` command: nothing to install, no files to shuttle through a
//! child process, and a few milliseconds instead of three process starts. P-256 keys because
//! both sides accept them (rustls in the library, OpenSSL in the server) and they are fast to
//! generate. The CA is kept (in memory only) to sign client certificates for tests of
//! certificate authentication.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::error::{Error, Kind, Result};

/// PEM text of the three files the cluster writes.
pub(super) struct Pems {
    /// The CA certificate, for clients to verify the server with.
    pub(super) ca_cert: String,
    /// The server certificate (CN and SAN `localhost`, SAN `127.0.0.1`), signed by the CA.
    pub(super) server_cert: String,
    /// The server's private key (PKCS#8).
    pub(super) server_key: String,
    /// The CA, to sign client certificates with ([`client`]).
    pub(super) ca: Ca,
}

/// The test CA's name and key.
pub(super) struct Ca(Issuer<'static, KeyPair>);

/// Makes a fresh CA and a server certificate signed by it.
pub(super) fn make() -> Result<Pems> {
    let ca_key = KeyPair::generate().map_err(rcgen_error)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error)?;
    ca.distinguished_name
        .push(DnType::CommonName, "pg-changestream test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).map_err(rcgen_error)?;

    let server_key = KeyPair::generate().map_err(rcgen_error)?;
    let mut server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .map_err(rcgen_error)?;
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    server.is_ca = IsCa::ExplicitNoCa;
    server.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let issuer = Issuer::new(ca, ca_key);
    let server_cert = server
        .signed_by(&server_key, &issuer)
        .map_err(rcgen_error)?;
    Ok(Pems {
        ca_cert: ca_cert.pem(),
        server_cert: server_cert.pem(),
        server_key: server_key.serialize_pem(),
        ca: Ca(issuer),
    })
}

/// A client certificate for `user` (its CN, which `cert` authentication compares with the
/// user name) signed by the CA, and its key: `(certificate PEM, key PEM)`.
pub(super) fn client(ca: &Ca, user: &str) -> Result<(String, String)> {
    let key = KeyPair::generate().map_err(rcgen_error)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error)?;
    params.distinguished_name.push(DnType::CommonName, user);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &ca.0).map_err(rcgen_error)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn rcgen_error(e: rcgen::Error) -> Error {
    Error::with_source(
        Kind::Local,
        "making the test cluster's certificates (rcgen)",
        e,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_certificate_is_signed_by_the_ca_for_localhost() {
        use x509_cert::der::oid::AssociatedOid;
        use x509_cert::der::Decode;
        let parse = |pem: &str| {
            use rustls::pki_types::pem::PemObject;
            let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
            x509_cert::Certificate::from_der(&der).unwrap()
        };
        let pems = make().unwrap();
        let ca = parse(&pems.ca_cert);
        let server = parse(&pems.server_cert);
        assert_eq!(
            server.tbs_certificate.issuer, ca.tbs_certificate.subject,
            "issued by the CA"
        );
        assert_eq!(server.tbs_certificate.subject.to_string(), "CN=localhost");
        assert!(pems.server_key.starts_with("-----BEGIN PRIVATE KEY-----"));
        // The SAN extension names both the host name and the address the tests dial.
        let san = server
            .tbs_certificate
            .extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id == x509_cert::ext::pkix::SubjectAltName::OID)
            .expect("a subjectAltName extension");
        let names =
            x509_cert::ext::pkix::SubjectAltName::from_der(san.extn_value.as_bytes()).unwrap();
        let text = format!("{names:?}");
        assert!(text.contains("localhost"), "{text}");
        assert!(text.contains("[127, 0, 0, 1]"), "{text}");
    }
}
