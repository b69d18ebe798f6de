"""The threads of the frame loop: frame n+1 is read and searched while frame n is classified and
frame n-1 is stored.

::

    reader thread                main thread (edge_app.app)      writer thread
    source: read, hash, decode   classify the crops (LiteRT:     save the crops (PNG, fsync),
    check, find cells, cut       the GIL is released while it    commit the frame, log its line,
    crops  ---- Prefetcher --->  runs)  -------- InOrderWriter -> tell the web view

Each stage is one thread and hands work on in order (one worker per stage, FIFO queues), so
frames commit in source order, log lines come in source order and a frame's cells are
classified in one invocation of exactly its crops, as before: the results are the same as a
loop that does one thing after another. Durability is unchanged: the writer commits a frame
only after its crop files are fsynced (:meth:`edge_app.store.Store.add_frame`). Queues are
bounded (the reader runs one frame ahead, the writer holds at most ``depth`` frames), so a
slow disk slows the loop down instead of filling the memory.

LiteRT's ``invoke``, OpenCV, hashlib, SQLite and ``fsync`` release the GIL, so on a board with
two or more cores the stages overlap: the loop runs at the speed of its slowest stage, the
classifier, instead of the sum of all of them.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

log = logging.getLogger("edge_app")

T = TypeVar("T")
_END = object()


class Prefetcher(Generic[T]):
    """Iterate ``work(x)`` for every ``x`` of ``items``, computed in a thread one item ahead of the consumer.

    An exception raised by ``items`` or ``work`` is raised to the consumer at the item where it
    happened; :meth:`close` stops asking for more (after the item in progress).

    >>> with Prefetcher(iter([1, 2, 3]), lambda x: x * 10) as p:
    ...     list(p)
    [10, 20, 30]
    """

    def __init__(self, items: Iterator[Any], work: Callable[[Any], T], name: str = "cytoedge-reader") -> None:
        self._items, self._work = items, work
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._next: Future | None = None
        self._done = False

    def _one(self) -> Any:
        item = next(self._items, _END)
        return _END if item is _END else self._work(item)

    def __iter__(self) -> "Prefetcher[T]":
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        if self._next is None:
            self._next = self._pool.submit(self._one)
        try:
            value = self._next.result()  # a signal handler that raises interrupts this wait
        except BaseException:
            if self._next.done():  # the work itself failed: nothing more comes
                self._done = True
                self._next = None
            raise
        if value is _END:
            self._done = True
            raise StopIteration
        self._next = self._pool.submit(self._one)  # read the next frame while this one is processed
        return value

    def close(self) -> None:
        """Stop prefetching; waits for the item in progress (stop its source first so that it ends soon)."""
        self._done = True
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "Prefetcher[T]":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InOrderWriter:
    """Runs submitted callables one after another in a thread, in submission order.

    After one raises, the rest are skipped (a frame must not commit after one that failed), and
    the exception is raised in the submitting thread at the next :meth:`submit` or at :meth:`close`.
    At most ``depth`` callables wait: :meth:`submit` blocks beyond that (back-pressure).

    >>> out = []
    >>> w = InOrderWriter()
    >>> for i in range(3):
    ...     w.submit(lambda i=i: out.append(i))
    >>> w.close(); out
    [0, 1, 2]
    """

    def __init__(self, depth: int = 2, name: str = "cytoedge-writer") -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.depth = depth
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: deque[Future] = deque()
        self._failed = threading.Event()

    def _guard(self, fn: Callable[[], None]) -> None:
        if self._failed.is_set():
            return
        try:
            fn()
        except BaseException:
            self._failed.set()
            raise

    def _collect(self, keep: int) -> None:
        """Wait until at most ``keep`` callables are pending; raise the first failure seen."""
        while len(self._pending) > keep or (self._pending and self._pending[0].done()):
            self._pending[0].result()  # raises the callable's exception here
            self._pending.popleft()

    def submit(self, fn: Callable[[], None]) -> None:
        self._collect(self.depth - 1)
        self._pending.append(self._pool.submit(self._guard, fn))

    def close(self, *, drain: bool = True) -> None:
        """``drain``: run everything submitted and raise the first failure; else drop what has not started
        (the callable in progress finishes) and raise nothing."""
        try:
            if drain:
                self._collect(0)
        finally:
            self._pool.shutdown(wait=True, cancel_futures=not drain)
            self._pending.clear()


__all__ = ["InOrderWriter", "Prefetcher"]
