"""The pure logic of `make pi-check` (hardware/pi/check): the x86-vs-Pi comparison.

The emulation itself is not run here (it needs root, qemu and minutes): `make pi-check` runs it.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sqlite3
import sys
from pathlib import Path

import pytest

CHECK_DIR = Path(__file__).resolve().parents[2] / "hardware/pi/check"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"pi_check_{name}", CHECK_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


compare = _load("compare")

STEP = 0.0193  # the int8 logits' quantisation scale


def _probe() -> dict:
    rows = {f"crop_{i}.bmp": {"class": "parabasal" if i % 2 else "koilocytotic",
                              "logits": [0.1 * i, -0.2, STEP * 40, 1.0 - 0.05 * i, 0.3]} for i in range(6)}

    def fmt(step: float) -> dict:
        return {"logit_step": step, "runtime": "litert 2.1.0", "keys": sorted(rows),
                "own": copy.deepcopy(rows), "same_input": copy.deepcopy(rows)}

    return {"machine": "x86_64", "versions": {"numpy": "1.26.4"},
            "cells": {"field_001.png": [[10, 20, 30, 40], [50, 60, 70, 80]]},
            "formats": {"tflite-int8": fmt(STEP), "tflite-fp32": fmt(0.0)}}


def _by_name(checks) -> dict:
    return {c.name: c for c in checks}


INT8_SAME, INT8_OWN = "classifier tflite-int8, same input tensors", "end to end tflite-int8, each machine's own preprocessing"
FP32_SAME = "classifier tflite-fp32, same input tensors"


def test_identical_probes_pass_and_say_bit_identical():
    checks = _by_name(compare.compare_probe(_probe(), _probe()))
    assert all(c.ok for c in checks.values()) and len(checks) == 5
    assert "6/6 classes identical, logits bit-identical" in checks[INT8_SAME].detail
    assert "6/6 classes identical; logits bit-identical" in checks[INT8_OWN].detail
    assert "identical boxes, 2 cells in 1 fields" in checks["finder: cells per field"].detail


def test_on_the_same_input_int8_logits_may_move_by_one_step_not_more():
    a, b = _probe(), _probe()
    b["formats"]["tflite-int8"]["same_input"]["crop_3.bmp"]["logits"][0] += STEP  # exactly one step
    ok = _by_name(compare.compare_probe(a, b))[INT8_SAME]
    assert ok.ok and "1.00 int8 steps" in ok.detail
    b["formats"]["tflite-int8"]["same_input"]["crop_3.bmp"]["logits"][0] += STEP  # two steps
    bad = _by_name(compare.compare_probe(a, b))[INT8_SAME]
    assert not bad.ok and "2.00 int8 steps" in bad.detail


def test_on_the_same_input_fp32_logits_within_1e_4():
    a, b = _probe(), _probe()
    b["formats"]["tflite-fp32"]["same_input"]["crop_1.bmp"]["logits"][2] += 5e-5
    assert _by_name(compare.compare_probe(a, b))[FP32_SAME].ok
    b["formats"]["tflite-fp32"]["same_input"]["crop_1.bmp"]["logits"][2] += 1e-4
    assert not _by_name(compare.compare_probe(a, b))[FP32_SAME].ok


def test_end_to_end_classes_must_match_while_logits_may_move_with_the_inputs():
    a, b = _probe(), _probe()
    b["formats"]["tflite-int8"]["own"]["crop_2.bmp"]["logits"][4] += 7 * STEP  # OpenCV rounded a pixel otherwise
    b["formats"]["tflite-int8"]["inputs"] = {"total": 245760, "differ": 16, "max_difference": 1.0}
    ok = _by_name(compare.compare_probe(a, b))[INT8_OWN]
    assert ok.ok and "7.00 int8 steps" in ok.detail and "16 of 245760 input values differ (by at most 1" in ok.detail
    b["formats"]["tflite-int8"]["own"]["crop_2.bmp"]["class"] = "dyskeratotic"
    bad = _by_name(compare.compare_probe(a, b))[INT8_OWN]
    assert not bad.ok and "5/6 classes identical" in bad.detail and "class differs: crop_2.bmp" in bad.detail


def test_a_changed_class_a_missing_crop_and_a_moved_cell_are_each_named():
    a, b = _probe(), _probe()
    b["formats"]["tflite-int8"]["same_input"]["crop_2.bmp"]["class"] = "dyskeratotic"
    del b["formats"]["tflite-fp32"]["same_input"]["crop_5.bmp"]
    b["cells"]["field_001.png"][1][0] += 1
    checks = _by_name(compare.compare_probe(a, b))
    assert not checks[INT8_SAME].ok and "class differs: crop_2.bmp" in checks[INT8_SAME].detail
    assert "5/6 classes identical" in checks[INT8_SAME].detail
    assert not checks[FP32_SAME].ok and "crop_5.bmp" in checks[FP32_SAME].detail
    assert not checks["finder: cells per field"].ok and "field_001.png: boxes differ" in checks["finder: cells per field"].detail
    del b["formats"]["tflite-fp32"]
    assert "ran on one side only" in _by_name(compare.compare_probe(a, b))["classifier tflite-fp32"].detail


def _store(path: Path, work: str, out: str, *, board: str, started: str, seconds: float, cls: str = "parabasal",
           confidence: float = 0.31, extra_cell: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE runs (id INTEGER PRIMARY KEY, started TEXT, source TEXT, board TEXT, threads INTEGER,
                           settings TEXT, summary TEXT);
        CREATE TABLE frames (id INTEGER PRIMARY KEY, name TEXT, captured TEXT, n_cells INTEGER, finder_ms REAL);
        CREATE TABLE cells (id INTEGER PRIMARY KEY, frame_id INTEGER, x INTEGER, class_name TEXT, grp TEXT,
                            confidence REAL, unknown INTEGER, crop_path TEXT);
    """)
    con.execute("INSERT INTO runs VALUES (1, ?, ?, ?, 2, ?, ?)",
                (started, f"{work}/fields", board, json.dumps({"min_confidence": 0.0}),
                 json.dumps({"store": f"{out}/store", "cells": 2, "seconds": seconds, "stage_ms_mean": {"find": seconds}})))
    con.execute("INSERT INTO frames VALUES (1, 'field_001.png', ?, 2, ?)", (started, seconds * 100))
    cells = [(1, 1, 728, cls, "normal", confidence, 0, None), (2, 1, 480, "koilocytotic", "abnormal", 0.4, 0, "crops/a.png")]
    if extra_cell:
        cells.append((3, 1, 12, "metaplastic", "benign", 0.5, 0, None))
    con.executemany("INSERT INTO cells VALUES (?, ?, ?, ?, ?, ?, ?, ?)", cells)
    con.commit()
    con.close()
    return path


