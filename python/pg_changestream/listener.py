"""The callback style: register functions per operation, then run a loop that polls,
calls them on the caller's thread and commits after each batch of callbacks returns."""

from __future__ import annotations

import threading
from typing import Callable, Dict, List, Optional

from ._native import Consumer, Record

Callback = Callable[[Record], None]

_OPS = ("insert", "update", "delete", "truncate")


class ChangeListener:
    """Calls registered functions for the records of a consumer.

    ::

        listener = ChangeListener(consumer)

        @listener.on_insert
        def added(record):
            print(record.get_current_image().get_value())

        listener.on_delete(lambda record: print(record.get_record_key()))
        listener.run()            # until stop() (from a callback or another thread) or Ctrl-C

    Each poll's records are passed to the callbacks in commit order, on the thread that
    calls ``run`` / ``run_once``; when every callback of the bundle has returned, the bundle
    is committed (whatever the consumer's commit mode). If a callback raises, nothing of
    that bundle is committed, the exception propagates, and the records are delivered again
    after ``consumer.reset()`` or to the group's next consumer. Records of operations
    without a callback (and backfill ``read`` records, handled by ``on_insert`` unless
    ``on_read`` is set) are committed with the rest.
    """

    def __init__(self, consumer: Consumer, *, limit: int = 500, wait_ms: int = 1000,
                 commit_timeout_ms: Optional[int] = 30000) -> None:
        """``limit`` and ``wait_ms`` are passed to ``consumer.poll``; ``commit_timeout_ms``
        to ``bundle.commit``."""
        self.consumer = consumer
        self.limit = limit
        self.wait_ms = wait_ms
        self.commit_timeout_ms = commit_timeout_ms
        self._callbacks: Dict[str, List[Callback]] = {op: [] for op in _OPS + ("read",)}
        self._stop = threading.Event()

    def _register(self, op: str, callback: Callback) -> Callback:
        self._callbacks[op].append(callback)
        return callback

    def on_insert(self, callback: Callback) -> Callback:
        """Calls ``callback(record)`` for every inserted row (and every backfilled row,
        unless ``on_read`` is used). Usable as a decorator."""
        return self._register("insert", callback)

    def on_update(self, callback: Callback) -> Callback:
        """Calls ``callback(record)`` for every updated row. Usable as a decorator."""
        return self._register("update", callback)

    def on_delete(self, callback: Callback) -> Callback:
        """Calls ``callback(record)`` for every deleted row. Usable as a decorator."""
        return self._register("delete", callback)

    def on_truncate(self, callback: Callback) -> Callback:
        """Calls ``callback(record)`` once per truncated table. Usable as a decorator."""
        return self._register("truncate", callback)

    def on_read(self, callback: Callback) -> Callback:
        """Calls ``callback(record)`` for every row of a backfill
        (``StartLocation.earliest()``). Usable as a decorator."""
        return self._register("read", callback)

    def stop(self) -> None:
        """Makes ``run`` return after the current bundle (safe from any thread)."""
        self._stop.set()

    def run_once(self) -> int:
        """Polls once, calls the callbacks, commits; returns the number of records."""
        bundle = self.consumer.poll(limit=self.limit, wait_ms=self.wait_ms)
        if bundle.is_empty():
            return 0
        reads_as_inserts = not self._callbacks["read"]
        for record in bundle.get_records():
            op = record.get_op()
            if op == "read" and reads_as_inserts:
                op = "insert"
            for callback in self._callbacks.get(op, ()):
                callback(record)
        bundle.commit(timeout_ms=self.commit_timeout_ms)
        return len(bundle)

    def run(self, max_records: Optional[int] = None) -> int:
        """Runs ``run_once`` until ``stop()`` is called or, with ``max_records``, until at
        least that many records were handled. Returns the number of records handled."""
        self._stop.clear()
        handled = 0
        while not self._stop.is_set():
            handled += self.run_once()
            if max_records is not None and handled >= max_records:
                break
        return handled
