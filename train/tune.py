"""``edge-train tune``: hyper-parameter search with Optuna over edge-train's own training.

Each trial is one ``edge-train`` run (:func:`train.run.run_training`) in ``OUT/trials/NNN/``
with the trial's values. The training loop's ``on_epoch`` hook reports every epoch's
validation metric to Optuna, and the median pruner stops a trial whose metric falls below
the median of the earlier trials at the same epoch. The sampler is TPE.

The study lives in SQLite (``OUT/study.sqlite``, any Optuna storage URL with
``--storage``), so running the same command again continues it, and ``optuna-dashboard
sqlite:///OUT/study.sqlite`` shows it. A trial left RUNNING by a killed search (its
process is gone) is marked FAIL and re-queued with the same values; the re-run resumes
that trial's own edge-train checkpoint (bit-identical to an uninterrupted run) and keeps
the epochs it had already reported. ``--jobs N`` runs trials in N processes on the same
storage; ``--trials N`` counts finished trials (complete or pruned) of the whole study.

Several machines share one study through a database server (``--storage postgresql://...``):
each worker takes a PostgreSQL advisory lock, not only its own file lock, to count and start
trials, so ``--trials`` holds for all of them; a running trial sends Optuna's heartbeat, and a
trial silent for twice ``--heartbeat`` seconds (its worker killed, its machine gone) is marked
FAIL by the next worker that looks and re-queued with the same values. A worker that finds
the study full but trials still running elsewhere waits for them, so none is lost.

Python API (the CLI is a thin layer over it)::

    from cytoedge.train.config import TrainConfig
    from cytoedge.train.tune import TuneOptions, run_tune

    result = run_tune(TuneOptions(TrainConfig(data="data/synth", input_size=128, folds=2, fold=0, epochs=6,
                                              grad_clip=5), out="runs/tune", trials=20))
    result.best_value, result.best_params, result.run_toml   # run_toml: edge-train --config reads it
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import socket
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from cytoedge.edge_app.errors import CytoEdgeError
from cytoedge.train.config import TrainConfig
from cytoedge.train.errors import ConfigError, TrainingDivergedError
from cytoedge.train.tune_space import DEFAULT_SPACE, ParamRange, check_space, suggest

OBJECTIVES = {
    "macro-f1": "macro-F1",
    "abnormal-sensitivity": "abnormal-group sensitivity",
}
STUDY_FILE, LOCK_FILE, TRIALS_DIR = "study.sqlite", "study.lock", "trials"
SETTINGS_ATTR = "cytoedge_settings"  # what the study was made with: a re-run must match it
IGNORED_SETTINGS = ("out", "progress", "workers", "device", "threads")  # change nothing a trial computes but rounding


@dataclass
class TuneOptions:
    """One search: the fixed training options, the space, and how long / how wide to search."""

    train: TrainConfig  # everything not searched: data, model, epochs, folds / fold, seed ...
    out: str = "runs/tune"  # the study folder: study.sqlite, trials/, run.toml, plots
    trials: int = 20  # finished trials (complete or pruned) the study should hold; a re-run continues to it
    timeout: float = 0.0  # seconds after which no new trial starts (0: no limit); running trials finish
    jobs: int = 1  # trials in parallel, each in its own process, on the same storage
    objective: str = "macro-f1"  # or "abnormal-sensitivity" (at `specificity`)
    specificity: float = 0.95  # the fixed specificity of the abnormal-sensitivity objective
    storage: str = ""  # an Optuna storage URL or a .sqlite file; "" = OUT/study.sqlite
    study_name: str = ""  # "" = the name of the OUT folder
    search: dict[str, ParamRange] = field(default_factory=lambda: dict(DEFAULT_SPACE))
    baseline: bool = False  # first evaluate `train`'s own values of the searched options (once per study)
    heartbeat: int = 60  # database storages: seconds between a running trial's heartbeats; silent 2x that = FAIL

    @property
    def name(self) -> str:
        return self.study_name or Path(self.out).resolve().name

    @property
    def storage_url(self) -> str:
        s = self.storage or str(Path(self.out) / STUDY_FILE)
        return s if "://" in s else f"sqlite:///{Path(s).resolve()}"

    @property
    def heartbeats(self) -> bool:
        """Trials send Optuna's heartbeat: a database server, which other machines may share (not a SQLite file)."""
        return not self.storage_url.startswith("sqlite:")

    @property
    def folds(self) -> list[int]:
        return list(range(self.train.folds)) if self.train.fold < 0 else [self.train.fold]

    @property
    def objective_label(self) -> str:
        label = OBJECTIVES.get(self.objective, self.objective)
        if self.objective == "abnormal-sensitivity":
            label += f" at {self.specificity:.0%} specificity"
        return f"{label} (mean over fold{'s' if len(self.folds) > 1 else ''} {', '.join(map(str, self.folds))})"

    def validate(self) -> "TuneOptions":
        checks = [
            (self.trials >= 1, f"--trials must be at least 1, got {self.trials}"),
            (self.timeout >= 0, f"--timeout must be >= 0 seconds, got {self.timeout}"),
            (self.jobs >= 1, f"--jobs must be at least 1, got {self.jobs}"),
            (self.heartbeat >= 1, f"--heartbeat must be at least 1 second, got {self.heartbeat}"),
            (self.objective in OBJECTIVES, f"--objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}"),
            (0 < self.specificity < 1, f"--specificity must be in (0, 1), got {self.specificity}"),
            (bool(self.search), "nothing to search: the [search] table fixed every option"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        self.train.validate()
        check_space(self.search, self.train)
        return self

    def settings(self) -> dict[str, Any]:
        """What identifies the study: the fixed training options, the objective and the space."""
        fixed = {k: v for k, v in self.train.to_dict().items() if k not in self.search and k not in IGNORED_SETTINGS}
        return {"train": fixed, "objective": self.objective, "specificity": self.specificity,
                "search": {k: p.describe() for k, p in sorted(self.search.items())}}


@dataclass
class TuneResult:
    study_name: str
    storage: str
    states: dict[str, int]  # trial state -> count, e.g. {"COMPLETE": 18, "PRUNED": 5, "FAIL": 1}
    best_number: int | None
    best_value: float | None
    best_params: dict[str, Any]
    run_toml: Path | None  # edge-train --config reads it
    best_run: Path | None  # the best trial's edge-train run folder (its bundles)
    plots: list[Path] = field(default_factory=list)


# -- the objective --------------------------------------------------------------------


def epoch_objective(opts: TuneOptions, logits: Any, labels: Any, class_names: list[str]) -> float:
    """The objective on one set of validation predictions (per epoch, and per fold at the end)."""
    import numpy as np

    from cytoedge.train.metrics import abnormal_sensitivity_at_specificity, classification_metrics

    if opts.objective == "macro-f1":
        return classification_metrics(labels, np.asarray(logits).argmax(1), class_names)["f1"]
    z = np.asarray(logits, dtype=np.float64)
    probs = np.exp(z - z.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    return abnormal_sensitivity_at_specificity(labels, probs, class_names, opts.specificity)


def fold_objective(opts: TuneOptions, fold_dir: Path) -> float:
    """The objective of a finished fold, from its predictions.csv (the final model's validation predictions,
    rounded to 6 decimals: near a tie that can move abnormal-sensitivity). Only for a fold an earlier process
    finished (a resumed trial); the study records what the fold's last epoch computed (:class:`_Reporter`)."""
    import csv

    import numpy as np

    with open(fold_dir / "predictions.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    names = [c[2:] for c in rows[0] if c.startswith("p_")]
    labels = np.array([names.index(r["true"]) for r in rows])
    if opts.objective == "macro-f1":  # the predicted class as written (argmax of the unrounded scores)
        return epoch_objective(opts, np.eye(len(names))[[names.index(r["pred"]) for r in rows]], labels, names)
    probs = np.array([[float(r[f"p_{c}"]) for c in names] for r in rows])
    return epoch_objective(opts, np.log(np.clip(probs, 1e-12, None)), labels, names)


class _Reporter:
    """The training loop's ``on_epoch`` hook: report the epoch's metric, prune below the median."""

    def __init__(self, trial: Any, opts: TuneOptions, say: Callable[[str], None]) -> None:
        self.trial, self.opts, self.say = trial, opts, say
        self.final: dict[int, float] = {}  # fold -> the objective its last epoch computed (and printed)

    def __call__(self, e: Any) -> None:
        import optuna

        step = self.opts.folds.index(e.fold) * e.epochs + e.epoch
        value = epoch_objective(self.opts, e.val_logits, e.val_labels, e.class_names)
        if e.epoch + 1 == e.epochs:  # the fold's final model: its figure is the one the study records
            self.final[e.fold] = value
        self.trial.report(value, step)
        self.say(f"trial {self.trial.number} fold {e.fold} epoch {e.epoch + 1}/{e.epochs}: "
                 f"{self.opts.objective} {value:.4f} (val acc {e.stats['val_acc']:.3f})")
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after fold {e.fold} epoch {e.epoch + 1}: {self.opts.objective} "
                                     f"{value:.4f} is below the median of the earlier trials there")


# -- the study ---------------------------------------------------------------------------


def _storage(opts: TuneOptions, say: Callable[[str], None] | None = None) -> Any:
    import optuna

    url = opts.storage_url
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        # parallel jobs write to one file: wait for a lock rather than fail at once
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 120}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, heartbeat_interval=opts.heartbeat, grace_period=2 * opts.heartbeat,
                                          heartbeat_stale_trial_callback=_StaleTrial(2 * opts.heartbeat, say))


class _StaleTrial:
    """Optuna's callback for a trial its heartbeat check failed: re-queue it with the same values, and say so."""

    def __init__(self, grace: int, say: Callable[[str], None] | None) -> None:
        self.grace, self.say = grace, say or _printer(sys.stdout)

    def __call__(self, study: Any, t: Any) -> None:
        _requeue(study, t)
        worker = t.user_attrs.get("worker") or {}
        self.say(f"trial {t.number} sent no heartbeat for {self.grace} s (its worker on {worker.get('host', '?')} "
                 "was killed or lost the database): marked FAIL and re-queued with the same values")


@contextlib.contextmanager
def _heartbeat(storage: Any, trial: Any, interval: int) -> Iterator[None]:
    """Optuna's heartbeat for a trial run with ask/tell (``study.optimize`` would start it itself)."""
    trial_id = trial._trial_id  # noqa: SLF001 - the storage's key of the trial, which record_heartbeat takes
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            storage.record_heartbeat(trial_id)

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@functools.lru_cache(maxsize=None)
def _lock_engine(url: str) -> Any:
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    return sqlalchemy.create_engine(url, poolclass=NullPool)


@contextlib.contextmanager
def _server_lock(opts: TuneOptions) -> Iterator[None]:
    """PostgreSQL: an advisory lock named after the study, held by one worker of any machine at a time."""
    if not opts.storage_url.startswith("postgresql"):
        yield
        return
    import sqlalchemy

    key = int.from_bytes(hashlib.sha256(f"cytoedge tune {opts.name}".encode()).digest()[:8], "big", signed=True)
    with _lock_engine(opts.storage_url).connect() as conn:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        try:
            yield
        finally:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})


