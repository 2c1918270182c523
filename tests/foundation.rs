//! The test harness itself: the server is fit for logical replication, every test gets its
//! own database, local clusters stop, restart and take settings, TLS and the password groups
//! work, and no server outlives its test process — not even one killed with SIGKILL.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pg_changestream::testing::{
    ClusterOptions, LocalCluster, ShutdownMode, TestServer, DOCKER_IMAGE, DOCKER_TAG,
    LOGICAL_SETTINGS, MD5_GROUP, PASSWORD_GROUP, PG_BIN_ENV, SCRAM_GROUP,
};
use tokio_postgres::config::SslMode;
use tokio_postgres::NoTls;

fn server() -> &'static TestServer {
    match TestServer::shared() {
        Ok(server) => server,
        Err(e) => panic!("{e}"),
    }
}

/// Tests of local clusters need local binaries; with a server from a URL or Docker they say
/// so loudly instead of failing.
fn local_server(test: &str) -> Option<&'static TestServer> {
    let server = server();
    if !server.is_local() {
        eprintln!("{test}: skipped, the test server is not a local cluster (needs local binaries)");
        return None;
    }
    Some(server)
}

async fn show(client: &tokio_postgres::Client, setting: &str) -> String {
    let row = client
        .query_one(&format!("SHOW {setting}"), &[])
        .await
        .expect("SHOW works");
    row.get(0)
}

