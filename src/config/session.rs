//! Ordinary SQL sessions (tokio-postgres) opened from a [`ConnectConfig`], with the same TLS
//! policy as the replication connection and liveness limits of their own.

use std::time::Duration;

use super::tls;
use super::ConnectConfig;
use crate::error::{Error, Kind, Result};

impl ConnectConfig {
    /// Opens an ordinary SQL connection with tokio-postgres and the same TLS policy,
    /// spawning its connection task on the current tokio runtime.
    ///
    /// # Errors
    /// [`Error::is_tls`] when the root certificates cannot be loaded or the certificate
    /// does not verify; otherwise the tokio-postgres error (connection refused,
    /// authentication), available through [`Error::as_db_error`].
    pub async fn connect_sql(&self) -> Result<tokio_postgres::Client> {
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(
            tls::client_config(self.ssl_mode, &self.tls_files)?
                .as_ref()
                .clone(),
        );
        let mut pg = self.pg.clone();
        pg.ssl_mode(self.ssl_mode.for_tokio_postgres());
        with_liveness_defaults(&mut pg);
        let target = self.describe_target();
        let (client, connection) =
            pg.connect(tls)
                .await
                .map_err(|e| match tls::find_rustls_error(&e) {
                    Some(cause) => {
                        let host = match self.pg.get_hosts().first() {
                            Some(tokio_postgres::config::Host::Tcp(name)) => name.as_str(),
                            _ => "",
                        };
                        let remedy = tls::remedy(cause, host);
                        Error::with_source(
                            Kind::Tls,
                            format!(
                                "sql connection {target} (sslmode={}): {remedy}",
                                self.ssl_mode
                            ),
                            e,
                        )
                    }
                    None => Error::with_source(Kind::Sql, format!("sql connection {target}"), e),
                })?;
        let peer = target.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(target = %target, error = %e, "sql connection ended with an error");
            }
        });
        let row = client
            .query_one(
                "SELECT current_setting('server_version_num')::int, current_setting('server_version')",
                &[],
            )
            .await?;
        let version_num = u32::try_from(row.get::<_, i32>(0)).unwrap_or(0);
        crate::version::check_server_version(version_num, Some(row.get(1)), &peer)?;
        Ok(client)
    }
}

/// Keepalive and unacknowledged-data limits for SQL sessions whose URL sets none.
///
/// A consumer's SQL session carries its cursor commits and membership; the replication
/// connection notices a silent server by itself, but tokio-postgres waits on the kernel,
/// whose defaults take two hours of silence before the first keepalive probe and around
/// fifteen minutes of retransmissions before giving up on unacknowledged data. A peer gone
/// without closing (network partition, lost host) would hang a commit that long. With
/// these, such a session fails within about half a minute and is opened again.
fn with_liveness_defaults(pg: &mut tokio_postgres::Config) {
    /// tokio-postgres's own default idle time, i.e. not set in the URL.
    const UNSET_IDLE: Duration = Duration::from_secs(2 * 60 * 60);
    if pg.get_keepalives() && pg.get_keepalives_idle() == UNSET_IDLE {
        pg.keepalives_idle(Duration::from_secs(10));
        if pg.get_keepalives_interval().is_none() {
            pg.keepalives_interval(Duration::from_secs(5));
        }
        if pg.get_keepalives_retries().is_none() {
            pg.keepalives_retries(3);
        }
    }
    if pg.get_tcp_user_timeout().is_none() {
        pg.tcp_user_timeout(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_sessions_give_up_on_a_vanished_peer_unless_the_url_says_otherwise() {
        let c: ConnectConfig = "postgres://u@h/db".parse().unwrap();
        let mut pg = c.pg_config().clone();
        with_liveness_defaults(&mut pg);
        assert_eq!(pg.get_keepalives_idle(), Duration::from_secs(10));
        assert_eq!(pg.get_keepalives_interval(), Some(Duration::from_secs(5)));
        assert_eq!(pg.get_keepalives_retries(), Some(3));
        assert_eq!(pg.get_tcp_user_timeout(), Some(&Duration::from_secs(30)));

        let c: ConnectConfig =
            "postgres://u@h/db?keepalives_idle=60&keepalives_retries=9&tcp_user_timeout=120"
                .parse()
                .unwrap();
        let mut pg = c.pg_config().clone();
        with_liveness_defaults(&mut pg);
        assert_eq!(pg.get_keepalives_idle(), Duration::from_secs(60));
        assert_eq!(pg.get_keepalives_retries(), Some(9));
        assert_eq!(pg.get_tcp_user_timeout(), Some(&Duration::from_secs(120)));

        let c: ConnectConfig = "postgres://u@h/db?keepalives=0".parse().unwrap();
        let mut pg = c.pg_config().clone();
        with_liveness_defaults(&mut pg);
        assert!(!pg.get_keepalives());
        assert_eq!(pg.get_keepalives_retries(), None);
    }
}
