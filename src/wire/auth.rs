//! The authentication exchange after the startup packet.
//!
//! Supported: trust, cleartext password, MD5, SCRAM-SHA-256 and SCRAM-SHA-256-PLUS
//! (postgres-protocol does the SCRAM arithmetic). Channel binding follows libpq's
//! `channel_binding` setting:
//!
//! - `disable`: never bind; the GS2 flag says the client does not support it (`n`);
//! - `prefer` (default): bind (`p=tls-server-end-point`) when TLS is on, the server offers
//!   SCRAM-SHA-256-PLUS and the certificate's signature names a usable hash; otherwise
//!   plain SCRAM, flagging `y` on TLS so a server that stripped PLUS from its offer (a
//!   downgrade by a man in the middle) is caught by the server itself;
//! - `require`: bind or fail, and fail also when the server lets us in without SCRAM at all
//!   (trust, md5, cleartext), since no binding then proves who we talked to.

use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio_postgres::config::ChannelBinding as ChannelBindingMode;

use super::error_response::startup_error;
use super::transport::Transport;
use crate::config::tls;
use crate::error::{Error, Kind, Result};
use crate::protocol::frame::BackendMessage;

/// What authentication needs to know.
pub(crate) struct Credentials<'a> {
    pub(crate) user: &'a str,
    pub(crate) database: &'a str,
    pub(crate) password: Option<&'a [u8]>,
    pub(crate) channel_binding: ChannelBindingMode,
}

const SCRAM: &str = "SCRAM-SHA-256";
const SCRAM_PLUS: &str = "SCRAM-SHA-256-PLUS";

/// Runs the exchange until AuthenticationOk.
///
/// # Errors
/// [`Error::is_auth`] for a rejected password, a method we do not implement, a missing
/// password or an unmet `channel_binding=require`; other server errors as they come.
pub(crate) async fn authenticate(t: &mut Transport, creds: &Credentials<'_>) -> Result<()> {
    let mut bound = false;
    loop {
        match t.recv().await? {
            BackendMessage::AuthenticationOk => break,
            BackendMessage::AuthenticationCleartextPassword => {
                let password = password(t, creds, "password")?;
                t.queue(|b| frontend::password_message(password, b))?;
                t.flush().await?;
            }
            BackendMessage::AuthenticationMd5Password { salt } => {
                let password = password(t, creds, "md5")?;
                let hash = md5_hash(creds.user.as_bytes(), password, salt);
                t.queue(|b| frontend::password_message(hash.as_bytes(), b))?;
                t.flush().await?;
            }
            BackendMessage::AuthenticationSasl { mechanisms } => {
                bound = scram(t, creds, &mechanisms).await?;
            }
            BackendMessage::AuthenticationUnsupported(code) => {
                return Err(Error::new(
                    Kind::Auth,
                    format!(
                        "server {} asks user {:?} to authenticate with {} (code {code}), which \
                         pg-changestream does not support; configure pg_hba.conf with \
                         scram-sha-256, md5, password or trust for this user",
                        t.peer(),
                        creds.user,
                        method_name(code)
                    ),
                ));
            }
            BackendMessage::ErrorResponse(fields) => {
                return Err(startup_error(t.peer(), creds.user, creds.database, fields));
            }
            BackendMessage::NoticeResponse(fields) => {
                tracing::info!(server = t.peer(), "{}", fields.message);
            }
            other => {
                return Err(Error::protocol(format!(
                    "server {} sent {other:?} during authentication",
                    t.peer()
                )))
            }
        }
    }
    if creds.channel_binding == ChannelBindingMode::Require && !bound {
        return Err(Error::new(
            Kind::Auth,
            format!(
                "channel_binding=require, but server {} let user {:?} in without \
                 SCRAM-SHA-256-PLUS over TLS; use sslmode=require or stricter and \
                 scram-sha-256 in pg_hba.conf, or lower channel_binding",
                t.peer(),
                creds.user
            ),
        ));
    }
    Ok(())
}

