"""Damaged .tflite files whose card SHA-256 was updated: what they do to an unprotected loader, and what
edge_app's checks catch, at what start-up cost.

    python -m cytoedge.benchmarks.model_damage --model MODEL_DIR [--format tflite-int8] [--mutants 60] [--flips 4]

Each mutant is the artifact with ``--flips`` random bytes replaced (seeded). Every mutant is run, each in
its own process, through

* **unprotected**: what edge-app did before: LiteRT loads it in the app's own process, invokes it on real
  crops at batch 1 and at the card's max batch, and the outputs are compared with the sound file's:
  *crash* (the process dies on a signal: in edge-app that was exit 139), *error* (LiteRT raises),
  *non-finite* outputs, *changed* (different outputs, silently), *same*;
* **LiteRT's model analyzer** (``ai_edge_litert`` ``ModelAnalyzer``, C++ flatbuffer reading: a candidate
  "verify the flatbuffer" check, as no kept Python package has a TFLite flatbuffer verifier);
* **edge_app.modelcheck.probe_model_file**: load + invoke once in a child process (what edge-app does).

It prints the counts per outcome, which check refused which, and the cost of each check at start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

UNPROTECTED = r"""
import json, sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
path, batch, crops_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
x = np.load(crops_file)
interp = Interpreter(model_path=path, num_threads=2)
interp.allocate_tensors()
inp = interp.get_input_details()[0]
outs = []
for n in sorted({1, batch}):
    interp.resize_tensor_input(inp["index"], [n, *x.shape[1:]])
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], x[:n].astype(inp["dtype"]))
    interp.invoke()
    outs.append([interp.get_tensor(o["index"]).astype(float).ravel().tolist() for o in interp.get_output_details()])
