"""Type stubs of the extension module ``pg_changestream._native`` (re-exported by
``pg_changestream``)."""

import datetime
from typing import Any, Dict, List, Optional, Tuple, Union

class ChangeStreamError(Exception):
    """Every error of pg_changestream. The message names the object concerned and the fix.
    ``sqlstate`` holds the SQLSTATE when the server reported one, else ``None``."""

    sqlstate: Optional[str]

class ConfigurationError(ChangeStreamError):
    """A connection string, argument or builder setting is invalid."""

class ConnectionError(ChangeStreamError):
    """The server cannot be reached, TLS failed, or the connection broke for longer than
    the reconnect timeout."""

class AuthenticationError(ConnectionError):
    """The server refused the credentials or the authentication method."""

class NotFoundError(ChangeStreamError):
    """A named object (table, group, slot, publication) does not exist."""

class GroupDeletedError(NotFoundError):
    """The consumer group, its replication slot or its publication was deleted while the
    consumer used it."""

class ServerSetupError(ChangeStreamError):
    """The server is not set up for logical replication (wal_level, privileges, version)."""

class SlotInvalidatedError(ChangeStreamError):
    """The group's replication slot was invalidated: the server removed WAL it needed."""

class FencedError(ChangeStreamError):
    """Another member of the group took this consumer's partitions; build a new consumer."""

class ProtocolError(ChangeStreamError):
    """The server sent bytes that violate the replication protocol."""

class TimeoutError(ChangeStreamError):
    """A commit did not finish within its timeout; it may still have taken effect."""

class ClosedError(ChangeStreamError):
    """The consumer was closed; build a new one with ConsumerBuilder."""

#: A column value: see ``Image.get_value`` for which PostgreSQL type gives which.
Value = Any

def enable_change_streaming(
    url: Optional[str], table: str, enabled: bool = True, before_images: bool = True
) -> None:
    """Enables change streaming for ``table`` (``name`` or ``schema.name``): checks
    ``wal_level``, that the table exists and that its UPDATE and DELETE keep working once
    published. ``before_images`` sets ``REPLICA IDENTITY FULL`` (updates and deletes carry
    the whole old row); ``enabled=False`` disables change streaming and restores the
    table's original replica identity. ``url=None`` uses the libpq environment variables.

    Raises ``NotFoundError`` (no such table), ``ServerSetupError`` (``wal_level`` is not
    ``logical``), ``ConfigurationError`` (a table without a key and without before-images).
    """

class StartLocation:
    """Where a table new to the consumer group starts. Tables already in the group continue
    from the group's committed cursor (unless the builder's ``set_force_reset``)."""

    @staticmethod
    def first_uncommitted() -> "StartLocation":
        """The first change the group has not committed. For a table new to the group that
        is like ``earliest()``: its existing rows first (op ``read``), then its changes."""
    @staticmethod
    def earliest() -> "StartLocation":
        """The table's existing rows first (op ``read``, a consistent backfill in key
        order), then its changes."""
    @staticmethod
    def latest() -> "StartLocation":
        """Only changes committed after the table joined the group."""
    @staticmethod
    def at_time(ms: int) -> "StartLocation":
        """Changes committed at or after ``ms`` milliseconds since the Unix epoch, as far
        back as the group's slot still holds them (never before its committed cursor)."""
    @staticmethod
    def at_lsn(lsn: Union[str, int]) -> "StartLocation":
        """Changes of transactions committed at or after ``lsn`` (``"0/16B3748"`` as
        ``pg_current_wal_lsn()`` prints it, or an int)."""

