"""A TFLite interpreter from whichever runtime is installed, built once.

The chain: ``ai-edge-litert`` (LiteRT, the maintained one) -> ``tflite-runtime``
(last release 2.14, numpy < 2 only) -> TensorFlow's ``tf.lite`` (imported only here,
only when the first two are missing). ``prefer`` (a board profile's ``interpreter``)
moves one runtime to the front. No runtime at all is an
:class:`InterpreterUnavailableError` that says what to install.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
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
        interp = cls(model_path=str(model_path), num_threads=num_threads)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelCardError(f"{name} {version} cannot load {model_path} ({first}): convert the model again "
                             "with this release's edge-convert") from None
    return LoadedInterpreter(interp, name, version, num_threads)
