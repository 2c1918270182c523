#!/usr/bin/env python3
"""Writes the seed corpus of each fuzz target from the real pgoutput messages captured
from PostgreSQL 15 and 18 (tests/data/pgoutput/, made by capture.sh there).

pgoutput/     the captured messages themselves (stream blocks thinned out);
replication/  the same payloads inside an XLogData header, plus keepalives;
frame/        XLogData inside CopyData frames, a whole transaction per file, and the
              other backend messages a replication connection meets.
Run from the repository root: python3 fuzz/seed_corpus.py
"""
import pathlib
import struct

root = pathlib.Path(__file__).resolve().parent.parent
data = root / "tests" / "data" / "pgoutput"
out = root / "fuzz" / "corpus"


def keep(name: str) -> bool:
    scenario, pos, tag = name[:-4].rsplit("-", 2)
    if scenario.startswith("stream"):
        # Stream blocks repeat: keep the first block and the ends of transactions.
        return int(pos) < 8 or tag in "cApKR"
    return True


def xlogdata(payload: bytes, start: int = 0x1_0000_0028) -> bytes:
    return b"w" + struct.pack(">QQq", start, start + 0x100, 780_000_000_000_000) + payload


def keepalive(reply: bool) -> bytes:
    return b"k" + struct.pack(">Qq?", 0x1_0000_0200, 780_000_000_000_000, reply)


def frame(tag: bytes, body: bytes) -> bytes:
    return tag + struct.pack(">i", len(body) + 4) + body


def write(target: str, name: str, content: bytes) -> None:
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(content)


captured = []
for version in ("pg15", "pg18"):
    for f in sorted((data / version).glob("*.bin")):
        if keep(f.name):
            captured.append((f"{version}-{f.stem}", f.read_bytes()))

for name, body in captured:
    write("pgoutput", name, body)
    write("replication", name, xlogdata(body))
write("replication", "keepalive", keepalive(False))
write("replication", "keepalive-reply", keepalive(True))

# Whole transactions as the walsender frames them, one file per captured scenario.
by_scenario = {}
for name, body in captured:
    version, scenario = name.split("-")[:2]
    by_scenario.setdefault(f"{version}-{scenario}", []).append(body)
for name, bodies in by_scenario.items():
    stream = b"".join(frame(b"d", xlogdata(b)) for b in bodies)
    stream += frame(b"d", keepalive(True))
    write("frame", name, stream)
write("frame", "copy-both-response", frame(b"W", b"\x00\x00\x00"))
write("frame", "copy-done-ready", frame(b"c", b"") + frame(b"C", b"COPY 0\x00") + frame(b"Z", b"I"))
write("frame", "error-response", frame(
    b"E", b"SERROR\x00VERROR\x00C55006\x00Mreplication slot \"s\" is active for PID 42\x00\x00"))
write("frame", "auth-sasl", frame(b"R", struct.pack(">i", 10) + b"SCRAM-SHA-256\x00\x00"))
write("frame", "row-description-data-row",
      frame(b"T", struct.pack(">h", 1) + b"slot_name\x00" + bytes(18))
      + frame(b"D", struct.pack(">hi", 1, 4) + b"slot"))
