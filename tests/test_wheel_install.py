"""The wheel is complete: built from this checkout and installed into a fresh venv with ``[edge]`` only,
``edge-app`` finds the shipped board profiles and classifies crops with the converted model, run from a
folder outside the checkout (so nothing can be found beside the sources)."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted(p.name for p in (REPO / "hardware" / "boards").glob("*.toml"))


def test_the_wheel_carries_the_board_profiles_and_the_web_assets(cytoedge_wheel):
    names = set(zipfile.ZipFile(cytoedge_wheel).namelist())
    assert PROFILES and {f"cytoedge/hardware/boards/{p}" for p in PROFILES} <= names, sorted(names)
    for rel in ("web/templates", "web/static"):
        shipped = {p.name for p in (REPO / "edge_app" / rel).iterdir() if p.is_file()}
        assert shipped and {f"cytoedge/edge_app/{rel}/{n}" for n in shipped} <= names
    assert not any(n.startswith("cytoedge/hardware/pi") for n in names)  # set-up scripts stay in the checkout


@pytest.mark.slow
def test_a_fresh_edge_venv_finds_its_boards_and_classifies(cytoedge_wheel, device_model, synth_tree, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    r = subprocess.run([*pip, "-c", str(REPO / "requirements" / "constraints.txt"), f"{cytoedge_wheel}[edge]"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    edge_app = str(venv / "bin" / "edge-app")
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([edge_app, *args], capture_output=True, text=True, cwd=elsewhere, env=env, timeout=300)

    boards = run("boards")
    assert boards.returncode == 0, boards.stderr
    assert str(venv) in boards.stdout.splitlines()[0]  # the profiles of the installed wheel, not of the checkout
    assert all(f"  {Path(p).stem} " in boards.stdout for p in PROFILES), boards.stdout
    fields = sorted((Path(synth_tree) / "fields").glob("field_*.png"))[:1]
    slide = run("--model", str(device_model), "--source", str(fields[0]), "--slide", "s1", "--out", "store",
                "--board", "x86-workstation")  # a profile named, so it must be found in the wheel
    assert slide.returncode == 0, slide.stderr
    crops = sorted(Path(synth_tree).glob("*/CROPPED/*.bmp"))[:3]
    assert crops
    out = elsewhere / "rows.json"
    cls = run("classify", "--model", str(device_model), "--json", str(out), "--no-table", *map(str, crops))
    assert cls.returncode == 0, cls.stderr
    rows = json.loads(out.read_text())
    assert len(rows) == len(crops) and all(r["class"] for r in rows)
