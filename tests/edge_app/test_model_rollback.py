"""The device keeps every model it ran; a new model installed and rolled back leaves every slide record naming
the model that made it (issue 22, DESIGN 'Lineage')."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cytoedge.edge_app.cli import main
from cytoedge.edge_app.models import card_of, card_sha256, list_models, runs_by_model
from cytoedge.edge_app.store import Store


def _fine_tuned_copy(parent: Path, dest: Path) -> Path:
    """The parent's artifacts under a card that names the parent and a review set, as edge-convert writes for a
    fine-tune (the card differs, so its hash does: another model to the device)."""
    shutil.copytree(parent, dest, ignore=shutil.ignore_patterns("work", "bundle", "logs", "*.sig"))
    card = json.loads((dest / "model_card.json").read_text())
    card["source"]["lineage"] = {"parent": {"card_sha256": card_sha256(parent)},
                                 "reviews": {"sha256": "ab" * 32, "count": 200, "slides": ["lab-b-1"]}}
    (dest / "model_card.json").write_text(json.dumps(card, indent=1))
    return dest


def test_install_rollback_keeps_each_slide_naming_its_model(device_model, distinct_frames, tmp_path, capsys):
    store = tmp_path / "store"
    frames = distinct_frames(tmp_path / "frames", 2)
    a = card_sha256(device_model)
    b_dir = _fine_tuned_copy(device_model, tmp_path / "model-b")
    b = card_sha256(b_dir)
    assert a != b

    def run(slide: str) -> None:
        assert main(["--source", str(frames), "--slide", slide, "--out", str(store), "--threads", "1", "-q"]) == 0

    assert main(["model", "install", str(device_model), "--out", str(store)]) == 0
    run("s1")
    assert main(["model", "install", str(b_dir), "--out", str(store)]) == 0
    shutil.rmtree(b_dir)  # installed: the store runs its own copy
    run("s2")
    assert main(["model", "rollback", "--out", str(store)]) == 0
    run("s3")
    # the model given with --model (not installed) is remembered too, and its run names it
    assert main(["--model", str(device_model), "--source", str(frames), "--slide", "s4", "--out", str(store),
                 "--threads", "1", "-q"]) == 0

    with Store(store, create=False) as s:
        made = {r["slide"]: r["card_sha256"] for r in runs_by_model(s)}
        assert made == {"s1": a, "s2": b, "s3": a, "s4": a}
        assert all(r["cells"] > 0 for r in runs_by_model(s))
        models = {m.card_sha256: m for m in list_models(s)}
        assert set(models) == {a, b} and models[a].in_use and not models[b].in_use
        assert models[b].parent_card_sha256 == a and models[a].parent_card_sha256 is None
        assert card_of(s, b)["source"]["lineage"]["reviews"]["count"] == 200
        assert (models[b].path(s) / "model_card.json").is_file()  # the copy that ran s2 is still there

    capsys.readouterr()
    # one model in the stack: nothing to roll back to, one line, non-zero exit
    assert main(["model", "rollback", "--out", str(store)]) != 0
    err = capsys.readouterr().err
    assert "nothing to roll back" in err and len(err.strip().splitlines()) == 1


def test_a_damaged_model_is_not_installed(model_copy, tmp_path, capsys):
    int8 = model_copy / "model_int8.tflite"
    int8.write_bytes(int8.read_bytes()[:-10] + b"0123456789")
    assert main(["model", "install", str(model_copy), "--out", str(tmp_path / "store")]) != 0
    assert "does not match" in capsys.readouterr().err
    with Store(tmp_path / "store", create=False) as s:
        assert list_models(s) == []
