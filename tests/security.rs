//! Security: the least-privilege role of `sql/role.sql` (no superuser) runs a whole
//! consumer cycle over TLS verify-full with channel-bound SCRAM, and its password appears in
//! no log line (captured at TRACE level) and no `Debug` or `Display` output.
//!
//! TLS verify-full (and its refusal on a host-name mismatch) and SCRAM channel binding on
//! the replication connection are proven in `wire.rs`; here they carry the consumer.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pg_changestream::consumer::{
    delete_group, enable_change_streaming, CommitMode, Consumer, ConsumerBuilder, StartLocation,
};
use pg_changestream::testing::{TestServer, CERT_GROUP, SCRAM_GROUP};
use pg_changestream::wire::ReplicationConnection;
use pg_changestream::ConnectConfig;
use tokio::process::Command;

const PASSWORD: &str = "Pw-7f3e'q%x unusual";

/// A `MakeWriter` that keeps everything written.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The password, and the encodings of it a careless formatter could print.
fn assert_no_password(what: &str, text: &str) {
    let encoded = PASSWORD
        .replace('%', "%25")
        .replace('\'', "%27")
        .replace(' ', "%20");
    for needle in [PASSWORD, encoded.as_str(), "Pw-7f3e"] {
        assert!(
            !text.contains(needle),
            "{what} shows the password ({needle:?}): {text}"
        );
    }
}

async fn ids(consumer: &mut Consumer, count: usize) -> Vec<i64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < count {
        assert!(Instant::now() < deadline, "got {out:?} of {count}");
        let bundle = consumer
            .poll(count - out.len(), Duration::from_millis(300))
            .await
            .unwrap();
        for record in bundle.records() {
            let image = record.current().unwrap();
            out.push(image.get("id").unwrap().as_i64().unwrap());
        }
    }
    out
}

