"""The slide report: counts per class and clinical group, a triage flag, the crops to review.

``edge-app report --slide ID`` renders :func:`build_report` as Markdown, JSON or CSV.
Every format says that this is a screening aid, not a diagnosis.

The triage rule (:class:`TriageRule`, every limit a CLI option) refers a slide for
review when it holds at least ``min_abnormal_cells`` abnormal cells or their share
reaches ``abnormal_fraction``; a slide with fewer than ``min_cells`` cells is
"insufficient" (scan more fields); one where more than ``unknown_fraction`` of the
cells could not be classified is referred too (focus, stain or debris problem).
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from typing import Any

from cytoedge.edge_app.classes import ABNORMAL, GROUPS, UNKNOWN
from cytoedge.edge_app.csvsafe import SafeWriter
from cytoedge.edge_app.errors import CytoEdgeError
from cytoedge.edge_app.store import SlideCounts, Store, now_iso

DISCLAIMER = ("Screening aid, not a diagnosis: these figures come from an automatic classifier and must be "
              "confirmed by a qualified cytotechnologist or pathologist before any clinical decision.")
REFER, NO_REFERRAL, INSUFFICIENT = "refer for review", "no referral by this rule", "insufficient cells"
REPORT_FORMATS = ("md", "json", "csv")
UNKNOWN_NOTE = ("Unknown: cells unlike every class the model knows (open-set score over the model card's threshold), "
                "or below the confidence limit. Confidences are calibrated (temperature scaling): among cells shown "
                "0.8, about 80 % are right.")


@dataclass(frozen=True)
class TriageRule:
    min_abnormal_cells: int = 5  # refer when at least this many cells are abnormal ...
    abnormal_fraction: float = 0.02  # ... or at least this share of all cells
    unknown_fraction: float = 0.25  # refer when more than this share could not be classified
    min_cells: int = 50  # fewer cells than this: insufficient, scan more fields

    def __post_init__(self) -> None:
        if self.min_abnormal_cells < 1 or self.min_cells < 0:
            raise CytoEdgeError("triage rule: --refer-abnormal-cells must be >= 1 and --min-cells >= 0")
        for name in ("abnormal_fraction", "unknown_fraction"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise CytoEdgeError(f"triage rule: {name.replace('_', ' ')} must be a share of the cells in (0, 1], "
                                    f"got {getattr(self, name):g}: write a fraction such as 0.02 or a percentage "
                                    "such as 2%")


def parse_fraction(text: str) -> float:
    """A share written as a fraction or a percentage: ``"0.02"`` and ``"2%"`` are both 0.02 (the range is checked
    where the share is used).

    >>> parse_fraction("2%"), parse_fraction("0.02"), parse_fraction("12.5 %")
    (0.02, 0.02, 0.125)
    >>> parse_fraction("two")
    Traceback (most recent call last):
    ...
    ValueError: not a fraction or a percentage: 'two' (write e.g. 0.02 or 2%)
    """
    t = text.strip()
    percent = t.endswith("%")
    try:
        v = float(t[:-1].strip() if percent else t)
    except ValueError:
        raise ValueError(f"not a fraction or a percentage: {text!r} (write e.g. 0.02 or 2%)") from None
    return round(v / 100.0, 12) if percent else v


def triage(counts: SlideCounts, rule: TriageRule) -> tuple[str, list[str]]:
    """The verdict and the reasons that led to it.

    >>> c = SlideCounts("s", "", ["a"], {}, 3, 400, {}, {"normal": 390, "abnormal": 6, "unknown": 4, "benign": 0})
    >>> triage(c, TriageRule())
    ('refer for review', ['6 abnormal cells (rule: at least 5)'])
    """
    n, ab, unk = counts.cells, counts.per_group.get(ABNORMAL, 0), counts.per_group.get(UNKNOWN, 0)
    reasons = []
    if ab >= rule.min_abnormal_cells:
        reasons.append(f"{ab} abnormal cells (rule: at least {rule.min_abnormal_cells})")
    if n and ab / n >= rule.abnormal_fraction:
        reasons.append(f"abnormal fraction {ab / n:.1%} (rule: at least {rule.abnormal_fraction:.1%})")
    if n and unk / n > rule.unknown_fraction:
        reasons.append(f"{unk / n:.1%} of cells unclassifiable (rule: more than {rule.unknown_fraction:.0%}): "
                       "check focus, stain and debris")
    if reasons:
        return REFER, reasons
    if n < rule.min_cells:
        return INSUFFICIENT, [f"{n} cells found (rule: at least {rule.min_cells}): scan more fields"]
    return NO_REFERRAL, [f"{ab} abnormal cells ({ab / n:.1%}) of {n}, below the rule's limits"]


def build_report(store: Store, slide_id: str, rule: TriageRule | None = None, review_limit: int = 100) -> dict[str, Any]:
    """Everything the report says, as plain data (the JSON format is exactly this)."""
    rule = rule or TriageRule()
    counts = store.slide_counts(slide_id)
    verdict, reasons = triage(counts, rule)
    recognised = sum(counts.per_class.values())
    review = store.cells_to_review(slide_id)
    return {
        "slide": slide_id,
        "disclaimer": DISCLAIMER,
        "generated": now_iso(),
        "created": counts.created,
        "store": str(store.folder),
        "frames": counts.frames,
        "cells": counts.cells,
        "per_class": [{"class": c, "group": counts.class_groups.get(c, UNKNOWN), "count": k,
                       "fraction_of_recognised": round(k / recognised, 4) if recognised else 0.0}
                      for c, k in counts.per_class.items()],
        "per_group": {g: counts.per_group.get(g, 0) for g in GROUPS},
        "abnormal_fraction": round(counts.abnormal_fraction, 4),
        "triage": {"verdict": verdict, "refer": verdict == REFER, "reasons": reasons, "rule": asdict(rule)},
        "review_total": len(review),
        "review": [{"cell": r.id, "frame": r.frame_seq, "frame_name": r.frame_name, "class": r.class_name,
                    "group": r.group, "confidence": round(r.confidence, 4),
                    "score": None if r.distance is None else round(r.distance, 4), "box": list(r.box),
                    "crop": str(store.folder / r.crop_path) if r.crop_path else None}
                   for r in review[:review_limit]],
        "runs": [{k: run.get(k) for k in ("started", "ended", "source", "model", "card_sha256", "format", "board",
                                          "threads", "summary")}
                 for run in counts.runs],
    }


def render_markdown(rep: dict[str, Any]) -> str:
    n = rep["cells"]
    pct = (lambda k: f"{k / n:.1%}") if n else (lambda k: "-")
    lines = [f"# Slide {rep['slide']}", "", f"> **{rep['disclaimer']}**", "",
             f"**Triage: {rep['triage']['verdict']}** - " + "; ".join(rep["triage"]["reasons"]), "",
             f"{rep['frames']} frames, {n} cells, abnormal fraction {pct(rep['per_group'].get(ABNORMAL, 0))}. "
             f"Report generated {rep['generated']}.", "",
             "| clinical group | cells | share |", "| --- | ---: | ---: |"]
    lines += [f"| {g} | {k} | {pct(k)} |" for g, k in rep["per_group"].items()]
    lines += ["", "| class | group | cells |", "| --- | --- | ---: |"]
    lines += [f"| {r['class']} | {r['group']} | {r['count']} |" for r in rep["per_class"]]
    lines += ["", UNKNOWN_NOTE, ""]
    lines += [f"## Crops to review ({rep['review_total']}, most doubtful first)", ""]
    if rep["review"]:
        lines += ["| cell | frame | class | group | confidence (calibrated) | crop |",
                  "| ---: | --- | --- | --- | ---: | --- |"]
        lines += [f"| {r['cell']} | {r['frame_name']} | {r['class']} | {r['group']} | {r['confidence']:.2f} | "
                  f"{r['crop'] or '(not saved)'} |" for r in rep["review"]]
        if rep["review_total"] > len(rep["review"]):
            lines.append(f"\n... and {rep['review_total'] - len(rep['review'])} more (edge-app report --format json)")
    else:
        lines.append("None.")
    lines += ["", "## Runs", ""]
    lines += [f"- {r['started']} {r['model']}" + (f" card {r['card_sha256'][:12]}" if r.get("card_sha256") else "")
              + f" ({r['format']}, {r['board']}, {r['threads']} threads) "
              f"from {r['source']}" + ("" if r["ended"] else " - did not finish cleanly") for r in rep["runs"]]
    return "\n".join(lines) + "\n"


def render_csv(rep: dict[str, Any]) -> str:
    """One row per figure: ``kind,name,group,count,fraction`` (kind: class, group, total, triage, review, note)."""
    buf = io.StringIO()
    w = SafeWriter(buf, lineterminator="\n")  # frame and class names are text from outside: no formulas
    w.writerow(["slide", "kind", "name", "group", "count", "fraction", "detail"])
    s = rep["slide"]
    w.writerow([s, "note", "disclaimer", "", "", "", rep["disclaimer"]])
    w.writerow([s, "total", "frames", "", rep["frames"], "", ""])
    w.writerow([s, "total", "cells", "", rep["cells"], "", ""])
    for r in rep["per_class"]:
        w.writerow([s, "class", r["class"], r["group"], r["count"], r["fraction_of_recognised"], ""])
    for g, k in rep["per_group"].items():
        w.writerow([s, "group", g, g, k, round(k / rep["cells"], 4) if rep["cells"] else 0.0, ""])
    w.writerow([s, "triage", rep["triage"]["verdict"], "", "", rep["abnormal_fraction"],
                "; ".join(rep["triage"]["reasons"])])
    for r in rep["review"]:
        w.writerow([s, "review", r["class"], r["group"], "", r["confidence"], r["crop"] or ""])
    return buf.getvalue()


def render(rep: dict[str, Any], fmt: str) -> str:
    if fmt == "md":
        return render_markdown(rep)
    if fmt == "json":
        return json.dumps(rep, indent=2) + "\n"
    if fmt == "csv":
        return render_csv(rep)
    raise CytoEdgeError(f"unknown report format {fmt!r}: choose from {', '.join(REPORT_FORMATS)}")
