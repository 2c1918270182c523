"""Consumers in processes of their own: killed with SIGKILL, interrupted with Ctrl-C,
sharing a partitioned group."""

import signal
import threading
import time

import pytest

from pg_changestream import enable_change_streaming

from conftest import assert_quiet, poll_records, spawn


@pytest.fixture
def items(db):
    db.sql("CREATE TABLE items (id int PRIMARY KEY, v text)")
    enable_change_streaming(db.url, "public.items")
    return db


def lines_until(process, last, timeout=60):
    """The lines `process` prints up to and including `last` (a line's first word)."""
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"the process ended: {process.stderr.read()}")
        lines.append(line.split())
        if lines[-1][0] == last:
            return lines
    raise AssertionError(f"no {last!r} line within {timeout}s: {lines}")


def test_manual_commit_redelivers_exactly_what_was_not_committed_after_sigkill(items):
    db = items
    child = spawn("commit-then-hold", db.url, "killed", "public.items", 3, 4)
    try:
        lines_until(child, "built")
        db.txns(*(f"INSERT INTO items VALUES ({i}, 'v')" for i in range(1, 11)))
        lines = lines_until(child, "ready")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    committed = [l[1] for l in lines if l[0] == "committed"]
    held = [l[1] for l in lines if l[0] == "held"]
    assert (len(committed), len(held)) == (3, 4)
    # The group's next consumer (once the dead member's heartbeat is older than its
    # max_poll_interval of 2 s) gets everything after the commit: the held records, with
    # the same event ids, then the rest.
    consumer = (db.builder("killed", "public.items").set_max_poll_interval_ms(2000).build())
    records = poll_records(consumer, 7, timeout=30)
    got = [r.get_event_id() for r in records]
    assert got[:4] == held
    assert not set(got) & set(committed)
    assert [r.get_current_image().get_value()["id"] for r in records] == list(range(4, 11))
    assert_quiet(consumer)
    consumer.close()


def test_ctrl_c_interrupts_a_waiting_poll_quickly(items):
    db = items
    child = spawn("wait", db.url, "interrupted", "public.items")
    try:
        lines_until(child, "waiting")
        time.sleep(0.5)  # well inside the poll's 60 s wait
        child.send_signal(signal.SIGINT)
        lines = lines_until(child, "closed", timeout=30)
    finally:
        child.kill()
        child.wait(30)
    interrupted = [l for l in lines if l[0] == "interrupted"]
    assert interrupted, lines
    # SIGINT came ~0.5 s into the poll; the poll checks for signals every 50 ms.
    assert float(interrupted[0][1]) < 0.5 + 0.15, interrupted


def test_two_consumer_processes_share_a_partitioned_group(items):
    db = items
    children = [spawn("share", db.url, "shared", "public.items", 2, 20) for _ in range(2)]
    outputs = [[], []]

    def read(n):
        for line in children[n].stdout:
            outputs[n].append(line.split())

    readers = [threading.Thread(target=read, args=(n,), daemon=True) for n in range(2)]
    for reader in readers:
        reader.start()
    try:
        # Each owns one of the two partitions before the rows are written.
        deadline = time.monotonic() + 20
        while True:
            owned = [[l[1:] for l in out if l[0] == "owns"] for out in outputs]
            last = [o[-1][0].split(",") if o and o[-1] else [] for o in owned]
            if sorted(last[0] + last[1]) == ["0", "1"] and last[0] and last[1]:
                break
            assert time.monotonic() < deadline, (
                owned,
                [c.stderr.read() if c.poll() is not None else None for c in children],
            )
            time.sleep(0.1)
        db.txns(*(f"INSERT INTO items VALUES ({i}, 'v')" for i in range(1, 101)))
        for child in children:
            child.wait(60)
        for reader in readers:
            reader.join(10)
    finally:
        for child in children:
            child.kill()
            child.wait(30)
    seen = [[int(l[1]) for l in out if l[0] == "record"] for out in outputs]
    assert sorted(seen[0] + seen[1]) == list(range(1, 101)), "each row exactly once"
    assert seen[0] and seen[1], ("both consumers read their partition", outputs)
    events = [l[2] for out in outputs for l in out if l[0] == "record"]
    assert all(e.count(":") == 2 for e in events), "partitioned event ids name the partition"