/// Whether the process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.trim_start().chars().next()
        })
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// Waits (up to 15 s) until the postmaster is gone and its directory removed.
fn assert_cleaned_up(pid: u32, dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while (alive(pid) || dir.exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!alive(pid), "postmaster {pid} is still running");
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

/// A cluster of its own, without TLS (faster); `bin_dir` `None` looks as the harness does.
fn quick_cluster(bin_dir: Option<PathBuf>) -> LocalCluster {
    let options = ClusterOptions {
        bin_dir,
        ssl: false,
        ..ClusterOptions::default()
    };
    match LocalCluster::start(options) {
        Ok(cluster) => cluster,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn server_is_ready_for_logical_replication() {
    let server = server();
    eprintln!(
        "PostgreSQL {} ({}), major {}",
        server.version(),
        server.version_num(),
        server.major()
    );
    assert!(
        (15..=18).contains(&server.major()),
        "{}",
        server.version_num()
    );
    let db = server.create_database().await.expect("database");
    let client = db.connect().await.expect("connect");
    assert_eq!(show(&client, "wal_level").await, "logical");
    let slots: i32 = show(&client, "max_replication_slots")
        .await
        .parse()
        .expect("a number");
    assert!(slots >= 64, "max_replication_slots = {slots}");
    let name: String = client
        .query_one("SELECT current_database()", &[])
        .await
        .expect("query")
        .get(0);
    assert_eq!(name, db.name());
}

#[tokio::test]
async fn creates_and_drops_a_pgoutput_slot() {
    let db = server().create_database().await.expect("database");
    let client = db.connect().await.expect("connect");
    let slot = db.unique_name("slot");
    client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await
        .expect("create slot");
    let row = client
        .query_one(
            "SELECT plugin::text, database::text, slot_type FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .expect("the slot is listed");
    assert_eq!(row.get::<_, String>(0), "pgoutput");
    assert_eq!(row.get::<_, String>(1), db.name());
    assert_eq!(row.get::<_, String>(2), "logical");
    client
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await
        .expect("drop slot");
    let left = client
        .query(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .expect("query");
    assert!(left.is_empty(), "slot {slot} still exists");
}

#[tokio::test]
async fn each_test_gets_its_own_database() {
    let server = server();
    let a = server.create_database().await.expect("database a");
    let b = server.create_database().await.expect("database b");
    assert_ne!(a.name(), b.name());
    let ca = a.connect().await.expect("connect a");
    let cb = b.connect().await.expect("connect b");
    ca.batch_execute("CREATE TABLE only_in_a (id int)")
        .await
        .expect("create table");
    let in_b: i64 = cb
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = 'only_in_a'",
            &[],
        )
        .await
        .expect("query")
        .get(0);
    assert_eq!(
        in_b,
        0,
        "a table of {} is visible in {}",
        a.name(),
        b.name()
    );

    // Names for cluster-wide objects differ between databases and between calls.
    let names = [
        a.unique_name("slot"),
        a.unique_name("slot"),
        b.unique_name("slot"),
    ];
    assert_ne!(names[0], names[1]);
    assert_ne!(names[0], names[2]);
    let long = a.unique_name(&"Very-Long-Prefix".repeat(10));
    assert!(long.len() <= 63, "{long}");
    assert!(long.starts_with("very_long_prefix"), "{long}");

    // The URL is the same connection as the config.
    let config: tokio_postgres::Config = a.url().parse().expect("url parses");
    let (client, connection) = config.connect(NoTls).await.expect("connect by url");
    tokio::spawn(connection);
    let name: String = client
        .query_one("SELECT current_database()", &[])
        .await
        .expect("query")
        .get(0);
    assert_eq!(name, a.name());
}

/// The compose file is what a user with Docker runs; testcontainers starts the same image with
/// the same settings.
#[test]
fn docker_compose_matches_the_testcontainers_settings() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker-compose.yml");
    let compose = std::fs::read_to_string(&path).expect("docker-compose.yml is readable");
    assert!(
        compose.contains(&format!("image: {DOCKER_IMAGE}:{DOCKER_TAG}")),
        "{compose}"
    );
    for (name, value) in LOGICAL_SETTINGS {
        assert!(
            compose.contains(&format!("{name}={value}")),
            "{name} missing"
        );
    }
    assert!(compose.contains("pg_isready"), "no health check");
}

#[tokio::test]
async fn local_cluster_has_tls_and_password_groups() {
    let Some(server) = local_server("local_cluster_has_tls_and_password_groups") else {
        return;
    };
    let db = server.create_database().await.expect("database");
    let admin = db.connect().await.expect("connect");
    assert_eq!(show(&admin, "ssl").await, "on");

    // TLS with certificate verification against the harness CA, by name and by address.
    let ca = server.ca_cert_path().expect("a local cluster has a CA");
    let pem = std::fs::read(ca).expect("CA readable");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(&pem) {
        roots.add(cert).expect("CA certificate is valid");
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    for host in ["localhost", "127.0.0.1"] {
        let mut config = db.config();
        config.host(host).ssl_mode(SslMode::Require);
        let connector = tokio_postgres_rustls::MakeRustlsConnect::new(tls.clone());
        let (client, connection) = config
            .connect(connector)
            .await
            .unwrap_or_else(|e| panic!("TLS connection to {host}: {e}"));
        tokio::spawn(connection);
        let ssl: bool = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .expect("query")
            .get(0);
        assert!(ssl, "connection to {host} is not encrypted");
    }

    // Each group forces its password method; a wrong password is refused.
    for (group, encryption) in [
        (MD5_GROUP, "md5"),
        (SCRAM_GROUP, "scram-sha-256"),
        (PASSWORD_GROUP, "scram-sha-256"),
    ] {
        let role = db.unique_name(group);
        admin
            .batch_execute(&format!(
                "SET password_encryption = '{encryption}'; \
                 CREATE ROLE {role} LOGIN PASSWORD 'right' IN ROLE {group}"
            ))
            .await
            .expect("create role");
        let mut config = db.config();
        config.user(&role).password("wrong");
        let refused = config.connect(NoTls).await.err();
        let code = refused
            .as_ref()
            .and_then(|e| e.code())
            .map(|c| c.code().to_owned());
        assert_eq!(code.as_deref(), Some("28P01"), "{role}: {refused:?}");
        config.password("right");
        let (client, connection) = config
            .connect(NoTls)
            .await
            .unwrap_or_else(|e| panic!("{role} with the right password: {e}"));
        tokio::spawn(connection);
        client.simple_query("SELECT 1").await.expect("query");
    }
}

/// PEM "CERTIFICATE" blocks to DER, without another dependency.
fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .map(|c| c.expect("PEM certificate"))
        .collect()
}

#[tokio::test]
async fn local_cluster_stops_restarts_and_takes_settings() {
    if local_server("local_cluster_stops_restarts_and_takes_settings").is_none() {
        return;
    }
    let mut cluster =
        tokio::task::spawn_blocking(|| quick_cluster(server().bin_dir().map(Path::to_path_buf)))
            .await
            .expect("start");
    let connect = |config: tokio_postgres::Config| async move {
        let (client, connection) = config.connect(NoTls).await.expect("connect");
        tokio::spawn(connection);
        client
    };
    let client = connect(cluster.admin_config()).await;
    assert_eq!(show(&client, "wal_level").await, "logical");
    assert_eq!(show(&client, "port").await, cluster.port().to_string());
    drop(client);

    // A reloadable setting applies at once, a postmaster one after a restart.
    cluster.set_config("work_mem", "5MB").expect("set work_mem");
    cluster
        .set_config("max_replication_slots", "7")
        .expect("set max_replication_slots");
    let client = connect(cluster.admin_config()).await;
    assert_eq!(show(&client, "work_mem").await, "5MB");
    drop(client);
    let pid_before = cluster.postmaster_pid().expect("running");
    cluster = tokio::task::spawn_blocking(move || {
        cluster.restart().expect("restart");
        cluster
    })
    .await
    .expect("restart");
    let client = connect(cluster.admin_config()).await;
    assert_eq!(show(&client, "max_replication_slots").await, "7");
    assert_ne!(cluster.postmaster_pid(), Some(pid_before));
    client
        .batch_execute("CREATE TABLE survives (id int); INSERT INTO survives VALUES (1)")
        .await
        .expect("write");
    drop(client);

    // An immediate stop is a crash; the next start recovers the committed row.
    cluster = tokio::task::spawn_blocking(move || {
        cluster.stop(ShutdownMode::Immediate).expect("stop");
        assert_eq!(cluster.postmaster_pid(), None);
        cluster
            .stop(ShutdownMode::Fast)
            .expect("stopping twice is fine");
        cluster.start_again().expect("start again");
        cluster
    })
    .await
    .expect("start again");
    let client = connect(cluster.admin_config()).await;
    let n: i64 = client
        .query_one("SELECT count(*) FROM survives", &[])
        .await
        .expect("query")
        .get(0);
    assert_eq!(n, 1);
    drop(client);

    let pid = cluster.postmaster_pid().expect("running");
    let base = cluster.data_dir().parent().expect("base dir").to_path_buf();
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .expect("drop");
    assert_cleaned_up(pid, &base);
}

#[test]
fn local_cluster_is_removed_when_a_test_panics() {
    if local_server("local_cluster_is_removed_when_a_test_panics").is_none() {
        return;
    }
    let mut seen: Option<(u32, PathBuf)> = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let cluster = quick_cluster(server().bin_dir().map(Path::to_path_buf));
        let pid = cluster.postmaster_pid().expect("running");
        assert!(alive(pid));
        seen = Some((
            pid,
            cluster.data_dir().parent().expect("base").to_path_buf(),
        ));
        panic!("a test fails while it owns a cluster");
    }));
    assert!(result.is_err());
    let (pid, base) = seen.expect("the cluster started");
    assert_cleaned_up(pid, &base);
}

