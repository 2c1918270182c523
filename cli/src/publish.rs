//! `publish`: a consumer group's records into a NATS JetStream stream, exactly once.
//!
//! The broker is checked first (reachable, credentials accepted, stream there or created,
//! subjects its own) and only then is the group joined: a bad `--nats`, stream or
//! credentials leaves the group untouched. The loop is the library's
//! [`pg_changestream::sink::run`]; each message's payload is the record's JSON line (the
//! bytes `tail` prints, without the newline).
//!
//! SIGINT and SIGTERM stop polling; what was published is awaited, committed, and the exit
//! status is 0. A broker that stays unreachable at that point means exit status 1 with
//! nothing more committed.

use pg_changestream::sink::{self, DriverOptions, SinkError};
use pg_changestream::sink::{Auth, Encoder, JetStreamConfig, JetStreamSink, ProgressRow, Subjects};
use pg_changestream::ConnectConfig;

use crate::args::PublishArgs;
use crate::failure::Failure;
use crate::metrics;
use crate::source::{self, Spec};
use crate::tail::stop_on_signals;

/// `publish`.
pub async fn publish(config: &ConnectConfig, args: PublishArgs) -> Result<(), Failure> {
    let tables = args
        .tables
        .iter()
        .map(|t| source::parse_table_arg(t))
        .collect::<Result<Vec<_>, _>>()?;
    let subjects = Subjects::new(
        &args.subject_prefix,
        &args.subject_template,
        args.key_partitions,
    )
    .map_err(failure)?;
    let mut js = JetStreamConfig::new(&args.nats, &args.stream, subjects.stream_filters());
    js.auth = match (&args.creds, &args.token, &args.user, &args.password) {
        (Some(path), _, _, _) => Auth::CredsFile(path.clone()),
        (_, Some(token), _, _) => Auth::Token(token.clone()),
        (_, _, Some(user), Some(password)) => Auth::UserPassword(user.clone(), password.clone()),
        _ => Auth::None,
    };
    js.tls = args.tls;
    js.max_restart = args.max_restart;
    js.replicas = args.replicas as usize;
    js.ack_timeout = args.ack_timeout;
    js.client_name = format!("pg-changestream publish {}", args.group);
    let target = format!("{} stream {}", args.nats, args.stream);

    if let Some(addr) = args.metrics_addr {
        metrics::export(addr).await?;
    }
    let stop = stop_on_signals()?;
    // The broker first: nothing of the group is touched when it is not usable.
    let mut sink = JetStreamSink::connect(js).await.map_err(failure)?;
    let spec = Spec {
        group: args.group.clone(),
        // The filter and columns the group stored for each table (set them with `tail`).
        tables: tables.into_iter().map(|(t, l)| (t, l, None)).collect(),
        ops: Vec::new(),
        message_prefixes: args.message_prefixes.clone(),
        partitions: args.partitions,
    };
    let mut source = source::open(config, spec).await?;
    let mut encoder = Encoder::new(&args.group, subjects);
    let mut progress = ProgressRow::new(config.clone(), &args.group, "jetstream", &target);
    let options = DriverOptions {
        per_poll: args.limit as usize,
        max_in_flight: args.max_in_flight as usize,
        max_records: args.max_records,
        idle_exit: args.idle_exit,
        ..DriverOptions::default()
    };
    let result = sink::run(
        source.consumer_mut(),
        &mut sink,
        &mut encoder,
        Some(&mut progress),
        &options,
        &stop,
    )
    .await;
    let closed = source.close().await;
    let outcome = result.map_err(failure)?;
    tracing::info!(
        committed = outcome.committed,
        duplicates = sink.duplicates().load(std::sync::atomic::Ordering::Relaxed),
        "publish finished"
    );
    closed
}

/// A sink failure as an exit status: 2 when the user must change something.
fn failure(e: SinkError) -> Failure {
    match e {
        SinkError::Source(e) => Failure::from(e),
        e if e.is_config() => Failure::usage(e.to_string()),
        e => Failure::other(e.to_string()),
    }
}
