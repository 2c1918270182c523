"""Commit modes, start locations, groups, the listener helper, stats."""

import time

import pytest

from pg_changestream import (BeforeImageState, ChangeListener, ClosedError, Consumer,
                             StartLocation, enable_change_streaming)

from conftest import assert_quiet, ids, poll_each, poll_records


@pytest.fixture
def items(db):
    db.sql("CREATE TABLE items (id int PRIMARY KEY, v text)")
    enable_change_streaming(db.url, "public.items")
    return db


def insert(db, first, last):
    db.txns(*(f"INSERT INTO items VALUES ({i}, 'v{i}')" for i in range(first, last + 1)))


def test_automatic_commit_commits_each_poll_at_the_next_and_on_close(items):
    db = items
    consumer = db.builder("auto", "items", manual=False).build()
    assert not consumer.commit_manual
    insert(db, 1, 4)
    assert ids(poll_records(consumer, 4)) == [1, 2, 3, 4]
    insert(db, 5, 6)
    # 5 and 6 are two transactions: they come in one poll or in two (a poll that has records
    # returns what has arrived; it does not wait for more), and then the poll that returned
    # 6 committed 5. Either way only the last poll is uncommitted, and only it comes again.
    polls = [ids(records) for records in poll_each(consumer, 2)]  # the first committed 1..4
    assert sum(polls, []) == [5, 6]
    consumer.reset()  # forgets the last poll (polled, not committed): delivered again
    assert ids(poll_records(consumer, len(polls[-1]))) == polls[-1]
    consumer.close()  # commits what came again
    assert consumer.closed
    with pytest.raises(ClosedError, match="build a new one"):
        consumer.poll()

    insert(db, 7, 7)
    with db.builder("auto", "items", manual=False).build() as again:
        assert ids(poll_records(again, 1)) == [7]
        assert_quiet(again)


def test_manual_commit_commits_only_when_told(items):
    db = items
    consumer = db.builder("manual", "items").build()
    insert(db, 1, 3)
    poll_records(consumer, 3)
    consumer.close()  # manual: nothing committed
    with db.builder("manual", "items").build() as consumer:
        records = poll_records(consumer, 3)
        assert ids(records) == [1, 2, 3]
        consumer.commit(timeout_ms=30000)
    with db.builder("manual", "items").build() as consumer:
        assert_quiet(consumer)


def test_a_with_block_left_by_an_exception_commits_nothing(items):
    db = items
    insert(db, 1, 2)
    with pytest.raises(RuntimeError):
        with db.builder("failing", "items", location=StartLocation.earliest(),
                        manual=False).build() as consumer:
            assert ids(poll_records(consumer, 2)) == [1, 2]
            raise RuntimeError("processing failed")
    with db.builder("failing", "items", manual=False).build() as consumer:
        assert ids(poll_records(consumer, 2)) == [1, 2]


def test_every_start_location(items):
    db = items
    insert(db, 1, 3)  # before any group
    with db.builder("earliest", "items", location=StartLocation.earliest()).build() as c:
        records = poll_records(c, 3)
        assert [(r.get_op(), i) for r, i in zip(records, ids(records))] == [
            ("read", 1), ("read", 2), ("read", 3)]
        c.commit()
        assert_quiet(c)
    with db.builder("first", "items",
                    location=StartLocation.first_uncommitted()).build() as c:
        # For a table new to the group, first_uncommitted is earliest: a backfill first.
        assert [r.get_op() for r in poll_records(c, 3)] == ["read"] * 3
        c.commit()
        assert_quiet(c)
    with db.builder("latest", "items", location=StartLocation.latest()).build() as c:
        assert_quiet(c)
    # A group whose slot holds the next rows, none of them committed: start locations
    # choose among them (a slot never goes back before its committed cursor).
    db.builder("starts", "items").build().close()

    lsn = db.sql("SELECT pg_current_wal_insert_lsn()")[0][0]
    time.sleep(0.05)
    ms = int(db.sql("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint")[0][0])
    time.sleep(0.05)
    insert(db, 4, 6)
    with db.builder("first", "items").build() as c:
        assert ids(poll_records(c, 3)) == [4, 5, 6]  # continues at its committed cursor

    def replay(location):
        return db.builder("starts", "items", location=location).set_force_reset().build()

    hi, lo = (int(part, 16) for part in lsn.split("/"))
    for location in [StartLocation.at_lsn(lsn), StartLocation.at_lsn(hi << 32 | lo),
                     StartLocation.at_time(ms)]:
        with replay(location) as c:  # manual commits: nothing committed, replayable
            assert ids(poll_records(c, 3)) == [4, 5, 6], location
            assert_quiet(c)
    with replay(StartLocation.latest()) as c:
        insert(db, 7, 7)
        assert ids(poll_records(c, 1)) == [7]
        assert_quiet(c)
    assert repr(StartLocation.at_lsn("0/10")) == "StartLocation.at_lsn('0/10')"


def test_two_groups_read_the_same_changes_independently(items):
    db = items
    one = db.builder("one", "items").build()
    two = db.builder("two", "items").build()
    insert(db, 1, 3)
    first = poll_records(one, 3)
    second = poll_records(two, 3)
    assert ids(first) == ids(second) == [1, 2, 3]
    assert [r.get_event_id() for r in first] == [r.get_event_id() for r in second]
    one.commit()
    one.close()
    two.close()  # group two committed nothing
    with db.builder("one", "items").build() as c:
        assert_quiet(c)
    with db.builder("two", "items").build() as c:
        assert ids(poll_records(c, 3)) == [1, 2, 3]


