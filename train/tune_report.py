"""What ``edge-train tune`` leaves behind: ``run.toml`` (the best configuration), ``best.json`` and plots.

``run.toml`` holds every edge-train option of the best trial, so ``edge-train --config
OUT/run.toml`` trains exactly that configuration (into ``OUT/best`` unless ``--out`` says
otherwise). It is rewritten after every trial that completes, so a killed search still
leaves the best configuration found so far.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from cytoedge.edge_app.atomic import atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    from cytoedge.train.tune import TuneOptions

RUN_TOML, BEST_JSON = "run.toml", "best.json"


def best_trial(study: Any) -> Any | None:
    """The completed trial with the highest value (None before one completes)."""
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(done, key=lambda t: (t.value, -t.number)) if done else None


def run_toml_text(study: Any, opts: "TuneOptions", best: Any) -> str:
    """The best trial as an edge-train config file, with a header that says where it came from."""
    import tomli_w

    from cytoedge.train.tune import state_counts

    out = Path(opts.out)
    # the trial's own thread count: run.toml then repeats the trial bit for bit (0, all cores, rounds differently)
    cfg = replace(opts.train, **best.params, out=str(out / "best"),
                  threads=best.user_attrs.get("threads", opts.train.threads))
    counts = state_counts(study)
    header = [
        f"# edge-train configuration: the best trial of the study {opts.name!r} ({opts.storage_url})",
        f"# trial {best.number} scored {best.value:.4f}: {opts.objective_label};",
        f"#   {counts.get('COMPLETE', 0)} trials complete, {counts.get('PRUNED', 0)} pruned; written "
        f"{datetime.now(timezone.utc).astimezone().isoformat(timespec='seconds')}",
        f"# searched: {'; '.join(p.describe() for p in opts.search.values())}",
        f"# train it:  edge-train --config {out / RUN_TOML}    (all folds: add --fold -1; elsewhere: --out DIR)",
        *([f"#   threads = {best.user_attrs['threads']}: the trial's torch thread count, so the run repeats the trial "
           f"bit for bit (threads = 0 uses every core: faster, but it rounds differently)"]
          if "threads" in best.user_attrs else []),
        f"# the trial's own run (its bundles): {best.user_attrs.get('run_dir', '')}",
        "# mean = [] and std = [] mean the model's own normalisation (ImageNet's).",
        "",
    ]
    return "\n".join(header) + tomli_w.dumps(cfg.to_dict())


def write_best(study: Any, opts: "TuneOptions") -> Any | None:
    """Write run.toml and best.json for the best completed trial; returns it (None: nothing completed yet)."""
    best = best_trial(study)
    if best is None:
        return None
    out = Path(opts.out)
    atomic_write_text(out / RUN_TOML, run_toml_text(study, opts, best))
    from cytoedge.train.tune import options_dict, state_counts

    atomic_write_json(out / BEST_JSON, {
        "study": opts.name, "storage": opts.storage_url, "trial": best.number, "objective": opts.objective,
        "objective_label": opts.objective_label, "value": best.value, "params": best.params,
        "per_fold": best.user_attrs.get("per_fold", {}), "run_dir": best.user_attrs.get("run_dir", ""),
        "states": state_counts(study), "options": options_dict(opts),
    })
    return best


def write_plots(study: Any, out: Path, say: Callable[[str], None]) -> list[Path]:
    """history.png (objective per trial, best so far), importances.png (fANOVA), learning_curves.png (per epoch)."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as ovm

    from cytoedge.train.plots import save_figure, use_agg

    use_agg()
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    plots = {
        "history.png": lambda: ovm.plot_optimization_history(study),
        "learning_curves.png": lambda: ovm.plot_intermediate_values(study),
    }
    if len(complete) >= 2:
        plots["importances.png"] = lambda: ovm.plot_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))
    else:
        say("tune: importances.png needs two completed trials; not drawn yet")
    written = []
    for name, draw in plots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                ax = draw()
            except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # e.g. no variation to attribute yet
                say(f"tune: {name} not drawn ({exc})")
                continue
        save_figure(ax.figure, out / name)
        written.append(out / name)
    return written


def edge_notes(params: dict[str, Any], opts: "TuneOptions", edge: float = 0.1) -> list[str]:
    """Best values in the outer tenth of their range (log scale where searched so): the optimum may lie outside.

    >>> from cytoedge.train.config import TrainConfig
    >>> from cytoedge.train.tune import TuneOptions
    >>> edge_notes({"lr": 0.089, "margin": 1.0}, TuneOptions(TrainConfig()))
    ['lr 0.089 is at the top of its range 0.0001..0.1: widen it in the [search] table to see past it']
    """
    import math

    notes = []
    for name, value in params.items():
        p = opts.search.get(name)
        if p is None or p.choices or not isinstance(value, (int, float)):
            continue
        f = (lambda x: math.log(x)) if p.log else (lambda x: x)
        where = (f(value) - f(p.low)) / (f(p.high) - f(p.low))
        at_zero = not p.log and p.low == 0 and where <= edge  # 0 is as low as label smoothing or hue go
        if (where >= 1 - edge or where <= edge) and not at_zero:
            side = "top" if where >= 1 - edge else "bottom"
            notes.append(f"{name} {value:.3g} is at the {side} of its range {p.low:g}..{p.high:g}: widen it in the "
                         "[search] table to see past it")
    return notes


def print_summary(study: Any, opts: "TuneOptions", say: Callable[[str], None], top: int = 8) -> None:
    """The best trials as a table, then where the results are."""
    from rich.console import Console
    from rich.table import Table

    from cytoedge.train.tune import state_counts

    from optuna.trial import TrialState

    everything = study.get_trials(deepcopy=False)
    trials = sorted((t for t in everything if t.state == TrialState.COMPLETE), key=lambda t: -t.value)
    names = list(opts.search)
    counts = state_counts(study)
    t = Table(title=f"study {opts.name}: the best {min(top, len(trials))} of {len(trials)} complete trials "
                    f"({counts.get('PRUNED', 0)} pruned, {counts.get('FAIL', 0)} failed)")
    for col in ("trial", opts.objective, *names, "s"):
        t.add_column(col, justify="right")
    for tr in trials[:top]:
        t.add_row(str(tr.number) + (" (baseline)" if tr.user_attrs.get("baseline") else ""), f"{tr.value:.4f}",
                  *[f"{tr.params[n]:.4g}" if isinstance(tr.params.get(n), float) else str(tr.params.get(n, ""))
                    for n in names], str(tr.user_attrs.get("seconds", "")))
    Console(width=120).print(t)
    best = best_trial(study)
    base = next((t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("baseline")), None)
    if base is not None and base.value is not None and best is not None:
        say(f"baseline: trial {base.number}, {opts.objective} {base.value:.4f}; the best trial is "
            f"{best.value - base.value:+.4f} from it")
    if best is not None:
        for note in edge_notes(best.params, opts):
            say(f"note: {note}")
        say(f"best: trial {best.number}, {opts.objective} {best.value:.4f}; configuration {Path(opts.out) / RUN_TOML} "
            f"(train it: edge-train --config {Path(opts.out) / RUN_TOML}); its bundles: {best.user_attrs.get('run_dir')}")
    say(f"plots: {Path(opts.out)}/history.png, importances.png, learning_curves.png; "
        f"browse the study: optuna-dashboard {opts.storage_url}")
