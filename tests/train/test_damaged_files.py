"""Damaged weights.pt / checkpoint.pt whose hash was updated to match: one line and exit 2 from edge-convert
and edge-train --resume, and a pickled object never runs."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from cytoedge.edge_app.atomic import sha256_file
from cytoedge.train.cli import main as train_main

MARKER = Path(os.environ.get("TMPDIR", "/tmp")) / "cytoedge-pickle-ran"


class Payload:
    """What a hostile pickle does when it is loaded without weights_only: here, leave a marker file."""

    def __reduce__(self):
        return (Path.touch, (MARKER,))


def damaged(kind: str) -> bytes:
    if kind == "random bytes":
        return os.urandom(4096)
    if kind == "a plain pickle":
        return pickle.dumps({"conv.weight": Payload()})
    if kind == "a torch file holding an object":
        buf = io.BytesIO()
        torch.save({"model": Payload()}, buf)
        return buf.getvalue()
    if kind == "truncated":
        buf = io.BytesIO()
        torch.save({"w": torch.zeros(1000)}, buf)
        return buf.getvalue()[:1500]
    raise ValueError(kind)


KINDS = ["random bytes", "a plain pickle", "a torch file holding an object", "truncated"]


@pytest.fixture(autouse=True)
def no_marker():
    MARKER.unlink(missing_ok=True)
    yield
    assert not MARKER.exists(), "a pickled object was run"


@pytest.mark.parametrize("kind", KINDS)
def test_edge_convert_refuses_damaged_weights_in_one_line(tiny_bundle, tmp_path, convert_cli, kind):
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "fold_0"))
    (bundle / "weights.pt").write_bytes(damaged(kind))
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["weights_sha256"] = sha256_file(bundle / "weights.pt")  # the hash matches the damaged file
    (bundle / "bundle.json").write_text(json.dumps(meta))
    rc, out, err = convert_cli([str(bundle), "--out", str(tmp_path / "model")])
    assert rc == 2, err
    assert err.count("\n") == 1 and "weights.pt is damaged or not a plain tensor file" in err
    assert "Traceback" not in err and not (tmp_path / "model" / "model_card.json").exists()


def test_edge_convert_refuses_weights_that_are_not_a_state_dict(tiny_bundle, tmp_path, convert_cli):
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "fold_0"))
    torch.save([torch.zeros(3)], bundle / "weights.pt")
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["weights_sha256"] = sha256_file(bundle / "weights.pt")
    (bundle / "bundle.json").write_text(json.dumps(meta))
    rc, _, err = convert_cli([str(bundle), "--out", str(tmp_path / "model")])
    assert rc == 2 and err.count("\n") == 1 and "not a state_dict" in err


@pytest.mark.parametrize("kind", KINDS + ["another run's checkpoint"])
def test_edge_train_resume_refuses_a_damaged_checkpoint_in_one_line(tiny_bundle, tmp_path, capsys, kind):
    run = Path(shutil.copytree(Path(tiny_bundle).parent, tmp_path / "run"))
    fold = run / "fold_0"
    for done in ("bundle.json", "metrics.json"):  # the fold was killed before it finished
        (fold / done).unlink()
    if kind == "another run's checkpoint":
        torch.save({"model": {"nope": torch.zeros(2)}, "optimizer": {}, "scheduler": {}, "epoch": 3, "history": []},
                   fold / "checkpoint.pt")
    else:
        (fold / "checkpoint.pt").write_bytes(damaged(kind))
    assert train_main(["--resume", "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checkpoint" in err and "delete it to train fold 0 again" in err, err
    assert "Traceback" not in err
