"""The slide report: the corrected abnormal fraction with its interval, a verdict, adequacy, the cells to review.

``edge-app report --slide ID`` renders :func:`build_report` as Markdown, JSON or CSV (the
web view's /slides/ID shows the same). Every format says that this is a screening aid,
not a diagnosis.

The verdict (:func:`slide_verdict`). With a model card that carries its error rates on
finder crops (schema 3), the slide's abnormal fraction is estimated by adjusted
classify-and-count with a 95 % interval (:mod:`edge_app.estimate`), and against the
lab's limit (``TriageRule.limit``):

* **refer** when the whole interval lies above the limit;
* **no further review** only when it lies below the limit, the slide is adequate
  (:mod:`edge_app.adequacy`: classifiable squamous cells against 5 000 conventional /
  2 000 liquid-based / the lab's own figure) and no more than ``unknown_fraction`` of
  its detections could not be classified;
* **review** otherwise.

With an older card (no error rates) the count rule of the releases before stays: refer
when at least ``min_abnormal_cells`` cells or ``abnormal_fraction`` of them are called
abnormal, or more than ``unknown_fraction`` could not be classified; "insufficient"
under ``min_cells``. The raw counts are shown beside the estimate in every case.

The cells to review lead with the ``gallery`` cells most likely abnormal (highest
calibrated abnormal probability among cells not rejected), then the doubtful and
unknown ones.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from typing import Any

from cytoedge.edge_app.adequacy import DEFAULT_PREPARATION, Adequacy, adequacy_threshold
from cytoedge.edge_app.classes import ABNORMAL, GROUPS, UNKNOWN
from cytoedge.edge_app.csvsafe import SafeWriter
from cytoedge.edge_app.errors import CytoEdgeError
from cytoedge.edge_app.store import SlideCounts, Store, now_iso

DISCLAIMER = ("Screening aid, not a diagnosis: these figures come from an automatic classifier and must be "
              "confirmed by a qualified cytotechnologist or pathologist before any clinical decision.")
REFER, NO_REFERRAL, INSUFFICIENT = "refer for review", "no referral by this rule", "insufficient cells"  # count rule
REFER_EST, REVIEW, NO_FURTHER_REVIEW = "refer", "review", "no further review"  # the estimate's verdicts
REFERRING = (REFER, REFER_EST)
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
    limit: float = 0.005  # the lab's limit on the corrected abnormal fraction (the estimate's verdict)
    preparation: str = DEFAULT_PREPARATION  # adequacy: conventional (5 000 cells) or liquid-based (2 000)
    adequacy_cells: int | None = None  # the lab's own adequacy figure instead of the preparation's
    gallery: int = 30  # cells most likely abnormal shown first

    @property
    def adequacy_needed(self) -> int:
        return adequacy_threshold(self.preparation, self.adequacy_cells)

    def __post_init__(self) -> None:
        if not 0.0 < self.limit < 1.0:
            raise CytoEdgeError(f"triage rule: the abnormal-fraction limit must be a share in (0, 1), got {self.limit:g}")
        if self.gallery < 0:
            raise CytoEdgeError(f"triage rule: the gallery size must be >= 0, got {self.gallery}")
        self.adequacy_needed  # an unknown preparation or a figure < 1 is an error here, not at report time
        if self.min_abnormal_cells < 1 or self.min_cells < 0:
            raise CytoEdgeError("triage rule: --refer-abnormal-cells must be >= 1 and --min-cells >= 0")
        for name in ("abnormal_fraction", "unknown_fraction"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise CytoEdgeError(f"triage rule: {name.replace('_', ' ')} must be a share of the cells in (0, 1], "
                                    f"got {getattr(self, name):g}: write a fraction such as 0.02 or a percentage "
                                    "such as 2%")


def format_share(share: float) -> str:
    """A share as every surface shows it (the report's Markdown, JSON and CSV, the triage lines, the web pages):
    ``0.219512`` -> ``22.0%``. Always of the exact figure: formatting one rounded to 4 decimals first made the
    web page's 21.9 % beside the triage line's 22.0 % (0.2195 is 0.21949999... in binary).

    >>> format_share(27 / 123), format_share(round(27 / 123, 4))  # hence never of the rounded figure
    ('22.0%', '21.9%')
    """
    return f"{share:.1%}"


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
        reasons.append(f"abnormal fraction {format_share(ab / n)} (rule: at least {rule.abnormal_fraction:.1%})")
    if n and unk / n > rule.unknown_fraction:
        reasons.append(f"{format_share(unk / n)} of cells unclassifiable (rule: more than {rule.unknown_fraction:.0%}): "
                       "check focus, stain and debris")
    if reasons:
        return REFER, reasons
    if n < rule.min_cells:
        return INSUFFICIENT, [f"{n} cells found (rule: at least {rule.min_cells}): scan more fields"]
    return NO_REFERRAL, [f"{ab} abnormal cells ({format_share(ab / n)}) of {n}, below the rule's limits"]


def error_rates_of(counts: SlideCounts) -> tuple[dict[str, Any] | None, str]:
    """The error rates the slide's latest run recorded (card schema 3), and a note when runs disagree."""
    recorded = [(r.get("model_sha256"), (r.get("settings") or {}).get("error_rates")) for r in counts.runs]
    with_rates = [(sha, er) for sha, er in recorded if er]
    if not with_rates:
        return None, ""
    models = {sha for sha, _ in recorded}
    note = "" if len(models) == 1 else (f"the slide was recorded by {len(models)} models; the estimate uses the error "
                                        "rates of the latest")
    return with_rates[-1][1], note


def slide_verdict(counts: SlideCounts, rule: TriageRule) -> dict[str, Any]:
    """The verdict, its reasons, the estimate (or None: an older card, the count rule) and adequacy."""
    from cytoedge.edge_app.estimate import ErrorRates, estimate

    n, unk = counts.cells, counts.per_group.get(UNKNOWN, 0)
    classified = n - unk
    adequacy = Adequacy(classified, rule.adequacy_needed)
    ad = {"classifiable_cells": classified, "needed": adequacy.threshold, "adequate": adequacy.adequate,
          "text": adequacy.text(), "preparation": rule.preparation if rule.adequacy_cells is None else "lab's own figure",
          "unclassified_detections": unk, "unclassified_share": round(unk / n, 4) if n else 0.0}
    rates, note = error_rates_of(counts)
    if rates is None:
        verdict, reasons = triage(counts, rule)
        return {"verdict": verdict, "refer": verdict in REFERRING, "reasons": reasons, "estimate": None,
                "basis": "count rule: the model card carries no error rates (an older card); convert the model "
                         "again for the corrected estimate", "adequacy": ad}
    er = ErrorRates.from_card(rates, counts.class_groups)
    called = [counts.per_group.get(g, 0) for g in er.groups]
    est = estimate(called, er)
    span = f"{est.fraction:.2%} (95 % interval {est.low:.2%} to {est.high:.2%})"
    reasons = []
    if est.low > rule.limit:
        verdict = REFER_EST
        reasons.append(f"estimated abnormal fraction {span} lies above the limit {rule.limit:.2%}")
    else:
        verdict = REVIEW
        if est.high >= rule.limit:
            reasons.append(f"estimated abnormal fraction {span} reaches the limit {rule.limit:.2%}")
        else:
            problems = []
            if not adequacy.adequate:
                problems.append(adequacy.text())
            if n and unk / n > rule.unknown_fraction:
                problems.append(f"{unk / n:.1%} of detections could not be classified (more than "
                                f"{rule.unknown_fraction:.0%}): check focus, stain and debris")
            if problems:
                reasons.append(f"estimated abnormal fraction {span} lies below the limit {rule.limit:.2%}, but "
                               + "; ".join(problems))
            else:
                verdict = NO_FURTHER_REVIEW
                reasons.append(f"estimated abnormal fraction {span} lies below the limit {rule.limit:.2%}; "
                               f"{adequacy.text()}")
    if note:
        reasons.append(note)
    return {"verdict": verdict, "refer": verdict == REFER_EST, "reasons": reasons, "estimate": est.to_dict(),
            "basis": "estimate: adjusted classify-and-count on the validation error rates of finder crops",
            "adequacy": ad}


def build_report(store: Store, slide_id: str, rule: TriageRule | None = None, review_limit: int = 100) -> dict[str, Any]:
    """Everything the report says, as plain data (the JSON format is exactly this)."""
    rule = rule or TriageRule()
    counts = store.slide_counts(slide_id)
    v = slide_verdict(counts, rule)
    recognised = sum(counts.per_class.values())
    gallery = {c.id for c in store.most_suspicious(slide_id, rule.gallery)} if rule.gallery else set()
    review = store.suspicion_order(slide_id, rule.gallery) if rule.gallery else store.cells_to_review(slide_id)
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
        "abnormal_fraction_text": format_share(counts.abnormal_fraction),
        "estimate": v["estimate"],
        "adequacy": v["adequacy"],
        "triage": {"verdict": v["verdict"], "refer": v["refer"], "reasons": v["reasons"], "basis": v["basis"],
                   "rule": asdict(rule)},
        "review_total": len(review),
        "gallery_total": len(gallery),
        "review": [{"cell": r.id, "frame": r.frame_seq, "frame_name": r.frame_name, "class": r.class_name,
                    "why": "most suspicious" if r.id in gallery else "doubtful",
                    "p_abnormal": None if r.p_abnormal is None else round(r.p_abnormal, 4),
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
    pct = (lambda k: format_share(k / n)) if n else (lambda k: "-")
    lines = [f"# Slide {rep['slide']}", "", f"> **{rep['disclaimer']}**", "",
             f"**Triage: {rep['triage']['verdict']}** - " + "; ".join(rep["triage"]["reasons"]), "",
             f"Basis: {rep['triage']['basis']}.", ""]
    est = rep.get("estimate")
    if est:
        lines += [f"**Estimated abnormal fraction: {est['abnormal_fraction']:.2%}** (95 % interval {est['low']:.2%} "
                  f"to {est['high']:.2%}; limit {rep['triage']['rule']['limit']:.2%}), corrected for the model's error "
                  f"rates measured on {est['validation_cells']} validation cells; raw: "
                  f"{est['raw_fraction']:.2%} of {est['classified_cells']} classified cells called abnormal.", ""]
    ad = rep.get("adequacy")
    if ad:
        lines += [f"Adequacy: {ad['text']}; {ad['unclassified_share']:.1%} of detections ({ad['unclassified_detections']}) "
                  "could not be classified (obscured, debris, not a cell).", ""]
    lines += [f"{rep['frames']} frames, {n} cells, raw abnormal fraction {pct(rep['per_group'].get(ABNORMAL, 0))}. "
             f"Report generated {rep['generated']}.", "",
             "| clinical group | cells | share |", "| --- | ---: | ---: |"]
    lines += [f"| {g} | {k} | {pct(k)} |" for g, k in rep["per_group"].items()]
    lines += ["", "| class | group | cells |", "| --- | --- | ---: |"]
    lines += [f"| {r['class']} | {r['group']} | {r['count']} |" for r in rep["per_class"]]
    lines += ["", UNKNOWN_NOTE, ""]
    lines += [f"## Crops to review ({rep['review_total']}: the {rep.get('gallery_total', 0)} most suspicious first, "
              "then the most doubtful)", ""]
    if rep["review"]:
        lines += ["| cell | why | frame | class | group | P(abnormal) | confidence (calibrated) | crop |",
                  "| ---: | --- | --- | --- | --- | ---: | ---: | --- |"]
        lines += [f"| {r['cell']} | {r.get('why', '')} | {r['frame_name']} | {r['class']} | {r['group']} | "
                  f"{'-' if r.get('p_abnormal') is None else format(r['p_abnormal'], '.2f')} | {r['confidence']:.2f} | "
                  f"{r['crop'] or '(not saved)'} |" for r in rep["review"]]
        if rep["review_total"] > len(rep["review"]):
            lines.append(f"\n... and {rep['review_total'] - len(rep['review'])} more "
                         "(edge-app report --report-format json)")
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
    est = rep.get("estimate")
    if est:
        for name in ("abnormal_fraction", "low", "high", "raw_fraction"):
            w.writerow([s, "estimate", name, ABNORMAL, est["classified_cells"] if name == "raw_fraction" else "",
                        est[name], f"95 % interval; limit {rep['triage']['rule']['limit']}" if name in ("low", "high")
                        else ""])
    ad = rep.get("adequacy")
    if ad:
        w.writerow([s, "adequacy", "adequate" if ad["adequate"] else "unsatisfactory", "", ad["classifiable_cells"],
                    "", ad["text"]])
        w.writerow([s, "adequacy", "unclassified", UNKNOWN, ad["unclassified_detections"], ad["unclassified_share"], ""])
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
