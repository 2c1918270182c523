"""Contender (f) of bench/run.sh: the Python package's consumer group draining the workload
into Python dicts (record.to_dict(): op, table, event id, commit LSN, key, current and
before images with native values), the counterpart of (c) bench/pgoutput_psycopg2.py.

    python drain_python.py --url URL --group G --tables T1,T2 --stop-table T --expect I,U,D

The group is created before the workload (bench_drain create-group), so its tables start
where the base slot does; automatic commits, like (d). Prints one JSON object."""

import argparse
import json
import sys
import time

from pg_changestream import ConsumerBuilder, StartLocation


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--tables", required=True)
    parser.add_argument("--stop-table", required=True, help="end marker: stop at its first row")
    parser.add_argument("--expect", required=True, help="INSERTS,UPDATES,DELETES")
    parser.add_argument("--limit", type=int, default=5000)
    args = parser.parse_args()
    expect = [int(n) for n in args.expect.split(",")]
    stop = args.stop_table if "." in args.stop_table else "public." + args.stop_table

    started = time.monotonic()
    builder = ConsumerBuilder().set_url(args.url).set_group_id(args.group)
    for table in args.tables.split(","):
        builder = builder.add_table(table, start_location=StartLocation.latest())
    consumer = builder.set_commit_automatic().build()
    counts = {"insert": 0, "update": 0, "delete": 0}
    done = False
    while not done:
        bundle = consumer.poll(limit=args.limit, wait_ms=1000)
        for record in bundle.get_records():
            row = record.to_dict()
            if row["table"] == stop:
                done = True
                break
            counts[row["op"]] += 1
    consumer.close()
    elapsed = time.monotonic() - started
    got = [counts["insert"], counts["update"], counts["delete"]]
    ok = got == expect
    print(json.dumps({"ok": ok, "inserts": got[0], "updates": got[1], "deletes": got[2],
                      "drain_s": round(elapsed, 3)}))
    if not ok:
        print(f"drain_python: wrong counts, expected {expect} got {got}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
