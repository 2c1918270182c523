"""Bad input raises the right exception, with a message that names the fix."""

import re
import threading
import time

import pytest

import pg_changestream as pcs
from pg_changestream import (ChangeStreamError, ConfigurationError, ConnectionError,
                             Consumer, ConsumerBuilder, GroupDeletedError, NotFoundError,
                             StartLocation, enable_change_streaming)


def test_the_hierarchy():
    for name in ["ConfigurationError", "ConnectionError", "NotFoundError", "ServerSetupError",
                 "SlotInvalidatedError", "FencedError", "ProtocolError", "TimeoutError",
                 "ClosedError"]:
        assert issubclass(getattr(pcs, name), ChangeStreamError), name
    assert issubclass(GroupDeletedError, NotFoundError)
    assert issubclass(pcs.AuthenticationError, ConnectionError)


def test_an_unknown_table(db):
    with pytest.raises(NotFoundError, match=r"does not exist; check the schema"):
        enable_change_streaming(db.url, "public.nope")
    db.sql("CREATE TABLE present (id int PRIMARY KEY)")
    with pytest.raises(ChangeStreamError, match=r"enable_change_streaming|enable"):
        db.builder("g", "present").build()  # exists, but not enabled
    with pytest.raises(NotFoundError, match="does not exist"):
        db.builder("g", "public.missing").build()


def test_bad_urls_and_arguments(db):
    # Each message says what a good value looks like.
    with pytest.raises(ConfigurationError,
                       match=r"connection string; write it as a URL \(postgres://") as e:
        ConsumerBuilder().set_url("postgres://u@h:notaport/db").set_group_id("g").build()
    assert e.value.sqlstate is None, "no server was asked"
    with pytest.raises(ConfigurationError,
                       match="sslmode \"sometimes\" is not supported; use disable, prefer"):
        enable_change_streaming("postgres://u@localhost/db?sslmode=sometimes", "t")
    with pytest.raises(ConnectionError, match=r"127\.0\.0\.1:1"):
        (ConsumerBuilder().set_url("postgres://postgres@127.0.0.1:1/x?connect_timeout=2")
         .set_group_id("g").add_table("t").build())
    with pytest.raises(ConfigurationError, match="set_group_id"):
        ConsumerBuilder().set_url(db.url).build()
    with pytest.raises(ConfigurationError, match="insert"):
        ConsumerBuilder().set_operations(["upsert"])
    with pytest.raises(ConfigurationError, match="pg_current_wal_lsn"):
        StartLocation.at_lsn("zz")
    with pytest.raises(ConfigurationError, match="milliseconds"):
        StartLocation.at_time(-1)


def test_a_group_deleted_while_polling(db):
    db.sql("CREATE TABLE items (id int PRIMARY KEY)")
    enable_change_streaming(db.url, "items")
    consumer = db.builder("doomed", "items").build()
    with pytest.raises(ChangeStreamError, match="force"):
        Consumer.delete_group(db.url, "doomed", force_stop=False)  # a consumer is attached
    errors = []

    def poll_forever():
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                consumer.poll(limit=10, wait_ms=200)
        except ChangeStreamError as e:
            errors.append(e)

    poller = threading.Thread(target=poll_forever)
    poller.start()
    time.sleep(0.5)
    Consumer.delete_group(db.url, "doomed", force_stop=True)
    poller.join(40)
    assert len(errors) == 1, "the poll fails once the group is gone"
    assert isinstance(errors[0], GroupDeletedError), repr(errors[0])
    assert "doomed" in str(errors[0]), str(errors[0])
    # The remedy; which wording depends on what the poll met first (the cursor row, or the
    # slot while the deletion was under way).
    assert re.search(r"build (a consumer|it) again", str(errors[0])), str(errors[0])
    print("group deleted:", errors[0])
    consumer.close()
