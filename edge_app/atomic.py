"""Atomic file writes: a reader sees the old file or the whole new one, never half of it.

A file ends with the mode a plain ``open()`` would give it, ``0666 & ~umask`` (0644 under the usual 022), not
``mkstemp``'s private 0600: a model folder that root installs must be readable by the service's user (the
systemd unit runs as ``User=pi``). A private file asks for it (``mode=0o600``); the signing key is one
(:func:`edge_app.signing.generate_keypair`). :func:`public_dir` does the same for a ``mkdtemp`` folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def current_umask() -> int:
    """The process's umask, read without changing it where Linux says it (``os.umask`` sets it process-wide,
    which another thread creating a file at that moment would see)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def public_dir(path: str | os.PathLike[str]) -> Path:
    """Give a folder made by ``tempfile.mkdtemp`` (0700) the mode ``mkdir`` would have: ``0777 & ~umask``."""
    os.chmod(path, 0o777 & ~current_umask())
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, sync_dir: bool = True,
                       mode: int | None = None) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path``.

    The file ends with ``mode`` (default ``0666 & ~umask``, as ``open()`` gives). ``sync_dir=False`` leaves the
    directory's fsync (which makes the rename durable) to the caller, who writes several files and calls
    :func:`fsync_dir` once.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~current_umask() if mode is None else mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if sync_dir:
        _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make the renames and new files in ``directory`` durable (best effort where unsupported)."""
    _fsync_dir(Path(directory))


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
