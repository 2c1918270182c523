"""What a JetStream publish costs the nats-server, message by message, and which part of it
is the acknowledgement, the headers and the de-duplication id (issue 17; BENCHMARKS.md, the
sink section). No PostgreSQL and no pg-changestream: frames shaped like the sink's (an
insert's ~480-byte JSON line, the headers `Nats-Msg-Id`, `Pg-Op`, `Pg-Table`,
`Pg-Event-Id`, `Pg-Commit-Lsn`) are built in memory first, then written over one plain TCP
connection into a file-storage stream of a fresh `nats-server -js`; the server's CPU
(/proc/PID/stat, user + system) is read before and after each variant.

    python3 bench/nats_variants.py [--server PATH] [--messages N] [--rounds R] [VARIANT...]
    python3 bench/nats_variants.py --check-dedupe      # needs nats-server >= 2.14

Variants (each on a stream of its own; rounds run the variants in turns, medians printed):
  today           every message with a reply subject (one PubAck each) and all headers
  no-msg-id       as today without Nats-Msg-Id (no de-duplication)
  msg-id-only     reply subject, only Nats-Msg-Id
  no-headers      PUB with a reply subject, no headers at all
  sparse-acks     all headers, a reply subject on every 100th message only (not a safe
                  protocol: a message without a reply that the stream drops goes unnoticed)
  fast-batch      ADR-50 fast ingest (nats-server >= 2.14, stream allow_batched): the batch
                  rides in the reply subject, the server acknowledges every --flow messages
  fast-batch-no-msg-id
  atomic-batch    ADR-50 atomic batches of 1000 (>= 2.12, allow_atomic), all headers

--check-dedupe: does Nats-Msg-Id de-duplication hold inside fast batches? A batch of N is
cut off after N/2 (the connection closed, no end of batch), then all N are published again
in a new batch: the stream must hold exactly N, and again N after the whole batch is
published a third time."""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time

HZ = os.sysconf("SC_CLK_TCK")
# The sink's in-flight window (messages written and not yet acknowledged).
WINDOW = 16384
ATOMIC_BATCH = 1000
SPARSE = 100
VARIANTS = ["today", "no-msg-id", "msg-id-only", "no-headers", "sparse-acks", "fast-batch",
            "fast-batch-no-msg-id", "atomic-batch"]


def server_cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


