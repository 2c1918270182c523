//! The command line, as clap derive types: the doc comments are the help text.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Change streams from PostgreSQL logical replication (pgoutput), with consumer groups.
///
/// Connection: --url, else DATABASE_URL, else the libpq variables (PGHOST, PGPORT, PGUSER,
/// PGPASSWORD, PGDATABASE, PGSSLMODE, PGSSLROOTCERT, ...). Records go to stdout, logs to
/// stderr (-v, -vv or RUST_LOG). Exit status: 0 success, 2 usage or configuration error,
/// 1 anything else.
#[derive(Debug, Parser)]
#[command(name = "pg-changestream", version, max_term_width = 100)]
pub struct Cli {
    /// Connection string: postgres://user:password@host:port/db?sslmode=... or libpq
    /// key=value pairs.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub url: Option<String>,

    /// More log output on stderr: -v info, -vv debug, -vvv trace (RUST_LOG overrides).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a throwaway PostgreSQL, stream a scripted workload through a consumer group,
    /// print the records and the group status, and stop the server again.
    Demo(DemoArgs),
    /// Enable change streaming for a table (with before-images unless told otherwise).
    Enable {
        /// The table: name, schema.name, or "Quoted"."Names".
        table: String,
        /// Keep the table's own replica identity: updates then carry no old row and
        /// deletes only the old key.
        #[arg(long)]
        no_before_images: bool,
    },
    /// Disable change streaming for a table and restore its original replica identity.
    Disable {
        /// The table: name, schema.name, or "Quoted"."Names".
        table: String,
    },
    /// Read a consumer group's changes and print one JSON object per record and line.
    Tail(Box<TailArgs>),
    /// Publish a consumer group's records into a NATS JetStream stream, exactly once: the
    /// group commits only what the stream acknowledged, and each message's Nats-Msg-Id
    /// (<group>:<event id>) lets the stream drop what is published again after a restart.
    Publish(Box<PublishArgs>),
    /// List consumer groups: their tables with start locations, partitions and members.
    Groups {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show each partition of a group (or of every group): slot, walsender, committed
    /// position, lag, retained WAL.
    Status {
        /// The group; every group when left out.
        group: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete a consumer group: its slots, publications and stored state.
    DeleteGroup {
        /// The group.
        group: String,
        /// Also when a consumer is attached (its walsender is terminated).
        #[arg(long)]
        force: bool,
    },
}

/// `demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory of initdb, pg_ctl and postgres (else PG_BIN, `pg_config --bindir`, or the
    /// newest /usr/lib/postgresql/*/bin).
    #[arg(long, value_name = "DIR")]
    pub pg_bin: Option<PathBuf>,
}

/// `tail` options.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// The consumer group (created on first use).
    #[arg(long, short)]
    pub group: String,

    /// A table to read, TABLE[@LOCATION]; repeat for more. LOCATION applies when the table
    /// is new to the group: first-uncommitted (default) and earliest deliver the existing
    /// rows first (`read` records), then every change; latest, time=<RFC 3339> and
    /// lsn=<X/Y> deliver changes only.
    #[arg(
        long = "table",
        short = 't',
        value_name = "TABLE[@LOCATION]",
        required = true
    )]
    pub tables: Vec<String>,

    /// Only rows of TABLE for which CONDITION (SQL, evaluated by PostgreSQL) is true, e.g.
    /// --where "shop.orders=status <> 'draft'"; repeatable, one per table. Stored with the
    /// group: a table named in --where, --columns or --exclude-columns gets exactly what
    /// these say (TABLE= with nothing after it clears); a table named in none keeps what
    /// the group stores. Without before-images only key columns may appear in CONDITION.
    #[arg(long = "where", value_name = "TABLE=CONDITION")]
    pub filters: Vec<String>,

    /// Only these columns of TABLE (comma-separated; the key columns are always
    /// included), e.g. --columns shop.orders=id,status; repeatable, one per table.
    #[arg(long = "columns", value_name = "TABLE=COLUMN,...")]
    pub columns: Vec<String>,

    /// Leave these columns of TABLE out of every record (after, before, key), e.g.
    /// --exclude-columns shop.orders=email,phone; repeatable, one per table. Key columns
    /// cannot be left out.
    #[arg(long = "exclude-columns", value_name = "TABLE=COLUMN,...")]
    pub exclude_columns: Vec<String>,

    /// Records per poll (and per commit).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,

    /// Commit and exit after this many records.
    #[arg(long, value_name = "N")]
    pub max_records: Option<u64>,

    /// Commit and exit after this many seconds with nothing new (decimals allowed).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub idle_exit: Option<Duration>,

    /// Operations to deliver (comma-separated); all when left out.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub ops: Vec<OpArg>,

    /// Also deliver logical messages (pg_logical_emit_message) with this prefix; repeatable.
    #[arg(long = "messages", value_name = "PREFIX")]
    pub message_prefixes: Vec<String>,

    /// Partitions of a new group (1 to 64; fixed when the group is created). Leave it out to
    /// use an existing group as it is; a new group then gets 1.
    #[arg(long, value_name = "N")]
    pub partitions: Option<u32>,

    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9187.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

