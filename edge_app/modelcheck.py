"""A model file the interpreter cannot safely load is refused in one line, never a crash.

The card's SHA-256 proves that a file is the one the card names, not that the file is
sound: a ``.tflite`` with flipped bytes whose card was updated to match loads in LiteRT
without any check of the flatbuffer (the Python interpreter builds the model unverified)
and can segfault the app, or load and compute something else. No kept Python package
verifies a TFLite flatbuffer (the ``flatbuffers`` runtime has no verifier; the ``tflite``
package only reads), so :func:`probe_model_file` loads the file and invokes it once at
batch 1 and once at the largest batch the card allows in a **child process**, with zeros
in, and asks that every output be finite. A crash there (SIGSEGV, SIGABRT), an error, a
hang or a non-finite output is a :class:`~edge_app.errors.ModelCardError` for the parent,
which never loads such a file. Measured with ``python -m cytoedge.benchmarks.model_damage``
(docs/reliability.md#reliability-what-is-promised).

A file that passed is remembered by its SHA-256 and the runtime's version (an empty
marker file under ``$XDG_CACHE_HOME/cytoedge/probed``), so a restart loaded with the same
model pays nothing; the marker cannot vouch for other bytes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from cytoedge.edge_app.errors import ModelCardError
from cytoedge.edge_app.interpreter import RUNTIMES

PROBE_TIMEOUT_S = 120.0

# Run by ``python -c`` in the child: only the runtime and numpy, nothing of this repository.
_CHILD = r"""
import importlib, sys
import numpy as np
path, module, attr, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
obj = importlib.import_module(module)
for part in attr.split("."):
    obj = getattr(obj, part)
try:
    interp = obj(model_path=path, num_threads=1)
    interp.allocate_tensors()
    inp = interp.get_input_details()
    if len(inp) != 1:
        raise ValueError(f"{len(inp)} inputs")
    shape = [int(v) for v in inp[0]["shape"]]
    dynamic = int(inp[0].get("shape_signature", inp[0]["shape"])[0]) == -1
    for n in sorted({1, batch}):
        if n != shape[0]:
            if not dynamic:
                continue
            interp.resize_tensor_input(inp[0]["index"], [n, *shape[1:]])
            interp.allocate_tensors()
        interp.set_tensor(inp[0]["index"], np.zeros([n, *shape[1:]], inp[0]["dtype"]))
        interp.invoke()
        for out in interp.get_output_details():
            value = interp.get_tensor(out["index"])
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise ValueError(f"output {out['name']!r} is not finite on a zero input")
except Exception as exc:
    text = " ".join(str(exc).split()) or type(exc).__name__
    sys.stdout.write("ERROR " + text[:300])
    sys.exit(3)
sys.stdout.write("OK")
"""


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cytoedge" / "probed"


def _marker(sha256: str, runtime: str, version: str) -> Path:
    return _cache_dir() / f"{sha256}-{runtime}-{version}"


def probe_model_file(path: str | os.PathLike[str], sha256: str, runtime: str, version: str, *, max_batch: int = 1,
                     timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Load and invoke ``path`` once in a child process; raise :class:`ModelCardError` if that is not safe.

    Returns True when the child ran, False when a marker said this file (by SHA-256) already passed.
    """
    marker = _marker(sha256, runtime, version)
    if marker.is_file():
        return False
    module, attr = RUNTIMES[runtime]
    try:
        done = subprocess.run([sys.executable, "-c", _CHILD, str(path), module, attr, str(max(1, max_batch))],
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ModelCardError(f"{Path(path).name} did not finish one inference in {timeout:g} s in a test process: "
                             "it is damaged or not a model for this device; copy the model folder again or re-run "
                             "edge-convert") from None
    if done.returncode != 0:
        raise ModelCardError(f"{Path(path).name} cannot be run safely ({_why(done)}): it is damaged although its "
                             "SHA-256 matches the card (the card was rewritten to match); copy the model folder "
                             "again from the conversion machine, or re-run edge-convert")
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass  # no writable cache: the probe simply runs again next time
    return True


def _why(done: subprocess.CompletedProcess) -> str:
    if done.stdout.startswith("ERROR "):
        return f"the interpreter refused it: {done.stdout[6:]}"
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f"signal {-done.returncode}"
        return f"the interpreter crashed with {name} loading or running it"
    last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    return f"the test process failed: {last[:200]}"
