"""The one direction of imports (docs/architecture.md): train -> edge_app <- convert, benchmarks -> edge_app.

Read from the sources (``ast``), so an import that only a rare path runs is caught too:

- ``edge_app`` is the leaf: it imports no other room, ever, and no torch / ONNX; TensorFlow (the last
  fallback TFLite interpreter) only inside a function.
- ``train``, ``convert`` and ``benchmarks`` import one another only inside functions, never at import time.
- ``benchmarks`` (bench-device, on a Pi with the edge dependencies) imports no heavy library at import time.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOMS = ("train", "convert", "edge_app", "benchmarks")
NEVER_IN_EDGE = {"torch", "torchvision", "timm", "onnx", "onnxruntime", "onnx2tf", "onnxsim"}
HEAVY = NEVER_IN_EDGE | {"tensorflow", "tf_keras", "keras"}


def imports(source: str, room: str) -> list[tuple[str, bool, int]]:
    """(module imported, at import time?, line) of every import; ``if TYPE_CHECKING:`` blocks are not run."""
    found: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, at_import: bool) -> None:
        for child in ast.iter_child_nodes(node):
            now = at_import and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), now)
                continue
            if isinstance(child, ast.Import):
                found.extend((a.name, now, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                name = f"cytoedge.{room}" if child.level else (child.module or "")  # relative: its own room
                found.append((name, now, child.lineno))
            visit(child, now)

    visit(ast.parse(source), True)
    return found


def breaches(source: str, room: str) -> list[str]:
    """What in this module's imports breaks the rule."""
    out = []
    for name, at_import, line in imports(source, room):
        parts = name.split(".")
        other = parts[1] if parts[0] == "cytoedge" and len(parts) > 1 and parts[1] in ROOMS else room
        if other != room and (room == "edge_app" or (at_import and other != "edge_app")):
            out.append(f"line {line}: {room} imports {name}" + ("" if room == "edge_app" else " at import time"))
        if room == "edge_app" and parts[0] in NEVER_IN_EDGE:
            out.append(f"line {line}: edge_app imports {name}")
        elif room in ("edge_app", "benchmarks") and at_import and parts[0] in HEAVY:
            out.append(f"line {line}: {room} imports {name} at import time")
    return out


def modules() -> list[tuple[str, Path]]:
    return [(room, p) for room in ROOMS for p in sorted((REPO / room).rglob("*.py")) if "__pycache__" not in p.parts]


@pytest.mark.parametrize("room, path", modules(), ids=lambda v: str(v.relative_to(REPO)) if isinstance(v, Path) else v)
def test_every_module_keeps_the_direction_of_imports(room, path):
    assert breaches(path.read_text(encoding="utf-8"), room) == []


def test_the_rule_sees_what_it_forbids():
    bad = ("from __future__ import annotations\nfrom typing import TYPE_CHECKING\nimport tensorflow\n"
           "from cytoedge.train.config import TrainConfig\nif TYPE_CHECKING:\n    from cytoedge.convert import x\n"
           "def f():\n    import torch\n    from cytoedge.benchmarks import cli\n")
    assert breaches(bad, "edge_app") == ["line 3: edge_app imports tensorflow at import time",
                                         "line 4: edge_app imports cytoedge.train.config",
                                         "line 8: edge_app imports torch",
                                         "line 9: edge_app imports cytoedge.benchmarks"]
    assert breaches(bad, "convert") == ["line 4: convert imports cytoedge.train.config at import time"]
    assert breaches(bad, "benchmarks") == ["line 3: benchmarks imports tensorflow at import time",
                                           "line 4: benchmarks imports cytoedge.train.config at import time"]
    # the real tree: the other rooms do lean on edge_app at import time (the scan reads them)
    seen = {n.split(".")[1] for r, p in modules() if r == "train" for n, now, _ in imports(p.read_text(), r)
            if now and n.startswith("cytoedge.")}
    assert "edge_app" in seen
