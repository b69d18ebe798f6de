"""Board facts and the thermal check: Pi throttle flags, /sys/class/thermal trip points, the warning."""

from __future__ import annotations

from pathlib import Path

from benchmarks.board import board_info, board_slug, parse_pi_throttled, thermal_snapshot, throttle_warning
from edge_app.boards import detect_board, load_profile


def _fake_pi(root: Path, model: str = "Raspberry Pi 5 Model B Rev 1.0", temp_mc: int = 52300) -> Path:
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "proc/device-tree/model").write_bytes(model.encode() + b"\x00")
    (root / "proc/cpuinfo").write_text("processor\t: 0\nmodel name\t: ARMv8 Processor rev 1 (v8l)\n")
    (root / "proc/meminfo").write_text("MemTotal:        8245432 kB\n")
    zone = root / "sys/class/thermal/thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("cpu-thermal\n")
    (zone / "temp").write_text(f"{temp_mc}\n")
    (zone / "trip_point_0_type").write_text("passive\n")
    (zone / "trip_point_0_temp").write_text("80000\n")
    return root


def test_pi_throttle_flags_are_decoded():
    assert parse_pi_throttled("throttled=0x0")["flags"] == []
    got = parse_pi_throttled("throttled=0x20002\n")
    assert got["value"] == 0x20002
    assert got["flags"] == ["ARM frequency capped now", "ARM frequency capping occurred"]


def test_thermal_snapshot_and_warning_on_a_fake_pi(tmp_path):
    root = _fake_pi(tmp_path)
    prof = detect_board(root, machine="aarch64")
    assert prof.name == "rpi5" and board_slug(prof) == "rpi5"
    info = board_info(prof, root)
    assert info["device_tree_model"].startswith("Raspberry Pi 5") and info["ram_bytes"] == 8245432 * 1024

    readings = iter(["throttled=0x0\n", "throttled=0x50005\n"])
    before = thermal_snapshot(prof, root, run=lambda cmd: next(readings))
    assert before["temp_c"] == 52.3 and before["throttle"]["value"] == 0
    (root / "sys/class/thermal/thermal_zone0/temp").write_text("81500\n")  # hotter than the passive trip point
    after = thermal_snapshot(prof, root, run=lambda cmd: next(readings))
    assert after["zones_at_trip"] == ["cpu-thermal"]
    warning = throttle_warning(before, after)
    assert "under-voltage now" in warning and "throttling occurred" in warning and "cpu-thermal" in warning
    assert "\n" not in warning


def test_no_warning_when_nothing_throttled(tmp_path):
    root = _fake_pi(tmp_path)
    prof = load_profile("rpi5")
    snap = thermal_snapshot(prof, root, run=lambda cmd: "throttled=0x0")
    assert throttle_warning(snap, snap) == ""
    # a board without sensors or throttle command (a workstation) gives no warning either
    bare = thermal_snapshot(load_profile("x86-workstation"), tmp_path / "nothing")
    assert bare["temp_c"] is None and throttle_warning(bare, bare) == ""


def test_flags_set_before_the_run_are_reported_as_such(tmp_path):
    prof = load_profile("rpi5")
    root = _fake_pi(tmp_path)
    snap = thermal_snapshot(prof, root, run=lambda cmd: "throttled=0x40000")
    assert "already set before the run" in throttle_warning(snap, snap)


def test_x86_cpu_is_named_by_model_name_not_the_numeric_model_line(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel\t\t: 1\n"
                                           "model name\t: AMD EPYC 7B13\n")
    prof = detect_board(tmp_path, machine="x86_64")
    assert prof.name == "x86-workstation"
    assert board_info(prof, tmp_path)["cpu_model"] == "AMD EPYC 7B13"