fn choose_mechanism(
    mechanisms: &[String],
    t: &Transport,
    creds: &Credentials<'_>,
) -> Result<(&'static str, ChannelBinding)> {
    let offers = |name: &str| mechanisms.iter().any(|m| m == name);
    let tls = t.socket().is_tls();
    let end_point = t
        .socket()
        .peer_certificate()
        .and_then(tls::tls_server_end_point);
    let wants_binding = creds.channel_binding != ChannelBindingMode::Disable;
    if wants_binding && offers(SCRAM_PLUS) {
        if let Some(hash) = &end_point {
            return Ok((
                SCRAM_PLUS,
                ChannelBinding::tls_server_end_point(hash.clone()),
            ));
        }
    }
    if creds.channel_binding == ChannelBindingMode::Require {
        let why = if !tls {
            "the connection is not encrypted (set sslmode=require or stricter)"
        } else if !offers(SCRAM_PLUS) {
            "the server does not offer SCRAM-SHA-256-PLUS"
        } else {
            "the server certificate's signature algorithm has no hash usable for \
             tls-server-end-point binding"
        };
        return Err(Error::new(
            Kind::Auth,
            format!(
                "channel_binding=require, but it cannot be used with server {}: {why}",
                t.peer()
            ),
        ));
    }
    if !offers(SCRAM) {
        return Err(Error::new(
            Kind::Auth,
            format!(
                "server {} offers only the SASL mechanisms {mechanisms:?} to user {:?}; \
                 pg-changestream supports SCRAM-SHA-256 and SCRAM-SHA-256-PLUS",
                t.peer(),
                creds.user
            ),
        ));
    }
    // `y`: we could bind but the server did not offer it (lets the server detect a
    // downgrade); `n`: we cannot or were told not to.
    let binding = if tls && wants_binding && end_point.is_some() {
        ChannelBinding::unrequested()
    } else {
        ChannelBinding::unsupported()
    };
    Ok((SCRAM, binding))
}

/// Runs a SCRAM exchange; returns whether it was channel-bound (SCRAM-SHA-256-PLUS).
async fn scram(t: &mut Transport, creds: &Credentials<'_>, mechanisms: &[String]) -> Result<bool> {
    let (mechanism, binding) = choose_mechanism(mechanisms, t, creds)?;
    let password = password(t, creds, mechanism)?;
    let mut scram = ScramSha256::new(password, binding);
    t.queue(|b| frontend::sasl_initial_response(mechanism, scram.message(), b))?;
    t.flush().await?;
    let challenge = match t.recv().await? {
        BackendMessage::AuthenticationSaslContinue(data) => data,
        BackendMessage::ErrorResponse(fields) => {
            return Err(startup_error(t.peer(), creds.user, creds.database, fields))
        }
        other => {
            return Err(Error::protocol(format!(
                "server {} sent {other:?} instead of a SCRAM challenge",
                t.peer()
            )))
        }
    };
    scram.update(&challenge).map_err(|e| {
        Error::with_source(
            Kind::Auth,
            format!("server {} sent an invalid SCRAM challenge", t.peer()),
            e,
        )
    })?;
    t.queue(|b| frontend::sasl_response(scram.message(), b))?;
    t.flush().await?;
    let outcome = match t.recv().await? {
        BackendMessage::AuthenticationSaslFinal(data) => data,
        BackendMessage::ErrorResponse(fields) => {
            return Err(startup_error(t.peer(), creds.user, creds.database, fields))
        }
        other => {
            return Err(Error::protocol(format!(
                "server {} sent {other:?} instead of the SCRAM outcome",
                t.peer()
            )))
        }
    };
    scram.finish(&outcome).map_err(|e| {
        Error::with_source(
            Kind::Auth,
            format!(
                "server {} could not prove that it knows the password of user {:?} (SCRAM \
                 server signature mismatch); it may not be the server you meant to reach",
                t.peer(),
                creds.user
            ),
            e,
        )
    })?;
    Ok(mechanism == SCRAM_PLUS)
}

fn password<'a>(t: &Transport, creds: &Credentials<'a>, method: &str) -> Result<&'a [u8]> {
    creds.password.ok_or_else(|| {
        Error::new(
            Kind::Auth,
            format!(
                "server {} asks for the password of user {:?} ({method}) but the connection \
                 settings have none; add password=... to the connection string",
                t.peer(),
                creds.user
            ),
        )
    })
}

fn method_name(code: i32) -> &'static str {
    match code {
        2 => "Kerberos V5",
        6 => "SCM credentials",
        7 | 8 => "GSSAPI",
        9 => "SSPI",
        _ => "an unknown method",
    }
}