print(json.dumps(outs))
"""

ANALYZER = r"""
import sys
from ai_edge_litert import _pywrap_analyzer_wrapper as a
text = a.ModelAnalyzer(sys.argv[1], True, False)
print("ERROR" if ("Failed" in text or "error" in text.lower()[:400]) else "OK")
"""


def _run(code: str, *args: str, timeout: float = 120) -> tuple[str, str]:
    """(outcome, stdout): outcome is 'crash:SIGNAME', 'error', 'timeout' or 'ok'."""
    import signal

    try:
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", ""
    if done.returncode < 0:
        return f"crash:{signal.Signals(-done.returncode).name}", ""
    if done.returncode != 0:
        return "error", done.stderr.strip().splitlines()[-1:][0] if done.stderr.strip() else ""
    return "ok", done.stdout


def mutate(model: bytes, positions: Sequence[int], flips: int, rng: random.Random) -> bytes:
    """``model`` with ``flips`` bytes at positions drawn from ``positions`` replaced by random values."""
    data = bytearray(model)
    for _ in range(flips):
        data[rng.choice(positions)] = rng.randrange(256)
    return bytes(data)


def unprotected_crashes(path: str | os.PathLike[str]) -> str | None:
    """The signal that kills a process loading and invoking ``path`` (zeros in) in LiteRT, or None."""
    code = ("import sys, numpy as np\nfrom ai_edge_litert.interpreter import Interpreter\n"
            "i = Interpreter(model_path=sys.argv[1]); i.allocate_tensors(); d = i.get_input_details()[0]\n"
            "i.set_tensor(d['index'], np.zeros(d['shape'], d['dtype'])); i.invoke()")
    outcome, _ = _run(code, str(path))
    return outcome.split(":", 1)[1] if outcome.startswith("crash:") else None


def damage_positions(model: bytes, where: str) -> Sequence[int]:
    """Byte offsets to damage: all, those inside the constant buffers (weights), or all others."""
    if where == "anywhere":
        return range(len(model))
    from ai_edge_litert import schema_py_generated as schema

    root = schema.Model.GetRootAsModel(model, 0)
    inside = bytearray(len(model))
    for i in range(root.BuffersLength()):
        buf = root.Buffers(i)
        if buf.DataLength():
            start = buf._tab.Vector(buf._tab.Offset(4))
            inside[start:start + buf.DataLength()] = b"\x01" * buf.DataLength()
    want = 1 if where == "weights" else 0
    return [i for i, flag in enumerate(inside) if flag == want]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cytoedge.benchmarks.model_damage", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="a model folder written by edge-convert")
    p.add_argument("--format", default="tflite-int8", help="artifact to damage (default: %(default)s)")
    p.add_argument("--mutants", type=int, default=60, help="damaged copies (default: %(default)s)")
    p.add_argument("--flips", type=int, default=4, help="bytes replaced per copy (default: %(default)s)")
    p.add_argument("--where", choices=("anywhere", "weights", "structure"), default="anywhere",
                   help="which bytes to damage: anywhere, only the constant buffers (weights), or only outside "
                        "them (the flatbuffer's tables, shapes, quantisation, op options) (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    import numpy as np

    from cytoedge.edge_app.card import load_card
    from cytoedge.edge_app.errors import ModelCardError
    from cytoedge.edge_app.interpreter import interpreter_class
    from cytoedge.edge_app.modelcheck import probe_model_file
    from cytoedge.edge_app.preprocess import preprocess, quantize

    card = load_card(a.model)
    entry = card.artifact(a.format)
    sound = card.verify_artifact(a.format).read_bytes()
    runtime, _, version = interpreter_class()
    work = Path(tempfile.mkdtemp(prefix="model-damage-"))
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")  # no remembered verdicts: every probe runs
    rng = np.random.default_rng(a.seed)
    size = card.preprocessing.size
    crops = rng.integers(0, 255, (max(1, entry.max_batch), size + 9, size + 5, 3), np.uint8)
    x = np.stack([preprocess(c, card.preprocessing, channel_order="BGR",
                             normalize=entry.input.space != "pixels") for c in crops])
    np.save(work / "crops.npy", quantize(x, entry.input.quant))
    batch = str(max(1, entry.max_batch))

    (work / "sound.tflite").write_bytes(sound)
    outcome, reference = _run(UNPROTECTED, str(work / "sound.tflite"), batch, str(work / "crops.npy"))
    assert outcome == "ok", f"the sound file does not run: {outcome} {reference}"
    t0 = time.perf_counter()
    probe_model_file(work / "sound.tflite", "sound", runtime, version, max_batch=int(batch))
    probe_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _run(UNPROTECTED, str(work / "sound.tflite"), batch, str(work / "crops.npy"))
    child_s = time.perf_counter() - t0

    results = []
    picker = random.Random(a.seed)
    positions = damage_positions(sound, a.where)
    for i in range(a.mutants):
        path = work / f"mutant_{i:03d}.tflite"
        path.write_bytes(mutate(sound, positions, a.flips, picker))
        outcome, out = _run(UNPROTECTED, str(path), batch, str(work / "crops.npy"))
        if outcome == "ok":
            got, ref = json.loads(out), json.loads(reference)
            flat = [v for run in got for o in run for v in o]
            if not all(np.isfinite(flat)):
                outcome = "non-finite"
            else:
                outcome = "same" if got == ref else "changed"
        analyzer, _ = _run(ANALYZER, str(path))
        try:
            probe_model_file(path, f"m{i}", runtime, version, max_batch=int(batch))
            probe = "passed"
        except ModelCardError:
            probe = "refused"
        results.append((outcome.split(":")[0], outcome, analyzer, probe))
        print(f"mutant {i:3d}: unprotected {outcome:16s} analyzer {analyzer:16s} probe {probe}", flush=True)

    print()
    print(f"{a.mutants} mutants of {a.model / entry.file} ({len(sound)} bytes), {a.flips} random bytes each "
          f"({a.where}: {len(positions)} bytes to choose from), {runtime} {version}")
    kinds = Counter(r[0] for r in results)
    print(f"{'unprotected outcome':22s} {'mutants':>8s} {'probe refused':>14s} {'analyzer crashed':>17s}")
    for kind in ("crash", "error", "timeout", "non-finite", "changed", "same"):
        rows = [r for r in results if r[0] == kind]
        if rows:
            print(f"{kind:22s} {len(rows):8d} {sum(r[3] == 'refused' for r in rows):14d} "
                  f"{sum(r[2].startswith('crash') for r in rows):17d}")
    signals = Counter(r[1] for r in results if r[0] == "crash")
    if signals:
        print("signals: " + ", ".join(f"{k.split(':')[1]} {v}" for k, v in signals.items()))
    print(f"start-up cost: probe in a child process {probe_s * 1e3:.0f} ms (first start of a file; later starts "
          f"of the same SHA-256: 0), a bare child load+invoke {child_s * 1e3:.0f} ms")
    print(json.dumps({"mutants": a.mutants, "where": a.where, "outcomes": dict(kinds), "probe_ms": round(probe_s * 1e3),
                      "analyzer_crashes": sum(r[2].startswith("crash") for r in results),
                      "probe_refused": sum(r[3] == "refused" for r in results),
                      "crash_not_refused": sum(r[0] == "crash" and r[3] != "refused" for r in results)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
