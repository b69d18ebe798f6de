"""A TFLite interpreter from whichever runtime is installed, built once.

The chain: ``ai-edge-litert`` (LiteRT, the maintained one) -> ``tflite-runtime``
(last release 2.14, numpy < 2 only) -> TensorFlow's ``tf.lite`` (imported only here,
only when the first two are missing). ``prefer`` (a board profile's ``interpreter``)
moves one runtime to the front. No runtime at all is an
:class:`InterpreterUnavailableError` that says what to install.

The runtime's native INFO lines ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", written once per
process by C++ straight to file descriptor 2, with no option or environment variable to turn it off) follow
Python logging: when INFO is off (``edge-app --quiet``), :func:`load_interpreter` keeps them off the terminal.
It does not swallow anything else: what fd 2 receives while the interpreter is built (another thread's log
line, a native warning) is written back to it at once, only the runtime's ``INFO:`` lines left out.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cytoedge.edge_app.errors import InterpreterUnavailableError, ModelCardError

# runtime name -> (module to import, attribute holding the Interpreter class)
RUNTIMES: dict[str, tuple[str, str]] = {
    "litert": ("ai_edge_litert.interpreter", "Interpreter"),
    "tflite-runtime": ("tflite_runtime.interpreter", "Interpreter"),
    "tensorflow": ("tensorflow", "lite.Interpreter"),
}


log = logging.getLogger(__name__)
NATIVE_INFO = b"INFO: "  # how TFLite's minimal logger starts an INFO line


@contextlib.contextmanager
def _native_info_filtered(active: bool) -> Iterator[None]:
    """While the block runs, fd 2 goes to a temporary file; then every line of it but the runtime's ``INFO:``
    lines goes to the real fd 2 (a line another thread logged meanwhile comes late, never not at all)."""
    if not active:
        yield
        return
    try:
        sys.stderr.flush()
        tmp = tempfile.TemporaryFile()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr (a daemon that closed it): nothing to filter
        yield
        return
    os.dup2(tmp.fileno(), 2)
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        tmp.seek(0)
        kept = b"".join(line for line in tmp.read().splitlines(keepends=True) if not line.startswith(NATIVE_INFO))
        tmp.close()
        if kept:
            os.write(2, kept)


@dataclass
class LoadedInterpreter:
    interpreter: Any  # the runtime's Interpreter, tensors allocated
    runtime: str  # a key of RUNTIMES
    version: str
    num_threads: int


def interpreter_class(prefer: str | None = None) -> tuple[str, Callable[..., Any], str]:
    """(runtime name, Interpreter class, version) of the first runtime that imports."""
    order = list(RUNTIMES)
    if prefer in RUNTIMES:
        order.remove(prefer)
        order.insert(0, prefer)
    why: list[str] = []
    for name in order:
        module_name, attr = RUNTIMES[name]
        try:
            module = importlib.import_module(module_name)
            obj: Any = module
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as exc:  # tflite-runtime under numpy 2 raises AttributeError/ImportError
            why.append(f"{name}: {type(exc).__name__}")
            continue
        return name, obj, _version(name)
    raise InterpreterUnavailableError(
        f"no TFLite interpreter could be imported ({'; '.join(why)}): install one with "
        "'pip install ai-edge-litert' (or 'pip install -e .[edge]')")


def _version(runtime: str) -> str:
    from importlib import metadata

    dist = {"litert": "ai-edge-litert", "tflite-runtime": "tflite-runtime", "tensorflow": "tensorflow"}[runtime]
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def load_interpreter(model_path: str | Path, num_threads: int, prefer: str | None = None) -> LoadedInterpreter:
    """Build the interpreter for one ``.tflite`` file with ``num_threads`` threads and allocate its tensors."""
    if num_threads < 1:
        raise InterpreterUnavailableError(f"--threads must be >= 1, got {num_threads}")
    name, cls, version = interpreter_class(prefer)
    try:
        with _native_info_filtered(not log.isEnabledFor(logging.INFO)):
            interp = cls(model_path=str(model_path), num_threads=num_threads)
            interp.allocate_tensors()  # the XNNPACK delegate is created (and announced) here
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelCardError(f"{name} {version} cannot load {model_path} ({first}): convert the model again "
                             "with this release's edge-convert") from None
    return LoadedInterpreter(interp, name, version, num_threads)
