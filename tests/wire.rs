//! The replication connection against a real server: authentication methods, TLS policies,
//! replication commands, streaming, a server that cuts the stream, and `wal_sender_timeout`
//! while the client does not read.
//!
//! Tests that depend on the local cluster's `pg_hba.conf` groups or its TLS certificate skip
//! (saying so) when the server comes from `PG_CHANGESTREAM_TEST_URL` or a container.

// Test helpers unwrap too: a panic there is a failed test with its message.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use pg_changestream::config::{ConnectConfig, SslMode};
use pg_changestream::protocol::pgoutput::{self, PgOutputMessage};
use pg_changestream::testing::{TestDatabase, TestServer};
use pg_changestream::wire::{
    ReplicationConnection, ReplicationStream, SlotOptions, SnapshotAction, StartOptions,
};
use pg_changestream::Lsn;

/// Bounds every wait on the server so that a regression shows as a failure, not a hang.
/// Not a timing assertion: a healthy run needs a fraction of it.
const GUARD: Duration = Duration::from_secs(60);

fn server() -> &'static TestServer {
    TestServer::shared().expect("a PostgreSQL server for the tests")
}

/// Whether the test can use the local cluster's pg_hba groups and TLS; prints why not.
fn needs_local(test: &str) -> bool {
    let local = server().is_local();
    if !local {
        eprintln!(
            "skipping {test}: it needs the local test cluster (pg_hba password groups, TLS \
             certificate), not the server of PG_CHANGESTREAM_TEST_URL or a container"
        );
    }
    local
}

/// The superuser's settings for `db` as a [`ConnectConfig`].
fn superuser(db: &TestDatabase) -> ConnectConfig {
    ConnectConfig::from(db.config())
}

fn port_of(db: &TestDatabase) -> u16 {
    db.config().get_ports().first().copied().unwrap_or(5432)
}

/// Settings for `user` on `db` over TCP to `host`.
fn role_config(db: &TestDatabase, host: &str, user: &str, password: Option<&str>) -> ConnectConfig {
    let mut pg = tokio_postgres::Config::new();
    pg.host(host).port(port_of(db)).dbname(db.name()).user(user);
    if let Some(password) = password {
        pg.password(password);
    }
    ConnectConfig::from(pg)
}

/// Creates a login role with REPLICATION in `group`, its password hashed with
/// `encryption` (md5 authentication needs an md5 hash).
async fn create_role(db: &TestDatabase, group: &str, encryption: &str) -> (String, String) {
    let admin = db.connect().await.expect("connect as superuser");
    let name = db.unique_name(group);
    let password = format!("pw'{name}");
    admin
        .batch_execute(&format!(
            "SET password_encryption = '{encryption}'; \
             CREATE ROLE {name} LOGIN REPLICATION PASSWORD '{}' IN ROLE {group}",
            password.replace('\'', "''")
        ))
        .await
        .expect("create role");
    (name, password)
}

async fn assert_connects(config: &ConnectConfig, db: &TestDatabase) -> ReplicationConnection {
    let mut conn = tokio::time::timeout(GUARD, ReplicationConnection::connect(config))
        .await
        .expect("connect within the guard")
        .unwrap_or_else(|e| panic!("connecting with {config:?}: {e}"));
    let id = conn.identify_system().await.expect("IDENTIFY_SYSTEM");
    assert_eq!(id.dbname.as_deref(), Some(db.name()));
    assert!(id.timeline >= 1);
    assert!(!id.xlogpos.is_zero());
    conn
}

