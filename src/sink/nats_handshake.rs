//! Reaching and convincing a NATS server, for [`nats_conn`](super::nats_conn): a server
//! address (`[nats://|tls://][user:pass@|token@]host[:port]`), a creds file's JWT and NKey
//! (the server's nonce is signed with the key, so the seed never leaves this process), and
//! the TLS upgrade after the server's `INFO` (rustls, the system's roots).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;

use tokio::io::{AsyncRead, AsyncWrite};

use super::error::SinkError;

/// How long connecting (TCP, TLS, the handshake) may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection's byte stream: TCP, or TLS over it.
pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub(super) type Stream = Box<dyn Io>;

/// A server address: `[nats://|tls://][user:pass@|token@]host[:port]`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Endpoint {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) tls: bool,
    pub(super) user: Option<String>,
    pub(super) pass: Option<String>,
    pub(super) token: Option<String>,
}

impl Endpoint {
    pub(super) fn parse(url: &str) -> Result<Endpoint, SinkError> {
        let bad = |why: &str| {
            SinkError::Config(format!(
                "--nats {url}: not a reachable server address ({why}); use nats://host:4222"
            ))
        };
        let (tls, rest) = match url.split_once("://") {
            Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
                "nats" => (false, rest),
                "tls" => (true, rest),
                other => return Err(bad(&format!("unknown scheme {other}"))),
            },
            None => (false, url),
        };
        let rest = rest.trim_end_matches('/');
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (user, pass, token) = match userinfo.map(|u| u.split_once(':')) {
            None => (None, None, None),
            Some(Some((u, p))) => (Some(u.to_owned()), Some(p.to_owned()), None),
            Some(None) => (None, None, userinfo.map(str::to_owned)),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            (host, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad("bad port"))?,
            None => 4222,
        };
        Ok(Endpoint {
            host: host.to_owned(),
            port,
            tls,
            user,
            pass,
            token,
        })
    }
}

/// A creds file's user JWT and NKey.
pub(super) struct Creds {
    pub(super) jwt: String,
    key: nkeys::KeyPair,
}

impl Creds {
    pub(super) async fn read(path: &std::path::Path) -> Result<Creds, SinkError> {
        let bad = |e: &dyn std::fmt::Display| {
            SinkError::Config(format!(
                "--creds {}: cannot read the credentials file ({e})",
                path.display()
            ))
        };
        let text = tokio::fs::read_to_string(path).await.map_err(|e| bad(&e))?;
        let (jwt, seed) = parse_creds(&text).ok_or_else(|| bad(&"no JWT and NKey seed in it"))?;
        let key = nkeys::KeyPair::from_seed(seed).map_err(|e| bad(&e))?;
        Ok(Creds {
            jwt: jwt.to_owned(),
            key,
        })
    }

    /// The server's nonce signed, as `CONNECT`'s `sig`.
    pub(super) fn sign(&self, nonce: &str) -> Result<String, SinkError> {
        let signed = self
            .key
            .sign(nonce.as_bytes())
            .map_err(|e| SinkError::Config(format!("signing with the creds file's key: {e}")))?;
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signed))
    }
}

/// The JWT and the seed of a creds file: the first line inside each of its first two
/// `-----BEGIN …-----` / `------END …------` blocks.
fn parse_creds(text: &str) -> Option<(&str, &str)> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if line.starts_with("---") && line.contains("BEGIN") {
            let value = lines.by_ref().find(|l| !l.is_empty())?;
            if value.starts_with("---") {
                return None;
            }
            blocks.push(value);
        }
    }
    match blocks[..] {
        [jwt, seed, ..] => Some((jwt, seed)),
        _ => None,
    }
}

/// Upgrades `stream` to TLS, verifying the server's certificate for `host` against the
/// system's roots.
pub(super) async fn tls_upgrade(
    stream: Stream,
    host: &str,
    url: &str,
) -> Result<Stream, SinkError> {
    let failed = |e: &dyn std::fmt::Display| {
        SinkError::Config(format!(
            "TLS with the NATS server at {url} failed ({e}); check --tls and the server's \
             certificate"
        ))
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| failed(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| failed(&e))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, stream))
        .await
        .map_err(|_| failed(&"timed out"))?
        .map_err(|e| failed(&e))?;
    Ok(Box::new(tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let e = Endpoint::parse("nats://127.0.0.1:4223").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.tls), ("127.0.0.1", 4223, false));
        let e = Endpoint::parse("tls://u:p@nats.example").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.tls),
            ("nats.example", 4222, true)
        );
        assert_eq!(
            (e.user.as_deref(), e.pass.as_deref()),
            (Some("u"), Some("p"))
        );
        let e = Endpoint::parse("s3cret@[::1]:5000").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 5000));
        assert_eq!(e.token.as_deref(), Some("s3cret"));
        for bad in ["http://x:1", "nats://:1", "nats://x:port", "[::1"] {
            assert!(Endpoint::parse(bad).unwrap_err().is_config(), "{bad}");
        }
    }

    #[test]
    fn creds_files() {
        let text = "-----BEGIN NATS USER JWT-----\neyJhbGc.x.y\n------END NATS USER JWT------\n\n\
                    ************************* IMPORTANT *************************\n\n\
                    -----BEGIN USER NKEY SEED-----\nSUAKEY\n------END USER NKEY SEED------\n";
        assert_eq!(parse_creds(text), Some(("eyJhbGc.x.y", "SUAKEY")));
        assert_eq!(
            parse_creds("-----BEGIN X-----\nonly\n------END X------\n"),
            None
        );
        assert_eq!(parse_creds(""), None);
    }
}