class ConsumerBuilder:
    """Collects the settings of a consumer; every setter returns the builder. Without
    ``set_url`` the libpq environment variables (``PGHOST``, ``PGPORT``, ``PGUSER``,
    ``PGPASSWORD``, ``PGDATABASE``, ``PGSSLMODE``, ``PGSSLROOTCERT``) say where to connect."""

    def __init__(self) -> None:
        """An empty builder: automatic commits, all four row operations, one partition."""
    def set_url(self, url: str) -> "ConsumerBuilder":
        """The database: a ``postgres://user:password@host:port/db?sslmode=...`` URL or a
        libpq ``key=value`` string."""
    def set_group_id(self, group_id: str) -> "ConsumerBuilder":
        """The consumer group (1 to 63 characters). Consumers of one group share its work
        and committed cursor; different groups read the same tables independently."""
    def add_table(
        self, table: str, start_location: Optional[StartLocation] = None
    ) -> "ConsumerBuilder":
        """Reads ``table`` (enabled with ``enable_change_streaming``), starting at
        ``start_location`` if the table is new to the group (default
        ``StartLocation.first_uncommitted()``)."""
    def remove_table(self, table: str) -> "ConsumerBuilder":
        """Takes ``table`` out of the group when the consumer is built."""
    def set_commit_manual(self) -> "ConsumerBuilder":
        """Nothing is committed until ``bundle.commit()`` or ``consumer.commit()``."""
    def set_commit_automatic(self) -> "ConsumerBuilder":
        """(The default.) Each poll first commits what the previous one returned;
        ``close()`` commits the last."""
    def set_partitions(self, partitions: int) -> "ConsumerBuilder":
        """Splits a new group's rows over ``partitions`` replication slots (by the hash of
        the key); the group's consumers share the partitions."""
    def set_operations(self, operations: List[str]) -> "ConsumerBuilder":
        """The operations to deliver: any of ``"insert"``, ``"update"``, ``"delete"``,
        ``"truncate"`` (default all). Others are passed over and committed."""
    def add_message_prefix(self, prefix: str) -> "ConsumerBuilder":
        """Also delivers logical messages (``pg_logical_emit_message``) with this prefix,
        as records of op ``"message"``."""
    def set_max_poll_interval_ms(self, ms: int) -> "ConsumerBuilder":
        """How long the application may go between polls before the group's other members
        take its partitions (default 30 000)."""
    def set_reconnect_timeout_ms(self, ms: int) -> "ConsumerBuilder":
        """How long transient failures are retried before ``ConnectionError`` (default
        60 000)."""
    def set_force_reset(self, yes: bool = True) -> "ConsumerBuilder":
        """Moves tables already in the group to their start locations (a replay, within
        what the slot still holds)."""
    def build(self) -> "Consumer":
        """Connects, creates or joins the group and returns the consumer. Raises
        ``ConfigurationError``, ``NotFoundError``, ``ConnectionError``,
        ``ServerSetupError``."""

class ConsumerStats:
    """What a consumer delivered since it was built, and its lag."""

    inserts: int
    updates: int
    deletes: int
    truncates: int
    reads: int
    messages: int
    bytes: int
    polls: int
    reconnects: int
    wal_bytes_behind: int
    committed_lsn: str
    commit_lag_ms: Optional[float]
    @property
    def records(self) -> int:
        """All records delivered."""

class Consumer:
    """A consumer of a group (``ConsumerBuilder.build()``); a context manager: leaving
    the block normally closes it, leaving it by an exception stops it without committing."""

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
    @property
    def commit_manual(self) -> bool:
        """Whether commits are manual."""
    @property
    def group_id(self) -> str:
        """The consumer group."""
    def poll(self, limit: int = 100, wait_ms: int = 1000) -> "MessageBundle":
        """At most ``limit`` records, as soon as some are there, or an empty bundle after
        ``wait_ms``. Automatic mode first commits the previous poll. Releases the GIL;
        Ctrl-C interrupts it (the next poll starts again from the committed cursor).
        Raises ``GroupDeletedError``, ``SlotInvalidatedError``, ``FencedError``,
        ``ConnectionError``."""
    def commit(self, timeout_ms: Optional[int] = None) -> None:
        """Commits everything the last poll returned and before."""
    def add_table(self, table: str, start_location: Optional[StartLocation] = None) -> None:
        """Adds ``table`` to the group while consuming."""
    def remove_table(self, table: str) -> None:
        """Takes ``table`` out of the group; its records stop at once."""
    def reset(self) -> None:
        """Forgets what was polled but not committed: the next poll delivers it again."""
    def close(self) -> None:
        """Stops the consumer (automatic mode: commits the last poll) and leaves the group."""
    def get_tables(self) -> List[str]:
        """The tables read, as ``schema.name``."""
    def get_partitions(self) -> List[int]:
        """The group partitions this consumer reads now."""
    def stats(self) -> ConsumerStats:
        """Counters and lag."""
    @classmethod
    def delete_group(cls, url: Optional[str], group_id: str, force_stop: bool = False) -> None:
        """Deletes a group (slots, publications, state). Without ``force_stop`` it refuses
        while a consumer is attached; with it those consumers' next poll raises
        ``GroupDeletedError``."""
    def __enter__(self) -> "Consumer": ...
    def __exit__(self, exc_type: Any = None, exc: Any = None, tb: Any = None) -> bool: ...

class MessageBundle:
    """The records of one poll, in commit order."""

    def is_empty(self) -> bool:
        """Whether the poll found nothing."""
    def __len__(self) -> int: ...
    def __bool__(self) -> bool: ...
    def get_messages(self) -> List["Message"]:
        """One message per table (logical messages form one without a table)."""
    def get_records(self) -> List["Record"]:
        """Every record, in commit order."""
    def get_wal_bytes_behind(self) -> int:
        """Bytes of WAL between this bundle's end and the server's WAL end."""
    def commit(self, timeout_ms: Optional[int] = None) -> None:
        """Commits this bundle and everything before it."""

