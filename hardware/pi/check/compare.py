"""Compare what one machine's run of ``steps.sh`` wrote with another's (``make pi-check``: x86 vs emulated Pi).

    python compare.py X86_DIR PI_DIR [--roots X86_WORK PI_WORK] [--rows TABLE.tsv] [--label pi4]

What must agree, and how closely:

- the classifier, crop by crop (``probe.json``): on the same input tensors, every crop's
  class identical, int8 logits within one int8 step of the output (its quantisation
  scale), fp32 logits within 1e-4; through the whole device path (each machine's own
  OpenCV preprocessing) every crop's class identical, and how far the logits moved is
  shown; the cells the finder cut from every field identical (same boxes);
- the app's store: every table, row by row, every column, except what describes the run
  rather than the slide (times, timings, the board): text, integers and flags (classes, boxes,
  unknown) identical, confidences, scores and distances within ``OUTPUT_TOL`` (0.05: each
  machine's OpenCV resizes a little differently), other real numbers within ``FLOAT_TOL``;
- the slide report (``report.json``, ``report.md``): identical except its times, the board
  name and the folders the two machines used;
- ``edge-app classify``'s JSON when both sides have it, the same way;
- ``bench-device``: every configuration ran, and the counted MACs and parameters are equal.

Paths are compared after each side's work folder is replaced by ``<WORK>`` (``--roots``).
Prints one line per check, appends ``check<TAB>-<TAB>-<TAB>result`` rows (pi-check.sh's table:
step, wall, CPU, result) to ``--rows``, and
exits 1 when anything differs.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FLOAT_TOL = 1e-4  # other real numbers of the store and the report (positions, fractions: the report rounds to 4 decimals)
# What the classifier's outputs become: calibrated confidences, open-set scores, embedding distances. OpenCV's
# resize is not bit-exact across x86 and ARM (a few input values one grey level apart), which moves int8
# logits by a few int8 steps (4-7 measured) and a crop's calibrated confidence by up to 0.026 (measured,
# edge-app classify, Cortex-A72 vs AMD EPYC); the bound leaves room for that, while classes, boxes and
# unknown flags must be identical.
OUTPUT_TOL = 0.05
OUTPUT_KEYS = re.compile(r"(confidence|score|distance|prob|probability)$")
FP32_LOGIT_TOL = 1e-4
# keys (JSON) and columns (SQLite) that describe the run, not the slide: times, timings, the board and
# what edge-app found out about it (board_check), when the store first saw a model (first_seen) or a model
# event happened (at)
VOLATILE = re.compile(r"^(captured|started|ended|created|generated|applied|reviewed|seconds|board|board_check"
                      r"|first_seen|at)$"
                      r"|_(ms|s|per_s|ms_mean|created)$")
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)?")
MAX_SHOWN = 5


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def is_volatile(key: str) -> bool:
    """Keys that may differ between two runs of the same slide.

    >>> [k for k in ("started", "finder_ms", "frames_per_s", "class_name", "board", "confidence", "first_seen")
    ...  if is_volatile(k)]
    ['started', 'finder_ms', 'frames_per_s', 'board', 'first_seen']
    """
    return bool(VOLATILE.search(key))


class Normalizer:
    """Reads each side's output folder as ``<OUT>`` and its work folder as ``<WORK>`` (and optionally times
    and board names as ``<TIME>``, ``<BOARD>``), so that paths and run facts compare equal across machines.

    >>> Normalizer(["/tmp/w", "/work"], ["/tmp/w/x86", "/work/pi4"]).text("/work/pi4/store and /work/fields")
    '<OUT>/store and <WORK>/fields'
    """

    def __init__(self, roots: list[str], outs: list[str] | None = None, boards: list[str] | None = None) -> None:
        pairs = [(r.rstrip("/"), "<WORK>") for r in roots if r] + [(o.rstrip("/"), "<OUT>") for o in outs or [] if o]
        self.pairs = sorted(pairs, key=lambda p: len(p[0]), reverse=True)
        self.boards = sorted((b for b in boards or [] if b), key=len, reverse=True)

    def text(self, s: str, *, times: bool = False) -> str:
        for path, token in self.pairs:
            s = s.replace(path, token)
        if times:
            s = ISO_TIME.sub("<TIME>", s)
            for b in self.boards:
                s = s.replace(b, "<BOARD>")
        return s

    def with_boards(self, boards: list[str]) -> "Normalizer":
        n = Normalizer([], [], boards)
        n.pairs = self.pairs
        return n


def tolerance(path: str) -> float:
    """How far two real numbers at ``path`` may lie apart: ``OUTPUT_TOL`` for what the classifier's outputs
    become (confidences, scores, distances), ``FLOAT_TOL`` for anything else.

    >>> tolerance("[5].confidence"), tolerance("cells[0].open_set_score"), tolerance("summary.abnormal_fraction")
    (0.05, 0.05, 0.0001)
    """
    leaf = path.rsplit(".", 1)[-1].split("[", 1)[0]
    return OUTPUT_TOL if OUTPUT_KEYS.search(leaf) else FLOAT_TOL


def diff(a: Any, b: Any, norm: Normalizer, path: str = "", tol: float | None = None) -> Iterator[str]:
    """Every difference between two JSON-like values that is not volatile, as ``path: a != b``; real numbers
    within ``tol``, by default :func:`tolerance` of their key.

    >>> n = Normalizer(["/tmp/run", "/work"], ["/tmp/run/x86", "/work/pi4"])
    >>> list(diff({"crop": "/tmp/run/x86/c.png", "started": 1, "conf": 0.5}, {"crop": "/work/pi4/c.png", "started": 2, "conf": 0.50001}, n))
    []
    >>> list(diff({"class": "parabasal", "n": [1, 2]}, {"class": "metaplastic", "n": [1, 2, 3]}, n))
    ["class: 'parabasal' != 'metaplastic'", 'n: 2 items != 3 items']
    """
    if isinstance(a, str) and isinstance(b, str) and a[:1] in "{[" and b[:1] in "{[":
        try:
            a, b = json.loads(a), json.loads(b)  # JSON kept in a text column (settings, summary)
        except ValueError:
            pass
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if is_volatile(str(k)):
                continue
            where = f"{path}.{k}" if path else str(k)
            if k not in a or k not in b:
                yield f"{where}: only on the {'second' if k not in a else 'first'} side"
            else:
                yield from diff(a[k], b[k], norm, where, tol)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield f"{path}: {len(a)} items != {len(b)} items"
            return
        for i, (x, y) in enumerate(zip(a, b)):
            yield from diff(x, y, norm, f"{path}[{i}]", tol)
    elif isinstance(a, bool) or isinstance(b, bool) or not (_number(a) and _number(b)):
        x = norm.text(a) if isinstance(a, str) else a
        y = norm.text(b) if isinstance(b, str) else b
        if x != y:
            yield f"{path}: {x!r} != {y!r}"
    elif isinstance(a, int) and isinstance(b, int):
        if a != b:
            yield f"{path}: {a} != {b}"
    else:
        limit = tolerance(path) if tol is None else tol
        if not (math.isclose(a, b, rel_tol=0, abs_tol=limit) or (math.isnan(a) and math.isnan(b))):
            yield f"{path}: {a!r} != {b!r} (more than {limit:g} apart)"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _summary(problems: list[str]) -> str:
    shown = "; ".join(problems[:MAX_SHOWN])
    more = f" (and {len(problems) - MAX_SHOWN} more)" if len(problems) > MAX_SHOWN else ""
    return f"{len(problems)} difference(s): {shown}{more}"


def versions(probe: dict) -> str:
    """``numpy 2.2.6, ai-edge-litert 2.3.0, opencv-python 4.12.0.88`` from a probe's record."""
    return ", ".join(f"{k} {v}" for k, v in probe.get("versions", {}).items() if v)