def test_store_rows_must_match_except_times_timings_board_and_work_folders(tmp_path):
    norm = compare.Normalizer(["/tmp/x86work", "/work"], ["/tmp/x86work/x86", "/work/pi4"])
    a = _store(tmp_path / "a.sqlite", "/tmp/x86work", "/tmp/x86work/x86", board="x86-workstation",
               started="2026-12-01T10:00:00", seconds=2.1)
    b = _store(tmp_path / "b.sqlite", "/work", "/work/pi4", board="rpi4", started="2026-12-01T10:07:00", seconds=41.0,
               confidence=0.31 + 5e-5)
    check = compare.compare_store(a, b, norm)
    assert check.ok, check.detail
    assert "identical (cells 2, frames 1, runs 1)" == check.detail

    c = _store(tmp_path / "c.sqlite", "/work", "/work/pi4", board="rpi4", started="x", seconds=1.0, cls="metaplastic", confidence=0.5)
    bad = compare.compare_store(a, c, norm)
    assert not bad.ok
    assert "cells[0].class_name: 'parabasal' != 'metaplastic'" in bad.detail
    assert "cells[0].confidence" in bad.detail and "2 difference(s)" in bad.detail

    d = _store(tmp_path / "d.sqlite", "/work", "/work/pi4", board="rpi4", started="x", seconds=1.0, extra_cell=True)
    assert "cells: 2 items != 3 items" in compare.compare_store(a, d, norm).detail


def _side(work: Path | str, name: str, board: str, when: str, verdict: str = "refer for review",
          folder: Path | None = None) -> Path:
    """One side's outputs in ``folder`` (default WORK/NAME), naming paths as that side did (``work``/``name``)."""
    out = f"{work}/{name}"
    folder = folder or Path(work) / name
    folder.mkdir(parents=True)
    report = {"slide": "pi-check", "generated": when, "store": f"{out}/store", "cells": 83,
              "triage": {"verdict": verdict}, "review": [{"cell": 7, "crop": f"{out}/store/crops/7.png"}],
              "runs": [{"started": when, "board": board, "source": f"{work}/fields"}]}
    (folder / "report.json").write_text(json.dumps(report))
    (folder / "report.md").write_text(f"# Slide pi-check\n\n**Triage: {verdict}**\n\nReport generated {when}.\n\n"
                                      f"| 7 | {out}/store/crops/7.png |\n\n- {when} net (tflite-int8, {board}, 2 threads)\n")
    (folder / "probe.json").write_text(json.dumps(_probe()))
    _store(folder / "store/cytoedge.sqlite", str(work), out, board=board, started=when, seconds=1.0)
    return folder


