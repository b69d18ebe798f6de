"""The systemd unit starts edge-app again after a camera failure, never after a user's mistake.

This checks that the unit's restart rule and edge-app's exit statuses agree.
"""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from cytoedge.edge_app.clitools import run_cli
from cytoedge.edge_app.errors import CameraUnavailableError, ModelCardError, SourceError, StoreError

UNIT = Path(__file__).resolve().parents[2] / "hardware/systemd/cytoedge.service"


def _service() -> configparser.SectionProxy:
    unit = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read_string(UNIT.read_text())
    return unit["Service"]


def _exit_status(exc: Exception) -> int:
    def main(argv):
        raise exc

    return run_cli("edge-app", main, [])


def _restarts(service: configparser.SectionProxy, status: int) -> bool:
    """Whether systemd restarts a service that exited with this status (Restart=on-failure)."""
    prevented = {int(s) for s in service.get("RestartPreventExitStatus", "").split()}
    return service["Restart"] == "on-failure" and status != 0 and status not in prevented


def test_a_camera_that_cannot_open_or_goes_dark_is_restarted(capsys):
    status = _exit_status(CameraUnavailableError("camera picam delivered no frame for 30 s"))
    assert status == 75 and _restarts(_service(), status)
    assert capsys.readouterr().err == "edge-app: error: camera picam delivered no frame for 30 s\n"


@pytest.mark.parametrize("exc", [SourceError("no such file, folder or camera: /data/x"),
                                 ModelCardError("model card not found"), StoreError("store is read-only")])
def test_a_user_error_is_not_restarted(exc, capsys):
    status = _exit_status(exc)
    assert status == 2 and not _restarts(_service(), status)
    capsys.readouterr()
