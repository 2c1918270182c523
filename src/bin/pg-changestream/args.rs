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
    pub fn op(self) -> pg_changestream::decode::record::Op {
        use pg_changestream::decode::record::Op;
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