const ORPHAN_ENV: &str = "PG_CHANGESTREAM_TEST_ORPHAN";
const ORPHAN_MARKER: &str = "orphan-postmaster:";

/// Run only as the child of `no_server_left_behind_after_sigkill`: starts a cluster, reports
/// it, and waits to be killed.
#[test]
#[ignore = "a helper process of no_server_left_behind_after_sigkill"]
fn orphan_child() {
    if std::env::var_os(ORPHAN_ENV).is_none() {
        return;
    }
    // Not the shared server: the parent passes PG_BIN, and this process needs one cluster.
    let cluster = quick_cluster(None);
    // On its own line: libtest has already printed "test foundation::orphan_child ... ".
    println!(
        "\n{ORPHAN_MARKER} {} {}",
        cluster.postmaster_pid().expect("running"),
        cluster.data_dir().parent().expect("base").display()
    );
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

#[test]
fn no_server_left_behind_after_sigkill() {
    let Some(server) = local_server("no_server_left_behind_after_sigkill") else {
        return;
    };
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "foundation::orphan_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ORPHAN_ENV, "1")
        .env(PG_BIN_ENV, server.bin_dir().expect("local"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run the child test process");
    let stdout = child.stdout.take().expect("piped");
    let line = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|line| line.starts_with(ORPHAN_MARKER))
        .unwrap_or_else(|| {
            let _ = child.kill();
            panic!("the child exited without reporting its postmaster")
        });
    let mut parts = line.split_whitespace().skip(1);
    let pid: u32 = parts.next().and_then(|p| p.parse().ok()).expect("a pid");
    let base = PathBuf::from(parts.next().expect("a directory"));
    assert!(alive(pid), "postmaster {pid} of the child is not running");
    assert!(base.join("data").exists());

    // SIGKILL: no destructor, no panic hook, nothing of the child runs any more.
    child.kill().expect("kill the child");
    child.wait().expect("reap the child");
    assert_cleaned_up(pid, &base);
}
