"""What hostile files cost the device: a decompression bomb, and damaged model files.

    python -m cytoedge.benchmarks.hostile_files --model MODEL_DIR [--size 20000] [--out DIR]

1. **PNG bomb.** Writes a PNG of ``--size`` x ``--size`` black RGB pixels (20000 x 20000:
   1.2 MB on disk, 1.2 GB as an array), then measures the peak RSS (``ru_maxrss`` of the
   child) of
   - ``edge-app`` on a folder holding the bomb and one field (the whole app: model,
     interpreter, store; the bomb refused from its header, the field classified), and
   - for comparison, one ``cv2.imdecode`` of the bomb in a bare process (what reading
     it without the header check costs).
2. The same ``edge-app`` run on the field alone, as the baseline.

Every figure is printed with the command that made it; run it on the board for the board's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

DECODE = "import sys, cv2, numpy as np; img = cv2.imdecode(np.fromfile(sys.argv[1], np.uint8), cv2.IMREAD_UNCHANGED); " \
         "print(None if img is None else img.shape)"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(path: str | os.PathLike[str], width: int = 20000, height: int = 20000) -> Path:
    """A valid PNG of ``width`` x ``height`` black RGB pixels, compressed ~1000:1 (written in about a second).

    Rows of zeros compress to the same deflate bytes after every full flush, so one block of
    rows is compressed once and repeated; the Adler-32 of n zero bytes has a closed form.
    """
    row = b"\x00" * (1 + 3 * width)  # filter type 0, then the pixels
    per_block = max(1, (4 << 20) // len(row))
    block = row * per_block
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    unit = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    if comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH) != unit:  # pragma: no cover - zlib guarantees it
        raise RuntimeError("deflate output of identical blocks differs")
    full, rest = divmod(height, per_block)
    adler = ((height * len(row)) % 65521) << 16 | 1  # Adler-32 of n zero bytes: A stays 1, B counts n
    deflated = unit * full + comp.compress(row * rest) + comp.flush(zlib.Z_FINISH)
    idat = b"\x78\xda" + deflated + struct.pack(">I", adler & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path = Path(path)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    return path


def _child_peak(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Peak RSS of one child, measured in a fresh intermediate process (RUSAGE_CHILDREN is a running maximum),
    its exit status and its skip line (else its last line)."""
    code = ("import json, subprocess, sys, resource; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
            "lines = p.stderr.strip().splitlines() or p.stdout.strip().splitlines() or ['']; "
            "print(json.dumps([resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, p.returncode, "
            "next((x for x in lines if 'edge-app: skipped' in x), lines[-1])]))")
    import json

    done = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True, env=env)
    peak, rc, last = json.loads(done.stdout)
    return float(peak), int(rc), str(last)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cytoedge.benchmarks.hostile_files", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="a model folder written by edge-convert")
    p.add_argument("--field", type=Path, help="a field image (default: a synthetic 1280x960 field with 30 cells)")
    p.add_argument("--size", type=int, default=20000, help="the bomb's width and height (default: %(default)s)")
    p.add_argument("--out", type=Path, help="work folder (default: a temporary one)")
    a = p.parse_args(argv)
    work = Path(a.out or tempfile.mkdtemp(prefix="hostile-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    bomb = png_bomb(work / "bomb.png", a.size, a.size)
    print(f"bomb: {bomb} {a.size}x{a.size} RGB, {bomb.stat().st_size / 1e6:.2f} MB on disk, "
          f"{a.size * a.size * 3 / 1e9:.2f} GB as an array (written in {time.perf_counter() - t0:.1f} s)")
    field = a.field
    if field is None:
        from cytoedge.benchmarks.pipeline_speed import make_frames  # a synthetic 1280x960 field with 30 cells

        field = make_frames(work / "fields", 1, 30, seed=0)[0]
    with_bomb, alone = work / "with_bomb", work / "alone"
    for d in (with_bomb, alone):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        shutil.copy(field, d / "field_001.png")
    shutil.copy(bomb, with_bomb / "field_000_bomb.png")
    rows = []
    for name, src in (("edge-app, field only", alone), ("edge-app, bomb + field", with_bomb)):
        shutil.rmtree(work / f"store-{src.name}", ignore_errors=True)
        cmd = [sys.executable, "-m", "cytoedge.edge_app", "--model", str(a.model), "--source", str(src), "--slide", "bomb",
               "--out", str(work / f"store-{src.name}"), "--threads", "1", "--save-crops", "none"]
        rows.append((name, *_child_peak(cmd, env)))
    rows.append(("cv2.imdecode of the bomb (no header check)",
                 *_child_peak([sys.executable, "-c", DECODE, str(bomb)], env)))
    print()
    print(f"{'process':45s} {'peak RSS MB':>12s}  exit  skip line (else last line)")
    for name, peak, rc, last in rows:
        print(f"{name:45s} {peak:12.0f}  {rc:4d}  {last[:110]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
