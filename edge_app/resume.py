"""Resume: a rerun on a slide skips the frames the slide already holds, by a stable identity.

One physical frame is one record (DESIGN.md). Every frame of a file source carries a key:

* an image file: ``sha256:<hex>`` of its bytes. The source hashes the bytes it reads for
  the decoder anyway, so the key costs one hash per frame and no extra read; a frame already
  committed is skipped before it is decoded. Chosen over path + size + mtime because those
  change when a slide's folder is copied or moved (USB stick, rsync without ``-t``, another
  mount point) and the rerun would then count every frame again, and because the same field
  saved twice under two names is still one physical frame;
* a video frame: ``video:<fingerprint>#<index>``, the fingerprint being the SHA-256 of the
  file's size and its first and last MiB (hashing a whole video at every start would cost
  seconds on a Pi), so a rerun resumes at the next frame index;
* a camera frame: no key. A camera goes on: every frame it delivers is a new one.

The store holds each key once per slide (a unique index), so even two writers cannot record
a frame twice. ``--rescan`` (:func:`start_slide` with ``rescan=True``) deletes the slide's
earlier frames and cells first, so the new pass replaces them instead of adding to them.
"""

from __future__ import annotations

import hashlib
import logging
import os

from cytoedge.edge_app.store import Store

log = logging.getLogger("cytoedge.edge_app")

VIDEO_SAMPLE = 1 << 20  # bytes hashed at each end of a video file


def file_key(data: bytes | memoryview) -> str:
    """The identity of an image file: the SHA-256 of its bytes.

    >>> file_key(b"")
    'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
    """
    return "sha256:" + hashlib.sha256(data).hexdigest()


def video_fingerprint(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a video's size and its first and last :data:`VIDEO_SAMPLE` bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        h.update(str(size).encode())
        h.update(fh.read(VIDEO_SAMPLE))
        if size > 2 * VIDEO_SAMPLE:
            fh.seek(size - VIDEO_SAMPLE)
        h.update(fh.read(VIDEO_SAMPLE))
    return h.hexdigest()


def video_key(fingerprint: str, index: int) -> str:
    return f"video:{fingerprint}#{index}"


class CommittedFrames:
    """The frame keys a slide holds -> the name each was recorded under; grown as frames commit."""

    def __init__(self, names_by_key: dict[str, str] | None = None) -> None:
        self._names = dict(names_by_key or {})

    def __len__(self) -> int:
        return len(self._names)

    def lookup(self, key: str | None) -> str | None:
        """The name under which the frame with this key was recorded, or None (never for a camera frame)."""
        return None if key is None else self._names.get(key)

    def add(self, key: str | None, name: str) -> None:
        if key is not None:
            self._names[key] = name


def start_slide(store: Store, slide: str, *, rescan: bool = False) -> CommittedFrames:
    """What a run on ``slide`` must skip: nothing after ``--rescan`` (earlier frames deleted), else its frames."""
    if rescan:
        frames, cells = store.clear_slide(slide)
        if frames:
            log.info("--rescan: replaced the %d earlier frames (%d cells) of slide %s", frames, cells, slide)
        return CommittedFrames()
    committed = CommittedFrames(store.frame_keys(slide))
    if len(committed):
        log.info("slide %s already holds %d frames from files: those are skipped (--rescan replaces them)",
                 slide, len(committed))
    return committed