#[tokio::test]
async fn the_least_privilege_role_runs_a_consumer_over_verify_full_and_no_password_leaks() {
    let server = TestServer::shared().unwrap();
    let Some(ca) = server.ca_cert_path() else {
        eprintln!("security: skipped, the test server is not a local cluster (needs its CA)");
        return;
    };
    // Everything the library logs, at every level, for this test (a current-thread runtime:
    // the consumer's tasks run on this thread).
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // With a single registered dispatcher, tracing-core caches a callsite's interest from
    // the default of whichever thread reaches it first: a line first logged by a test on
    // another thread would be "never" here, and silently missing from the capture. A
    // second registered dispatcher makes it ask every registered one instead.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());

    let db = server.create_database().await.unwrap();
    let admin = db.connect().await.unwrap();
    let role = db.unique_name("cs_least");
    let owner = db.unique_name("cs_owner");
    admin
        .batch_execute(&format!(
            "CREATE ROLE {owner} NOLOGIN;
             CREATE TABLE items (id int PRIMARY KEY, v text);
             ALTER TABLE items OWNER TO {owner};"
        ))
        .await
        .unwrap();
    let psql = server
        .bin_dir()
        .map(|dir| dir.join("psql"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| "psql".into());
    let out = Command::new(&psql)
        .args(["-X", "-q", &db.url(), "-f"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/role.sql"))
        .args(["-v", &format!("role={role}"), "-v"])
        .arg(format!("password={PASSWORD}"))
        .args(["-v", &format!("owner={owner}")])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Members of SCRAM_GROUP must authenticate with SCRAM-SHA-256 over TCP.
    admin
        .batch_execute(&format!("GRANT {SCRAM_GROUP} TO {role}"))
        .await
        .unwrap();
    let row = admin
        .query_one(
            "SELECT rolsuper, rolreplication, rolcreaterole, rolcreatedb FROM pg_roles
              WHERE rolname = $1",
            &[&role],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, bool>(0),
            row.get::<_, bool>(1),
            row.get::<_, bool>(2),
            row.get::<_, bool>(3)
        ),
        (false, true, false, false),
        "REPLICATION and nothing more"
    );

    let port = db.config().get_ports()[0];
    let url = format!(
        "postgres://{role}:{}@localhost:{port}/{}?sslmode=verify-full&sslrootcert={}&channel_binding=require",
        PASSWORD
            .replace('%', "%25")
            .replace('\'', "%27")
            .replace(' ', "%20"),
        db.name(),
        ca.display()
    );
    let config: ConnectConfig = url.parse().unwrap();
    assert_no_password("Debug of ConnectConfig", &format!("{config:?}"));

    enable_change_streaming(&config, "items", true)
        .await
        .unwrap();
    let builder = || {
        ConsumerBuilder::new(config.clone(), "least privilege")
            .add_table("items", StartLocation::Latest)
            .commit_mode(CommitMode::Manual)
            .max_poll_interval(Duration::from_secs(2))
    };
    assert_no_password("Debug of ConsumerBuilder", &format!("{:?}", builder()));
    let mut consumer = builder().build().await.unwrap();
    assert_no_password("Debug of Consumer", &format!("{consumer:?}"));
    let pids = consumer.backend_pids();
    let row = admin
        .query_one(
            "SELECT s.ssl, a.usename::text FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
              WHERE pid = $1",
            &[&pids[0]],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the walsender's connection uses TLS");
    assert_eq!(row.get::<_, String>(1), role);

    for id in 1..=3 {
        admin
            .execute("INSERT INTO items VALUES ($1, 'a')", &[&id])
            .await
            .unwrap();
    }
    assert_eq!(ids(&mut consumer, 3).await, [1, 2, 3]);
    consumer.commit().await.unwrap();
    // A lost walsender: the role reconnects by itself (and logs about it).
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pids[0]])
        .await
        .unwrap();
    admin
        .execute("INSERT INTO items VALUES (4, 'b')", &[])
        .await
        .unwrap();
    assert_eq!(ids(&mut consumer, 1).await, [4]);
    consumer.commit().await.unwrap();
    assert!(consumer.stats().reconnects >= 1);
    consumer.close().await.unwrap();
    // A second consumer, left without closing: the next one takes the slot over (the role
    // may end its own walsenders).
    let mut abandoned = builder().build().await.unwrap();
    abandoned
        .poll(10, Duration::from_millis(200))
        .await
        .unwrap();
    std::mem::forget(abandoned);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut consumer = builder().build().await.unwrap();
    admin
        .execute("INSERT INTO items VALUES (5, 'c')", &[])
        .await
        .unwrap();
    assert_eq!(ids(&mut consumer, 1).await, [5]);
    consumer.commit().await.unwrap();
    consumer.close().await.unwrap();
    delete_group(&config, "least privilege", true)
        .await
        .unwrap();

    // Failures print the target, never the password.
    let mut wrong = config.clone();
    wrong.pg_config_mut().password(format!("{PASSWORD}-wrong"));
    let e = ConsumerBuilder::new(wrong, "g")
        .add_table("items", StartLocation::Latest)
        .build()
        .await
        .unwrap_err();
    assert!(e.is_auth(), "{e}");
    assert_no_password("Display of an authentication error", &e.to_string());
    assert_no_password("Debug of an authentication error", &format!("{e:?}"));

    let logs = captured.text();
    for line in [
        "partition claimed",
        "replication stream lost",
        "consumer closed",
    ] {
        assert!(logs.contains(line), "the capture has {line:?}: {logs}");
    }
    assert_no_password("the logs", &logs);
    eprintln!(
        "security: {} log lines captured, none with the password",
        logs.lines().count()
    );
}

/// A server that requires client certificates (`cert` authentication in `pg_hba.conf`):
/// both connection kinds present the certificate named by `sslcert`/`sslkey` (in the URL
/// or set on the config), and without one the server refuses with an authentication error.
#[tokio::test]
async fn client_certificates_log_in_sql_sessions_and_replication_connections() {
    let server = TestServer::shared().unwrap();
    let (Some(cluster), Some(ca)) = (server.local_cluster(), server.ca_cert_path()) else {
        eprintln!("security: skipped, the test server is not a local cluster (needs its CA)");
        return;
    };
    let db = server.create_database().await.unwrap();
    let admin = db.connect().await.unwrap();
    let role = db.unique_name("cs_cert");
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN REPLICATION IN ROLE {CERT_GROUP}"
        ))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = cluster.client_certificate(&role, dir.path()).unwrap();
    let port = db.config().get_ports()[0];
    let base = format!(
        "postgres://{role}@localhost:{port}/{}?sslmode=verify-full&sslrootcert={}",
        db.name(),
        ca.display()
    );

    let without: ConnectConfig = base.parse().unwrap();
    let e = without.connect_sql().await.unwrap_err();
    assert!(e.is_auth(), "{e}");
    let e = ReplicationConnection::connect(&without).await.unwrap_err();
    assert!(e.is_auth(), "{e}");

    let mut with = without.clone();
    with.set_ssl_client_cert(&cert, &key);
    let in_url: ConnectConfig =
        format!("{base}&sslcert={}&sslkey={}", cert.display(), key.display())
            .parse()
            .unwrap();
    assert_eq!(in_url.ssl_cert(), Some(cert.as_path()));
    for config in [with, in_url] {
        let client = config.connect_sql().await.unwrap();
        let user: String = client
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(user, role);
        let mut replication = ReplicationConnection::connect(&config).await.unwrap();
        assert!(replication.is_tls());
        replication.identify_system().await.unwrap();
        replication.close().await;
    }
    drop(admin);
}
