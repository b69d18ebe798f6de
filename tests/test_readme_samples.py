"""The sample outputs in README.md (or any docs/*.md page) have the shape of what the commands print now: the same
stage lines, table columns and summary lines; the figures may differ (they depend on the CPU). A sample block
is marked ``<!-- sample: NAME -->`` ... ``<!-- /sample -->`` around its code fence (issue 23.9)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MARKED = re.compile(r"<!-- sample: (?P<name>[\w.-]+) -->\s*```[^\n]*\n(?P<body>.*?)```\s*<!-- /sample -->", re.S)
SAMPLES = ("edge-convert", "edge-app")


def samples() -> dict[str, list[str]]:
    """Sample name -> its lines, from README.md and docs/*.md; a name marked twice is an error."""
    found: dict[str, list[str]] = {}
    pages = [REPO / "README.md"]
    pages += sorted((REPO / "docs").glob("*.md"))
    for page in pages:
        for m in MARKED.finditer(page.read_text(encoding="utf-8")):
            assert m["name"] not in found, f"sample {m['name']} is marked twice (again in {page.name})"
            found[m["name"]] = m["body"].splitlines()
    return found


def shape(line: str) -> str:
    """A printed line without what depends on the machine or the data: folders, numbers, the architecture and
    which groups a frame happened to hold."""
    line = line.replace("frames/s", "frames-per-s")  # a unit, not a folder
    line = re.sub(r"(?<![\w.-])(?:[\w.-]*/)+(?=[\w.-])", "", line)  # folders: keep the file's name
    line = re.sub(r"model \S+ \(", "model ARCH (", line)
    line = re.sub(r"^edge-convert: \S+ \((.*)\) from .* -> .*", r"edge-convert: ARCH (\1) from BUNDLE -> OUT", line)
    line = re.sub(r"\d+(?:\.\d+)?(?:e[-+]?\d+)?", "#", line)
    line = re.sub(r"(?:(?:normal|benign|abnormal|unknown) #(?:, )?)+(?= \|)", "GROUPS", line)  # a frame's groups
    return re.sub(r"\s+", " ", line).strip()


def columns(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def test_every_sample_is_marked_once():
    got = samples()
    assert set(SAMPLES) <= set(got), f"no marked sample {sorted(set(SAMPLES) - set(got))} in README.md or docs/"
    assert all(len(got[name]) > 3 for name in SAMPLES)


def test_the_convert_samples_table_has_the_columns_the_code_prints():
    from cytoedge.convert.validate import COLUMNS

    body = samples()["edge-convert"]
    head = next(ln for ln in body if ln.strip().startswith("artifact "))
    assert columns(head) == list(COLUMNS)
    assert not any("for centroids" in ln for ln in body)  # the read stage fits the open-set score now


def test_the_app_samples_summary_has_the_shape_the_code_prints(capsys):
    from collections import Counter

    from cytoedge.edge_app.app import RunSummary
    from cytoedge.edge_app.cli import _print_summary

    _print_summary(RunSummary(slide="demo", store="demo/cytoedge-data", frames_done=6, cells=123, seconds=0.4,
                              per_group=Counter(normal=41, benign=6, abnormal=27, unknown=49)))
    printed = capsys.readouterr().out.splitlines()
    body = samples()["edge-app"]
    assert [shape(ln) for ln in body[-2:]] == [shape(ln) for ln in printed]


def _stage_lines(lines: list[str]) -> list[str]:
    return [ln for ln in lines if re.match(r"  \w+ +[\d.]+ s  ", ln)]


@pytest.mark.slow
def test_the_convert_sample_has_the_shape_of_a_real_conversion(converted):
    body, printed = samples()["edge-convert"], converted.stdout.splitlines()
    assert shape(body[1]) == shape(next(ln for ln in printed if ln.startswith("edge-convert: ")))
    assert [shape(ln) for ln in _stage_lines(body)] == [shape(ln) for ln in _stage_lines(printed)]
    for start in ("artifact ", "class (recall / precision)"):
        sample = next(ln for ln in body if ln.strip().startswith(start))
        real = next(ln for ln in printed if ln.strip().startswith(start))
        assert columns(sample) == columns(real), start
    rows = lambda lines: [ln.split()[0] for ln in lines if ln.strip().split(" ")[0] in  # noqa: E731
                          ("torch", "onnx", "tflite-fp32", "tflite-int8")]
    assert rows(body) == rows(printed)
    assert shape(body[-1]) == shape(next(ln for ln in printed if ln.strip().startswith("wrote ")))


@pytest.mark.slow
def test_the_app_sample_has_the_shape_of_a_real_run(device_model, synth_tree, tmp_path):
    out = tmp_path / "demo" / "cytoedge-data"
    r = subprocess.run([sys.executable, "-m", "cytoedge.edge_app", "--model", str(device_model), "--source",
                        str(Path(synth_tree) / "fields"), "--slide", "demo", "--out", str(out)],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr
    printed = [ln for ln in r.stderr.splitlines() if ln.startswith("edge-app: ")] + r.stdout.splitlines()
    body = [ln for ln in samples()["edge-app"] if not ln.startswith(("$ ", "INFO: "))]  # LiteRT's own line
    assert shape(body[0]) == shape(printed[0])  # the model line
    frame_lines = lambda lines: {shape(ln) for ln in lines if re.match(r"edge-app: \S+\.png: ", ln)}  # noqa: E731
    assert frame_lines(body) == frame_lines(printed) and len(frame_lines(printed)) == 1
    assert [shape(ln) for ln in body[-2:]] == [shape(ln) for ln in printed[-2:]]
