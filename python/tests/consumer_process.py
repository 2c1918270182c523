"""A consumer in a process of its own, for the tests that kill or interrupt one.

    consumer_process.py commit-then-hold URL GROUP TABLE COMMIT_N HOLD_N
        polls COMMIT_N records and commits them, polls HOLD_N more without committing,
        prints every event id as `committed <id>` / `held <id>`, then `ready`, and sleeps
        (the test kills it with SIGKILL).
    consumer_process.py wait URL GROUP TABLE
        prints `waiting` and polls with a long wait (the test sends SIGINT); prints
        `interrupted <seconds>` when the KeyboardInterrupt arrives.
    consumer_process.py share URL GROUP TABLE PARTITIONS SECONDS
        polls for SECONDS in a group of PARTITIONS partitions, printing `owns <partitions>`
        whenever they change and `record <id> <event id>` per record, committing each bundle.
"""

import sys
import time

from pg_changestream import ConsumerBuilder, StartLocation


def builder(url, group, table):
    return (ConsumerBuilder().set_url(url).set_group_id(group)
            .add_table(table, start_location=StartLocation.latest())
            .set_max_poll_interval_ms(2000))


def take(consumer, count):
    records = []
    while len(records) < count:
        records.extend(consumer.poll(limit=count - len(records), wait_ms=200).get_records())
    return records


def commit_then_hold(url, group, table, commit_n, hold_n):
    consumer = builder(url, group, table).set_commit_manual().build()
    print("built", flush=True)
    first = take(consumer, int(commit_n))
    consumer.commit(timeout_ms=30000)
    for r in first:
        print("committed", r.get_event_id())
    for r in take(consumer, int(hold_n)):
        print("held", r.get_event_id())
    print("ready", flush=True)
    time.sleep(600)


def wait(url, group, table):
    consumer = builder(url, group, table).build()
    print("waiting", flush=True)
    started = None
    try:
        started = time.monotonic()
        consumer.poll(limit=10, wait_ms=60000)
        print("returned")
    except KeyboardInterrupt:
        print("interrupted", time.monotonic() - started, flush=True)
        # The consumer is still usable after the interruption.
        consumer.poll(limit=10, wait_ms=10)
        consumer.close()
        print("closed", flush=True)


def share(url, group, table, partitions, seconds):
    consumer = builder(url, group, table).set_partitions(int(partitions)).set_commit_manual().build()
    owned = None
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        bundle = consumer.poll(limit=500, wait_ms=100)
        if consumer.get_partitions() != owned:
            owned = consumer.get_partitions()
            print("owns", ",".join(map(str, owned)), flush=True)
        for r in bundle.get_records():
            print("record", r.get_current_image().get_value()["id"], r.get_event_id(), flush=True)
        bundle.commit(timeout_ms=30000)
    consumer.close()
    print("done", flush=True)


if __name__ == "__main__":
    {"commit-then-hold": commit_then_hold, "wait": wait, "share": share}[sys.argv[1]](*sys.argv[2:])
