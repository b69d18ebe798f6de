"""bench-device as a user runs it: bad input refused in one line, a real run on a converted model, the report."""

from __future__ import annotations

import base64
import json
import shutil

import pytest

from cytoedge.benchmarks.cli import main
from cytoedge.benchmarks.report import build_report
from cytoedge.edge_app.atomic import sha256_file

FAST = ["--warmup", "1", "--min-time", "0", "--min-runs", "5", "--quiet"]


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _card(folder):
    return json.loads((folder / "model_card.json").read_text())


def _set_card(folder, card):
    (folder / "model_card.json").write_text(json.dumps(card))


def _one_error_line(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("bench-device: error: ")
    return err


def _missing(m, tmp):
    (m / "model_int8.tflite").unlink()
    return [str(m)], "is missing"


def _tampered(m, tmp):
    with open(m / "model_fp32.tflite", "ab") as fh:
        fh.write(b"\0")
    return [str(m)], "does not match its model card"


def _schema(m, tmp):
    card = _card(m)
    card["schema_version"] = 99
    _set_card(m, card)
    return [str(m)], "schema version 99 is not supported"


def _format(m, tmp):
    return [str(m), "--formats", "tflite-int8,tflite-int4"], "unknown format 'tflite-int4'"


def _threads(m, tmp):
    return [str(m), "--threads", "0"], "--threads values must be >= 1"


def _empty_data(m, tmp):
    (tmp / "empty").mkdir()
    return [str(m), "--data", str(tmp / "empty")], "no class folders"


def _not_a_model(m, tmp):
    return [str(tmp)], "no model card"


@pytest.mark.parametrize("breaks", [_missing, _tampered, _schema, _format, _threads, _empty_data, _not_a_model])
def test_bad_input_is_one_line_and_a_nonzero_exit(breaks, bench_model, tmp_path, capsys):
    model = _copy(bench_model, tmp_path / "model")
    argv, message = breaks(model, tmp_path)
    err = _one_error_line(capsys, argv + FAST + ["--out", str(tmp_path / "results")])
    assert message in err
    assert not (tmp_path / "results").exists()  # nothing measured, nothing written


@pytest.fixture(scope="session")
def bench_results(bench_model, synth_tree, tmp_path_factory):
    """Two runs, as two boards: every format with accuracy and frames here, and a Pi-profile run with a broken ONNX."""
    out = tmp_path_factory.mktemp("bench_results")
    rc = main([str(bench_model), "--formats", "tflite-int8,tflite-fp32,onnx,torch", "--threads", "1",
               "--data", str(synth_tree), "--max-images", "30", "--frames", str(synth_tree / "fields"),
               "--out", str(out), *FAST])
    assert rc == 0

    broken = _copy(bench_model, tmp_path_factory.mktemp("broken") / "shufflenet")
    (broken / "model.onnx").write_bytes(b"not an onnx graph")  # passes the hash check, fails in the runtime
    card = _card(broken)
    card["artifacts"]["onnx"]["sha256"] = sha256_file(broken / "model.onnx")
    _set_card(broken, card)
    rc = main([str(broken), "--formats", "tflite-int8,onnx", "--threads", "1,2", "--batch", "1,4", "--board", "rpi5",
               "--out", str(out), *FAST])
    assert rc == 0
    return out


def _doc(folder):
    (path,) = folder.glob("*.json")
    return json.loads(path.read_text())


def test_a_run_measures_every_format_and_writes_one_result_file(bench_results, synth_tree):
    boards = sorted(p.name for p in bench_results.iterdir())
    assert "rpi5" in boards and len(boards) == 2
    doc = _doc(bench_results / next(b for b in boards if b != "rpi5"))
    assert doc["schema"] == "cytoedge-bench/1" and doc["environment"]["numpy"]
    rows = {r["format"]: r for r in doc["rows"]}
    assert set(rows) == {"tflite-int8", "tflite-fp32", "onnx", "torch"}
    for fmt, r in rows.items():
        assert r["status"] == "ok", (fmt, r["reason"])
        lat = r["latency"]
        assert lat["runs"] >= 5 and len(lat["times_ms"]) == lat["runs"]
        assert 0 < lat["min_ms"] <= lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"] <= lat["max_ms"]
        assert lat["throughput_ips"] == pytest.approx(1000 / lat["mean_ms"])
        assert r["time_to_first_inference_ms"] >= r["first_inference_ms"] > 0
        assert r["memory"]["rss_peak_increase_bytes"] > 0 and r["memory"]["rss_peak_reset"]

    (model,) = doc["models"]
    arts = model["artifacts"]
    # the TFLite counter, the ONNX counter and PyTorch's FlopCounterMode count the same network
    torch_macs = model["torch_cost"]["macs"]
    for fmt in ("tflite-int8", "tflite-fp32", "onnx"):
        assert abs(arts[fmt]["cost"]["macs"] / torch_macs - 1) < 0.005, fmt
        assert abs(arts[fmt]["crosscheck"]["relative_difference"]) < 0.005
        assert abs(arts[fmt]["cost"]["params"] / model["torch_cost"]["params"] - 1) < 0.02, fmt
        assert arts[fmt]["cost"]["flops"] == 2 * arts[fmt]["cost"]["macs"]
    act8, act32 = arts["tflite-int8"]["activation"], arts["tflite-fp32"]["activation"]
    assert 0 < act8["activation_peak_bytes"] <= act8["activation_total_bytes"]
    assert act8["activation_peak_bytes"] < act32["activation_peak_bytes"]  # 1-byte vs 4-byte activations

    acc = model["accuracy"]
    assert {a["n"] for a in acc.values()} == {30} and acc["torch"]["reference"] == "torch"
    assert acc["torch"]["agreement"] == 1.0 and acc["onnx"]["agreement"] >= 0.95
    assert acc["tflite-fp32"]["accuracy"] == pytest.approx(acc["torch"]["accuracy"], abs=0.07)
    # the board's peak (one 1x1 convolution) and each row's share of it at the same thread count
    for dtype in ("int8", "fp32"):
        (t, v), = doc["peak"][dtype].items()
        assert int(t) == rows[f"tflite-{dtype}"]["threads"] and v["gmacs_per_s"] > 0
    roof = rows["tflite-int8"]["roofline"]
    assert roof["gmacs_per_s"] == pytest.approx(arts["tflite-int8"]["cost"]["macs"] / rows["tflite-int8"]["latency"]
                                                ["p50_ms"] / 1e6, rel=1e-3)
    # the fraction is stored rounded to 4 decimals
    assert 0 < roof["fraction_of_peak"] == pytest.approx(roof["gmacs_per_s"] / roof["peak_gmacs_per_s"], abs=1e-4)
    e2e = model["end_to_end"]
    n_fields = len(list((synth_tree / "fields").glob("*.png")))
    for fmt in ("tflite-int8", "tflite-fp32"):
        assert e2e[fmt]["frames"] == n_fields and e2e[fmt]["cells"] > 0 and e2e[fmt]["cells_per_s"] > 0


def test_a_format_failing_mid_run_is_recorded_and_the_rest_still_run(bench_results):
    doc = _doc(bench_results / "rpi5")
    assert doc["board"]["name"] == "rpi5"
    by = {(r["format"], r["threads"], r["batch"]): r for r in doc["rows"]}
    assert {k for k, r in by.items() if r["status"] == "ok"} == {("tflite-int8", t, b) for t in (1, 2) for b in (1, 4)}
    assert by[("tflite-int8", 1, 4)]["latency"]["batch"] == 4
    onnx = [r for k, r in by.items() if k[0] == "onnx"]
    assert {r["status"] for r in onnx} == {"failed", "skipped"}  # batch 4 > the ONNX artifact's fixed batch
    assert all(r["reason"] for r in onnx)


def test_a_named_board_that_is_not_this_machine_is_warned_about_and_both_are_recorded(bench_results, tmp_path,
                                                                                      capsys):
    from cytoedge.edge_app.boards import detect_board

    here = detect_board().name
    assert main([str(tmp_path / "no-model"), "--board", "rpi5", "--quiet"]) == 2  # warned even with --quiet
    err = capsys.readouterr().err
    assert ("bench-device: warning: --board rpi5" in err) is (here != "rpi5") and "no model card" in err
    named = _doc(bench_results / "rpi5")["board_check"]  # the fixture ran --board rpi5 on this machine
    assert (named["named"], named["detected"], named["matches"]) == ("rpi5", here, here == "rpi5")
    auto = _doc(next(p for p in bench_results.iterdir() if p.name != "rpi5"))["board_check"]
    assert (auto["named"], auto["matches"], auto["warning"]) == ("", True, "")
    if here != "rpi5":
        assert "--board rpi5 (Raspberry Pi 5) does not match this machine" in named["warning"]
        assert main(["report", str(bench_results), "-o", str(tmp_path / "report.md")]) == 0
        assert "does not match this machine" in (tmp_path / "report.md").read_text()


def test_report_merges_boards_into_markdown_and_self_contained_html(bench_results, tmp_path, capsys):
    rc = main(["report", str(bench_results), "-o", str(tmp_path / "report.md")])
    assert rc == 0 and "report:" in capsys.readouterr().out
    md = (tmp_path / "report.md").read_text()
    page = (tmp_path / "report.html").read_text()
    for title in ("Raspberry Pi 5", "Table 3 view", "Latency vs FLOPs", "Pareto front", "Memory per model",
                  "Roofline", "% of peak"):
        assert title in md and title in page
    pngs = sorted((tmp_path / "report_files").glob("*.png"))
    assert [p.stem for p in pngs] == ["accuracy_vs_latency", "latency_vs_flops", "memory"]
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"report_files/{p.name}" in md
        assert base64.b64encode(p.read_bytes()).decode()[:200] in page  # the same image, inline
    assert "src='http" not in page and 'src="http' not in page and "report_files/" not in page


def test_report_shows_isa_features_and_marks_an_emulated_board(bench_results, tmp_path, capsys):
    from cytoedge.benchmarks.board import isa_features, isa_summary

    results = _copy(bench_results, tmp_path / "results")
    x86 = next(p for p in results.iterdir() if p.name != "rpi5")
    assert _doc(x86)["board"]["isa"] == isa_features()  # this machine's, recorded by the real run
    (path,) = (results / "rpi5").glob("*.json")
    doc = json.loads(path.read_text())
    doc["board"].update(slug="rpi5-emulated", title="Raspberry Pi 5 Model B (emulated)",
                        emulated="qemu-user cortex-a76 on x86-64",
                        isa={"asimd": True, "asimddp": True, "i8mm": False})
    path.write_text(json.dumps(doc))
    assert main(["report", str(results), "-o", str(tmp_path / "report.md")]) == 0
    capsys.readouterr()
    md = (tmp_path / "report.md").read_text()
    assert "| ISA features |" in md and "asimd asimddp (no i8mm)" in md
    assert isa_summary(isa_features()) in md
    assert "measured under an emulator (qemu-user cortex-a76 on x86-64)" in md and "not board timings" in md


def test_report_refuses_an_empty_folder_and_a_foreign_json(tmp_path, capsys):
    (tmp_path / "none").mkdir()
    assert "no result files" in _one_error_line(capsys, ["report", str(tmp_path / "none")])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.json").write_text('{"schema": "something-else"}')
    assert "not a bench-device result" in _one_error_line(capsys, ["report", str(tmp_path / "other")])


def test_probe_timeout_is_a_failed_row_not_a_crash(bench_model):
    from cytoedge.benchmarks.probe import ProbeConfig, run_probe

    res = run_probe(ProbeConfig(str(bench_model), "tflite-int8", 1, 1, timeout_s=0.05))
    assert res.status == "failed" and "timed out" in res.reason


_EDGE_ONLY = """
import sys
from importlib.abc import MetaPathFinder

class NoHeavy(MetaPathFinder):  # a Pi with only the [edge] dependencies
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "timm", "onnx", "onnxruntime", "onnxsim", "tensorflow"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, NoHeavy())
from cytoedge.benchmarks.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_board_with_only_the_edge_dependencies_runs_the_tflite_rows(bench_model, tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _EDGE_ONLY, str(bench_model), "--threads", "1", *FAST,
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (board,) = tmp_path.iterdir()
    doc = _doc(board)
    status = {r["format"]: (r["status"], r["reason"]) for r in doc["rows"]}
    assert status["tflite-int8"][0] == status["tflite-fp32"][0] == "ok"
    assert status["onnx"] == ("skipped", "onnxruntime is not installed on this board (pip install onnxruntime)")
    assert status["torch"][0] == "skipped" and "torch" in status["torch"][1]
    (model,) = doc["models"]
    assert model["artifacts"]["tflite-int8"]["cost"]["macs"] > 0  # counted from the flatbuffer, no torch or onnx
    assert doc["peak"]["int8"]["1"]["gmacs_per_s"] > 0  # the peak model is built without TensorFlow
    assert model["torch_cost"] is None


def test_the_terminal_tables_show_cost_speed_and_the_failure_notes(bench_results, capsys):
    from cytoedge.benchmarks.table import print_table

    print_table(_doc(bench_results / "rpi5"))
    out = capsys.readouterr().out
    assert "Cost per artifact" in out and "Speed per configuration" in out and "Raspberry Pi 5" in out
    assert "failed [1]" in out and "[1] shufflenet onnx threads=1 batch=1: failed:" in out
    assert "tflite-int8" in out and "p99" in out
