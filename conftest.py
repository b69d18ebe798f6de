"""pytest collects the docstring examples itself: every module of the four packages, and the pi-check scripts.

``pytest`` (testpaths in pyproject.toml) walks ``train/ convert/ edge_app/ benchmarks/ cytoedge/`` and
``hardware/pi/check/`` beside ``tests/``. Every module there is a doctest module, a package's module imported
under its installed name ``cytoedge.<package>.<module>`` (pytest's own ``--doctest-modules`` would import
``edge_app/report.py`` a second time as ``edge_app.report``, whose classes are not those the code raises), a
pi-check script from its file, as ``make pi-check`` runs it. No list of modules to keep up to date: a new
module's examples run.

A module that needs an optional package this environment lacks (torch on a Pi's ``[edge]`` install) is
reported as skipped, naming the missing package; in the full environment (``make test``) every module imports.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from _pytest.doctest import DoctestModule

ROOT = Path(__file__).resolve().parent
PACKAGES = {"cytoedge": "cytoedge", "train": "cytoedge.train", "convert": "cytoedge.convert",
            "edge_app": "cytoedge.edge_app", "benchmarks": "cytoedge.benchmarks"}
SCRIPTS = {ROOT / "hardware" / "pi" / "check": "pi_check_"}  # folder of scripts -> prefix of their module names


def module_name(path: Path) -> str | None:
    """``edge_app/web/app.py`` -> ``cytoedge.edge_app.web.app``; ``hardware/pi/check/compare.py`` ->
    ``pi_check_compare``; ``None`` for any other file."""
    path = path.resolve()
    if path.suffix != ".py" or path.name == "__main__.py":
        return None
    if path.parent in SCRIPTS:
        return SCRIPTS[path.parent] + path.stem
    try:
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
    except ValueError:  # not in this checkout
        return None
    if len(parts) < 2 or parts[0] not in PACKAGES:
        return None
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGES[parts[0]], *parts[1:]])


def _load_script(name: str, path: Path) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


class ModuleDoctests(DoctestModule):
    """A module's doctests, the module imported by its installed name (a script: from its file)."""

    def _getobj(self) -> ModuleType:
        name = module_name(self.path)
        try:
            if self.path.resolve().parent in SCRIPTS:
                return _load_script(name, self.path)
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] != "cytoedge":
                pytest.skip(f"{name} needs {exc.name}, which is not installed here", allow_module_level=True)
            raise


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> ModuleDoctests | None:
    return ModuleDoctests.from_parent(parent, path=file_path) if module_name(file_path) else None