#[tokio::test]
async fn md5_scram_and_cleartext_roles_connect_and_wrong_passwords_are_auth_errors() {
    if !needs_local("md5_scram_and_cleartext_roles_connect...") {
        return;
    }
    let db = server().create_database().await.unwrap();
    for (group, encryption) in [
        ("pcs_md5", "md5"),
        ("pcs_scram", "scram-sha-256"),
        ("pcs_password", "scram-sha-256"),
    ] {
        let (user, password) = create_role(&db, group, encryption).await;
        for ssl in [SslMode::Disable, SslMode::Require] {
            let mut config = role_config(&db, "127.0.0.1", &user, Some(&password));
            config.set_ssl_mode(ssl);
            let conn = assert_connects(&config, &db).await;
            assert_eq!(conn.is_tls(), ssl == SslMode::Require, "{group}");
            conn.close().await;

            let config = role_config(&db, "127.0.0.1", &user, Some("not the password"));
            let e = ReplicationConnection::connect(&config).await.unwrap_err();
            assert!(e.is_auth(), "{group}: {e}");
            assert!(!e.is_transient(), "{group}: {e}");
            let text = e.to_string();
            assert!(text.contains(&user), "names the user: {text}");
            assert!(
                text.contains(&format!("127.0.0.1:{}", port_of(&db))),
                "names the server: {text}"
            );
        }
        let e = ReplicationConnection::connect(&role_config(&db, "127.0.0.1", &user, None))
            .await
            .unwrap_err();
        assert!(e.is_auth(), "{group} without password: {e}");
        assert!(e.to_string().contains("password"), "{e}");
    }
}

#[tokio::test]
async fn scram_uses_channel_binding_over_tls() {
    if !needs_local("scram_uses_channel_binding_over_tls") {
        return;
    }
    let db = server().create_database().await.unwrap();
    let (user, password) = create_role(&db, "pcs_scram", "scram-sha-256").await;
    let with_binding = |ssl: SslMode, binding: &str| -> ConnectConfig {
        let s = format!(
            "host=127.0.0.1 port={} dbname={} user={user} password='{}' sslmode={ssl} \
             channel_binding={binding}",
            port_of(&db),
            db.name(),
            password.replace('\\', "\\\\").replace('\'', "\\'")
        );
        s.parse().unwrap()
    };
    // SCRAM-SHA-256-PLUS: `require` fails unless the exchange was channel-bound.
    let conn = assert_connects(&with_binding(SslMode::Require, "require"), &db).await;
    assert!(conn.is_tls());
    let pid = conn.backend_pid();
    let admin = db.connect().await.unwrap();
    let row = admin
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = $1", &[&pid])
        .await
        .unwrap();
    assert!(
        row.get::<_, bool>(0),
        "pg_stat_ssl says the walsender uses TLS"
    );
    conn.close().await;
    // Without TLS there is nothing to bind to.
    let e = ReplicationConnection::connect(&with_binding(SslMode::Disable, "require"))
        .await
        .unwrap_err();
    assert!(e.is_auth(), "{e}");
    assert!(e.to_string().contains("channel_binding"), "{e}");
    // channel_binding=disable still authenticates with plain SCRAM over TLS.
    assert_connects(&with_binding(SslMode::Require, "disable"), &db)
        .await
        .close()
        .await;
}

#[tokio::test]
async fn tls_verify_full_checks_the_host_name_and_verify_ca_does_not() {
    if !needs_local("tls_verify_full_checks_the_host_name...") {
        return;
    }
    let db = server().create_database().await.unwrap();
    let ca = server().ca_cert_path().expect("the local cluster has a CA");
    let user = db.config().get_user().unwrap().to_owned();
    let by_name = |host: &str, hostaddr: Option<&str>, mode: SslMode| -> ConnectConfig {
        let mut s = format!(
            "host={host} port={} dbname={} user={user} sslmode={mode} sslrootcert='{}'",
            port_of(&db),
            db.name(),
            ca.display()
        );
        if let Some(addr) = hostaddr {
            s.push_str(&format!(" hostaddr={addr}"));
        }
        s.parse().unwrap()
    };

    let conn = assert_connects(&by_name("localhost", None, SslMode::VerifyFull), &db).await;
    assert!(conn.is_tls());
    conn.close().await;
    // The certificate also lists 127.0.0.1 as an IP SAN.
    assert_connects(&by_name("127.0.0.1", None, SslMode::VerifyFull), &db)
        .await
        .close()
        .await;

    let wrong = by_name("wrong.example", Some("127.0.0.1"), SslMode::VerifyFull);
    let e = ReplicationConnection::connect(&wrong).await.unwrap_err();
    assert!(e.is_tls(), "{e}");
    assert!(!e.is_transient(), "{e}");
    assert!(e.to_string().contains("wrong.example"), "{e}");
    assert!(
        e.to_string().contains("verify-ca"),
        "names the alternative: {e}"
    );

    let conn = assert_connects(
        &by_name("wrong.example", Some("127.0.0.1"), SslMode::VerifyCa),
        &db,
    )
    .await;
    assert!(conn.is_tls());
    conn.close().await;

    // The SQL side applies the same policy.
    let e = wrong.connect_sql().await.unwrap_err();
    assert!(e.is_tls(), "{e}");
    assert!(e.to_string().contains("wrong.example"), "{e}");
    let client = by_name("localhost", None, SslMode::VerifyFull)
        .connect_sql()
        .await
        .expect("sql over verify-full");
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl);
    let app: String = client
        .query_one("SHOW application_name", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(app, "pg-changestream");
}