class Message:
    """One table's events in a bundle."""

    def get_table_name(self) -> Optional[str]:
        """``schema.name`` (``None`` for logical messages)."""
    def get_schema_name(self) -> Optional[str]:
        """The table's schema."""
    def get_events(self) -> List["Event"]:
        """One transaction's changes to this table each, in commit order."""

class Event:
    """One transaction's changes to one table."""

    def get_records(self) -> List["Record"]:
        """The records, in the order of the changes."""
    def get_table_name(self) -> Optional[str]:
        """``schema.name``."""
    def get_commit_lsn(self) -> str:
        """The LSN of the commit record (``"0/16B3748"``)."""
    def get_commit_time(self) -> Optional[datetime.datetime]:
        """The commit time, aware, UTC."""
    def get_transaction_id(self) -> int:
        """The xid."""

class BeforeImageState:
    """What a record's before-image holds."""

    FULL: "BeforeImageState"
    """The whole old row (``REPLICA IDENTITY FULL``)."""
    KEY: "BeforeImageState"
    """Only the old key (a delete, or a key change, without before-images)."""
    NOT_ENABLED: "BeforeImageState"
    """An update without before-images that kept its key: the old row was not logged."""
    NOT_APPLICABLE: "BeforeImageState"
    """Inserts, reads, truncates and messages have none."""
    @property
    def value(self) -> str:
        """``"full"``, ``"key"``, ``"not_enabled"`` or ``"not_applicable"``."""

class Record:
    """One row change (or truncate, or logical message)."""

    def get_op(self) -> str:
        """``"insert"``, ``"update"``, ``"delete"``, ``"truncate"``, ``"read"`` (backfill),
        ``"message"``; kinds of later versions arrive as their own name."""
    def get_table_name(self) -> Optional[str]:
        """``schema.name`` (``None`` for logical messages)."""
    def get_record_key(self) -> Optional[Dict[str, Value]]:
        """The key columns (replica identity), from the new row or, for a delete, the old."""
    def get_current_image(self) -> Optional["Image"]:
        """The row after the change (``None`` for a delete)."""
    def get_before_image(self) -> Optional["Image"]:
        """The row (or key) before the change; ``None`` when not applicable or enabled."""
    def get_before_image_state(self) -> BeforeImageState:
        """What the before-image holds."""
    def get_event_id(self) -> str:
        """``<commit_lsn>:<index>`` (``<commit_lsn>:<partition>:<index>`` in a partitioned
        group): the same on every delivery."""
    def get_commit_lsn(self) -> str:
        """The LSN of the transaction's commit record."""
    def get_commit_time(self) -> Optional[datetime.datetime]:
        """The commit time, aware, UTC."""
    def get_transaction_id(self) -> int:
        """The xid."""
    def get_partition(self) -> Optional[int]:
        """The group partition (``None`` in a group of one)."""
    def get_message_prefix(self) -> Optional[str]:
        """For a logical message: its prefix."""
    def get_message_content(self) -> Optional[bytes]:
        """For a logical message: its content."""
    def get_truncate_options(self) -> Optional[Tuple[bool, bool]]:
        """For a truncate: ``(cascade, restart_identity)``."""
    def to_dict(self) -> Dict[str, Any]:
        """``op``, ``table``, ``event_id``, ``commit_lsn``, ``key``, ``current``,
        ``before`` and ``before_state`` in one dict."""

class Image:
    """A row's values after (current) or before the change."""

    def get_value(self) -> Dict[str, Value]:
        """Column name → value: ``None`` for NULL, ``bool``, ``int``, ``float`` (also
        nan/inf), ``decimal.Decimal`` for numeric (exact; NaN and ±Infinity too), what
        ``json.loads`` makes of json/jsonb, ``bytes`` for bytea, ``datetime.date``,
        ``datetime.time`` (timetz with a fixed-offset tzinfo), naive ``datetime`` for
        timestamp, aware UTC ``datetime`` for timestamptz, ``uuid.UUID``, lists for arrays,
        and ``str`` with PostgreSQL's text for everything else and for what Python's types
        cannot hold (BC dates, years past 9999, ``infinity``, ``24:00:00``). Columns whose
        TOASTed value was not sent are left out (see ``get_unchanged_columns``)."""
    def get_unchanged_columns(self) -> List[str]:
        """Columns whose large value an update did not change and the server did not send
        (unknown, not null)."""
