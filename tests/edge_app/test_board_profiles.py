"""Board profiles in hardware/boards and board detection from faked /proc and /etc files."""

from __future__ import annotations

import pytest

from cytoedge.edge_app.boards import INTERPRETERS, detect_board, list_profiles, load_profile, resolve_board
from cytoedge.edge_app.cli import main
from cytoedge.edge_app.errors import BoardProfileError

EXPECTED = {"rpi4", "rpi5", "jetson-nano", "jetson-orin-nano", "x86-workstation"}


def test_every_shipped_profile_loads():
    assert EXPECTED <= set(list_profiles())
    for name in list_profiles():
        p = load_profile(name)
        assert p.name == name and p.title and p.cores >= 1 and p.threads >= 1
        assert p.interpreter in INTERPRETERS and p.camera.width > 0 and p.camera.source


def fake_root(tmp_path, model: str = "", tegra: str = "", cpu: str = "model name : Some CPU\n"):
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "etc").mkdir()
    if model:
        (tmp_path / "proc/device-tree/model").write_bytes(model.encode() + b"\x00")
    if tegra:
        (tmp_path / "etc/nv_tegra_release").write_text(tegra)
    (tmp_path / "proc/cpuinfo").write_text(cpu)
    return tmp_path


@pytest.mark.parametrize("model, tegra, machine, expected", [
    ("Raspberry Pi 4 Model B Rev 1.4", "", "aarch64", "rpi4"),
    ("Raspberry Pi 5 Model B Rev 1.0", "", "aarch64", "rpi5"),
    ("NVIDIA Jetson Nano Developer Kit", "# R32 (release), REVISION: 7.1", "aarch64", "jetson-nano"),
    ("NVIDIA Jetson Orin Nano Developer Kit", "# R36 (release), REVISION: 3.0", "aarch64", "jetson-orin-nano"),
    ("", "# R35 (release), REVISION: 4.1", "aarch64", "jetson-orin-nano"),  # device tree unreadable
    ("", "", "x86_64", "x86-workstation"),
])
def test_detection(tmp_path, model, tegra, machine, expected):
    board = detect_board(fake_root(tmp_path, model, tegra), machine=machine)
    assert board.name == expected and board.detected


def test_unknown_board_gets_a_generic_profile(tmp_path):
    board = detect_board(fake_root(tmp_path, "Pine64 RockPro64", cpu="Hardware : Rockchip\n"), machine="aarch64")
    assert board.name == "generic" and board.title == "Pine64 RockPro64" and board.threads >= 1


def test_profile_from_a_file_and_errors(tmp_path):
    good = tmp_path / "lab.toml"
    good.write_text('name = "lab-pi"\ntitle = "Lab Pi"\ncores = 4\ndefault_threads = 3\n[camera]\nsource = "cam:1"\n')
    p = resolve_board(str(good))
    assert (p.name, p.threads, p.camera.source) == ("lab-pi", 3, "cam:1")
    with pytest.raises(BoardProfileError, match="unknown board 'pi9'.*rpi4"):
        load_profile("pi9")
    bad = tmp_path / "bad.toml"
    bad.write_text("title = [unclosed\n")
    with pytest.raises(BoardProfileError, match="cannot be read"):
        load_profile(bad)
    bad.write_text('title = "x"\ninterpreter = "onnx"\n')
    with pytest.raises(BoardProfileError, match="interpreter 'onnx'"):
        load_profile(bad)
    bad.write_text('cores = 4\n')
    with pytest.raises(BoardProfileError, match="malformed"):
        load_profile(bad)


def test_hardware_folder_from_environment(tmp_path, monkeypatch):
    (tmp_path / "boards").mkdir()
    (tmp_path / "boards" / "mine.toml").write_text('title = "Mine"\ncores = 2\n')
    monkeypatch.setenv("CYTOEDGE_HARDWARE", str(tmp_path))
    assert list_profiles() == ["mine"] and load_profile("mine").title == "Mine"


def test_boards_command_lists_profiles(capsys):
    assert main(["boards"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in EXPECTED) and "this machine:" in out


@pytest.mark.parametrize("named, model, machine, matches", [
    ("rpi5", "", "x86_64", False),  # the case: --board rpi5 on an x86 machine
    ("rpi5", "Raspberry Pi 5 Model B Rev 1.0", "aarch64", True),
    ("rpi4", "Raspberry Pi 5 Model B Rev 1.0", "aarch64", False),  # a Pi, but not that Pi
    ("x86-workstation", "", "x86_64", True),
    ("jetson-nano", "", "x86_64", False),
])
def test_a_named_board_is_checked_against_the_machine(tmp_path, named, model, machine, matches):
    from cytoedge.edge_app.boards import board_check

    check = board_check(load_profile(named), fake_root(tmp_path, model), machine=machine)
    assert check["named"] == named and check["matches"] is matches
    assert check["detected"] == detect_board(tmp_path, machine=machine).name
    assert bool(check["warning"]) is not matches
    if not matches:
        assert f"--board {named}" in check["warning"] and "does not match this machine" in check["warning"]


def test_a_detected_board_and_a_hand_written_profile(tmp_path):
    from cytoedge.edge_app.boards import board_check

    root = fake_root(tmp_path, "Raspberry Pi 4 Model B Rev 1.4")
    auto = board_check(detect_board(root, machine="aarch64"), root, machine="aarch64")
    assert (auto["named"], auto["detected"], auto["matches"], auto["warning"]) == ("", "rpi4", True, "")
    lab = tmp_path / "lab.toml"  # no [detect] table: only the architecture can be compared
    lab.write_text('name = "lab-pi"\ntitle = "Lab Pi"\narch = "aarch64"\ncores = 4\n')
    assert board_check(load_profile(str(lab)), root, machine="aarch64")["matches"]
    assert not board_check(load_profile(str(lab)), root, machine="x86_64")["matches"]