class Conn:
    """One client connection: CONNECT with headers, then raw reads and writes."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.line()  # INFO
        self.sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,'
                          b'"no_responders":true,"echo":false,"protocol":1}\r\nPING\r\n')
        while self.op()[0] != b"PONG":
            pass

    def line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(1 << 20)
            if not data:
                raise EOFError("the server closed the connection")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def op(self):
        """(operation, subject, payload) of the next operation; answers PING."""
        line = self.line()
        op = line.split(b" ", 1)[0]
        if op in (b"MSG", b"HMSG"):
            parts = line.split()
            size = int(parts[-1])
            while len(self.buf) < size + 2:
                self.buf += self.sock.recv(1 << 20)
            body, self.buf = self.buf[:size], self.buf[size + 2:]
            if op == b"HMSG":
                body = body[int(parts[-2]):]
            return op, parts[1], body
        if op == b"PING":
            self.sock.sendall(b"PONG\r\n")
        return op, line, b""

    def request(self, subject, payload):
        """A JetStream API request on a connection with no other subscription."""
        self.sock.sendall(b"SUB _REQ 1\r\nPUB %s _REQ %d\r\n%s\r\n"
                          % (subject.encode(), len(payload), payload))
        while True:
            op, _, body = self.op()
            if op in (b"MSG", b"HMSG"):
                self.sock.sendall(b"UNSUB 1\r\n")
                return json.loads(body)
            if op == b"-ERR":
                raise RuntimeError(body)


def payload(i):
    """An insert of the benchmark's table as the sink's JSON line (about 480 bytes)."""
    lsn = 0x1A2B3C8 + i * 300
    return ('{"event_id":"0/%X:%d","group":"sink_pub_0_1","partition":0,"table":"public.bench",'
            '"op":"insert","commit_lsn":"0/%X","commit_time":"2026-12-05T12:23:15.123456Z",'
            '"xid":%d,"key":{"id":%d},"before":null,"after":{"id":%d,"label":"customer-%d",'
            '"amount":"%d.%02d","created":"2024-01-03T10:20:30Z","attrs":{"qty":%d,'
            '"sku":"SKU-%d","gift":true,"tags":["red","large"]},"padding":"%s"},'
            '"before_image":"full"}'
            % (lsn, i % 100, lsn, 748 + i // 100, i, i, i, i % 10000, i % 100, i % 17,
               i % 9973, "p" * 96)).encode()


def frame(subject, reply, headers, body):
    reply = reply.encode() + b" " if reply else b""
    if not headers:
        return b"PUB %s %s%d\r\n%s\r\n" % (subject.encode(), reply, len(body), body)
    block = b"NATS/1.0\r\n" + b"".join(b"%s: %s\r\n" % (k.encode(), v.encode())
                                       for k, v in headers) + b"\r\n"
    return b"HPUB %s %s%d %d\r\n%s%s\r\n" % (subject.encode(), reply, len(block),
                                             len(block) + len(body), block, body)


def frames(variant, stream, inbox, first, last, flow):
    """The frames of messages first..last (numbering fixes ids and payloads, so a re-publish
    repeats them), and how many messages one acknowledgement stands for."""
    fast = variant.startswith("fast-batch")
    out = []
    for i in range(first, last + 1):
        lsn = "0/%X" % (0x1A2B3C8 + i * 300)
        event_id = "%s:%d" % (lsn, i % 100)
        headers = []
        if variant not in ("no-msg-id", "no-headers", "fast-batch-no-msg-id"):
            headers.append(("Nats-Msg-Id", "sink_pub_0_1:" + event_id))
        if variant not in ("msg-id-only", "no-headers"):
            headers += [("Pg-Op", "insert"), ("Pg-Table", "public.bench"),
                        ("Pg-Event-Id", event_id), ("Pg-Commit-Lsn", lsn)]
        n = i - first + 1  # the position in this batch
        if fast:
            # <inbox>.<flow>.<gap mode>.<batch sequence>.<operation: 0 start, 1 append>.$FI
            reply = "%s.%d.fail.%d.%d.$FI" % (inbox, flow, n, 0 if n == 1 else 1)
        elif variant == "sparse-acks":
            reply = "%s.%d" % (inbox, n) if n % SPARSE == 0 or i == last else None
        elif variant == "atomic-batch":
            seq = (n - 1) % ATOMIC_BATCH + 1
            commit = seq == ATOMIC_BATCH or i == last
            headers += [("Nats-Batch-Id", "%s-%d" % (inbox.replace(".", "-"),
                                                     (n - 1) // ATOMIC_BATCH)),
                        ("Nats-Batch-Sequence", str(seq))]
            if commit:
                headers.append(("Nats-Batch-Commit", "1"))
            # The first message of an atomic batch must be a request (an empty reply).
            reply = "%s.%d" % (inbox, n) if seq == 1 or commit else None
        else:
            reply = "%s.%d" % (inbox, n)
        out.append(frame(stream + ".public.bench", reply, headers, payload(i)))
    per_ack = {"sparse-acks": SPARSE, "atomic-batch": ATOMIC_BATCH}.get(variant, 1)
    return out, per_ack


def publish(port, pid, variant, stream, inbox, first, last, flow=500, cut_at=None):
    """Publishes messages first..last; returns (wall s, server CPU s, the final
    acknowledgement of a fast batch). With cut_at, closes the connection after that many
    messages, without ending the batch."""
    conn = Conn(port)
    fast = variant.startswith("fast-batch")
    todo, per_ack = frames(variant, stream, inbox, first, last, flow)
    total = len(todo)
    state = {"acked": 0, "flow": 0, "final": None, "error": None}
    cond = threading.Condition()
    conn.sock.sendall(b"SUB %s.> 7\r\n" % inbox.encode())

    def per_message_acks():
        # Counted at C speed, one '"seq":' per PubAck: a Python reader parsing 200 k
        # acknowledgements one by one would be the bottleneck, not the server.
        tail = b""
        while True:
            try:
                data = conn.sock.recv(1 << 20)
            except OSError:
                return
            if not data:
                return
            if b"PING\r\n" in data:
                try:
                    conn.sock.sendall(b"PONG\r\n")
                except OSError:
                    return
            chunk = tail + data
            with cond:
                if b'"error"' in chunk:
                    state["error"] = chunk[chunk.index(b'"error"'):][:200]
                state["acked"] += (chunk.count(b'"seq":') - tail.count(b'"seq":')) * per_ack
                cond.notify_all()
            tail = chunk[-16:]

    def fast_batch_acks():
        while True:
            try:
                op, _, body = conn.op()
            except (OSError, EOFError):
                return
            if op not in (b"MSG", b"HMSG"):
                continue
            with cond:
                if body.startswith(b'{"type":"ack"'):
                    ack = json.loads(body)
                    state["acked"] = max(state["acked"], ack["seq"])
                    state["flow"] = ack["msgs"]
                elif body.startswith(b'{"type"') or b'"error"' in body:
                    state["error"] = body
                elif body:
                    state["final"] = json.loads(body)
                cond.notify_all()

    threading.Thread(target=fast_batch_acks if fast else per_message_acks, daemon=True).start()
    cpu0, t0 = server_cpu(pid), time.monotonic()
    sent = 0
    while sent < total:
        with cond:
            if fast and sent == 1:  # the batch starts once its first message is answered
                while not (state["flow"] or state["error"] or state["final"]):
                    if not cond.wait(10):
                        raise RuntimeError(f"{variant}: no answer to the batch's start")
                if not state["flow"]:
                    raise RuntimeError(f"{variant}: the batch did not start, the answer was "
                                       f"{state['final'] or state['error']!r} (nats-server "
                                       f"older than 2.14 takes it for a plain publish)")
            while True:
                if state["error"]:
                    raise RuntimeError(f"{variant}: {state['error']!r}")
                # ADR-50: at most two flow intervals unacknowledged.
                limit = state["acked"] + (max(2 * state["flow"], 1) if fast else WINDOW)
                if sent < limit:
                    break
                if not cond.wait(10):
                    raise RuntimeError(f"{variant}: no acknowledgement for 10 s")
        upto = min(total, limit, sent + 256, 1 if fast and sent == 0 else total)
        if cut_at is not None:
            upto = min(upto, cut_at)
        conn.sock.sendall(b"".join(todo[sent:upto]))
        sent = upto
        if sent == cut_at:
            time.sleep(0.5)
            conn.sock.close()
            return None
    if fast:  # end of batch, the commit message not stored (operation 3)
        conn.sock.sendall(b"PUB %s.public.bench %s.%d.fail.%d.3.$FI 0\r\n\r\n"
                          % (stream.encode(), inbox.encode(), flow, total + 1))
    with cond:
        while not (state["final"] if fast else state["acked"] >= total):
            if state["error"]:
                raise RuntimeError(f"{variant}: {state['error']!r}")
            if not cond.wait(30):
                raise RuntimeError(f"{variant}: {state['acked']} of {total} acknowledged")
    wall, cpu = time.monotonic() - t0, server_cpu(pid) - cpu0
    conn.sock.close()
    return wall, cpu, state["final"]


class Server:
    def __init__(self, path, port):
        self.port = port
        self.store = tempfile.mkdtemp(prefix="nats-variants-")
        self.proc = subprocess.Popen([path, "-js", "-sd", self.store, "-a", "127.0.0.1",
                                      "-p", str(port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                self.admin = Conn(port)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("nats-server did not start")
        self.streams = 0

    def stream(self, variant):
        self.streams += 1
        name = "V%d" % self.streams
        config = {"name": name, "subjects": [name + ".>"], "storage": "file",
                  "duplicate_window": 3600 * 10**9,
                  "allow_batched": variant.startswith("fast-batch"),
                  "allow_atomic": variant == "atomic-batch"}
        reply = self.admin.request("$JS.API.STREAM.CREATE." + name, json.dumps(config).encode())
        if "error" in reply:
            raise RuntimeError(f"{variant}: {reply['error']}")
        return name

    def stored(self, name):
        return self.admin.request("$JS.API.STREAM.INFO." + name, b"")["state"]["messages"]

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.store, ignore_errors=True)


def check_dedupe(server, n):
    name = server.stream("fast-batch")
    publish(server.port, server.proc.pid, "fast-batch", name, "_FI.cut", 1, n, cut_at=n // 2)
    print(f"batch 1 cut off after {n // 2} of {n} messages: {server.stored(name)} stored")
    for k in (2, 3):
        _, _, final = publish(server.port, server.proc.pid, "fast-batch", name, f"_FI.all{k}",
                              1, n)
        print(f"batch {k}, all {n} again: {server.stored(name)} stored; its final "
              f"acknowledgement {json.dumps(final)}")
    print("de-duplication holds" if server.stored(name) == n else "DUPLICATES STORED")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="nats-server")
    parser.add_argument("--port", type=int, default=55990)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flow", type=int, default=500,
                        help="fast batches: the acknowledgement interval asked for")
    parser.add_argument("--check-dedupe", action="store_true")
    parser.add_argument("variants", nargs="*", default=VARIANTS[:5])
    args = parser.parse_args()
    path = shutil.which(args.server) or args.server
    version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout.split()
    server = Server(path, args.port)
    try:
        if args.check_dedupe:
            check_dedupe(server, min(args.messages, 20_000))
            return
        results = {v: [] for v in args.variants}
        for _ in range(args.rounds):
            for variant in args.variants:
                name = server.stream(variant)
                wall, cpu, _ = publish(server.port, server.proc.pid, variant, name, "_V." + name,
                                       1, args.messages, flow=args.flow)
                stored = server.stored(name)
                if stored != args.messages:
                    raise RuntimeError(f"{variant}: {stored} of {args.messages} stored")
                results[variant].append((wall, cpu))
        print(f"nats-server {version[-1]}, {args.messages} messages, file storage, "
              f"medians of {args.rounds}")
        print(f"{'variant':<22} {'wall s':>7} {'server CPU s':>13} {'µs/message':>11}  runs")
        for variant, runs in results.items():
            wall = statistics.median(w for w, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            each = " ".join(f"{c / args.messages * 1e6:.2f}" for _, c in runs)
            print(f"{variant:<22} {wall:7.2f} {cpu:13.2f} {cpu / args.messages * 1e6:11.2f}"
                  f"  {each}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
