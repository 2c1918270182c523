//! The bad-input catalogue: every mistake ends with a clear error (the right predicate, a
//! message naming the object), and nothing in the database changed — no group, slot or
//! publication created, replica identities as they were. Hostile names that are legal
//! (quotes, spaces, unicode, SQL) work, quoted, and are never executed.

use std::time::Duration;

use pg_changestream::consumer::{
    delete_group, disable_change_streaming, enable_change_streaming, CommitMode, ConsumerBuilder,
    StartLocation,
};
use pg_changestream::testing::{TestDatabase, TestServer};
use pg_changestream::{ConnectConfig, Error, Lsn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::Client;

fn server() -> &'static TestServer {
    match TestServer::shared() {
        Ok(server) => server,
        Err(e) => panic!("{e}"),
    }
}

/// What a mistake must leave untouched: this database's slots, publications, groups and
/// their tables, enabled tables, and the replica identity of every table.
async fn state(client: &Client) -> String {
    let mut out = String::new();
    for sql in [
        "SELECT coalesce(string_agg(slot_name::text, ',' ORDER BY slot_name), '')
           FROM pg_replication_slots WHERE database = current_database()",
        "SELECT coalesce(string_agg(pubname::text, ',' ORDER BY pubname), '') FROM pg_publication",
        "SELECT coalesce(string_agg(c.oid::regclass::text || '=' || c.relreplident::text, ','
                 ORDER BY c.oid::regclass::text), '')
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
    ] {
        out.push_str(
            &client
                .query_one(sql, &[])
                .await
                .unwrap()
                .get::<_, String>(0),
        );
        out.push('\n');
    }
    let catalog: bool = client
        .query_one("SELECT to_regclass('changestream.groups') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    if catalog {
        for sql in [
            "SELECT coalesce(string_agg(group_id, ',' ORDER BY group_id), '') FROM changestream.groups",
            "SELECT coalesce(string_agg(group_id || ':' || schema_name || '.' || table_name, ','
                     ORDER BY 1), '') FROM changestream.group_tables",
            "SELECT coalesce(string_agg(schema_name || '.' || table_name, ',' ORDER BY 1), '')
               FROM changestream.tables",
        ] {
            out.push_str(&client.query_one(sql, &[]).await.unwrap().get::<_, String>(0));
            out.push('\n');
        }
    }
    out
}

/// A database with `items` (key) enabled, `keyless` (no key, not enabled) and `plain` (key,
/// not enabled).
async fn setup() -> (TestDatabase, Client, ConnectConfig) {
    let db = server().create_database().await.unwrap();
    let client = db.connect().await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, v text);
             CREATE TABLE keyless (v text);
             CREATE TABLE plain (id int PRIMARY KEY);",
        )
        .await
        .unwrap();
    let config = ConnectConfig::new(db.config());
    enable_change_streaming(&config, "items", false)
        .await
        .unwrap();
    (db, client, config)
}

fn builder(config: &ConnectConfig, group: &str) -> ConsumerBuilder {
    ConsumerBuilder::new(config.clone(), group)
        .add_table("items", StartLocation::Latest)
        .reconnect_timeout(Duration::from_secs(3))
}

/// Runs `attempt`, which must fail; checks the error with `is` and that its message holds
/// `needle`, and that the database is as before.
async fn refused<F, Fut, T>(
    client: &Client,
    case: &str,
    attempt: F,
    is: fn(&Error) -> bool,
    needle: &str,
) where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let before = state(client).await;
    let e = match attempt().await {
        Ok(_) => panic!("{case}: accepted"),
        Err(e) => e,
    };
    assert!(is(&e), "{case}: wrong kind of error: {e}");
    let message = e.to_string();
    assert!(
        message.to_lowercase().contains(&needle.to_lowercase()),
        "{case}: the message does not say {needle:?}: {message}"
    );
    assert_eq!(state(client).await, before, "{case}: the database changed");
    eprintln!("{case}: {message}");
}

