"""Type stubs of ``pg_changestream.listener``."""

from typing import Callable, Optional

from ._native import Consumer, Record

Callback = Callable[[Record], None]

class ChangeListener:
    """Calls registered functions per operation on the caller's thread and commits after
    each bundle's callbacks returned."""

    consumer: Consumer
    limit: int
    wait_ms: int
    commit_timeout_ms: Optional[int]
    def __init__(self, consumer: Consumer, *, limit: int = 500, wait_ms: int = 1000,
                 commit_timeout_ms: Optional[int] = 30000) -> None:
        """``limit``/``wait_ms`` go to ``poll``, ``commit_timeout_ms`` to ``commit``."""
    def on_insert(self, callback: Callback) -> Callback:
        """Calls ``callback(record)`` per inserted (and, without ``on_read``, backfilled) row."""
    def on_update(self, callback: Callback) -> Callback:
        """Calls ``callback(record)`` per updated row."""
    def on_delete(self, callback: Callback) -> Callback:
        """Calls ``callback(record)`` per deleted row."""
    def on_truncate(self, callback: Callback) -> Callback:
        """Calls ``callback(record)`` per truncated table."""
    def on_read(self, callback: Callback) -> Callback:
        """Calls ``callback(record)`` per backfilled row."""
    def stop(self) -> None:
        """Makes ``run`` return after the current bundle."""
    def run_once(self) -> int:
        """One poll, its callbacks, its commit; the number of records."""
    def run(self, max_records: Optional[int] = None) -> int:
        """``run_once`` until ``stop()`` or ``max_records``; the number handled."""
