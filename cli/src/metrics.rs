//! Prometheus metrics for `tail --metrics-addr ADDR`: counters kept by the tail loop and a
//! tiny HTTP/1.1 responder on a tokio `TcpListener` that serves them as Prometheus text at
//! `GET /metrics`.
//!
//! A full HTTP stack would be the heaviest dependency of the tool for one fixed page; the
//! responder reads one request head (bounded in size and time), answers and closes the
//! connection, which is all a Prometheus scraper needs.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pg_changestream::decode::record::Op;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::failure::Failure;

/// The operations counted, in output order.
const OPS: [Op; 7] = [
    Op::Insert,
    Op::Update,
    Op::Delete,
    Op::Truncate,
    Op::Read,
    Op::Message,
    Op::Schema,
];

/// The largest request head read before answering 431.
const MAX_HEAD: usize = 8 * 1024;

/// Counters of one `tail`, shared with the HTTP responder.
#[derive(Debug)]
pub struct Metrics {
    group: String,
    records: [AtomicU64; 7],
    committed: AtomicU64,
    committed_lsn: AtomicU64,
    lag_bytes: AtomicU64,
    reconnects: AtomicU64,
    commit_lag_micros: AtomicU64,
    /// `publish`'s figures, when it runs.
    sink: std::sync::OnceLock<Arc<pg_changestream::sink::Counters>>,
}

impl Metrics {
    /// Zeroed counters for `group`.
    pub fn new(group: &str) -> Metrics {
        Metrics {
            group: group.to_owned(),
            records: Default::default(),
            committed: AtomicU64::new(0),
            committed_lsn: AtomicU64::new(0),
            lag_bytes: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            commit_lag_micros: AtomicU64::new(0),
            sink: std::sync::OnceLock::new(),
        }
    }

    /// Serves `publish`'s counters too (published, acknowledged, in flight, reconnects,
    /// commit lag).
    pub fn attach_sink(&self, counters: Arc<pg_changestream::sink::Counters>) {
        let _ = self.sink.set(counters);
    }

