"""Fixtures of the pytest suite: a fresh database per test on the PostgreSQL server the Rust
tests use (same harness: PG_CHANGESTREAM_TEST_URL, else a throwaway local cluster, see
src/testing.rs), reached through the `_testing` module of a wheel built with
`--features testing` (scripts/test.sh builds it)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pg_changestream
from pg_changestream import _native

testing = getattr(_native, "_testing", None)
if testing is None:  # pragma: no cover - a wheel without the harness
    raise RuntimeError(
        "pg_changestream was built without the test harness; build it with "
        "`maturin develop --features testing` (scripts/test.sh does)"
    )

HERE = Path(__file__).parent


class Database:
    """A fresh database and a few helpers around it."""

    def __init__(self):
        self.handle = testing.create_database()
        self.url = self.handle.url

    def sql(self, text):
        """Runs `text` (simple query protocol: several statements are one transaction)."""
        return testing.query(self.url, text)

    def txns(self, *statements):
        """Runs each statement in a transaction of its own."""
        self.sql(" ".join(f"BEGIN; {s}; COMMIT;" for s in statements))

    def builder(self, group, *tables, location=None, manual=True):
        """A builder of `group` reading `tables`, new ones from `location` (default: latest,
        so that tests see only the changes they make)."""
        location = location or pg_changestream.StartLocation.latest()
        b = pg_changestream.ConsumerBuilder().set_url(self.url).set_group_id(group)
        for table in tables:
            b = b.add_table(table, start_location=location)
        return b.set_commit_manual() if manual else b.set_commit_automatic()


@pytest.fixture
def db():
    return Database()


def poll_records(consumer, count, timeout=15.0, limit=100):
    """Polls until `count` records arrived (fails after `timeout` seconds)."""
    return [r for polled in poll_each(consumer, count, timeout, limit) for r in polled]


def poll_each(consumer, count, timeout=15.0, limit=100):
    """Polls until `count` records arrived (fails after `timeout` seconds); returns the
    records of each poll that returned some, in order: in automatic commit mode, each poll
    committed the one before it."""
    polls, got = [], 0
    deadline = time.monotonic() + timeout
    while got < count:
        assert time.monotonic() < deadline, f"only {got} of {count} records"
        records = consumer.poll(limit=limit, wait_ms=200).get_records()
        if records:
            polls.append(records)
            got += len(records)
    return polls


def assert_quiet(consumer, wait_ms=500):
    bundle = consumer.poll(limit=100, wait_ms=wait_ms)
    assert bundle.is_empty(), [r.to_dict() for r in bundle.get_records()]


def ids(records, column="id"):
    return [
        (r.get_current_image() or r.get_before_image()).get_value()[column] for r in records
    ]


def spawn(*args, **kwargs):
    """Starts tests/consumer_process.py with `args` in a new Python process."""
    return subprocess.Popen(
        [sys.executable, str(HERE / "consumer_process.py"), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        **kwargs,
    )


def pytest_report_header(config):
    return f"pg-changestream test server: PostgreSQL {testing.server_major()}"