#[tokio::test]
async fn mistakes_are_clear_errors_and_change_nothing() {
    let (db, client, config) = setup().await;
    let mut cases = 0;

    // 1. Malformed connection strings.
    for url in [
        "postgres://user@host:notaport/db",
        "postgres://host/db?sslmode=sometimes",
    ] {
        let e = url.parse::<ConnectConfig>().unwrap_err();
        assert!(e.is_config(), "{url}: {e}");
        cases += 1;
    }

    // 2. A missing table, for enable and for a consumer.
    refused(
        &client,
        "enable a missing table",
        || enable_change_streaming(&config, "nosuch", true),
        Error::is_not_found,
        "nosuch",
    )
    .await;
    refused(
        &client,
        "consume a missing table",
        || {
            ConsumerBuilder::new(config.clone(), "g1")
                .add_table("nosuch", StartLocation::Latest)
                .build()
        },
        |e| e.is_config() || e.is_not_found(),
        "nosuch",
    )
    .await;
    cases += 2;

    // 3. A table not enabled.
    refused(
        &client,
        "consume a table not enabled",
        || {
            ConsumerBuilder::new(config.clone(), "g2")
                .add_table("plain", StartLocation::Latest)
                .build()
        },
        Error::is_config,
        "not enabled",
    )
    .await;
    refused(
        &client,
        "disable a table not enabled",
        || disable_change_streaming(&config, "plain"),
        |e| e.is_config() || e.is_not_found(),
        "plain",
    )
    .await;
    cases += 2;

    // 4. No key and no before-images: publishing it would break the user's UPDATEs.
    refused(
        &client,
        "enable a keyless table without before-images",
        || enable_change_streaming(&config, "keyless", false),
        Error::is_config,
        "keyless",
    )
    .await;
    cases += 1;

    // 5. Group ids: empty, too long, control characters.
    let long = "x".repeat(64);
    for (case, group) in [
        ("empty group id", ""),
        ("group id of 64 characters", long.as_str()),
        ("group id with a newline", "bad\ngroup"),
        ("group id with a NUL", "bad\0group"),
    ] {
        refused(
            &client,
            case,
            || builder(&config, group).build(),
            Error::is_config,
            "group id",
        )
        .await;
        cases += 1;
    }

    // 6. Table names that do not parse.
    for (case, table) in [
        ("empty table name", ""),
        ("three-part table name", "a.b.c"),
        ("unterminated quote", "\"items"),
    ] {
        refused(
            &client,
            case,
            || {
                ConsumerBuilder::new(config.clone(), "g3")
                    .add_table(table, StartLocation::Latest)
                    .build()
            },
            Error::is_config,
            "",
        )
        .await;
        cases += 1;
    }

    // 7. A group left without tables.
    refused(
        &client,
        "a group without tables",
        || ConsumerBuilder::new(config.clone(), "g4").build(),
        Error::is_config,
        "reads no tables",
    )
    .await;
    cases += 1;

    // 8. Deleting a group that does not exist.
    refused(
        &client,
        "delete a missing group",
        || delete_group(&config, "nosuch group", true),
        Error::is_not_found,
        "nosuch group",
    )
    .await;
    cases += 1;

    // 9. A wrong password, and a database that does not exist.
    let mut wrong = db.config();
    wrong.user("no_such_role").password("wrong");
    refused(
        &client,
        "unknown role / wrong password",
        || builder(&ConnectConfig::new(wrong.clone()), "g5").build(),
        |e| !e.is_transient(),
        "no_such_role",
    )
    .await;
    let mut nodb = db.config();
    nodb.dbname("no_such_database");
    refused(
        &client,
        "a database that does not exist",
        || builder(&ConnectConfig::new(nodb.clone()), "g6").build(),
        |e| !e.is_transient(),
        "no_such_database",
    )
    .await;
    cases += 2;

    // 10. Something that is not a table.
    client
        .batch_execute("CREATE VIEW items_view AS SELECT * FROM items")
        .await
        .unwrap();
    refused(
        &client,
        "enable a view",
        || enable_change_streaming(&config, "items_view", true),
        |e| e.is_config() || e.is_not_found(),
        "items_view",
    )
    .await;
    cases += 1;

    // 11. Negative limits: the command line refuses them (cli/tests/cli.rs); the library's
    // are unsigned.

    // 12. A start location in the future.
    let future: Lsn = "FFFF/0".parse().unwrap();
    let before = state(&client).await;
    match ConsumerBuilder::new(config.clone(), "future lsn")
        .add_table("items", StartLocation::AtLsn(future))
        .reconnect_timeout(Duration::from_secs(3))
        .build()
        .await
    {
        // Accepted as a lower bound: nothing before it is delivered, the group exists.
        Ok(mut consumer) => {
            client
                .execute("INSERT INTO items VALUES (1, 'a')", &[])
                .await
                .unwrap();
            let bundle = consumer.poll(10, Duration::from_millis(500)).await.unwrap();
            assert!(bundle.is_empty(), "a change before the start location");
            consumer.close().await.unwrap();
            delete_group(&config, "future lsn", false).await.unwrap();
            client.execute("DELETE FROM items", &[]).await.unwrap();
        }
        Err(e) => {
            assert!(e.is_config(), "{e}");
            assert_eq!(state(&client).await, before);
        }
    }
    cases += 1;

    eprintln!("bad input: {cases} cases");
    assert!(cases >= 18);
}