def _sampler(opts: TuneOptions, seed_parts: list[int]) -> Any:
    """TPE, seeded from (seed, job, trials so far): reproducible, and a continued study does not replay its start."""
    import numpy as np
    import optuna

    seed = int(np.random.SeedSequence([opts.train.seed, *seed_parts]).generate_state(1)[0])
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials(opts.trials))


def _pruner(opts: TuneOptions) -> Any:
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=pruner_startup_trials(opts.trials),
                                       n_warmup_steps=warmup_epochs(opts.train.epochs))


def startup_trials(trials: int) -> int:
    """Random trials before TPE models the space: 10 (Optuna's default) for long searches, a third of short ones."""
    return min(10, max(2, trials // 3))


def pruner_startup_trials(trials: int) -> int:
    return min(5, max(2, trials // 4))


def warmup_epochs(epochs: int) -> int:
    """Epochs of each trial that are never pruned (the first epochs are too noisy to judge)."""
    return max(1, epochs // 3)


def _load_study(opts: TuneOptions, create: bool = False, storage: Any = None) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = storage or _storage(opts)
    if create:
        return optuna.create_study(storage=storage, study_name=opts.name, direction="maximize",
                                   sampler=_sampler(opts, [0]), pruner=_pruner(opts), load_if_exists=True)
    return optuna.load_study(storage=storage, study_name=opts.name, sampler=_sampler(opts, [0]),
                             pruner=_pruner(opts))


def _check_settings(study: Any, opts: TuneOptions) -> None:
    """A study continues only with the options it was made with (else its trials would not compare)."""
    want = json.loads(json.dumps(opts.settings()))
    have = study.user_attrs.get(SETTINGS_ATTR)
    if have is None:
        study.set_user_attr(SETTINGS_ATTR, want)
        return
    differ = sorted({f"{k}" for k in want["train"] if have["train"].get(k) != want["train"][k]} |
                    {k for k in ("objective", "specificity", "search") if have.get(k) != want[k]})
    if differ:
        raise ConfigError(f"study {opts.name!r} in {opts.storage_url} was made with other settings ({', '.join(differ)} "
                          f"differ); continue it with the same options, or start a new study with another --out")


@contextlib.contextmanager
def _locked(opts: TuneOptions) -> Iterator[None]:
    """One process at a time counts and starts trials (so --trials is never overshot) and writes run.toml: a file
    lock in OUT for the processes of this machine, and a PostgreSQL server's advisory lock for every machine."""
    import fcntl

    path = Path(opts.out) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            with _server_lock(opts):
                yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _process_start(pid: int) -> str:
    """When process ``pid`` started (``/proc/PID/stat`` field 22), so a reused pid is not taken for the old one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def _this_worker() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _process_start(os.getpid())}


def _alive(worker: dict[str, Any]) -> bool:
    started = _process_start(int(worker.get("pid", 0)))
    return bool(started) and started == worker.get("started")


def _requeue(study: Any, t: Any) -> None:
    """A WAITING copy of a failed trial: same values, same run folder, the epochs it already reported."""
    import optuna
    from optuna.trial import TrialState

    attrs = {k: v for k, v in t.user_attrs.items() if k not in ("worker", "error")}
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=t.params, distributions=t.distributions,
        user_attrs={**attrs, "retry_of": attrs.get("retry_of", t.number)}, intermediate_values=t.intermediate_values))


def requeue_stale_trials(study: Any, say: Callable[[str], None], heartbeats: bool = False) -> list[int]:
    """Trials left RUNNING by a killed search: marked FAIL and re-queued with the same values (call under the lock).

    A trial is stale when the process that ran it on this host is gone. A trial running on
    another host is left alone (its process cannot be checked from here). ``heartbeats`` (a
    database storage, see ``_storage``): stale is what Optuna's heartbeat says, on any host.
    """
    import optuna
    from optuna.trial import TrialState

    if heartbeats:
        running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # the storage's _StaleTrial re-queues each one and says so
        return sorted(t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)) if t.number in running)
    requeued = []
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker") or {}
        if worker and worker.get("host") != host:
            say(f"trial {t.number} is RUNNING on host {worker.get('host')}; left to it")
            continue
        if worker and _alive(worker):
            continue  # another search on this machine is running it
        study.tell(t.number, state=TrialState.FAIL)
        _requeue(study, t)
        requeued.append(t.number)
        done = len(t.intermediate_values)
        say(f"trial {t.number} was left RUNNING by a killed search: marked FAIL and re-queued with the same values "
            + (f"(its run resumes from its checkpoint; {done} epoch(s) already reported)" if done else
               "(no epoch had finished: it starts again)"))
    return requeued


def enqueue_baseline(study: Any, opts: TuneOptions, say: Callable[[str], None]) -> None:
    """Queue the configuration as it stands (the values of the searched options in ``opts.train``), once per study,
    so the study shows what the search gained over it."""
    if any(t.user_attrs.get("baseline") for t in study.get_trials(deepcopy=False)):
        return
    values = {name: getattr(opts.train, name) for name in opts.search}
    study.enqueue_trial(values, user_attrs={"baseline": True})
    say(f"tune: baseline queued first: {', '.join(f'{k} {v:g}' if isinstance(v, float) else f'{k} {v}' for k, v in values.items())}")


def state_counts(study: Any) -> dict[str, int]:
    return dict(Counter(t.state.name for t in study.get_trials(deepcopy=False)))


def _finished_or_running(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)))


# -- one trial -----------------------------------------------------------------------------


def _run_trial(study: Any, trial: Any, opts: TuneOptions, say: Callable[[str], None]) -> None:
    import optuna
    from optuna.trial import TrialState

    from cytoedge.train.run import CONFIG_FILE, run_training

    values = suggest(trial, opts.search)
    run_dir = Path(trial.user_attrs.get("run_dir") or Path(opts.out) / TRIALS_DIR / f"{trial.number:03d}")
    trial.set_user_attr("run_dir", str(run_dir))
    cfg = replace(opts.train, out=str(run_dir), progress=False, **values)
    resume = (run_dir / CONFIG_FILE).is_file()
    shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
    say(f"trial {trial.number}: {shown}" + (f" (re-run of trial {trial.user_attrs['retry_of']}, resuming {run_dir})"
                                             if resume and "retry_of" in trial.user_attrs else ""))
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    reporter = _Reporter(trial, opts, say)
    try:
        with open(run_dir / "cytoedge.train.log", "a", encoding="utf-8") as log, \
                contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            run_training(cfg, resume=resume, on_epoch=reporter)
    except optuna.TrialPruned as exc:
        trial.set_user_attr("stopped", str(exc))
        trial.set_user_attr("seconds", round(time.monotonic() - t0, 1))
        study.tell(trial, state=TrialState.PRUNED)
        say(f"trial {trial.number}: {exc} ({time.monotonic() - t0:.0f} s)")
        _drop_checkpoints(run_dir)
        return
    except TrainingDivergedError as exc:  # a value the search should learn to avoid, not an error of the search
        trial.set_user_attr("stopped", f"diverged: {exc}")
        study.tell(trial, state=TrialState.PRUNED)
        say(f"trial {trial.number}: pruned, the loss diverged ({exc})")
        _drop_checkpoints(run_dir)
        return
    except BaseException as exc:
        trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
        study.tell(trial, state=TrialState.FAIL)
        raise
    import torch

    trial.set_user_attr("threads", torch.get_num_threads())  # a retrain matches the trial bit for bit with as many
    per_fold = {k: reporter.final[k] if k in reporter.final else fold_objective(opts, run_dir / f"fold_{k}")
                for k in opts.folds}
    value = sum(per_fold.values()) / len(per_fold)
    trial.set_user_attr("per_fold", {str(k): v for k, v in per_fold.items()})
    trial.set_user_attr("seconds", round(time.monotonic() - t0, 1))
    study.tell(trial, value)
    say(f"trial {trial.number}: {opts.objective} {value:.4f} in {time.monotonic() - t0:.0f} s")
    _drop_checkpoints(run_dir)


def _drop_checkpoints(run_dir: Path) -> None:
    """A finished trial never resumes: its per-epoch checkpoints (weights + optimiser state) only take space."""
    for ck in run_dir.glob("fold_*/checkpoint.pt"):
        ck.unlink(missing_ok=True)


def _work(opts: TuneOptions, worker: int, deadline: float | None, say: Callable[[str], None]) -> int:
    """Start trials until the study holds ``opts.trials`` finished or running ones, or the deadline passes."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    from cytoedge.train.tune_report import write_best

    storage = _storage(opts, say)
    study = _load_study(opts, storage=storage)
    done = 0
    while True:
        with _locked(opts):
            if opts.heartbeats:  # a worker on another machine may have died: look before counting
                requeue_stale_trials(study, say, heartbeats=True)
            if deadline is not None and time.time() >= deadline:
                return done
            trial = None
            if _finished_or_running(study) < opts.trials:
                study.sampler = _sampler(opts, [worker, len(study.get_trials(deepcopy=False))])
                with warnings.catch_warnings():  # the heartbeat is started below (Optuna expects study.optimize)
                    warnings.filterwarnings("ignore", message="Heartbeat of storage")
                    trial = study.ask()
                trial.set_user_attr("worker", _this_worker())
                if opts.heartbeats:
                    storage.record_heartbeat(trial._trial_id)  # noqa: SLF001 - a trial with none is never stale
            elif not (opts.heartbeats and study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))):
                return done
        if trial is None:  # the study is full, but trials run elsewhere: wait until they finish or go stale
            time.sleep(opts.heartbeat)
            continue
        try:
            with _heartbeat(storage, trial, opts.heartbeat) if opts.heartbeats else contextlib.nullcontext():
                _run_trial(study, trial, opts, say)
        except UpdateFinishedTrialError:  # failed by another worker's heartbeat check: its re-queued copy runs it
            say(f"trial {trial.number} was marked FAIL meanwhile (no heartbeat reached the database for "
                f"{2 * opts.heartbeat} s); its re-queued copy runs it again: raise --heartbeat on a slow network")
            continue
        except KeyboardInterrupt:
            with _locked(opts):
                t = study.get_trials(deepcopy=False)[trial.number]
                if t.state == TrialState.FAIL:
                    _requeue(study, t)
                    say(f"trial {trial.number} interrupted: re-queued; the same command resumes it")
            raise
        done += 1
        with _locked(opts):
            write_best(study, opts)


def _worker_main(opts: TuneOptions, worker: int, deadline: float | None, threads: int) -> None:
    """Entry point of a --jobs process: dies with its parent, shares the cores, turns errors into one line."""
    import torch

    from cytoedge.edge_app.clitools import run_cli

    with contextlib.suppress(Exception):  # Linux: be killed with the parent (kill -9 of the search)
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    torch.set_num_threads(threads)
    say = _printer(sys.stdout)
    rc = run_cli("edge-train tune", lambda _: _work(opts, worker, deadline, say) and 0, [])
    sys.exit(rc)


def _printer(stream: Any) -> Callable[[str], None]:
    def say(text: str) -> None:
        print(text, file=stream, flush=True)

    return say


# -- the search ----------------------------------------------------------------------------------


def run_tune(opts: TuneOptions, say: Callable[[str], None] | None = None) -> TuneResult:
    """Search (or continue searching) until the study holds ``opts.trials`` finished trials; write run.toml and plots."""
    from cytoedge.train.data.sipakmed import scan_dataset
    from cytoedge.train.tune_report import print_summary, write_best, write_plots

    say = say or _printer(sys.stdout)
    opts.validate()
    index = scan_dataset(opts.train.data)  # a bad data folder fails here, once, not in every trial
    if opts.objective == "abnormal-sensitivity":
        from cytoedge.edge_app.classes import ABNORMAL, group_of

        if not any(group_of(c) == ABNORMAL for c in index.class_names):
            raise ConfigError(f"--objective abnormal-sensitivity needs abnormal-group classes (koilocytotic, "
                              f"dyskeratotic); {opts.train.data} has {', '.join(index.class_names)}: use macro-f1")
    Path(opts.out).mkdir(parents=True, exist_ok=True)
    with _locked(opts):
        study = _load_study(opts, create=True, storage=_storage(opts, say))
        _check_settings(study, opts)
        requeue_stale_trials(study, say, heartbeats=opts.heartbeats)
        if opts.baseline:
            enqueue_baseline(study, opts, say)
        counts = state_counts(study)
    finished = counts.get("COMPLETE", 0) + counts.get("PRUNED", 0)
    say(f"tune: study {opts.name!r} in {opts.storage_url}: {finished} of {opts.trials} trials finished"
        + (f" ({counts.get('PRUNED', 0)} pruned)" if counts.get("PRUNED") else "")
        + f"; {opts.jobs} job(s); objective {opts.objective_label}")
    say(f"tune: searching {'; '.join(p.describe() for p in opts.search.values())}; TPE sampler "
        f"({startup_trials(opts.trials)} random trials first), median pruner (from trial "
        f"{pruner_startup_trials(opts.trials) + 1}, never in a trial's first {warmup_epochs(opts.train.epochs)} epoch(s))")
    deadline = time.time() + opts.timeout if opts.timeout > 0 else None
    if opts.jobs == 1:
        _work(opts, 0, deadline, say)
    else:
        _run_jobs(opts, deadline)
    study = _load_study(opts)
    with _locked(opts):
        best = write_best(study, opts)
    plots = write_plots(study, Path(opts.out), say)
    print_summary(study, opts, say)
    counts = state_counts(study)
    if best is None:
        say("tune: no trial completed yet, so there is no best configuration; run the same command again to go on")
    return TuneResult(opts.name, opts.storage_url, counts, best.number if best else None,
                      best.value if best else None, dict(best.params) if best else {},
                      Path(opts.out) / "run.toml" if best else None,
                      Path(best.user_attrs["run_dir"]) if best else None, plots)


def _run_jobs(opts: TuneOptions, deadline: float | None) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter per job: no forked torch threads
    threads = opts.train.threads or max(1, (os.cpu_count() or 1) // opts.jobs)  # --threads: per job
    procs = [ctx.Process(target=_worker_main, args=(opts, i + 1, deadline, threads), name=f"tune-job-{i + 1}")
             for i in range(opts.jobs)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:
            p.join()
        raise
    failed = [p.name for p in procs if p.exitcode]
    if failed:
        raise CytoEdgeError(f"{len(failed)} of {opts.jobs} search job(s) stopped with an error (see above); "
                            "fix it and run the same command again to continue the study")


def options_dict(opts: TuneOptions) -> dict[str, Any]:
    """The options as plain data (best.json)."""
    d = asdict(opts)
    d["search"] = {k: p.describe() for k, p in opts.search.items()}
    return d