#[tokio::test]
async fn unix_socket_and_pinned_settings() {
    let db = server().create_database().await.unwrap();
    let mut config = superuser(&db);
    if let Some(cluster) = server().local_cluster() {
        // The socket directory as host: no TLS on Unix sockets, whatever the sslmode.
        let mut pg = tokio_postgres::Config::new();
        pg.host_path(cluster.socket_dir())
            .port(cluster.port())
            .dbname(db.name())
            .user(db.config().get_user().unwrap());
        config = ConnectConfig::from(pg);
        config.set_ssl_mode(SslMode::Require);
    } else {
        eprintln!(
            "unix_socket_and_pinned_settings: no local cluster; checking settings over TCP only"
        );
    }
    config.pg_config_mut().options("-c work_mem=7MB");
    let mut conn = assert_connects(&config, &db).await;
    if server().is_local() {
        assert!(!conn.is_tls());
    }
    assert_eq!(
        conn.show("work_mem").await.unwrap(),
        "7MB",
        "user options are kept"
    );
    assert_eq!(conn.show("TimeZone").await.unwrap(), "UTC");
    assert_eq!(conn.show("IntervalStyle").await.unwrap(), "postgres");
    assert_eq!(conn.show("extra_float_digits").await.unwrap(), "3");
    assert_eq!(conn.show("bytea_output").await.unwrap(), "hex");
    assert!(conn.show("DateStyle").await.unwrap().starts_with("ISO"));
    assert_eq!(conn.server_version_num(), server().version_num());
    let e = conn.show("no_such_setting").await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::UNDEFINED_OBJECT),
        "{e}"
    );
    // The connection is still usable after an error.
    assert_eq!(conn.show("bytea_output").await.unwrap(), "hex");
    conn.close().await;
}

#[tokio::test]
async fn refused_connections_are_transient() {
    // A port nothing listens on: bind one, learn it, free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config: ConnectConfig = format!("host=127.0.0.1 port={port} user=x dbname=y")
        .parse()
        .unwrap();
    let e = ReplicationConnection::connect(&config).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
}

/// A table `t` in publication `p_<db>`, a slot, and a stream on it.
struct Fixture {
    db: TestDatabase,
    sql: tokio_postgres::Client,
    slot: String,
    publication: String,
}

impl Fixture {
    async fn new() -> Fixture {
        let db = server().create_database().await.unwrap();
        let sql = db.connect().await.unwrap();
        // A name with a double quote, a comma and a capital: it must survive both quoting
        // layers of publication_names (a string literal holding a list of identifiers).
        let publication = format!("{} \"Q\",x", db.unique_name("pub"));
        sql.batch_execute(&format!(
            "CREATE TABLE t (id int PRIMARY KEY, v text); CREATE PUBLICATION \"{}\" FOR TABLE t",
            publication.replace('"', "\"\"")
        ))
        .await
        .unwrap();
        let slot = db.unique_name("slot");
        Fixture {
            db,
            sql,
            slot,
            publication,
        }
    }

    fn options(&self) -> StartOptions {
        StartOptions::new().publication(&self.publication)
    }

    async fn start(&self, config: &ConnectConfig, options: &StartOptions) -> ReplicationStream {
        let mut conn = ReplicationConnection::connect(config).await.unwrap();
        let created = conn
            .create_logical_slot(&self.slot, &SlotOptions::new())
            .await
            .unwrap();
        assert_eq!(created.slot_name, self.slot);
        assert!(!created.consistent_point.is_zero());
        conn.start_replication(&self.slot, created.consistent_point, options)
            .await
            .unwrap()
    }

