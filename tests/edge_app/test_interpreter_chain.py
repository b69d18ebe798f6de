"""The interpreter fallback chain: LiteRT -> tflite-runtime -> tf.lite -> a clear error."""

from __future__ import annotations

import sys
import types

import pytest

from cytoedge.edge_app.errors import InterpreterUnavailableError, ModelCardError
from cytoedge.edge_app.interpreter import interpreter_class, load_interpreter


def block(monkeypatch, *names: str) -> None:
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)  # "import name" now raises ImportError


def fake_tensorflow(monkeypatch):
    class FakeInterpreter:  # noqa: D401 - stands in for tf.lite.Interpreter
        pass

    tf = types.ModuleType("tensorflow")
    tf.lite = types.SimpleNamespace(Interpreter=FakeInterpreter)
    monkeypatch.setitem(sys.modules, "tensorflow", tf)
    return FakeInterpreter


def test_litert_comes_first():
    name, cls, version = interpreter_class()
    assert name == "litert" and cls.__module__.startswith("ai_edge_litert") and version != "unknown"


def test_falls_back_to_tensorflow_lite(monkeypatch):
    block(monkeypatch, "ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter")
    fake = fake_tensorflow(monkeypatch)
    name, cls, _ = interpreter_class()
    assert name == "tensorflow" and cls is fake


def test_board_preference_moves_a_runtime_first(monkeypatch):
    fake = fake_tensorflow(monkeypatch)
    assert interpreter_class(prefer="tensorflow")[1] is fake
    assert interpreter_class(prefer="litert")[0] == "litert"


def test_no_runtime_is_a_clear_error(monkeypatch):
    block(monkeypatch, "ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime",
          "tflite_runtime.interpreter", "tensorflow")
    with pytest.raises(InterpreterUnavailableError, match="pip install ai-edge-litert"):
        interpreter_class()


def test_a_file_that_is_not_a_model_is_refused(tmp_path):
    bad = tmp_path / "model_int8.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelCardError, match="cannot load"):
        load_interpreter(bad, 1)
    with pytest.raises(InterpreterUnavailableError, match="--threads must be >= 1"):
        load_interpreter(bad, 0)


QUIET_LOAD = r"""
import logging, sys, threading, time
from cytoedge.edge_app.interpreter import load_interpreter

logging.basicConfig(format="t: %(message)s", level=logging.WARNING if sys.argv[2] == "quiet" else logging.INFO)
log = logging.getLogger("another.stage")

def talk():
    for i in range(300):
        log.warning("line %d", i)
        time.sleep(0.001)

t = threading.Thread(target=talk)
t.start()
time.sleep(0.01)
print(load_interpreter(sys.argv[1], 1).runtime, flush=True)
t.join()
"""


@pytest.mark.parametrize("mode", ["quiet", "loud"])
def test_quiet_keeps_the_runtimes_info_line_off_and_loses_no_other_line(device_model, mode):
    """Issue 23.8b: 'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.' was printed even with --quiet. It is
    kept off while the interpreter is built, and what another thread logs meanwhile still arrives, every line."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", QUIET_LOAD, str(device_model / "model_int8.tflite"), mode],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("t: line")]  # those of the window come back late
    assert sorted(lines, key=lambda ln: int(ln.split()[-1])) == [f"t: line {i}" for i in range(300)]
    said = "Created TensorFlow Lite XNNPACK delegate" in r.stderr
    if mode == "quiet":
        assert not said, r.stderr
    elif r.stdout.strip() == "litert":
        assert said  # LiteRT does say it: without --quiet it stays, as the other INFO lines do
