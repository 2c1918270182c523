#!/usr/bin/env python3
"""The walsender's CPU for one client run (issue 18): runs a replication client to the end
and prints one JSON line with the CPU its walsender spent, the client's own CPU and how
busy the machine was.

    bench/walsender_cpu.py --pgdata DIR --rows N --label NAME [--perf FILE] -- CMD ARGS...

CMD's stdout goes to /dev/null. While it runs, the postmaster's new children are polled
(/proc, every 10 ms): a walsender is one whose process title begins "postgres: walsender".
Its CPU (utime + stime) is taken two ways: its last sample before it exited
(`walsender_sampled_s`) and the CPU the postmaster reaped meanwhile (cutime + cstime) less
the last samples of the other children that ended (`walsender_s`, exact when those are
only the client's SQL sessions and autovacuum is off). --perf FILE attaches
`perf record -g` to the first walsender as soon as it appears (stops when it exits).
"""
import argparse
import json
import os
import subprocess
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")


def stat(pid):
    """(ppid, utime+stime, cutime+cstime) in ticks, or None once gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            line = f.read()
    except OSError:
        return None
    fields = line[line.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def title(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def children(pm):
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            s = stat(int(name))
            if s and s[0] == pm:
                out[int(name)] = s[1]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pgdata", required=True)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--perf")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    with open(os.path.join(a.pgdata, "postmaster.pid")) as f:
        pm = int(f.readline())
    before = set(children(pm))
    reaped0 = stat(pm)[2]
    load0 = os.getloadavg()
    last = {}  # pid -> last ticks, new children only
    walsenders = set()
    perf = None
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    status = None

    def poll():
        nonlocal perf
        for pid, ticks in children(pm).items():
            if pid in before:
                continue
            last[pid] = ticks
            if pid not in walsenders and title(pid).startswith("postgres: walsender"):
                walsenders.add(pid)
                if a.perf and perf is None:
                    perf = subprocess.Popen(
                        ["perf", "record", "-q", "-g", "-o", a.perf, "-p", str(pid)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    while status is None:
        poll()
        pid, st, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            status, rusage = st, ru
            break
        time.sleep(0.01)
    wall = time.monotonic() - t0
    # The walsender ends after its client; wait for the postmaster to reap it.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(stat(p) for p in walsenders):
        poll()
        time.sleep(0.01)
    time.sleep(0.2)
    poll()
    if perf:
        perf.wait(timeout=60)
    reaped = stat(pm)[2] - reaped0
    gone = [p for p in last if stat(p) is None]
    others = sum(last[p] for p in gone if p not in walsenders)
    ws_sampled = sum(last[p] for p in walsenders)
    ws = reaped - others if all(p in gone for p in walsenders) else ws_sampled
    load1 = os.getloadavg()
    rows = a.rows
    out = {
        "label": a.label,
        "exit": os.waitstatus_to_exitcode(status),
        "rows": rows,
        "wall_s": round(wall, 2),
        "walsenders": len(walsenders),
        "walsender_s": ws / HZ,
        "walsender_sampled_s": ws_sampled / HZ,
        "reaped_s": reaped / HZ,
        "walsender_us_per_row": round(ws / HZ * 1e6 / rows, 2),
        "client_s": round(rusage.ru_utime + rusage.ru_stime, 2),
        "client_us_per_row": round((rusage.ru_utime + rusage.ru_stime) * 1e6 / rows, 2),
        "client_ctx_switches": rusage.ru_nvcsw + rusage.ru_nivcsw,
        "load_before": round(load0[0], 2),
        "load_after": round(load1[0], 2),
    }
    print(json.dumps(out), flush=True)
    return 0 if out["exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
