"""edge-train tune: a real Optuna study in SQLite on tiny synthetic data, killed and resumed; its run.toml trains."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cytoedge.train.config import TrainConfig, load_config_file, resolve_config

pytestmark = pytest.mark.slow  # real Optuna studies of real trainings (minutes)

REPO = Path(__file__).parents[2]
TINY = ["--model", "shufflenet_v2_x1_0", "--input-size", "32", "--folds", "2", "--fold", "0", "--batch-size", "16",
        "--grad-clip", "2"]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _tune(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cytoedge.train.cli", "tune", *args], cwd=cwd, capture_output=True, text=True,
                          env=_env(), timeout=900)


def _study(out: Path):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=out.name, storage=f"sqlite:///{out / 'study.sqlite'}")


def _states(study) -> dict[str, int]:
    from collections import Counter

    return dict(Counter(t.state.name for t in study.trials))


@pytest.fixture(scope="module")
def killed_and_resumed(synth_tree, tmp_path_factory):
    """3 trials of 3 epochs; SIGKILL while trial 1 trains (after it reported an epoch); then the same command again."""
    work = tmp_path_factory.mktemp("tune")
    out = work / "study"
    args = ["--data", str(synth_tree), "--out", str(out), "--trials", "3", "--epochs", "3", *TINY]
    proc = subprocess.Popen([sys.executable, "-m", "cytoedge.train.cli", "tune", *args], cwd=work, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=_env())
    first = []
    deadline = time.monotonic() + 600
    for line in proc.stdout:  # the search prints a line per epoch: kill it in trial 1, after its first epoch
        first.append(line)
        if line.startswith("trial 1 fold 0 epoch 1/3") or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stdout.close()
    before = _study(out)
    before_states = _states(before)
    running = [t for t in before.trials if t.state.name == "RUNNING"]
    resumed = _tune(args, work)
    return out, "".join(first), before_states, running, resumed


def test_killed_search_resumes_to_three_finished_trials(killed_and_resumed):
    out, first, before, running, resumed = killed_and_resumed
    assert "trial 1 fold 0 epoch 1/3" in first, first[-2000:]
    assert before == {"COMPLETE": 1, "RUNNING": 1}, before  # killed in the middle of trial 1
    assert resumed.returncode == 0, resumed.stderr[-3000:] + resumed.stdout[-3000:]
    assert "trial 1 was left RUNNING by a killed search: marked FAIL and re-queued" in resumed.stdout
    study = _study(out)
    assert _states(study) == {"COMPLETE": 3, "FAIL": 1}, _states(study)
    failed = next(t for t in study.trials if t.state.name == "FAIL")
    rerun = next(t for t in study.trials if t.user_attrs.get("retry_of") == 1)
    assert failed.number == 1 and rerun.state.name == "COMPLETE"
    assert rerun.params == failed.params == running[0].params  # the same values, not a new sample
    assert rerun.user_attrs["run_dir"] == failed.user_attrs["run_dir"]  # ... in the same run folder
    assert 0 in rerun.intermediate_values and len(rerun.intermediate_values) == 3  # epoch 1 kept, 2 and 3 added
    log = (Path(rerun.user_attrs["run_dir"]) / "cytoedge.train.log").read_text()
    assert "fold 0: resuming after epoch" in log  # edge-train's own checkpoint, not a fresh start
    # every finished trial's value is the mean macro-F1 of its fold, as edge-train wrote it
    for t in study.trials:
        if t.state.name == "COMPLETE":
            metrics = json.loads((Path(t.user_attrs["run_dir"]) / "fold_0" / "metrics.json").read_text())
            assert t.value == pytest.approx(metrics["f1"])
            assert not list(Path(t.user_attrs["run_dir"]).glob("fold_*/checkpoint.pt"))  # space given back


def test_run_toml_is_the_best_trial_and_edge_train_trains_it(killed_and_resumed, synth_tree, tmp_path):
    out, *_ = killed_and_resumed
    study = _study(out)
    best = max((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: (t.value, -t.number))
    values = load_config_file(out / "run.toml")
    cfg = resolve_config(values, {}).validate()
    for name, value in best.params.items():
        assert getattr(cfg, name) == pytest.approx(value), name
    assert (cfg.epochs, cfg.input_size, cfg.fold, cfg.data) == (3, 32, 0, str(synth_tree))
    assert cfg.threads == best.user_attrs["threads"] >= 1  # the trial's own count: its retrain repeats it exactly
    saved = json.loads((out / "best.json").read_text())
    assert saved["trial"] == best.number and saved["value"] == pytest.approx(best.value)
    for png in ("history.png", "learning_curves.png"):
        assert (out / png).stat().st_size > 1000, png
    if len({round(t.value, 9) for t in study.trials if t.value is not None}) > 1:  # fANOVA needs differing values
        assert (out / "importances.png").stat().st_size > 1000
    r = subprocess.run([sys.executable, "-m", "cytoedge.train.cli", "--config", str(out / "run.toml"), "--epochs", "1",
                        "--out", str(tmp_path / "best"), "--no-progress"], capture_output=True, text=True, env=_env(),
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    trained = json.loads((tmp_path / "best" / "config.json").read_text())
    assert trained["lr"] == pytest.approx(best.params["lr"]) and trained["epochs"] == 1
    assert (tmp_path / "best" / "fold_0" / "bundle.json").is_file()


def test_optuna_dashboard_opens_the_study(killed_and_resumed):
    """The dashboard's own WSGI app reads the SQLite file the search wrote."""
    import io

    from optuna_dashboard import wsgi

    out, *_ = killed_and_resumed
    app = wsgi(f"sqlite:///{out / 'study.sqlite'}")

    def get(path: str) -> dict:
        status = []
        env = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "localhost",
               "SERVER_PORT": "80", "wsgi.input": io.BytesIO(), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr}
        body = b"".join(app(env, lambda s, h, *a: status.append(s)))
        assert status[0].startswith("200"), status
        return json.loads(body)

    studies = get("/api/studies")["study_summaries"]
    mine = next(s for s in studies if s["study_name"] == out.name)
    detail = get(f"/api/studies/{mine['study_id']}")
    assert sum(t["state"] == "Complete" for t in detail["trials"]) == 3


def test_parallel_jobs_share_the_storage_without_overshooting(synth_tree, tmp_path):
    out = tmp_path / "par"
    r = _tune(["--data", str(synth_tree), "--out", str(out), "--trials", "3", "--jobs", "2", "--epochs", "1", *TINY],
              tmp_path)
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-3000:]
    study = _study(out)
    assert _states(study) == {"COMPLETE": 3}  # exactly --trials, although two processes raced for them
    pids = {t.user_attrs["worker"]["pid"] for t in study.trials}
    assert len(pids) == 2 and os.getpid() not in pids  # two job processes did the work
    assert (out / "run.toml").is_file()


def test_a_changed_setting_does_not_silently_join_an_old_study(killed_and_resumed, synth_tree, tmp_path):
    out, *_ = killed_and_resumed
    r = _tune(["--data", str(synth_tree), "--out", str(out), "--trials", "4", "--epochs", "2", *TINY], tmp_path)
    assert r.returncode == 2
    assert "was made with other settings (epochs differ)" in r.stderr and "Traceback" not in r.stderr
