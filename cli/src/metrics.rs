//! Prometheus metrics for `--metrics-addr ADDR`: the library records through the `metrics`
//! facade (names in `pg_changestream::metrics`); this module installs the Prometheus recorder
//! and serves its text at `GET /metrics` with a tiny HTTP/1.1 responder on a tokio
//! `TcpListener`.
//!
//! A full HTTP stack would be the heaviest dependency of the tool for one fixed page; the
//! responder reads one request head (bounded in size and time), answers and closes the
//! connection, which is all a Prometheus scraper needs.

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::failure::Failure;

/// The largest request head read before answering 431.
const MAX_HEAD: usize = 8 * 1024;

/// Installs the Prometheus recorder (before the consumer is built: the library registers its
/// handles then) and serves it at `addr` in a background task; returns the bound address.
///
/// # Errors
/// Exit status 2 when the address cannot be bound (in use, not local).
pub async fn export(addr: SocketAddr) -> Result<SocketAddr, Failure> {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| Failure::other(format!("cannot install the metrics recorder: {e}")))?;
    pg_changestream::metrics::describe();
    serve(addr, handle).await
}

/// Binds `addr` and serves `metrics` in a background task; returns the bound address.
///
/// # Errors
/// Exit status 2 when the address cannot be bound (in use, not local).
async fn serve(addr: SocketAddr, metrics: PrometheusHandle) -> Result<SocketAddr, Failure> {
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
                    let metrics = metrics.clone();
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
async fn respond(mut stream: TcpStream, metrics: &PrometheusHandle) -> std::io::Result<()> {
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
fn route(head: &[u8], metrics: &PrometheusHandle) -> (&'static str, String) {
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

    #[tokio::test]
    async fn serves_metrics_over_http_and_404_elsewhere() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!(pg_changestream::metrics::RECORDS, "group" => "a\"b", "op" => "update")
                .increment(1);
        });
        let addr = serve("127.0.0.1:0".parse().unwrap(), handle.clone())
            .await
            .unwrap();
        for (request, want_status, want_body) in [
            (
                "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                "200 OK",
                "pg_changestream_records_total{group=\"a\\\"b\",op=\"update\"} 1",
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
        let taken = serve(addr, handle).await.unwrap_err();
        assert_eq!(taken.code(), 2);
    }
}
