"""edge-train tune across machines: workers on one study in a real PostgreSQL server (Debian's postgresql).

Each worker has its own --out folder, as on another workstation, so only the database server ties them
together: the advisory lock that counts trials, and Optuna's heartbeat that fails a killed worker's trial.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from test_tune import TINY, _env  # tests/train is on sys.path (pytest prepends a test's folder)

pytestmark = pytest.mark.slow

TRIAL_START = re.compile(r"^trial (\d+): (?!macro-f1|pruned)", re.M)  # "trial 3: lam 0.41, margin ..." (not its end)


def _postgres_bin() -> Path:
    """Debian's server programs (initdb, pg_ctl live in /usr/lib/postgresql/VERSION/bin, not on PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if not found:
        pytest.fail("Debian's postgresql is missing: apt-get install postgresql (.ci/run installs it)", pytrace=False)
    return found[-1].parent


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server of its own, on a unix socket in a temporary folder (no TCP port); its URL.

    As root it runs as the postgres user (the server refuses root); stopped and removed afterwards."""
    import pwd

    bindir = _postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="cytoedge-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        pg = pwd.getpwnam("postgres")
        os.chown(root, pg.pw_uid, pg.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, sock = root / "data", root / "sock"

    def pg(*cmd: str) -> None:
        r = subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"{' '.join(cmd)}: {r.stdout}{r.stderr}"

    pg("mkdir", str(sock))
    pg(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync")
    pg(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "start",
       "-o", f"-k {sock} -c listen_addresses='' -c fsync=off")
    try:
        pg(str(bindir / "createdb"), "-h", str(sock), "-U", "postgres", "lab")
        yield f"postgresql+psycopg2://postgres@/lab?host={sock}"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def _study(url: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name="lab", storage=url)


def test_workstations_share_one_study_and_a_killed_workers_trial_is_failed_and_rerun(postgres, synth_tree, tmp_path):
    trials = 4
    args = ["--data", str(synth_tree), "--storage", postgres, "--study-name", "lab", "--trials", str(trials),
            "--epochs", "1", "--heartbeat", "3", "--threads", "1", *TINY]

    started: list[subprocess.Popen] = []

    def workstation(name: str) -> subprocess.Popen:
        started.append(subprocess.Popen([sys.executable, "-m", "cytoedge.train.cli", "tune", *args, "--out",
                                         str(tmp_path / name)], cwd=tmp_path, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, env=_env()))
        return started[-1]

    try:
        _three_workstations(postgres, workstation, trials)
    finally:  # a failed assert leaves no worker running
        for p in started:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=60)


def _three_workstations(postgres: str, workstation, trials: int) -> None:
    # A workstation dies (SIGKILL) in the middle of its trial: the trial is left RUNNING, as a crash leaves it.
    lost = workstation("ws-lost")
    seen = []
    for line in lost.stdout:
        seen.append(line)
        if m := TRIAL_START.match(line):
            break
    else:
        pytest.fail(f"the first worker started no trial:\n{''.join(seen)}")
    lost.kill()
    lost.wait(timeout=60)
    lost.stdout.close()
    killed = int(m.group(1))
    cut = _study(postgres).trials[killed]
    assert cut.state.name == "RUNNING" and cut.user_attrs["worker"]["pid"] == lost.pid, cut

    # Two more workstations finish the study between them.
    a, b = workstation("ws-a"), workstation("ws-b")
    outs = [p.communicate(timeout=900)[0] for p in (a, b)]
    assert a.returncode == 0 and b.returncode == 0, outs[0][-3000:] + outs[1][-3000:]
    said = "".join(outs)
    study = _study(postgres)
    assert Counter(t.state.name for t in study.trials) == {"COMPLETE": trials, "FAIL": 1}
    # the killed worker's trial: failed by the heartbeat check (no pid check reaches another machine) ...
    assert study.trials[killed].state.name == "FAIL"
    assert f"trial {killed} sent no heartbeat for 6 s" in said and "marked FAIL and re-queued" in said
    rerun = next(t for t in study.trials if t.user_attrs.get("retry_of") == killed)
    assert rerun.state.name == "COMPLETE" and rerun.params == cut.params  # ... and run again with its values
    # no trial lost or run twice: each finished trial was started once, by one of the two live workers
    starts = Counter(int(n) for out in outs for n in TRIAL_START.findall(out))
    complete = {t.number for t in study.trials if t.state.name == "COMPLETE"}
    assert set(starts) == complete and set(starts.values()) == {1}, starts
    by = Counter(study.trials[n].user_attrs["worker"]["pid"] for n in complete)
    assert set(by) == {a.pid, b.pid}, f"both workstations ran trials: {by}"
