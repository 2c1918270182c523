//! A TCP fault proxy on loopback for the fault scenarios (`faults.rs`): it forwards every
//! connection to the server and, while armed, injects faults at random points — cuts (both
//! directions closed after a random number of bytes, so mostly in the middle of a protocol
//! frame) and stalls (one direction stops forwarding for a while, then carries on).
//!
//! Every decision comes from a seeded generator per connection and direction, keyed by the
//! byte count, not the clock, so a seed replays the same faults at the same byte offsets of
//! the same connections. The seed is printed; `PG_CHANGESTREAM_FAULT_SEED` sets it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The environment variable that replays a run's faults.
pub const SEED_ENV: &str = "PG_CHANGESTREAM_FAULT_SEED";

/// The seed of `SEED_ENV`, or a fresh one; printed either way so a failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("{test}: fault seed {seed} (replay with {SEED_ENV}={seed})");
    seed
}

/// What happened so far.
#[derive(Debug, Default)]
pub struct ProxyCounts {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections cut (both directions closed at a random byte).
    pub cuts: AtomicU64,
    /// Stalls injected.
    pub stalls: AtomicU64,
}

struct Shared {
    seed: u64,
    armed: AtomicBool,
    /// Faults still to inject (cuts and stalls).
    budget: AtomicUsize,
    /// The most bytes a direction forwards before its next fault is due.
    max_gap: usize,
    counts: ProxyCounts,
    /// Replication connections up to this number are black holes: everything is
    /// swallowed both ways and nothing is closed (see `FaultProxy::blackhole_replication`).
    blackhole_upto: AtomicU64,
}

/// The proxy; dropping it stops accepting (live connections end with their peers).
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `upstream`. Unarmed at first.
    /// A fault is due within `max_gap` bytes of each direction of a connection.
    pub async fn start(upstream: SocketAddr, seed: u64, max_gap: usize) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            seed,
            armed: AtomicBool::new(false),
            budget: AtomicUsize::new(0),
            max_gap: max_gap.max(1),
            counts: ProxyCounts::default(),
            blackhole_upto: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, upstream, Arc::clone(&shared)));
        FaultProxy {
            addr,
            shared,
            accept,
        }
    }

    /// The port to connect to instead of the server's.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Injects up to `faults` more faults (cuts and stalls) from now on.
    pub fn arm(&self, faults: usize) {
        self.shared.budget.store(faults, Ordering::SeqCst);
        self.shared.armed.store(true, Ordering::SeqCst);
    }

    /// Stops injecting faults; connections carry on normally.
    pub fn disarm(&self) {
        self.shared.armed.store(false, Ordering::SeqCst);
    }

    /// Faults not yet injected of those armed.
    pub fn remaining(&self) -> usize {
        self.shared.budget.load(Ordering::SeqCst)
    }

    /// Turns every replication connection open now into a black hole, as a network that
    /// drops everything would: no byte goes through either way, no FIN or reset reaches
    /// the client, ever (also after the server gives up). Later connections work.
    /// Replication connections are told by their startup packet, so only plaintext ones.
    pub fn blackhole_replication(&self) {
        let upto = self.shared.counts.connections.load(Ordering::SeqCst);
        self.shared.blackhole_upto.store(upto, Ordering::SeqCst);
    }

    /// The counters.
    pub fn counts(&self) -> &ProxyCounts {
        &self.shared.counts
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    let mut number: u64 = 0;
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        number += 1;
        shared.counts.connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(serve(client, upstream, Arc::clone(&shared), number));
    }
}

/// How a pump ended.
enum End {
    /// A peer closed or failed: close the other side too.
    Closed,
    /// An injected cut.
    Cut,
}

async fn serve(client: TcpStream, upstream: SocketAddr, shared: Arc<Shared>, number: u64) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // One generator per direction, derived from the seed and the connection's number.
    let base = shared
        .seed
        .wrapping_add(number.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let replication = Arc::new(AtomicBool::new(false));
    let hole = Hole {
        number,
        replication: Arc::clone(&replication),
        upstream: true,
    };
    let upstream_pump = pump(client_read, server_write, Arc::clone(&shared), base, hole);
    let hole = Hole {
        number,
        replication,
        upstream: false,
    };
    let downstream_pump = pump(server_read, client_write, Arc::clone(&shared), !base, hole);
    // Whichever direction ends first ends the connection: dropping the halves closes both
    // sockets (a cut the peers see as a connection reset or an end of file).
    tokio::select! {
        _ = upstream_pump => {}
        _ = downstream_pump => {}
    }
}

/// What a pump needs to know to act as a black hole.
struct Hole {
    number: u64,
    /// Set once the client's startup packet asked for a replication connection.
    replication: Arc<AtomicBool>,
    /// Client to server.
    upstream: bool,
}

impl Hole {
    fn active(&self, shared: &Shared) -> bool {
        self.replication.load(Ordering::SeqCst)
            && self.number <= shared.blackhole_upto.load(Ordering::SeqCst)
    }
}

/// Forwards bytes one way; at each due offset (while armed and budget remains) cuts or
/// stalls.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: Arc<Shared>,
    seed: u64,
    hole: Hole,
) -> End {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut due = rng.usize(0..shared.max_gap);
    let mut buf = vec![0u8; 16 * 1024];
    let mut first = true;
    loop {
        let n = match from.read(&mut buf).await {
            // A black hole keeps the client's socket open after the server closed.
            Ok(0) | Err(_) if !hole.upstream && hole.active(&shared) => {
                std::future::pending::<()>().await;
                return End::Closed;
            }
            Ok(0) | Err(_) => return End::Closed,
            Ok(n) => n,
        };
        if hole.upstream && first {
            // The startup packet (perhaps after an SSLRequest, which is 8 bytes).
            let startup = &buf[..n];
            if startup.windows(12).any(|w| w == b"replication\0") {
                hole.replication.store(true, Ordering::SeqCst);
            }
            first = n == 8;
        }
        if hole.active(&shared) {
            continue;
        }
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            if due >= chunk.len() {
                due -= chunk.len();
                if to.write_all(chunk).await.is_err() {
                    return End::Closed;
                }
                break;
            }
            // The fault is due inside this chunk: forward up to it.
            let (head, tail) = chunk.split_at(due);
            if to.write_all(head).await.is_err() {
                return End::Closed;
            }
            chunk = tail;
            let cut = rng.u8(0..10) < 6;
            let stall = Duration::from_millis(rng.u64(50..1500));
            due = rng.usize(1..shared.max_gap.max(2));
            if !shared.armed.load(Ordering::SeqCst) || !take_budget(&shared) {
                continue;
            }
            if cut {
                shared.counts.cuts.fetch_add(1, Ordering::Relaxed);
                return End::Cut;
            }
            shared.counts.stalls.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(stall).await;
        }
    }
}

fn take_budget(shared: &Shared) -> bool {
    shared
        .budget
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
        .is_ok()
}
