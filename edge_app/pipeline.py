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
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

log = logging.getLogger("cytoedge.edge_app")

T = TypeVar("T")
_END = object()


class Prefetcher(Generic[T]):
    """Iterate ``work(x)`` for every ``x`` of ``items``, computed in a thread one item ahead of the consumer.

    An exception raised by ``items`` or ``work`` is raised to the consumer at the item where it
    happened; :meth:`close` stops asking for more. The thread is a daemon: a source that never
    answers (a hung mount, a camera driver) cannot keep the process alive after a stop, since a
    signal interrupts only the main thread's wait, not the reader's.

    >>> with Prefetcher(iter([1, 2, 3]), lambda x: x * 10) as p:
    ...     list(p)
    [10, 20, 30]
    """

    def __init__(self, items: Iterator[Any], work: Callable[[Any], T], name: str = "cytoedge-reader") -> None:
        self._items, self._work = items, work
        self._asks: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._answers: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()
        self._asked = False  # an item is being computed (or waits in _answers)
        self._done = False

    def _serve(self) -> None:
        while self._asks.get() is not _END:
            try:
                item = next(self._items, _END)
                self._answers.put((True, _END if item is _END else self._work(item)))
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
                self._answers.put((False, exc))

    def _ask(self) -> None:
        self._asks.put(None)
        self._asked = True

    def __iter__(self) -> "Prefetcher[T]":
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        if not self._asked:
            self._ask()
        ok, value = self._answers.get()  # a signal handler that raises interrupts this wait; the answer stays queued
        self._asked = False
        if not ok:  # the work itself failed: nothing more comes
            self._done = True
            raise value
        if value is _END:
            self._done = True
            raise StopIteration
        self._ask()  # read the next frame while this one is processed
        return value

    def close(self, timeout: float = 5.0) -> bool:
        """Stop prefetching: wait up to ``timeout`` s for the item in progress (stop its source first so that it
        ends soon); a source that does not answer by then is left to its daemon thread. True if the thread ended."""
        self._done = True
        self._asks.put(_END)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the source did not answer within %.0f s of the stop; its reader thread is left behind", timeout)
            return False
        return True

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