    /// Counts a record written to stdout.
    pub fn written(&self, op: Op) {
        if let Some(i) = OPS.iter().position(|o| *o == op) {
            if let Some(counter) = self.records.get(i) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts records committed, the commit position and the lag behind the server.
    pub fn committed(&self, records: u64, lsn: u64, lag_bytes: u64) {
        self.committed.fetch_add(records, Ordering::Relaxed);
        self.committed_lsn.fetch_max(lsn, Ordering::Relaxed);
        self.lag_bytes.store(lag_bytes, Ordering::Relaxed);
    }

    /// The lag behind the server, when nothing was committed (idle polls).
    pub fn lag(&self, lag_bytes: u64) {
        self.lag_bytes.store(lag_bytes, Ordering::Relaxed);
    }

    /// Takes the consumer's own figures: reconnects and the delay between a record's commit
    /// and its delivery.
    pub fn observe(&self, stats: &pg_changestream::consumer::Stats) {
        self.reconnects.store(stats.reconnects, Ordering::Relaxed);
        if let Some(lag) = stats.commit_lag {
            let micros = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
            self.commit_lag_micros.store(micros, Ordering::Relaxed);
        }
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        if let Some(sink) = self.sink.get() {
            // `publish` commits through its driver: the group's figures come from there.
            self.committed
                .store(sink.committed.load(Ordering::Relaxed), Ordering::Relaxed);
            self.committed_lsn.store(
                sink.committed_lsn.load(Ordering::Relaxed),
                Ordering::Relaxed,
            );
        }
        let group = escape_label(&self.group);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP pg_changestream_records_total Records written to stdout, by operation.\n\
             # TYPE pg_changestream_records_total counter"
        );
        for (op, counter) in OPS.iter().zip(&self.records) {
            let _ = writeln!(
                out,
                "pg_changestream_records_total{{group=\"{group}\",op=\"{op}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let gauges: [(&str, &str, &str, &AtomicU64); 4] = [
            (
                "pg_changestream_committed_records_total",
                "counter",
                "Records committed to the group after they were written.",
                &self.committed,
            ),
            (
                "pg_changestream_committed_lsn",
                "gauge",
                "The group's committed WAL position, as a number.",
                &self.committed_lsn,
            ),
            (
                "pg_changestream_lag_bytes",
                "gauge",
                "WAL bytes between the server's position and the committed position.",
                &self.lag_bytes,
            ),
            (
                "pg_changestream_reconnects_total",
                "counter",
                "Times the replication stream was started again after a transient failure.",
                &self.reconnects,
            ),
        ];
        for (name, kind, help, value) in gauges {
            write_metric(
                &mut out,
                &group,
                name,
                kind,
                help,
                value.load(Ordering::Relaxed),
            );
        }
        write_metric(
            &mut out,
            &group,
            "pg_changestream_commit_lag_seconds",
            "gauge",
            "Time between the commit of the last delivered record and its delivery.",
            self.commit_lag_micros.load(Ordering::Relaxed) as f64 / 1e6,
        );
        if let Some(sink) = self.sink.get() {
            render_sink(&mut out, &group, sink);
        }
        out
    }
}

/// One metric of the exposition: its help, its type and its value for `group`.
fn write_metric(
    out: &mut String,
    group: &str,
    name: &str,
    kind: &str,
    help: &str,
    value: impl std::fmt::Display,
) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{group=\"{group}\"}} {value}"
    );
}

/// `publish`'s lines of the exposition.
fn render_sink(out: &mut String, group: &str, sink: &pg_changestream::sink::Counters) {
    let lines: [(&str, &str, &str, &AtomicU64); 4] = [
        (
            "pg_changestream_sink_published_total",
            "counter",
            "Records handed to the broker (repeats after a reconnect count again).",
            &sink.published,
        ),
        (
            "pg_changestream_sink_acked_total",
            "counter",
            "Records the broker acknowledged and the group then committed.",
            &sink.acked,
        ),
        (
            "pg_changestream_sink_in_flight",
            "gauge",
            "Messages published and not yet acknowledged.",
            &sink.in_flight,
        ),
        (
            "pg_changestream_sink_reconnects_total",
            "counter",
            "Times the sink reconnected and published again from the committed cursor.",
            &sink.reconnects,
        ),
    ];
    for (name, kind, help, value) in lines {
        write_metric(out, group, name, kind, help, value.load(Ordering::Relaxed));
    }
    write_metric(
        out,
        group,
        "pg_changestream_sink_commit_lag_seconds",
        "gauge",
        "Time between the database commit of the last committed record and its group commit \
         after the broker's acknowledgement.",
        sink.commit_lag_micros.load(Ordering::Relaxed) as f64 / 1e6,
    );
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Binds `addr` and serves `metrics` in a background task; returns the bound address.
///
/// # Errors
/// Exit status 2 when the address cannot be bound (in use, not local).
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<SocketAddr, Failure> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        Failure::usage(format!(
            "--metrics-addr {addr}: cannot listen there ({e}); pick a free local address"
        ))
    })?;
    let bound = listener.local_addr()?;
    tracing::info!(%bound, "serving metrics at http://{bound}/metrics");
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let metrics = Arc::clone(&metrics);
                    tokio::spawn(async move {
                        if let Err(e) = respond(stream, &metrics).await {
                            tracing::debug!(error = %e, "metrics request failed");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener failed to accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(bound)
}

/// Answers one request and closes the connection.
async fn respond(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let complete = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            head.extend_from_slice(buf.get(..n).unwrap_or_default());
            if head.windows(4).any(|w| w == b"\r\n\r\n") {
                return Ok(true);
            }
            if head.len() > MAX_HEAD {
                return Ok(false);
            }
        }
    })
    .await
    .unwrap_or(Ok(false))?;
    let (status, body) = if !complete {
        ("400 Bad Request", "bad request\n".to_owned())
    } else {
        route(&head, metrics)
    };
    let head_only = head.starts_with(b"HEAD ");
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        if head_only { "" } else { body.as_str() }
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// The status line and body for a request head.
fn route(head: &[u8], metrics: &Metrics) -> (&'static str, String) {
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => ("200 OK", metrics.render()),
        ("GET" | "HEAD", _) => ("404 Not Found", "not found; try /metrics\n".into()),
        _ => ("405 Method Not Allowed", "only GET /metrics\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_per_op_with_escaped_labels() {
        let m = Metrics::new("a\"b");
        m.written(Op::Insert);
        m.written(Op::Insert);
        m.written(Op::Message);
        m.committed(3, 0x1_0000_0010, 42);
        let text = m.render();
        assert!(
            text.contains("pg_changestream_records_total{group=\"a\\\"b\",op=\"insert\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("op=\"message\"} 1\n"), "{text}");
        assert!(text.contains("op=\"delete\"} 0\n"), "{text}");
        assert!(text.contains("pg_changestream_committed_records_total{group=\"a\\\"b\"} 3\n"));
        assert!(text.contains("pg_changestream_committed_lsn{group=\"a\\\"b\"} 4294967312\n"));
        assert!(text.contains("pg_changestream_lag_bytes{group=\"a\\\"b\"} 42\n"));
        assert!(text.contains("# TYPE pg_changestream_lag_bytes gauge\n"));
    }

    #[tokio::test]
    async fn serves_metrics_over_http_and_404_elsewhere() {
        let m = Arc::new(Metrics::new("g"));
        m.written(Op::Update);
        let addr = serve("127.0.0.1:0".parse().unwrap(), m).await.unwrap();
        for (request, want_status, want_body) in [
            (
                "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                "200 OK",
                "op=\"update\"} 1",
            ),
            (
                "GET /nope HTTP/1.1\r\n\r\n",
                "404 Not Found",
                "try /metrics",
            ),
            ("POST /metrics HTTP/1.1\r\n\r\n", "405", "only GET"),
        ] {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(request.as_bytes()).await.unwrap();
            let mut response = String::new();
            s.read_to_string(&mut response).await.unwrap();
            assert!(
                response.starts_with(&format!("HTTP/1.1 {want_status}")),
                "{response}"
            );
            assert!(response.contains(want_body), "{response}");
        }
        let taken = serve(addr, Arc::new(Metrics::new("g"))).await.unwrap_err();
        assert_eq!(taken.code(), 2);
    }
}