# ---- the checks ----------------------------------------------------------------------------------------
def _logit_table(a: dict, b: dict, step: float) -> tuple[list[str], list[str], list[str], float, bool]:
    """Keys on one side only, keys whose class differs, all common keys, the largest logit difference, bit-identical."""
    missing = sorted(set(a) ^ set(b))
    common = sorted(set(a) & set(b))
    wrong = [k for k in common if a[k]["class"] != b[k]["class"]]
    worst = max((abs(x - y) for k in common for x, y in zip(a[k]["logits"], b[k]["logits"])), default=0.0)
    identical = all(a[k]["logits"] == b[k]["logits"] for k in common)
    return missing, wrong, common, worst, identical


def _how(worst: float, identical: bool, step: float) -> str:
    if identical:
        return "bit-identical"
    return f"max difference {worst / step:.2f} int8 steps" if step else f"max difference {worst:.2e}"


def compare_probe(a: dict, b: dict) -> list[Check]:
    """The finder's boxes; per artifact the interpreter on the same input tensors (classes identical, logits
    within one int8 step or 1e-4) and the whole device path with each machine's own preprocessing (classes
    identical; how far logits and input tensors moved is reported)."""
    checks = []
    boxes = [f"{f}: {len(a['cells'].get(f, []))} cells != {len(b['cells'].get(f, []))}" if
             len(a["cells"].get(f, [])) != len(b["cells"].get(f, [])) else f"{f}: boxes differ"
             for f in sorted(set(a["cells"]) | set(b["cells"])) if a["cells"].get(f) != b["cells"].get(f)]
    n_cells = sum(len(v) for v in a["cells"].values())
    checks.append(Check("finder: cells per field", not boxes,
                        _summary(boxes) if boxes else f"identical boxes, {n_cells} cells in {len(a['cells'])} fields"))
    for fmt in sorted(set(a["formats"]) | set(b["formats"])):
        fa, fb = a["formats"].get(fmt), b["formats"].get(fmt)
        if fa is None or fb is None:
            checks.append(Check(f"classifier {fmt}", False, f"ran on one side only ({'second' if fa is None else 'first'})"))
            continue
        step = float(fa["logit_step"] or 0.0)
        tol = step * (1 + 1e-6) if step else FP32_LOGIT_TOL
        limit = "limit 1 step" if step else f"limit {FP32_LOGIT_TOL:g}"
        missing, wrong, common, worst, identical = _logit_table(fa["same_input"], fb["same_input"], step)
        detail = (f"{len(common) - len(wrong)}/{len(common)} classes identical, logits {_how(worst, identical, step)} "
                  f"({limit}); {fa['runtime']} vs {fb['runtime']}")
        detail += f"; on one side only: {', '.join(missing[:MAX_SHOWN])}" if missing else ""
        detail += f"; class differs: {', '.join(wrong[:MAX_SHOWN])}" if wrong else ""
        checks.append(Check(f"classifier {fmt}, same input tensors", not missing and not wrong and worst <= tol, detail))

        missing, wrong, common, worst, identical = _logit_table(fa["own"], fb["own"], step)
        inputs = fb.get("inputs") or {}
        moved = (f"; {inputs['differ']} of {inputs['total']} input values differ (by at most {inputs['max_difference']:g}: "
                 "OpenCV's resize is not bit-exact across CPUs)" if inputs.get("differ") else
                 "; input tensors identical" if inputs else "")
        detail = (f"{len(common) - len(wrong)}/{len(common)} classes identical; logits {_how(worst, identical, step)}"
                  f"{moved}")
        detail += f"; on one side only: {', '.join(missing[:MAX_SHOWN])}" if missing else ""
        detail += f"; class differs: {', '.join(wrong[:MAX_SHOWN])}" if wrong else ""
        checks.append(Check(f"end to end {fmt}, each machine's own preprocessing", not missing and not wrong, detail))
    return checks