#[tokio::test]
async fn hostile_names_are_quoted_and_consumed_never_executed() {
    let (_db, client, _config) = setup().await;
    let config = ConnectConfig::new(_db.config());
    let tables = [
        r#""we""ird; DROP TABLE items; --""#,
        r#""with space""#,
        r#""ünïcødé 表""#,
        r#""Mixed"."CASE""#,
    ];
    client
        .batch_execute(r#"CREATE SCHEMA "Mixed""#)
        .await
        .unwrap();
    for table in tables {
        client
            .batch_execute(&format!("CREATE TABLE {table} (id int PRIMARY KEY)"))
            .await
            .unwrap();
        enable_change_streaming(&config, table, true).await.unwrap();
    }
    let group = "g'; DROP TABLE items; --\"";
    let mut b = ConsumerBuilder::new(config.clone(), group).commit_mode(CommitMode::Manual);
    for table in tables {
        b = b.add_table(table, StartLocation::Latest);
    }
    let mut consumer = b.build().await.unwrap();
    for (i, table) in tables.iter().enumerate() {
        client
            .batch_execute(&format!("INSERT INTO {table} VALUES ({i})"))
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while got.len() < tables.len() {
        assert!(std::time::Instant::now() < deadline, "got {got:?}");
        let bundle = consumer.poll(10, Duration::from_millis(300)).await.unwrap();
        for r in bundle.records() {
            let relation = r.relation().unwrap();
            got.push(format!("{}.{}", relation.schema(), relation.name()));
        }
    }
    assert_eq!(
        got,
        [
            "public.we\"ird; DROP TABLE items; --",
            "public.with space",
            "public.ünïcødé 表",
            "Mixed.CASE"
        ]
    );
    consumer.commit().await.unwrap();
    consumer.close().await.unwrap();
    let items: bool = client
        .query_one("SELECT to_regclass('items') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(items, "a name was executed as SQL");
    delete_group(&config, group, false).await.unwrap();
}

#[tokio::test]
async fn the_same_group_id_in_two_databases_are_two_groups() {
    let (_a, client_a, config_a) = setup().await;
    let (_b, client_b, config_b) = setup().await;
    let mut a = builder(&config_a, "billing").build().await.unwrap();
    let mut b = builder(&config_b, "billing").build().await.unwrap();
    for client in [&client_a, &client_b] {
        client
            .execute("INSERT INTO items VALUES (1, 'a')", &[])
            .await
            .unwrap();
    }
    for consumer in [&mut a, &mut b] {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let bundle = consumer.poll(10, Duration::from_millis(300)).await.unwrap();
            if !bundle.is_empty() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "nothing arrived");
        }
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
    // Deleting one must not touch the other's slot.
    delete_group(&config_a, "billing", false).await.unwrap();
    let mut b = builder(&config_b, "billing").build().await.unwrap();
    b.poll(10, Duration::from_millis(300)).await.unwrap();
    b.close().await.unwrap();
}

/// A TCP server that answers like something else (an HTTP server), or closes at once.
async fn impostor(reply: &'static [u8]) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(reply).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    port
}

/// A server that negotiates like PostgreSQL 14: no SSL, trust authentication, then
/// `server_version` 14.11.
async fn postgres_14() -> u16 {
    let mut reply = Vec::new();
    reply.push(b'N'); // no SSL
                      // AuthenticationOk
    reply.extend_from_slice(&[b'R', 0, 0, 0, 8, 0, 0, 0, 0]);
    for (name, value) in [
        ("server_version", "14.11"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("integer_datetimes", "on"),
    ] {
        let body = [name.as_bytes(), &[0], value.as_bytes(), &[0]].concat();
        reply.push(b'S');
        reply.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        reply.extend_from_slice(&body);
    }
    reply.extend_from_slice(&[b'K', 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 2]);
    reply.extend_from_slice(&[b'Z', 0, 0, 0, 5, b'I']);
    let reply: &'static [u8] = Box::leak(reply.into_boxed_slice());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                // An SSLRequest (answered 'N') perhaps, then the startup packet.
                let n = socket.read(&mut buf).await.unwrap_or(0);
                if n == 8 && buf[4..8] == [0x04, 0xd2, 0x16, 0x2f] {
                    let _ = socket.write_all(&reply[..1]).await;
                    let _ = socket.read(&mut buf).await;
                }
                let _ = socket.write_all(&reply[1..]).await;
                // Then whatever is asked: an error, and keep the socket a moment.
                let _ = socket.read(&mut buf).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            });
        }
    });
    port
}