def test_reports_compare_equal_across_machines_but_not_across_verdicts(tmp_path):
    a = _side(tmp_path, "x86", "x86-workstation", "2026-12-01T10:00:00+00:00")
    b = _side("/work", "pi4", "rpi4", "2026-12-01T10:09:31+00:00", folder=tmp_path / "pi4")
    roots, outs = [str(tmp_path), "/work"], [str(a), "/work/pi4"]
    checks = _by_name(compare.compare_dirs(a, b, roots, outs))
    assert checks["report (json)"].ok and checks["report (markdown)"].ok, checks
    assert checks["store: every table, row by row"].ok, checks
    c = _side("/work", "pi5", "rpi5", "2026-12-01T11:00:00+00:00", verdict="insufficient cells", folder=tmp_path / "pi5")
    checks = _by_name(compare.compare_dirs(a, c, roots, [str(a), "/work/pi5"]))
    assert not checks["report (json)"].ok and "triage.verdict" in checks["report (json)"].detail
    assert not checks["report (markdown)"].ok and "line 3" in checks["report (markdown)"].detail
    # without telling it where the Pi wrote, its paths differ from x86's
    assert not _by_name(compare.compare_dirs(a, b, roots))["report (json)"].ok


def test_main_writes_table_rows_and_exits_1_on_a_difference(tmp_path, capsys):
    a = _side(tmp_path, "x86", "x86-workstation", "2026-12-01T10:00:00+00:00")
    b = _side("/work", "pi4", "rpi4", "2026-12-01T10:09:31+00:00", folder=tmp_path / "pi4")
    rows = tmp_path / "rows.tsv"
    argv = [str(a), str(b), "--roots", str(tmp_path), "/work", "--outs", str(a), "/work/pi4"]
    assert compare.main(argv + ["--rows", str(rows), "--label", "pi4"]) == 0
    lines = rows.read_text().splitlines()
    assert lines and all(line.startswith("pi4: ") and line.count("\t") == 3 for line in lines)
    assert all(line.split("\t")[3].startswith("ok: ") for line in lines)
    probe = json.loads((b / "probe.json").read_text())
    probe["formats"]["tflite-int8"]["same_input"]["crop_0.bmp"]["class"] = "metaplastic"
    (b / "probe.json").write_text(json.dumps(probe))
    assert compare.main(argv) == 1
    assert f"{INT8_SAME}  DIFFERS: 5/6 classes identical" in capsys.readouterr().out
    (b / "report.md").unlink()
    checks = compare.compare_dirs(a, b, [])
    assert [c.name for c in checks] == ["output report.md"] and not checks[0].ok


@pytest.mark.parametrize("key", ["started", "finder_ms", "frames_per_s", "runtime_import_s", "board", "generated",
                                 "board_check"])
def test_run_facts_are_volatile(key):
    assert compare.is_volatile(key)


@pytest.mark.parametrize("key", ["class_name", "confidence", "distance", "n_cells", "grp", "unknown", "verdict", "x"])
def test_results_are_not_volatile(key):
    assert not compare.is_volatile(key)




def _bench(side: Path, board: dict, p50: float) -> None:
    folder = side / "bench" / board["name"]
    folder.mkdir(parents=True)
    doc = {"board": board, "rows": [{"format": "tflite-int8", "status": "ok", "latency": {"p50_ms": p50}}],
           "models": [{"artifacts": {"tflite-int8": {"cost": {"macs": 1000, "params": 10}}}}]}
    (folder / "20261201-120000.json").write_text(json.dumps(doc))


def test_bench_row_names_the_isa_features_the_pi_has_and_lacks(tmp_path):
    isa = {f: f == "asimd" for f in ("asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2")}  # a Cortex-A72
    _bench(tmp_path / "x86", {"name": "x86-workstation", "isa": {"avx2": True}}, 2.0)
    _bench(tmp_path / "pi4", {"name": "rpi4-emulated", "isa": isa, "emulated": "qemu-user cortex-a72 on x86_64"}, 90.0)
    (check,) = compare.compare_bench(tmp_path / "x86", tmp_path / "pi4")
    assert check.ok and "tflite-int8 p50 90.0 ms (qemu-user cortex-a72 on x86_64: not board timings)" in check.detail
    assert check.detail.endswith("ISA features: asimd (not asimdhp, asimddp, i8mm, bf16, sve, sve2)")


def test_confidences_may_move_with_opencv_but_classes_and_unknown_flags_may_not():
    norm = compare.Normalizer([], [])
    x86 = [{"crop": "a.bmp", "class": "parabasal", "unknown": False, "confidence": 0.695769, "score": 0.47265}]
    pi = copy.deepcopy(x86)
    pi[0].update(confidence=0.721415, score=0.473707)  # what OpenCV's resize moved on the emulated Cortex-A72
    assert list(compare.diff(x86, pi, norm)) == []
    pi[0]["confidence"] = 0.755769
    assert list(compare.diff(x86, pi, norm)) == ["[0].confidence: 0.695769 != 0.755769 (more than 0.05 apart)"]
    for key, value in (("class", "metaplastic"), ("unknown", True)):
        other = copy.deepcopy(x86)
        other[0][key] = value
        assert [d.split(":")[0] for d in compare.diff(x86, other, norm)] == [f"[0].{key}"]
    # any other real number keeps the tight bound
    assert list(compare.diff({"abnormal_fraction": 0.30}, {"abnormal_fraction": 0.31}, norm))