def test_records_carry_event_ids_lsns_times_and_before_image_states(db):
    db.sql("CREATE TABLE plain (id int PRIMARY KEY, v text)")
    enable_change_streaming(db.url, "plain", before_images=False)
    with db.builder("meta", "plain").build() as c:
        before = time.time()
        db.txns("INSERT INTO plain VALUES (1, 'a'); UPDATE plain SET v = 'b' WHERE id = 1",
                "UPDATE plain SET id = 2 WHERE id = 1",
                "DELETE FROM plain WHERE id = 2",
                "TRUNCATE plain")
        records = poll_records(c, 5)
    assert [r.get_op() for r in records] == ["insert", "update", "update", "delete", "truncate"]
    assert [r.get_before_image_state() for r in records] == [
        BeforeImageState.NOT_APPLICABLE, BeforeImageState.NOT_ENABLED, BeforeImageState.KEY,
        BeforeImageState.KEY, BeforeImageState.NOT_APPLICABLE]
    assert records[2].get_before_image().get_value() == {"id": 1}
    assert records[3].get_record_key() == {"id": 2}
    assert records[4].get_record_key() is None and records[4].get_truncate_options() == (
        False, False)
    lsn = records[0].get_commit_lsn()
    assert [r.get_event_id() for r in records[:2]] == [f"{lsn}:0", f"{lsn}:1"]
    assert records[0].get_transaction_id() == records[1].get_transaction_id()
    committed = records[0].get_commit_time()
    assert committed.tzinfo is not None and abs(committed.timestamp() - before) < 30
    assert records[0].get_partition() is None
    assert records[0].to_dict()["before_state"] == "not_applicable"


def test_operation_filter_and_message_prefixes(items):
    db = items
    consumer = (db.builder("filtered", "items").set_operations(["insert", "delete"])
                .add_message_prefix("audit").build())
    db.txns("INSERT INTO items VALUES (1, 'a')", "UPDATE items SET v = 'b' WHERE id = 1",
            "SELECT pg_logical_emit_message(true, 'audit', 'hello')",
            "SELECT pg_logical_emit_message(true, 'other', 'ignored')",
            "DELETE FROM items WHERE id = 1")
    records = poll_records(consumer, 3)
    assert [r.get_op() for r in records] == ["insert", "message", "delete"]
    assert records[1].get_message_prefix() == "audit"
    assert records[1].get_message_content() == b"hello"
    assert records[1].get_table_name() is None
    assert_quiet(consumer)
    stats = consumer.stats()
    assert (stats.inserts, stats.updates, stats.deletes, stats.messages) == (1, 0, 1, 1)
    assert stats.records == 3 and stats.polls >= 2 and stats.wal_bytes_behind >= 0
    consumer.close()


def test_messages_group_events_per_table(db):
    db.sql("CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY)")
    for t in ("a", "b"):
        enable_change_streaming(db.url, t)
    with db.builder("grouping", "a", "b").build() as c:
        db.txns("INSERT INTO a VALUES (1); INSERT INTO b VALUES (1); INSERT INTO a VALUES (2)",
                "INSERT INTO b VALUES (2)")
        deadline = time.monotonic() + 15
        bundle = c.poll(limit=100, wait_ms=5000)
        while len(bundle) < 4 and time.monotonic() < deadline:
            c.reset()
            bundle = c.poll(limit=100, wait_ms=1000)
        shape = [(m.get_table_name(), [len(e.get_records()) for e in m.get_events()])
                 for m in bundle.get_messages()]
        assert shape == [("public.a", [2]), ("public.b", [1, 1])]
        assert len(bundle.get_records()) == 4


def test_the_listener_calls_back_per_operation_and_commits_after_each_batch(items):
    db = items
    consumer = db.builder("listening", "items").build()
    listener = ChangeListener(consumer, limit=2, wait_ms=200)
    calls = []

    @listener.on_insert
    def inserted(record):
        calls.append(("insert", record.get_current_image().get_value()["id"]))

    listener.on_update(lambda r: calls.append(("update", r.get_record_key()["id"])))
    listener.on_delete(lambda r: calls.append(("delete", r.get_record_key()["id"])))
    listener.on_truncate(lambda r: calls.append(("truncate", r.get_table_name())))
    db.txns("INSERT INTO items VALUES (1, 'a')", "INSERT INTO items VALUES (2, 'b')",
            "UPDATE items SET v = 'c' WHERE id = 1", "DELETE FROM items WHERE id = 2",
            "TRUNCATE items")
    assert listener.run(max_records=5) == 5
    assert calls == [("insert", 1), ("insert", 2), ("update", 1), ("delete", 2),
                     ("truncate", "public.items")]
    consumer.close()  # manual mode: only the listener's commits count
    with db.builder("listening", "items").build() as c:
        assert_quiet(c)

    # A callback that raises: its bundle is not committed and comes again.
    db.txns("INSERT INTO items VALUES (3, 'x')")
    consumer = db.builder("listening", "items").build()
    failing = ChangeListener(consumer, wait_ms=200)
    failing.on_insert(lambda r: (_ for _ in ()).throw(ValueError("boom")))
    with pytest.raises(ValueError, match="boom"):
        failing.run()
    consumer.close()
    with db.builder("listening", "items").build() as c:
        assert ids(poll_records(c, 1)) == [3]