fn to_port(port: u16) -> ConnectConfig {
    let mut pg = tokio_postgres::Config::new();
    pg.host("127.0.0.1")
        .port(port)
        .user("postgres")
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(5));
    ConnectConfig::new(pg)
}

#[tokio::test]
async fn a_server_that_is_not_postgresql_or_too_old_is_a_clear_error() {
    let http = impostor(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
    let closing = impostor(b"").await;
    for (case, port) in [
        ("an HTTP server", http),
        ("a server that hangs up", closing),
    ] {
        let result = tokio::time::timeout(
            Duration::from_secs(20),
            builder(&to_port(port), "g").build(),
        )
        .await
        .unwrap_or_else(|_| panic!("{case}: no answer within 20 s"));
        let e = result.err().unwrap_or_else(|| panic!("{case}: accepted"));
        eprintln!("{case}: {e}");
        assert!(!e.to_string().is_empty());
    }
}

#[tokio::test]
async fn a_server_older_than_15_is_refused_at_connect() {
    let old = postgres_14().await;
    let mut pg = to_port(old);
    pg.set_ssl_mode(pg_changestream::config::SslMode::Disable);
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        pg_changestream::wire::ReplicationConnection::connect(&pg),
    )
    .await
    .expect("an answer within 20 s");
    match result {
        Ok(_) => panic!("PostgreSQL 14 accepted"),
        Err(e) => {
            eprintln!("PostgreSQL 14: {e}");
            assert!(e.is_server_setup(), "{e}");
            assert!(e.to_string().contains("15"), "{e}");
        }
    }
}

#[tokio::test]
async fn wal_level_not_logical_is_a_setup_error_that_changes_nothing() {
    let server = server();
    if !server.is_local() {
        eprintln!("wal_level test: skipped, the test server is not a local cluster");
        return;
    }
    let options = pg_changestream::testing::ClusterOptions {
        bin_dir: server.bin_dir().map(std::path::Path::to_path_buf),
        settings: vec![("wal_level".into(), "replica".into())],
        ssl: false,
    };
    let cluster =
        tokio::task::spawn_blocking(move || pg_changestream::testing::LocalCluster::start(options))
            .await
            .unwrap()
            .unwrap();
    let (client, connection) = cluster
        .admin_config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute("CREATE TABLE items (id int PRIMARY KEY)")
        .await
        .unwrap();
    let config = ConnectConfig::new(cluster.admin_config());
    refused(
        &client,
        "enable with wal_level=replica",
        || enable_change_streaming(&config, "items", true),
        Error::is_server_setup,
        "wal_level",
    )
    .await;
    refused(
        &client,
        "consume with wal_level=replica",
        || builder(&config, "g").build(),
        Error::is_server_setup,
        "wal_level",
    )
    .await;
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_role_without_replication_is_a_setup_error_that_changes_nothing() {
    let db = server().create_database().await.unwrap();
    let client = db.connect().await.unwrap();
    let role = db.unique_name("norepl");
    client
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN;
             GRANT CREATE ON DATABASE {} TO {role};
             CREATE TABLE items (id int PRIMARY KEY, v text);
             ALTER TABLE items OWNER TO {role};",
            db.name()
        ))
        .await
        .unwrap();
    let mut pg = db.config();
    pg.user(&role);
    let config = ConnectConfig::new(pg);
    // Everything but REPLICATION: the role enables its own table.
    enable_change_streaming(&config, "items", false)
        .await
        .unwrap();
    let before = state(&client).await;
    let e = builder(&config, "g").build().await.unwrap_err();
    eprintln!("consume without REPLICATION: {e:?}");
    assert_eq!(
        state(&client).await,
        before,
        "a failed build left objects behind"
    );
    refused(
        &client,
        "consume without REPLICATION",
        || builder(&config, "g").build(),
        Error::is_server_setup,
        "replication",
    )
    .await;
}

#[tokio::test]
async fn sql_errors_carry_the_server_message() {
    let db = server().create_database().await.unwrap();
    let mut wrong = db.config();
    wrong.user("no_such_role").password("wrong");
    let e = builder(&ConnectConfig::new(wrong), "g")
        .build()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
}

#[tokio::test]
async fn conflicting_start_locations_are_a_config_error() {
    let (_db, client, config) = setup().await;
    refused(
        &client,
        "two start locations for one table",
        || {
            ConsumerBuilder::new(config.clone(), "g7")
                .add_table("items", StartLocation::Latest)
                .add_table("public.items", StartLocation::AtLsn(Lsn::new(1)))
                .build()
        },
        Error::is_config,
        "items",
    )
    .await;
}
