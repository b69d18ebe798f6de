"""What a killed run leaves behind in a store folder, removed when the next run starts.

A crop file is written (atomically: a ``.tmp`` file renamed into place) *before* the
transaction that names it commits, so a kill -9 or a power cut can leave crops no
committed cell names and half-written ``.tmp`` files. At the start of a capture run,
:func:`after_interrupted_runs` finds the runs that never ended, checks the file
(``PRAGMA quick_check``), removes those leftovers, logs how many, and marks the runs
interrupted in their summary.

It must never remove a crop another edge-app is about to commit (two microscopes
writing one store): every capture run holds a shared ``flock`` on ``cytoedge.lock``
for its whole life, and the sweep runs only when it can take that lock exclusively,
i.e. when no other run is writing.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cytoedge.edge_app.errors import StoreError
from cytoedge.edge_app.store import CROPS_DIR, Store

try:
    import fcntl
except ImportError:  # not a POSIX system: one writer per store is then the user's to keep
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("cytoedge.edge_app")

LOCK_FILE = "cytoedge.lock"
TMP_SUFFIX = ".tmp"  # edge_app.atomic's temporary files: ".<name>.<random>.tmp"
SWEPT = ("crops", "annotated")  # the folders a run writes files into (besides the SQLite file)


class WriterLock:
    """A capture run's hold on a store folder: shared while it runs, exclusive only while it sweeps."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder) / LOCK_FILE
        try:
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise StoreError(f"cannot create {self.path} ({exc.strerror or exc}): choose a writable --out") from None

    def try_exclusive(self) -> bool:
        """Take the lock exclusively if no other run holds it (never waits)."""
        if fcntl is None:
            return True
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def share(self) -> None:
        """Hold the lock shared (waits while another run sweeps)."""
        if fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_SH)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def _is_tmp(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(TMP_SUFFIX)


def find_leftovers(store: Store) -> tuple[list[Path], list[Path]]:
    """(crop files no cell names, temporary files) in the store folder's crops/ and annotated/ trees."""
    named = store.referenced_crops()
    orphans, tmps = [], []
    for top in SWEPT:
        root = store.folder / top
        if not root.is_dir():
            continue
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                path = Path(dirpath) / name
                if _is_tmp(path):
                    tmps.append(path)
                elif top == CROPS_DIR and path.suffix == ".png" \
                        and path.relative_to(store.folder).as_posix() not in named:
                    orphans.append(path)
    tmps += [p for p in store.folder.glob(f".*{TMP_SUFFIX}") if p.is_file()]
    return orphans, tmps


def remove_leftovers(store: Store) -> dict[str, int]:
    """Remove crop files no cell names and temporary files; ``{"orphan_crops": n, "temporary_files": m}``."""
    orphans, tmps = find_leftovers(store)
    removed = {"orphan_crops": 0, "temporary_files": 0}
    for kind, paths in (("orphan_crops", orphans), ("temporary_files", tmps)):
        for path in paths:
            try:
                path.unlink()
                removed[kind] += 1
            except OSError as exc:
                log.warning("cannot remove leftover %s: %s", path, exc.strerror or exc)
    return removed


def after_interrupted_runs(store: Store, lock: WriterLock) -> dict[str, int]:
    """At the start of a capture run: if earlier runs died (kill -9, crash, power cut) and no other run writes
    this store, check the file, remove what they left behind and mark them interrupted; then hold the lock shared.

    A damaged file is a :class:`StoreError` (one line: check and recover it). Returns what was done, e.g.
    ``{"interrupted_runs": 1, "orphan_crops": 3, "temporary_files": 1}`` (empty when there was nothing to do).
    Only an interrupted run leaves leftovers, so a store whose runs all ended pays nothing here (on a store of
    a million cells the check and the sweep take seconds: ``python -m cytoedge.benchmarks.store_damage``).
    """
    if not lock.try_exclusive():
        lock.share()
        log.info("another edge-app is writing %s: leftovers of killed runs are left for later", store.folder)
        return {}
    try:
        dead = store.unfinished_runs()  # no other run holds the lock: these are not running
        if not dead:
            return {}
        verdict = store.quick_check()
        if verdict != "ok":
            raise StoreError(f"store {store.db_path} is damaged (PRAGMA quick_check: {verdict}) after an interrupted "
                             f"run: see what is readable with 'edge-app store check --out {store.folder}', then copy "
                             f"every readable row into a new file with 'edge-app store recover --out {store.folder}'")
        removed = remove_leftovers(store)
        store.mark_interrupted(dead, "interrupted (kill, crash or power cut): found unfinished by a later run")
        log.info("%d earlier run(s) did not finish: store checked (ok), %d orphan crop(s) and %d temporary file(s) "
                 "removed", len(dead), removed["orphan_crops"], removed["temporary_files"])
        return {"interrupted_runs": len(dead), **removed}
    finally:
        lock.share()
