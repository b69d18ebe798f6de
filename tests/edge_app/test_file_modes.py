"""What CytoEdge writes ends with the mode a plain open() / mkdir would give (0666 / 0777 & ~umask), so the
systemd unit's user (User=pi) can read a model folder root installed; the signing key stays 0600 (issue 23.2)."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cytoedge.edge_app.atomic import atomic_write_bytes, atomic_write_json
from cytoedge.edge_app.signing import generate_keypair

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_writes_follow_the_umask_and_the_key_stays_private(tmp_path, umask_022):
    card = atomic_write_json(tmp_path / "model" / "model_card.json", {"schema": 1})
    tfl = atomic_write_bytes(tmp_path / "model" / "model_int8.tflite", b"\0" * 64)
    assert _mode(card) == _mode(tfl) == 0o644
    assert _mode(tmp_path / "model") == 0o755
    key, pub = generate_keypair(tmp_path / "keys" / "lab")
    assert _mode(key) == 0o600 and _mode(pub) == 0o644


def test_the_umask_decides_and_a_private_file_asks_for_it(tmp_path, umask_022):
    from cytoedge.edge_app.atomic import current_umask, public_dir

    assert current_umask() == 0o022
    assert _mode(atomic_write_bytes(tmp_path / "secret", b"x", mode=0o600)) == 0o600
    os.umask(0o027)
    assert _mode(atomic_write_bytes(tmp_path / "group_only", b"x")) == 0o640  # the umask decides, not a constant
    assert _mode(public_dir(tempfile.mkdtemp(dir=tmp_path))) == 0o750


READ_MODEL = "import sys, pathlib; [pathlib.Path(p).read_bytes() for p in sys.argv[1:]]; print('read', len(sys.argv) - 1)"


def test_the_services_user_reads_a_model_root_installed(umask_022):
    """As root (the case of 'sudo cp -r' / install-config.sh), files are written under umask 022 and read by
    another user: 'nobody' stands for the unit's User=pi. Not root: every file and folder on the path must let
    'other' read (files) and enter (folders), which is what that user needs."""
    base = Path(tempfile.mkdtemp(prefix="cytoedge-modes-", dir="/tmp"))  # pytest's tmp_path is 0700 by design
    try:
        os.chmod(base, 0o755)
        model = base / "models" / "lite0"
        files = [atomic_write_json(model / "model_card.json", {"schema": 1}),
                 atomic_write_bytes(model / "model_int8.tflite", b"\0" * 64),
                 atomic_write_bytes(model / "bundle" / "bundle.json", b"{}")]
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
            r = subprocess.run([python, "-I", "-c", READ_MODEL, *map(str, files)], user=nobody.pw_uid,
                               group=nobody.pw_gid, extra_groups=[], capture_output=True, text=True, timeout=60,
                               cwd="/")
            assert r.returncode == 0 and "read 3" in r.stdout, r.stderr
        for f in files:
            assert _mode(f) & stat.S_IROTH, f
            for d in f.relative_to(base).parents:
                assert _mode(base / d) & stat.S_IXOTH and _mode(base / d) & stat.S_IROTH, base / d
    finally:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
