"""Consumer-group change streams from PostgreSQL logical replication, on a Rust core.

The API has the shape of the ``borneo.changestream`` SDK::

    from pg_changestream import ConsumerBuilder, StartLocation, enable_change_streaming

    enable_change_streaming(url, "public.users", enabled=True, before_images=True)
    consumer = (ConsumerBuilder().set_url(url).set_group_id("users-group")
                .add_table("public.users", start_location=StartLocation.first_uncommitted())
                .set_commit_manual().build())
    bundle = consumer.poll(limit=100, wait_ms=5000)
    for message in bundle.get_messages():
        for event in message.get_events():
            for record in event.get_records():
                print(record.get_op(), record.get_record_key(),
                      record.get_current_image() and record.get_current_image().get_value())
    if not bundle.is_empty():
        bundle.commit(timeout_ms=30000)
    consumer.close()

Values arrive as native Python types (see ``Image.get_value``); errors are subclasses of
``ChangeStreamError`` whose message names the fix. ``ChangeListener`` offers the callback
style (``on_insert`` / ``on_update`` / ``on_delete`` / ``on_truncate``).
"""

from ._native import (
    AuthenticationError,
    BeforeImageState,
    ChangeStreamError,
    ClosedError,
    ConfigurationError,
    ConnectionError,
    Consumer,
    ConsumerBuilder,
    ConsumerStats,
    Event,
    FencedError,
    GroupDeletedError,
    Image,
    Message,
    MessageBundle,
    NotFoundError,
    ProtocolError,
    Record,
    ServerSetupError,
    SlotInvalidatedError,
    StartLocation,
    TimeoutError,
    enable_change_streaming,
)
from .listener import ChangeListener

__all__ = [
    "AuthenticationError",
    "BeforeImageState",
    "ChangeListener",
    "ChangeStreamError",
    "ClosedError",
    "ConfigurationError",
    "ConnectionError",
    "Consumer",
    "ConsumerBuilder",
    "ConsumerStats",
    "Event",
    "FencedError",
    "GroupDeletedError",
    "Image",
    "Message",
    "MessageBundle",
    "NotFoundError",
    "ProtocolError",
    "Record",
    "ServerSetupError",
    "SlotInvalidatedError",
    "StartLocation",
    "TimeoutError",
    "enable_change_streaming",
]
