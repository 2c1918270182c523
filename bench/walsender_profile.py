#!/usr/bin/env python3
"""Shares of a walsender's CPU by cost centre, from `perf record -g -p <walsender>` (issue 18).

    bench/walsender_profile.py FILE.data [--top N]

Each sample is put in one centre by its whole call chain (frame pointers work for
PostgreSQL 15's Debian build; static functions show as [unknown] but their exported callers
place them). The first centre in CENTRES that any frame matches wins, so a kernel sample
under send() counts as a send, an output function under pgoutput as a type function.
"""
import collections
import re
import subprocess
import sys

LOOPBACK = {"tcp_v4_rcv", "__netif_receive_skb", "__netif_receive_skb_one_core", "process_backlog",
            "net_rx_action"}
SEND = {"__send", "__libc_send", "secure_write", "secure_raw_write", "internal_flush", "tcp_sendmsg",
        "__sys_sendto", "unix_stream_sendmsg"}
CENTRES = [
    ("WAL read: pread (page cache copy)", lambda n: n in ("__pread64", "__libc_pread", "pg_pread", "WALRead")),
    ("socket send: loopback delivery to the client, in the sender's context", None),
    ("socket send: send() / tcp_sendmsg / unix_stream_sendmsg", lambda n: n in SEND),
    ("socket recv: walsender polling for replies", lambda n: n in (
        "__libc_recv", "pq_getbyte_if_available", "pq_recvbuf", "secure_read", "__sys_recvfrom")),
    ("latch / epoll wait", lambda n: n in ("epoll_wait", "WaitEventSetWait", "WaitLatchOrSocket", "do_epoll_wait")),
    ("GetCurrentTimestamp", lambda n: n in ("GetCurrentTimestamp", "__vdso_gettimeofday", "clock_gettime")),
    ("type output/send functions", lambda n: n in ("OidOutputFunctionCall", "OidSendFunctionCall")),
    ("pgoutput message build (pgoutput.so, proto.c, pq_send*, deform, syscache)", lambda n: (
        n.startswith("logicalrep_write") or n.startswith("pq_send") or n in (
            "enlargeStringInfo", "heap_deform_tuple", "SearchSysCache1", "ReleaseSysCache", "pgoutput.so"))),
    ("walsender write path (OutputPluginWrite, pq_putmessage)", lambda n: n in (
        "OutputPluginWrite", "OutputPluginPrepareWrite", "OutputPluginUpdateProgress", "pq_putmessage_noblock")),
    ("xlogreader (XLogReadRecord, DecodeXLogRecord)", lambda n: n.startswith("XLogRe") or n in (
        "DecodeXLogRecord", "XLogDecodeNextRecord", "ValidXLogRecord", "pg_comp_crc32c_sse42")),
    ("ReorderBuffer*", lambda n: n.startswith("ReorderBuffer")),
    ("logical decoding dispatch (heap_decode, ...)", lambda n: n in (
        "LogicalDecodingProcessRecord", "heap_decode", "heap2_decode", "xact_decode", "standby_decode",
        "SnapBuildProcessChange")),
]


def samples(path):
    out = subprocess.run(["perf", "script", "-i", path, "-F", "period,ip,sym,dso"],
                         capture_output=True, text=True).stdout
    for block in out.split("\n\n"):
        frames = []
        for line in block.strip().split("\n")[1:]:
            m = re.match(r"\s*[0-9a-f]+ (.*) \((.*)\)$", line)
            if m:
                frames.append((m.group(1).split("+")[0], m.group(2)))
        if frames:
            yield frames


def centre(frames):
    names = {s for s, _ in frames} | {"pgoutput.so" for _, d in frames if d.endswith("pgoutput.so")}
    for label, match in CENTRES:
        if match is None:
            if names & SEND and names & LOOPBACK:
                return label
        elif any(match(n) for n in names):
            return label
    return "other (memory contexts, misc)"


def main():
    path = sys.argv[1]
    top = int(sys.argv[sys.argv.index("--top") + 1]) if "--top" in sys.argv else 0
    shares, recv_sites, types, leaves = (collections.Counter() for _ in range(4))
    n = 0
    for frames in samples(path):
        n += 1
        c = centre(frames)
        shares[c] += 1
        leaves[frames[0][0]] += 1
        names = [s for s, _ in frames]
        if c.startswith("socket recv"):
            recv_sites["under OutputPluginWrite (slow path after a send)" if "OutputPluginWrite" in names
                       else "WalSndLoop (once per WAL record)"] += 1
        if c.startswith("type output"):
            for i, s in enumerate(names):
                if s in ("OidOutputFunctionCall", "OidSendFunctionCall"):
                    callee = names[i - 2] if i >= 2 and names[i - 1] == "FunctionCall1Coll" else s
                    types[callee] += 1
                    break
    if n == 0:
        print(f"{path}: no samples (the walsender ended before perf attached? use more rows)")
        return
    print(f"{path}: {n} samples ([unknown] type functions: static ones, e.g. JsonbToCString)")
    for label, v in shares.most_common():
        print(f"  {100 * v / n:5.1f}%  {label}")
    for label, v in recv_sites.most_common():
        print(f"         recv {100 * v / n:5.1f}%  {label}")
    for label, v in types.most_common(6):
        print(f"         type {100 * v / n:5.1f}%  {label}")
    for label, v in leaves.most_common(top):
        print(f"         leaf {100 * v / n:5.1f}%  {label}")


if __name__ == "__main__":
    main()