/// `publish` options.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The consumer group (created on first use).
    #[arg(long, short)]
    pub group: String,

    /// A table to read, TABLE[@LOCATION]; repeat for more (as for `tail`).
    #[arg(
        long = "table",
        short = 't',
        value_name = "TABLE[@LOCATION]",
        required = true
    )]
    pub tables: Vec<String>,

    /// The NATS server(s), comma-separated: nats://host:4222 (tls://host:4222 for TLS).
    #[arg(long, value_name = "URL", env = "NATS_URL")]
    pub nats: String,

    /// The JetStream stream; created (file storage) when missing.
    #[arg(long, value_name = "NAME", default_value = "CHANGESTREAM")]
    pub stream: String,

    /// The first token(s) of every subject: <prefix>.<schema>.<table>.
    #[arg(long, value_name = "P", default_value = "changestream")]
    pub subject_prefix: String,

    /// The subject of a row change, from {prefix}, {schema}, {table} and {op}.
    #[arg(long, value_name = "TEMPLATE", default_value = pg_changestream::sink::DEFAULT_TEMPLATE)]
    pub subject_template: String,

    /// Add a last subject token <p> = hash(key) mod N, so consumers can split a table's
    /// subject by key and keep each key's order.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub key_partitions: Option<u32>,

    /// A NATS credentials file (JWT and NKey seed).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["token", "user"])]
    pub creds: Option<PathBuf>,

    /// A NATS token.
    #[arg(
        long,
        env = "NATS_TOKEN",
        hide_env_values = true,
        conflicts_with = "user"
    )]
    pub token: Option<String>,

    /// A NATS user (with --password).
    #[arg(long, requires = "password")]
    pub user: Option<String>,

    /// The NATS user's password.
    #[arg(long, env = "NATS_PASSWORD", hide_env_values = true, requires = "user")]
    pub password: Option<String>,

    /// Require TLS to the NATS server.
    #[arg(long)]
    pub tls: bool,

    /// The longest this publisher may be down (in seconds) with its repeats still dropped:
    /// the duplicate window of a stream it creates; an existing stream's shorter window is
    /// a warning. The server keeps every id of the window in memory.
    #[arg(long, value_name = "SECONDS", default_value = "3600", value_parser = parse_seconds)]
    pub max_restart: Duration,

    /// Replicas of a stream it creates (3 on a NATS cluster).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=5))]
    pub replicas: u32,

    /// Seconds to wait for the next acknowledgement before reconnecting and publishing again
    /// from the committed cursor.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub ack_timeout: Duration,

    /// Messages published and not yet acknowledged, at most.
    #[arg(long, value_name = "N", default_value_t = 16384, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,

    /// Records per poll.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,

    /// Commit and exit after this many records.
    #[arg(long, value_name = "N")]
    pub max_records: Option<u64>,

    /// Commit and exit after this many seconds with nothing new (decimals allowed).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub idle_exit: Option<Duration>,

    /// Also publish logical messages (pg_logical_emit_message) with this prefix; repeatable.
    #[arg(long = "messages", value_name = "PREFIX")]
    pub message_prefixes: Vec<String>,

    /// Partitions of a new group (1 to 64), as for `tail`.
    #[arg(long, value_name = "N")]
    pub partitions: Option<u32>,

    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9187.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

/// An operation for `--ops`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OpArg {
    /// Inserted rows.
    Insert,
    /// Updated rows.
    Update,
    /// Deleted rows.
    Delete,
    /// Truncated tables.
    Truncate,
    /// Existing rows delivered by a backfill.
    Read,
}

impl OpArg {
    /// The library's operation.
    pub fn op(self) -> pg_changestream::consumer::Op {
        use pg_changestream::consumer::Op;
        match self {
            OpArg::Insert => Op::Insert,
            OpArg::Update => Op::Update,
            OpArg::Delete => Op::Delete,
            OpArg::Truncate => Op::Truncate,
            OpArg::Read => Op::Read,
        }
    }
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is not a number of seconds ≥ 0"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn tail_flags_parse() {
        let cli = Cli::try_parse_from([
            "pg-changestream",
            "tail",
            "--group",
            "g",
            "--table",
            "orders@latest",
            "-t",
            "s.t",
            "--ops",
            "insert,delete",
            "--idle-exit",
            "0.5",
            "--max-records",
            "3",
        ])
        .unwrap();
        let Command::Tail(tail) = cli.command else {
            panic!("not tail")
        };
        assert_eq!(tail.tables, ["orders@latest", "s.t"]);
        assert_eq!(tail.ops, [OpArg::Insert, OpArg::Delete]);
        assert_eq!(tail.idle_exit, Some(Duration::from_millis(500)));
        assert_eq!(tail.max_records, Some(3));
        assert_eq!(tail.limit, 1000);
    }

    #[test]
    fn publish_flags_parse() {
        let cli = Cli::try_parse_from([
            "pg-changestream",
            "publish",
            "-g",
            "g",
            "-t",
            "orders",
            "--nats",
            "nats://127.0.0.1:4222",
            "--user",
            "u",
            "--password",
            "p",
            "--key-partitions",
            "8",
        ])
        .unwrap();
        let Command::Publish(p) = cli.command else {
            panic!("not publish")
        };
        assert_eq!(p.stream, "CHANGESTREAM");
        assert_eq!(p.subject_prefix, "changestream");
        assert_eq!(p.max_restart, Duration::from_secs(3600));
        assert_eq!((p.user.as_deref(), p.key_partitions), (Some("u"), Some(8)));
        for bad in [
            &["--user", "u"][..],
            &["--creds", "f", "--token", "t"],
            &["--key-partitions", "0"],
        ] {
            let mut args = vec![
                "pg-changestream",
                "publish",
                "-g",
                "g",
                "-t",
                "t",
                "--nats",
                "n",
            ];
            args.extend_from_slice(bad);
            assert!(Cli::try_parse_from(&args).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["pg-changestream", "tail", "--group", "g"][..],
            &[
                "pg-changestream",
                "tail",
                "-g",
                "g",
                "-t",
                "x",
                "--idle-exit",
                "-1",
            ],
            &[
                "pg-changestream",
                "tail",
                "-g",
                "g",
                "-t",
                "x",
                "--ops",
                "upsert",
            ],
            &["pg-changestream", "frobnicate"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