    /// The walsender pid serving the slot, from pg_stat_replication.
    async fn walsender_pids(&self) -> Vec<i32> {
        self.sql
            .query(
                "SELECT r.pid FROM pg_stat_replication r JOIN pg_replication_slots s \
                 ON s.active_pid = r.pid WHERE s.slot_name = $1",
                &[&self.slot],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }
}

/// Reads messages until a Commit, returning the tags seen.
async fn read_transaction(stream: &mut ReplicationStream) -> Vec<u8> {
    let mut tags = Vec::new();
    loop {
        let data = tokio::time::timeout(GUARD, stream.next())
            .await
            .expect("a message within the guard")
            .expect("next")
            .expect("the stream goes on");
        let message = pgoutput::parse(data.data.clone(), false).expect("a pgoutput message");
        tags.push(data.data.first().copied().unwrap_or(0));
        if let PgOutputMessage::Commit(commit) = message {
            stream.set_flush_position(commit.end_lsn);
            return tags;
        }
    }
}

#[tokio::test]
async fn slot_stream_receives_an_insert_and_stops_cleanly() {
    let f = Fixture::new().await;
    let config = superuser(&f.db);
    let mut stream = f.start(&config, &f.options()).await;
    let expected = if server().version_num() >= 160_000 {
        4
    } else {
        3
    };
    assert_eq!(stream.proto_version(), expected);
    f.sql
        .execute("INSERT INTO t VALUES (1, 'one')", &[])
        .await
        .unwrap();
    let tags = read_transaction(&mut stream).await;
    assert_eq!(tags, b"BRIC", "Begin, Relation, Insert, Commit");
    let confirmed = stream.flush_position();
    // Lower positions are ignored.
    stream.set_flush_position(Lsn::new(1));
    assert_eq!(stream.flush_position(), confirmed);
    assert!(stream.server_wal_end() >= confirmed);
    assert_eq!(f.walsender_pids().await, vec![stream.backend_pid()]);

    tokio::time::timeout(GUARD, stream.stop())
        .await
        .expect("stop within the guard")
        .expect("clean stop");
    // The final status update confirmed the commit; the slot is free again.
    let row = f
        .sql
        .query_one(
            "SELECT active, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&f.slot],
        )
        .await
        .unwrap();
    let confirmed_on_server: Lsn = row.get::<_, String>(1).parse().unwrap();
    assert_eq!(confirmed_on_server, confirmed);

    // The slot can be dropped (WAIT: the walsender may still be exiting).
    let mut conn = ReplicationConnection::connect(&config).await.unwrap();
    conn.drop_slot(&f.slot, true).await.unwrap();
    let e = conn.drop_slot(&f.slot, false).await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::UNDEFINED_OBJECT),
        "{e}"
    );
    conn.close().await;
}

#[tokio::test]
async fn slot_commands_report_server_errors() {
    let f = Fixture::new().await;
    let config = superuser(&f.db);
    let mut conn = ReplicationConnection::connect(&config).await.unwrap();
    let created = conn
        .create_logical_slot(
            &f.slot,
            &SlotOptions::new()
                .temporary(true)
                .snapshot(SnapshotAction::Export),
        )
        .await
        .unwrap();
    assert!(created.snapshot_name.is_some());
    let e = conn
        .create_logical_slot(&f.slot, &SlotOptions::new())
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::DUPLICATE_OBJECT),
        "{e}"
    );
    let failover = conn
        .create_logical_slot(&f.db.unique_name("fo"), &SlotOptions::new().failover(true))
        .await;
    if server().version_num() < 170_000 {
        let e = failover.unwrap_err();
        assert!(e.is_server_setup(), "{e}");
        assert!(e.to_string().contains("17"), "{e}");
    } else {
        let slot = failover.expect("failover slot on 17+");
        conn.drop_slot(&slot.slot_name, false).await.unwrap();
    }
    // A name needing quotes reaches the server intact (and is refused by its rules)...
    let e = conn
        .create_logical_slot("Bad Name", &SlotOptions::new())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("\"Bad Name\""), "{e}");
    // ...except a double quote, which the replication grammar cannot express at all.
    let e = conn
        .create_logical_slot("bad\"name", &SlotOptions::new())
        .await
        .unwrap_err();
    assert!(e.is_config(), "{e}");
    // Starting a slot that does not exist.
    let e = conn
        .start_replication("no_such_slot", Lsn::ZERO, &f.options())
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::UNDEFINED_OBJECT),
        "{e}"
    );
}

