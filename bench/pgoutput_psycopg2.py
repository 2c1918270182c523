#!/usr/bin/env python3
"""Contender (c) of the side-by-side benchmark (bench/run.sh): what a Python shop would
write instead of a library — psycopg2's logical replication support plus a pgoutput
(protocol version 1) decoder that turns every row into a dict of decoded Python values.

It is meant to be an honest, reasonably efficient baseline, not a straw man:
struct.unpack_from on the payload, one slice per value, no per-byte loops, one converter per column looked
up once per relation, feedback sent through psycopg2's own status-interval throttle.

    pgoutput_psycopg2.py --url URL --slot S --publication P --stop-table T \
        --expect INSERTS,UPDATES,DELETES

Drains until the first row of table T (the driver's end marker, committed right after the
workload), checks the counts per operation against --expect, prints one JSON
object on stdout. CPU and peak RSS are measured from outside (/usr/bin/time).
"""

import argparse
import datetime
import decimal
import json
import struct
import sys
import time

import psycopg2
import psycopg2.extras

_U16 = struct.Struct("!H")
_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_BEGIN = struct.Struct("!QqI")  # final lsn, commit time, xid


def _bool(text):
    return text == "t"


def _timestamptz(text):
    # Python 3.11 parses PostgreSQL's ISO output ("2024-05-01 12:00:00.123+00").
    return datetime.datetime.fromisoformat(text)


def _str(text):
    return text


# Text-format converters by type OID; anything else stays a string (as its Postgres text).
CONVERTERS = {
    16: _bool,
    20: int,
    21: int,
    23: int,
    26: int,
    700: float,
    701: float,
    1700: decimal.Decimal,
    114: json.loads,
    3802: json.loads,
    1184: _timestamptz,
    1114: datetime.datetime.fromisoformat,
    1082: datetime.date.fromisoformat,
}


class Relation:
    __slots__ = ("schema", "name", "columns", "converters")

    def __init__(self, schema, name, columns, type_oids):
        self.schema = schema
        self.name = name
        self.columns = columns
        self.converters = [CONVERTERS.get(oid, _str) for oid in type_oids]


def _cstring(buf, pos):
    end = buf.index(0, pos)
    return buf[pos:end].decode(), end + 1


class Decoder:
    """pgoutput protocol version 1: Begin, Commit, Origin, Relation, Type, Insert, Update,
    Delete, Truncate. Every row change becomes a dict {op, schema, table, new, old, xid,
    commit_lsn}, with `new`/`old` dicts of column name -> converted value."""

    def __init__(self):
        self.relations = {}
        self.xid = None
        self.final_lsn = None

    def tuple_data(self, buf, pos, relation):
        (ncols,) = _U16.unpack_from(buf, pos)
        pos += 2
        row = {}
        columns = relation.columns
        converters = relation.converters
        for i in range(ncols):
            kind = buf[pos]
            pos += 1
            if kind == 0x74:  # 't' text
                (length,) = _I32.unpack_from(buf, pos)
                pos += 4
                row[columns[i]] = converters[i](buf[pos : pos + length].decode())
                pos += length
            elif kind == 0x6E:  # 'n' null
                row[columns[i]] = None
            elif kind == 0x75:  # 'u' unchanged TOAST: not sent
                pass
            else:
                raise ValueError("unexpected tuple column kind %r" % chr(kind))
        return row, pos

    def decode(self, data):
        """Returns a row-change dict, or None for control messages."""
        buf = data
        tag = buf[0]
        if tag == 0x49:  # 'I'
            (relid,) = _U32.unpack_from(buf, 1)
            rel = self.relations[relid]
            new, _ = self.tuple_data(buf, 6, rel)  # skip relid and 'N'
            return self._row("insert", rel, new, None)
        if tag == 0x55:  # 'U'
            (relid,) = _U32.unpack_from(buf, 1)
            rel = self.relations[relid]
            pos = 5
            old = None
            if buf[pos] in (0x4B, 0x4F):  # 'K' or 'O'
                old, pos = self.tuple_data(buf, pos + 1, rel)
            new, _ = self.tuple_data(buf, pos + 1, rel)  # skip 'N'
            return self._row("update", rel, new, old)
        if tag == 0x44:  # 'D'
            (relid,) = _U32.unpack_from(buf, 1)
            rel = self.relations[relid]
            old, _ = self.tuple_data(buf, 6, rel)  # skip relid and 'K'/'O'
            return self._row("delete", rel, None, old)
        if tag == 0x42:  # 'B'
            self.final_lsn, _, self.xid = _BEGIN.unpack_from(buf, 1)
            return None
        if tag == 0x43:  # 'C'
            return None
        if tag == 0x52:  # 'R'
            (relid,) = _U32.unpack_from(buf, 1)
            schema, pos = _cstring(buf, 5)
            name, pos = _cstring(buf, pos)
            pos += 1  # replica identity setting
            (ncols,) = _U16.unpack_from(buf, pos)
            pos += 2
            columns, oids = [], []
            for _ in range(ncols):
                pos += 1  # flags
                column, pos = _cstring(buf, pos)
                (oid,) = _U32.unpack_from(buf, pos)
                pos += 8  # type oid, typmod
                columns.append(column)
                oids.append(oid)
            self.relations[relid] = Relation(schema, name, columns, oids)
            return None
        if tag in (0x59, 0x4F, 0x54, 0x4D):  # Type, Origin, Truncate, Message
            return None
        raise ValueError("unexpected pgoutput message %r" % chr(tag))

    def _row(self, op, rel, new, old):
        return {
            "op": op,
            "schema": rel.schema,
            "table": rel.name,
            "xid": self.xid,
            "commit_lsn": self.final_lsn,
            "new": new,
            "old": old,
        }


class Done(Exception):
    pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--slot", required=True)
    parser.add_argument("--publication", required=True)
    parser.add_argument("--stop-table", required=True, help="end marker: stop at its first row")
    parser.add_argument("--expect", required=True, help="INSERTS,UPDATES,DELETES")
    args = parser.parse_args()
    expect = [int(n) for n in args.expect.split(",")]
    stop_table = args.stop_table

    started = time.monotonic()
    conn = psycopg2.connect(args.url, connection_factory=psycopg2.extras.LogicalReplicationConnection)
    cur = conn.cursor()
    cur.start_replication(
        slot_name=args.slot,
        decode=False,
        options={"proto_version": "1", "publication_names": args.publication},
    )
    decoder = Decoder()
    counts = {"insert": 0, "update": 0, "delete": 0}

    def consume(msg):
        row = decoder.decode(msg.payload)
        if row is not None:
            if row["table"] == stop_table:
                raise Done()
            counts[row["op"]] += 1
        elif msg.payload[0] == 0x43:  # commit: processed, may be released
            msg.cursor.send_feedback(flush_lsn=msg.data_start)

    try:
        cur.consume_stream(consume)
    except Done:
        pass
    elapsed = time.monotonic() - started
    conn.close()
    got = [counts["insert"], counts["update"], counts["delete"]]
    ok = got == expect
    print(
        json.dumps(
            {
                "ok": ok,
                "inserts": got[0],
                "updates": got[1],
                "deletes": got[2],
                "drain_s": round(elapsed, 3),
            }
        )
    )
    if not ok:
        print("pgoutput_psycopg2: wrong counts, expected %s got %s" % (expect, got), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
