"""The issue's seed-shaped example runs unchanged."""

from pg_changestream import ConsumerBuilder, StartLocation, Consumer, enable_change_streaming
from pg_changestream import BeforeImageState


def test_the_seed_example_runs_unchanged(db):
    url = db.url
    db.sql("CREATE TABLE public.users (id int PRIMARY KEY, name text, email text)")
    db.sql("CREATE TABLE public.orders (id int PRIMARY KEY)")
    # --- the example of the issue, verbatim from here ---
    enable_change_streaming(url, "public.users", enabled=True, before_images=True)
    consumer = (ConsumerBuilder().set_url(url).set_group_id("users-group")
                .add_table("public.users", start_location=StartLocation.first_uncommitted())
                .set_commit_manual().build())
    # --- (changes to read) ---
    db.txns("INSERT INTO users VALUES (1, 'ann', 'ann@example.com')",
            "UPDATE users SET email = 'ann@example.org' WHERE id = 1",
            "DELETE FROM users WHERE id = 1")
    seen = []
    while not any(s[1] == "delete" for s in seen):
        # --- the example again ---
        bundle = consumer.poll(limit=100, wait_ms=5000)
        for message in bundle.get_messages() or []:
            table_name = message.get_table_name()
            for event in message.get_events() or []:
                for record in event.get_records():
                    key = record.get_record_key()
                    current = record.get_current_image()      # None for a delete
                    before = record.get_before_image()        # None when not applicable
                    value = None if current is None else current.get_value()
                    seen.append((table_name, record.get_op(), key, value,
                                 None if before is None else before.get_value(),
                                 record.get_before_image_state(), event.get_commit_lsn()))
        if not bundle.is_empty():
            bundle.commit(timeout_ms=30000)
    enable_change_streaming(url, "public.orders", enabled=True, before_images=False)
    consumer.add_table("public.orders", start_location=StartLocation.latest())
    consumer.remove_table("public.orders")
    consumer.commit()
    consumer.reset()
    consumer.close()   # also a context manager
    Consumer.delete_group(url, "users-group", force_stop=True)
    # --- end of the example ---

    # first_uncommitted on a table new to the group backfills its rows (op "read"); the
    # backfill may run after the insert and read the row as it was then.
    reads = [s for s in seen if s[1] == "read"]
    seen = [s for s in seen if s[1] != "read"]
    assert all(r[3]["id"] == 1 for r in reads), reads
    ann = {"id": 1, "name": "ann", "email": "ann@example.com"}
    ann2 = dict(ann, email="ann@example.org")
    assert [s[:5] for s in seen] == [
        ("public.users", "insert", {"id": 1}, ann, None),
        ("public.users", "update", {"id": 1}, ann2, ann),
        ("public.users", "delete", {"id": 1}, None, ann2),
    ]
    assert [s[5] for s in seen] == [BeforeImageState.NOT_APPLICABLE, BeforeImageState.FULL,
                                     BeforeImageState.FULL]
    assert len({s[6] for s in seen}) == 3, "three transactions, three commit LSNs"
    # The group is gone: deleting it again says so.
    import pytest
    from pg_changestream import NotFoundError
    with pytest.raises(NotFoundError, match="does not exist"):
        Consumer.delete_group(url, "users-group", force_stop=True)