#[tokio::test]
async fn terminated_walsender_is_a_transient_error() {
    let f = Fixture::new().await;
    let mut stream = f.start(&superuser(&f.db), &f.options()).await;
    f.sql
        .execute("INSERT INTO t VALUES (1, 'x')", &[])
        .await
        .unwrap();
    read_transaction(&mut stream).await;
    let terminated: bool = f
        .sql
        .query_one("SELECT pg_terminate_backend($1)", &[&stream.backend_pid()])
        .await
        .unwrap()
        .get(0);
    assert!(terminated);
    let e = loop {
        match tokio::time::timeout(GUARD, stream.next())
            .await
            .expect("the cut is noticed within the guard, not a hang")
        {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("a terminated walsender is not a clean end"),
            Err(e) => break e,
        }
    };
    assert!(e.is_transient(), "{e}");
    // The stream stays failed.
    let again = stream.next().await.unwrap_err();
    assert!(again.is_transient(), "{again}");
}

/// The walsender times out a client that sends nothing for `wal_sender_timeout`; status
/// updates alone, without reading, keep it alive.
#[tokio::test]
async fn wal_sender_timeout_never_fires_while_the_client_sends_status_updates() {
    const TIMEOUT_MS: u64 = 1500;
    let f = Fixture::new().await;
    let mut config = superuser(&f.db);
    config
        .pg_config_mut()
        .options(format!("-c wal_sender_timeout={TIMEOUT_MS}ms"));
    let idle = Duration::from_millis(2 * TIMEOUT_MS + 1000);
    let mut stream = f
        .start(
            &config,
            &f.options()
                .status_interval(Duration::from_millis(TIMEOUT_MS / 4)),
        )
        .await;
    let pid = stream.backend_pid();
    f.sql
        .execute("INSERT INTO t VALUES (1, 'a')", &[])
        .await
        .unwrap();
    read_transaction(&mut stream).await;

    // 1. Idle inside next(): its periodic status updates keep the walsender alive.
    let waited = tokio::time::timeout(idle, stream.next()).await;
    assert!(
        waited.is_err(),
        "nothing to read on an idle publication: {waited:?}"
    );

    // 2. Not reading at all, while rows pile up: status updates alone suffice.
    for i in 0..20 {
        f.sql
            .execute("INSERT INTO t VALUES ($1, 'pile')", &[&(100 + i)])
            .await
            .unwrap();
    }
    let until = tokio::time::Instant::now() + idle;
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(TIMEOUT_MS / 4)).await;
        stream
            .send_status_update(false)
            .await
            .expect("status update");
    }

    assert_eq!(
        f.walsender_pids().await,
        vec![pid],
        "same walsender, never timed out"
    );
    let mut transactions = 0;
    while transactions < 20 {
        let tags = read_transaction(&mut stream).await;
        assert_eq!(tags.last(), Some(&b'C'));
        transactions += 1;
    }
    f.sql
        .execute("INSERT INTO t VALUES (2, 'b')", &[])
        .await
        .unwrap();
    assert_eq!(read_transaction(&mut stream).await, b"BIC");
    stream.stop().await.unwrap();
}

/// The control for the test above: with updates far apart and no reading, the same
/// setting does end the stream, so the test above proves something.
#[tokio::test]
async fn wal_sender_timeout_fires_without_status_updates() {
    const TIMEOUT_MS: u64 = 1500;
    let f = Fixture::new().await;
    let mut config = superuser(&f.db);
    config
        .pg_config_mut()
        .options(format!("-c wal_sender_timeout={TIMEOUT_MS}ms"));
    let mut stream = f
        .start(
            &config,
            &f.options().status_interval(Duration::from_secs(3600)),
        )
        .await;
    let pid = stream.backend_pid();
    // Wait (without sending anything) until the server has ended the walsender.
    let gone = tokio::time::timeout(GUARD, async {
        loop {
            tokio::time::sleep(Duration::from_millis(TIMEOUT_MS)).await;
            if !f.walsender_pids().await.contains(&pid) {
                break;
            }
        }
    })
    .await;
    assert!(gone.is_ok(), "the walsender should time out");
    let e = loop {
        match tokio::time::timeout(GUARD, stream.next())
            .await
            .expect("no hang")
        {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("a timed-out walsender is not a clean end"),
            Err(e) => break e,
        }
    };
    assert!(e.is_transient(), "{e}");
}
