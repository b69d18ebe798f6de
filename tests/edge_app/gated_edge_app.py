"""``python -m cytoedge.edge_app`` whose folder source, once it has given out every frame, waits to be killed.

The kill -9 test (test_resume.py) starts this instead of edge-app: a run can then never end by itself,
so each kill cuts a run, however fast the host processes the frames. Nothing else changes: the frames,
the finder, the classifier, the store and the commits are the app's own.
"""

from __future__ import annotations

import threading

from cytoedge.edge_app import sources
from cytoedge.edge_app.cli import main

_frames = sources.FileListSource.frames


def _gated(self):  # noqa: ANN001, ANN202
    yield from _frames(self)
    threading.Event().wait()  # never set: the end of the source never comes


sources.FileListSource.frames = _gated
raise SystemExit(main())