def store_rows(db: Path) -> dict[str, list[dict[str, Any]]]:
    """Every table of an edge-app store, its rows in rowid order (read-only)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
        out = {}
        for t in sorted(tables):
            cur = con.execute(f'SELECT * FROM "{t}" ORDER BY rowid')
            cols = [c[0] for c in cur.description]
            out[t] = [dict(zip(cols, row)) for row in cur]
        return out
    finally:
        con.close()


def compare_store(a: Path, b: Path, norm: Normalizer) -> Check:
    ra, rb = store_rows(a), store_rows(b)
    problems = list(diff(ra, rb, norm))
    counts = ", ".join(f"{t} {len(rows)}" for t, rows in ra.items() if rows)
    return Check("store: every table, row by row", not problems, _summary(problems) if problems else f"identical ({counts})")


def compare_report(a_dir: Path, b_dir: Path, norm: Normalizer) -> list[Check]:
    ja = json.loads((a_dir / "report.json").read_text(encoding="utf-8"))
    jb = json.loads((b_dir / "report.json").read_text(encoding="utf-8"))
    problems = list(diff(ja, jb, norm))
    checks = [Check("report (json)", not problems, _summary(problems) if problems else
                    f"identical: {ja.get('cells')} cells, triage {ja.get('triage', {}).get('verdict')!r}")]
    mnorm = norm.with_boards([r.get("board", "") for j in (ja, jb) for r in j.get("runs", [])])
    la = [mnorm.text(s, times=True) for s in (a_dir / "report.md").read_text(encoding="utf-8").splitlines()]
    lb = [mnorm.text(s, times=True) for s in (b_dir / "report.md").read_text(encoding="utf-8").splitlines()]
    bad = [f"line {i + 1}: {x!r} != {y!r}" for i, (x, y) in enumerate(zip(la, lb)) if x != y]
    if len(la) != len(lb):
        bad.append(f"{len(la)} lines != {len(lb)} lines")
    checks.append(Check("report (markdown)", not bad, _summary(bad) if bad else f"identical ({len(la)} lines)"))
    return checks


def compare_classify(a_dir: Path, b_dir: Path, norm: Normalizer) -> list[Check]:
    fa, fb = a_dir / "classify.json", b_dir / "classify.json"
    if not fa.exists() and not fb.exists():
        return []
    if not (fa.exists() and fb.exists()):
        return [Check("edge-app classify", False, f"ran on one side only ({fa if fa.exists() else fb})")]
    ja, jb = json.loads(fa.read_text(encoding="utf-8")), json.loads(fb.read_text(encoding="utf-8"))
    problems = list(diff(ja, jb, norm))
    return [Check("edge-app classify", not problems, _summary(problems) if problems else f"identical ({len(ja)} crops)")]


def _bench_doc(side: Path) -> dict | None:
    files = sorted(side.glob("bench/*/*.json"))
    return json.loads(files[-1].read_text(encoding="utf-8")) if files else None


def _isa_line(isa: dict[str, bool]) -> str:
    """The ISA features bench-device found, then those it did not.

    >>> _isa_line({"asimd": True, "asimddp": False, "i8mm": False})
    'asimd (not asimddp, i8mm)'
    """
    have = [f for f, on in isa.items() if on]
    lack = [f for f, on in isa.items() if not on]
    return (", ".join(have) or "none") + (f" (not {', '.join(lack)})" if lack else "") if isa else "none listed"


def compare_bench(a_dir: Path, b_dir: Path) -> list[Check]:
    da, db = _bench_doc(a_dir), _bench_doc(b_dir)
    if db is None:
        return []  # not run on this side (steps.tsv says whether it was asked for)
    if da is None:
        return [Check("bench-device", False, f"no result file from the reference side ({a_dir})")]
    problems = [f"{r['format']} {r['status']}: {r.get('reason', '')}" for d in (da, db) for r in d["rows"] if r["status"] != "ok"]
    costs = lambda d: {f: (a["cost"]["macs"], a["cost"]["params"]) for m in d["models"] for f, a in m["artifacts"].items()}  # noqa: E731
    if costs(da) != costs(db):
        problems.append(f"counted MACs / params differ: {costs(da)} != {costs(db)}")
    lat = ", ".join(f"{r['format']} p50 {r['latency']['p50_ms']:.1f} ms" for r in db["rows"] if r["status"] == "ok")
    isa = _isa_line(db["board"].get("isa", {}))
    emulated = db["board"].get("emulated", "")
    where = f" ({emulated}: not board timings)" if emulated else ""
    return [Check("bench-device", not problems, _summary(problems) if problems else
                  f"all configurations ok, MACs and params equal; {lat}{where}; ISA features: {isa}")]


def compare_dirs(a_dir: Path, b_dir: Path, roots: list[str], outs: list[str] | None = None) -> list[Check]:
    """Every check of the module docstring; ``outs``: each side's folder as its programs named it."""
    norm = Normalizer(roots + [str(a_dir.parent), str(b_dir.parent)], (outs or []) + [str(a_dir), str(b_dir)])
    checks: list[Check] = []
    for name in ("probe.json", "report.json", "report.md", "store/cytoedge.sqlite"):
        for side in (a_dir, b_dir):
            if not (side / name).exists():
                checks.append(Check(f"output {name}", False, f"missing: {side / name}"))
    if checks:
        return checks
    pa = json.loads((a_dir / "probe.json").read_text(encoding="utf-8"))
    pb = json.loads((b_dir / "probe.json").read_text(encoding="utf-8"))
    checks.append(Check("versions", True, f"{versions(pb)} on {pb.get('machine', '?')}; "
                                          f"reference {versions(pa)} on {pa.get('machine', '?')}"))
    checks += compare_probe(pa, pb)
    checks.append(compare_store(a_dir / "store/cytoedge.sqlite", b_dir / "store/cytoedge.sqlite", norm))
    checks += compare_report(a_dir, b_dir, norm)
    checks += compare_classify(a_dir, b_dir, norm)
    checks += compare_bench(a_dir, b_dir)
    return checks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="compare.py", description=__doc__.splitlines()[0])
    ap.add_argument("first", type=Path, help="the reference side's output folder (x86)")
    ap.add_argument("second", type=Path, help="the other side's output folder (the emulated Pi)")
    ap.add_argument("--roots", nargs="*", default=[], help="work folders to read as the same place on both sides")
    ap.add_argument("--outs", nargs="*", default=[],
                    help="each side's output folder as that side's programs named it (e.g. inside the Pi)")
    ap.add_argument("--rows", type=Path, help="append 'check<TAB>-<TAB>-<TAB>result' rows to this file")
    ap.add_argument("--label", default="", help="prefix of every row")
    args = ap.parse_args(argv)
    checks = compare_dirs(args.first, args.second, args.roots, args.outs)
    prefix = f"{args.label}: " if args.label else ""
    lines = [f"{prefix}{c.name}\t-\t-\t{'ok' if c.ok else 'DIFFERS'}: {c.detail}" for c in checks]
    print("\n".join(line.replace("\t-\t-\t", "  ") for line in lines))
    if args.rows:
        with args.rows.open("a", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
