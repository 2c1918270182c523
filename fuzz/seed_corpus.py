#!/usr/bin/env python3
"""Writes the seed corpus of each fuzz target from the real pgoutput messages captured
from PostgreSQL 15 and 18 (tests/data/pgoutput/, made by capture.sh there).

pgoutput/     the captured messages themselves (stream blocks thinned out);
replication/  the same payloads inside an XLogData header, plus keepalives;
frame/        XLogData inside CopyData frames, a whole transaction per file, and the
              other backend messages a replication connection meets;
json/         column texts of each kind the JSON writer handles (a type byte, then the
              text), and the captured row changes behind byte 255.
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

# The JSON writer: byte 0 picks the type (fuzz_targets/json.rs, TYPES), the rest is text.
json_values = {
    0: [b"t", b"f"], 2: [b"2147483647", b"-1"], 1: [b"-9223372036854775808", b"0", b"007"], 3: [b"NaN", b"1e-300", b"-0"],
    4: [b"1.50", b"Infinity"], 5: [b"a\"b\\c\n\x01\xc3\xa9"], 6: [b" [1 , 2] ", b'"\\ud800"'],
    7: [b'{"a": [1, 2.5]}'], 8: [b"\\xdeadbeef"], 9: [b"2024-02-29", b"0044-03-15 BC", b"infinity"],
    10: [b"24:00:00"], 11: [b"12:00:00.5+05:30"], 12: [b"2024-02-29 23:59:59.999999", b"0001-01-01 00:00:00 BC"],
    13: [b"2024-01-01 03:00:00.5+00", b"2024-01-01 03:00:00+05:30"], 14: [b"{1,NULL,3}", b"[0:1]={1,2}"],
    15: [b'{a,"b \\"c\\"",NULL}'], 16: [b'{"2024-01-01 00:00:00+00",infinity}'], 17: [b"{(1,1),(0,0);(2,2),(1,1)}"],
}
for type_byte, texts in json_values.items():
    for i, text in enumerate(texts):
        write("json", f"value-{type_byte}-{i}", bytes([type_byte]) + text)
# Byte 255: the tuple of an insert into a row with a column of each of the 18 types.
for i in range(2):
    tuple_data = struct.pack(">h", 18)
    for type_byte in range(18):
        texts = json_values[type_byte]
        text = texts[i % len(texts)]
        tuple_data += b"t" + struct.pack(">i", len(text)) + text
    write("json", f"row-{i}", b"\xff" + tuple_data)
write("json", "row-nulls", b"\xff" + struct.pack(">h", 18) + b"n" * 17 + b"u")
