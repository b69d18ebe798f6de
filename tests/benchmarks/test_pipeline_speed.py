"""python -m cytoedge.benchmarks.pipeline_speed on the shared converted model: every stage measured, the JSON complete."""

from __future__ import annotations

import json
import statistics

import pytest

from cytoedge.benchmarks.pipeline_speed import main


def test_pipeline_speed_writes_every_stage_and_the_ratios(device_model, tmp_path, capsys):
    out = tmp_path / "pipeline.json"
    rc = main(["--model", str(device_model), "--work", str(tmp_path / "work"), "--frames", "2", "--cells", "6",
               "--rounds", "2", "--threads", "1", "--json", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0 and "edge-app end to end" in printed and "app / pure classification" in printed
    doc = json.loads(out.read_text())
    res, host = doc["result"], doc["host"]
    assert host["cpu_model"] and host["cores"] >= 1 and isinstance(host["isa"], dict)
    assert doc["threads"] == 1 and len(doc["load_average"]["before"]) == 3
    assert res["frames"] == 2 and res["rounds"] == 2 and len(res["per_round_s"]) == 2
    assert res["crops"] > 0 and res["cells_per_frame"] == res["crops"] / 2
    ms = res["ms_per_frame"]
    assert set(ms) == {"decode", "finder", "classify_pure", "classify", "app", "naive"}
    assert all(v > 0 for v in ms.values())
    r = res["ratios"]
    # each ratio is the median of the rounds' own, here recomputed from the stored per-round seconds (rounded to
    # 10 us); no bound on it: "the app is slower than its classifier alone" would time the host, not the code
    rounds = res["per_round_s"]
    for key, num, den in (("app_over_pure", "app", "classify_pure"), ("naive_over_app", "naive", "app")):
        assert r[key] == pytest.approx(statistics.median(x[num] / x[den] for x in rounds), rel=0.02), key
    assert r["naive_over_app"] > 0 and res["model"]["format"] == "tflite-int8"
    assert res["model"]["input"]["quant"] == {"scale": 1.0, "zero_point": -128, "dtype": "int8"}
    assert set(res["app"]["stage_ms_mean"]) >= {"read", "find", "classify", "store"}
