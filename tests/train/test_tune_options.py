"""edge-train tune without training: its options and [search] table, stale trials, the objectives."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest

from cytoedge.train.config import TrainConfig
from cytoedge.train.errors import ConfigError
from cytoedge.train.tune import TuneOptions, _this_worker, epoch_objective, requeue_stale_trials
from cytoedge.train.tune_cli import options_from_argv
from cytoedge.train.tune_space import DEFAULT_SPACE, parse_search


def test_defaults_search_the_five_values_the_paper_fixed(tmp_path):
    o = options_from_argv(["--data", str(tmp_path)])
    assert set(o.search) == {"lam", "margin", "label_smoothing", "lr", "weight_decay"}
    assert (o.out, o.trials, o.jobs, o.objective, o.train.fold) == ("runs/tune", 20, 1, "macro-f1", -1)
    assert o.storage_url == f"sqlite:///{(tmp_path.cwd() / 'runs/tune/study.sqlite').resolve()}"


def test_an_option_set_by_the_user_is_fixed_unless_search_gives_a_range(tmp_path):
    (tmp_path / "t.toml").write_text(
        'epochs = 4\nlr = 0.02\ntrials = 7\nobjective = "abnormal-sensitivity"\nspecificity = "90%"\n'
        '[search]\nlr = [0.005, 0.05]\nmargin = 0.5\nhue = { low = 0.0, high = 0.2 }\n'
        'loss = { choices = ["ce", "hybrid"] }\n')
    o = options_from_argv(["--config", str(tmp_path / "t.toml"), "--data", "d", "--lam", "0.1", "--trials", "9"])
    assert "lam" not in o.search and o.train.lam == 0.1  # set on the command line: fixed
    assert "margin" not in o.search and o.train.margin == 0.5  # one value in [search]: fixed
    assert (o.search["lr"].low, o.search["lr"].high, o.search["lr"].log) == (0.005, 0.05, True)
    assert not o.search["hue"].log and o.search["loss"].choices == ("ce", "hybrid")
    assert (o.train.epochs, o.trials, o.objective, o.specificity) == (4, 9, "abnormal-sensitivity", 0.9)


@pytest.mark.parametrize("toml, message", [
    ("[search]\nlr = [0.1, 0.01]\n", "low (0.1) must be below high (0.01)"),
    ("[search]\nlabel_smoothing = { low = 0.0, high = 0.3, log = true }\n", "log-scale range needs low > 0"),
    ("[search]\nlrr = [0.1, 0.2]\n", "unknown key lrr (did you mean lr?)"),
    ("[search]\nfolds = [2, 5]\n", "folds cannot be searched"),
    ("[search]\nmodel = [1, 2]\n", "only numeric options take a range"),
    ("trails = 5\n", "unknown key trails (did you mean trials?)"),
    ("jobs = \"two\"\n", "jobs = 'two' is not a valid int"),
])
def test_bad_search_settings_are_one_line_errors(tmp_path, toml, message):
    from cytoedge.edge_app.errors import CytoEdgeError

    (tmp_path / "t.toml").write_text(toml)
    with pytest.raises(CytoEdgeError, match=".*") as err:
        options_from_argv(["--config", str(tmp_path / "t.toml"), "--data", "d"])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_range_that_leaves_valid_settings_is_refused_before_any_trial(tmp_path):
    o = options_from_argv(["--data", str(tmp_path)])
    o.search = parse_search({"label_smoothing": [0.5, 1.5]})
    with pytest.raises(ConfigError, match="label_smoothing = 1.5 is not a valid setting"):
        o.validate()


def _study_with_running_trials(tmp_path, workers: list[dict]):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.sqlite'}", study_name="s", direction="maximize")
    for w in workers:
        t = study.ask({"lr": DEFAULT_SPACE["lr"].distribution()})
        t.set_user_attr("worker", w)
        t.set_user_attr("run_dir", f"trials/{t.number:03d}")
        t.report(0.25, 0)
    return study


def test_only_trials_whose_process_is_gone_are_failed_and_requeued(tmp_path):
    dead = subprocess_pid_that_exited()
    study = _study_with_running_trials(tmp_path, [
        {"host": socket.gethostname(), "pid": dead, "started": "1"},  # killed search on this machine
        _this_worker(),  # alive: this very process
        {"host": "another-host", "pid": 1, "started": "1"},  # cannot be checked from here
    ])
    said: list[str] = []
    assert requeue_stale_trials(study, said.append) == [0]
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "RUNNING", "RUNNING", "WAITING"]
    again = study.trials[3]
    assert again.params == study.trials[0].params and again.user_attrs["retry_of"] == 0
    assert again.user_attrs["run_dir"] == "trials/000" and again.intermediate_values == {0: 0.25}
    assert "worker" not in again.user_attrs
    assert any("another-host" in s for s in said)
    # the waiting copy is what the next ask() hands out, with its original value
    t = study.ask()
    assert t.number == 3 and t.suggest_float("lr", 1e-4, 0.1, log=True) == study.trials[0].params["lr"]


def subprocess_pid_that_exited() -> int:
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(p.stdout)
    assert not os.path.exists(f"/proc/{pid}/stat") or pid != os.getpid()
    return pid


def test_objectives_on_known_predictions():
    names = ["superficial_intermediate", "parabasal", "metaplastic", "koilocytotic", "dyskeratotic"]
    labels = np.array([0, 1, 2, 3, 4, 3])
    logits = np.full((6, 5), -5.0)
    logits[np.arange(6), [0, 1, 2, 3, 4, 0]] = 5.0  # the last koilocytotic cell is called superficial
    f1 = epoch_objective(TuneOptions(None, objective="macro-f1"), logits, labels, names)  # type: ignore[arg-type]
    assert f1 == pytest.approx(np.mean([2 / 3, 1, 1, 2 / 3, 1]))
    sens = epoch_objective(TuneOptions(None, objective="abnormal-sensitivity", specificity=0.95),  # type: ignore[arg-type]
                           logits, labels, names)
    assert sens == pytest.approx(2 / 3)  # 2 of 3 abnormal cells found with no normal cell flagged


def test_baseline_queues_the_configuration_as_it_stands_once(tmp_path):
    import optuna

    from cytoedge.train.tune import enqueue_baseline
    from cytoedge.train.tune_space import suggest

    (tmp_path / "t.toml").write_text("lr = 0.02\n[search]\nlr = [0.001, 0.1]\n")
    o = options_from_argv(["--config", str(tmp_path / "t.toml"), "--data", "d", "--baseline"])
    assert o.baseline and o.search["lr"].low == 0.001 and o.train.lr == 0.02  # searched, with 0.02 as its baseline
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.sqlite'}", study_name="s", direction="maximize")
    said: list[str] = []
    enqueue_baseline(study, o, said.append)
    enqueue_baseline(study, o, said.append)  # a re-run of the command does not queue it again
    assert [t.state.name for t in study.trials] == ["WAITING"] and len(said) == 1
    values = suggest(study.ask(), o.search)
    d = TrainConfig()  # the defaults as they stand (the margin's is 0.3 on the L2 embedding, issue 10)
    assert values == {"lr": 0.02, "lam": d.lam, "margin": d.margin, "label_smoothing": d.label_smoothing,
                      "weight_decay": d.weight_decay}


def test_the_study_records_the_objective_the_epoch_computed_and_printed(tmp_path, monkeypatch):
    """Issue 23.6: the study recorded the objective recomputed from predictions.csv, whose probabilities are rounded
    to 6 decimals; near a tie that moves abnormal-sensitivity (0.2667 printed, 0.2333 recorded). Here the training
    is replaced by its two visible effects: the epoch's callback with the validation logits, and predictions.csv
    written by the loop's own writer from the same logits."""
    from types import SimpleNamespace

    import optuna

    from cytoedge.train import run as train_run
    from cytoedge.train.loop import EpochEnd, _write_predictions
    from cytoedge.train.tune import _run_trial

    names = ["superficial_intermediate", "parabasal", "metaplastic", "koilocytotic", "dyskeratotic"]
    labels = np.array([0] * 10 + [3] * 10)
    abnormal = np.array([0.2] * 9 + [0.3000001] + [0.3000003] * 10)  # every abnormal cell just above every normal
    probs = np.zeros((20, 5))
    probs[:, 3], probs[:, 0] = abnormal, 1 - abnormal
    logits = np.log(probs + 1e-30).astype(np.float32)
    opts = options_from_argv(["--data", "d", "--out", str(tmp_path / "study"), "--objective", "abnormal-sensitivity",
                              "--epochs", "1", "--folds", "2", "--fold", "0"])

    def training(cfg, resume, on_epoch):  # noqa: ARG001 - the signature run_training is called with
        fold_dir = Path(cfg.out) / "fold_0"
        fold_dir.mkdir(parents=True)
        ds = SimpleNamespace(samples=[SimpleNamespace(path=Path(f"/d/c{i}.png"), group="g", label=int(y))
                                      for i, y in enumerate(labels)])
        _write_predictions(fold_dir / "predictions.csv", ds, Path("/d"), logits, names)
        on_epoch(EpochEnd(0, 0, 1, {"val_acc": 0.5}, logits, labels, names))

    monkeypatch.setattr(train_run, "run_training", training)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    said: list[str] = []
    _run_trial(study, study.ask(), opts, said.append)
    printed = next(line for line in said if "epoch 1/1" in line)
    assert "abnormal-sensitivity 1.0000" in printed, said  # what the epoch computed from its logits
    assert study.trials[0].value == pytest.approx(1.0)  # and what the study holds (the csv alone says 0)
    assert f"abnormal-sensitivity {study.trials[0].value:.4f}" in said[-1]
