"""Model files whose card hash matches but whose bytes are damaged are refused in one line, never a crash;
optional Ed25519 signatures of the card (edge-convert --sign / sign / keygen, edge-app --trust)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from cytoedge.benchmarks.model_damage import damage_positions, mutate, unprotected_crashes
from cytoedge.convert.cli import main as convert_main
from cytoedge.edge_app.atomic import sha256_file
from cytoedge.edge_app.cli import main
from cytoedge.edge_app.errors import ModelCardError
from cytoedge.edge_app.modelcheck import probe_model_file
from cytoedge.edge_app.signing import SignatureError, load_trusted_card, signature_path

REPO = Path(__file__).resolve().parents[2]


def rehash(model: Path, fmt: str = "tflite-int8") -> None:
    """Update the card to the artifact's new bytes, as whoever damaged the file could."""
    card = json.loads((model / "model_card.json").read_text())
    art = card["artifacts"][fmt]
    art["sha256"], art["size_bytes"] = sha256_file(model / art["file"]), (model / art["file"]).stat().st_size
    (model / "model_card.json").write_text(json.dumps(card, indent=2))


def edge_app(model: Path, frames: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """edge-app in its own process, so that a crash shows as a signal, not as a dead test run."""
    return subprocess.run([sys.executable, "-m", "cytoedge.edge_app", "--model", str(model), "--source", str(frames),
                           "--slide", "m", "--out", str(out), "--threads", "1", "--quiet", *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def crashing_bytes(device_model, tmp_path_factory) -> bytes:
    """The int8 file with bytes of its flatbuffer structure replaced, such that loading it in LiteRT segfaults."""
    sound = (device_model / "model_int8.tflite").read_bytes()
    positions = damage_positions(sound, "structure")
    rng = random.Random(1)
    path = tmp_path_factory.mktemp("mutants") / "m.tflite"
    for _ in range(200):  # about one in four such files crashes the interpreter (benchmarks.model_damage)
        data = mutate(sound, positions, 8, rng)
        path.write_bytes(data)
        if unprotected_crashes(path) == "SIGSEGV":
            return data
    pytest.fail("no damaged copy crashed LiteRT: the damage model of benchmarks.model_damage no longer fits")


def test_a_file_that_crashes_the_interpreter_is_refused_in_one_line(model_copy, crashing_bytes, field_frames,
                                                                    tmp_path):
    (model_copy / "model_int8.tflite").write_bytes(crashing_bytes)
    rehash(model_copy)
    done = edge_app(model_copy, field_frames[0], tmp_path / "store")
    assert done.returncode == 2, (done.returncode, done.stderr[-500:])  # was -11 (exit 139 from a shell)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("edge-app: error: model_int8.tflite cannot be run safely")
    assert "SIGSEGV" in last and "Traceback" not in done.stderr
    assert not (tmp_path / "store").exists()  # refused before the store was touched


def test_a_file_the_interpreter_refuses_is_one_line(model_copy, field_frames, tmp_path):
    path = model_copy / "model_int8.tflite"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])  # truncated: a copy that stopped halfway
    rehash(model_copy)
    done = edge_app(model_copy, field_frames[0], tmp_path / "store")
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith("edge-app: error:")
    assert "Traceback" not in done.stderr


def test_a_sound_file_is_probed_once_per_content(device_model, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = device_model / "model_int8.tflite"
    sha = sha256_file(path)
    assert probe_model_file(path, sha, "litert", "test") is True  # ran the child
    assert probe_model_file(path, sha, "litert", "test") is False  # remembered by SHA-256
    assert probe_model_file(path, sha, "litert", "other-version") is True  # another runtime is probed again
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"TFL3" + bytes(100))
    with pytest.raises(ModelCardError, match="cannot be run safely"):
        probe_model_file(bad, "x" * 64, "litert", "test")
    assert not list((tmp_path / "cache" / "cytoedge" / "probed").glob("xxxx*"))  # a refusal is not remembered


# -- signatures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    for name in ("lab", "other"):
        assert convert_main(["keygen", "--out", str(folder / name)]) == 0
    assert (folder / "lab.key").stat().st_mode & 0o777 == 0o600
    assert convert_main(["keygen", "--out", str(folder / "lab")]) == 2  # never overwrites a key
    return {n: folder / n for n in ("lab", "other")}


def test_the_session_conversion_was_signed_with_sign(converted, signing_key):
    """``edge-convert --sign KEY`` (the shared conversion in tests/conftest.py runs with it)."""
    assert "signed the card" in converted.stdout
    assert load_trusted_card(converted.out, [signing_key.with_suffix(".pub")]).architecture


def test_trusted_devices_run_only_models_signed_by_their_keys(model_copy, keys, field_frames, tmp_path, capsys):
    lab, other = keys["lab"], keys["other"]
    signature_path(model_copy / "model_card.json").unlink(missing_ok=True)
    run = ["--model", str(model_copy), "--source", str(field_frames[0]), "--slide", "s", "--out",
           str(tmp_path / "store"), "--threads", "1", "--quiet"]

    def refused(*extra: str) -> str:
        assert main(run + list(extra)) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        return err

    assert "is not signed" in refused("--trust", f"{lab}.pub")
    assert convert_main(["sign", str(model_copy), "--key", f"{lab}.key"]) == 0
    assert main(run + ["--trust", f"{lab}.pub"]) == 0
    assert main(run + ["--trust", f"{other}.pub", "--trust", f"{lab}.pub"]) == 0  # any of several keys
    capsys.readouterr()
    assert "signed by another key" in refused("--trust", f"{other}.pub")
    # the card changed after signing: a looser threshold, and a damaged artifact with its hash rewritten
    card = json.loads((model_copy / "model_card.json").read_text())
    card["artifacts"]["tflite-int8"]["open_set"]["threshold"] = 1e9
    (model_copy / "model_card.json").write_text(json.dumps(card))
    assert "changed after it was signed" in refused("--trust", f"{lab}.pub")
    assert main(run) == 0  # a device without --trust does not ask for signatures
    capsys.readouterr()


def test_board_profile_can_demand_signatures(model_copy, keys, field_frames, tmp_path, capsys):
    board = tmp_path / "lab-pi.toml"
    board.write_text(f'title = "lab Pi"\ncores = 2\n[security]\ntrust = ["{keys["lab"]}.pub"]\n')
    signature_path(model_copy / "model_card.json").unlink(missing_ok=True)
    args = ["--model", str(model_copy), "--source", str(field_frames[0]), "--slide", "b", "--out",
            str(tmp_path / "store"), "--threads", "1", "--board", str(board), "--quiet"]
    assert main(args) == 2 and "is not signed" in capsys.readouterr().err
    assert convert_main(["sign", str(model_copy), "--key", f"{keys['lab']}.key"]) == 0
    assert main(args) == 0


def test_bad_keys_are_one_line_errors(model_copy, keys, tmp_path, capsys):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    assert convert_main(["sign", str(model_copy), "--key", str(junk)]) == 2
    assert "cannot be read" in capsys.readouterr().err
    assert convert_main(["sign", str(model_copy), "--key", f"{keys['lab']}.pub"]) == 2  # the public half
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(SignatureError):
        load_trusted_card(model_copy, [f"{keys['other']}.pub"])


def test_bench_device_accepts_a_signed_model(model_copy, keys, tmp_path):
    from cytoedge.benchmarks.cli import main as bench_main

    assert convert_main(["sign", str(model_copy), "--key", f"{keys['lab']}.key"]) == 0
    rc = bench_main([str(model_copy), "--formats", "tflite-int8", "--threads", "1", "--min-runs", "3",
                     "--min-time", "0", "--warmup", "1", "--out", str(tmp_path / "bench")])
    assert rc == 0 and list((tmp_path / "bench").rglob("*.json"))
