"""Board facts and the thermal check: Pi throttle flags, /sys/class/thermal trip points, the warning."""

from __future__ import annotations

from pathlib import Path

from cytoedge.benchmarks.board import (EMULATED_ENV, board_info, board_slug, isa_summary, parse_pi_throttled, thermal_snapshot,
                              throttle_warning)
from cytoedge.edge_app.boards import detect_board, load_profile

PI_CPUINFO = Path(__file__).resolve().parents[2] / "hardware/pi/check/cpuinfo"  # what make pi-check mounts


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


def test_isa_features_that_pick_the_kernels_are_recorded_per_architecture(tmp_path, monkeypatch):
    monkeypatch.delenv(EMULATED_ENV, raising=False)
    x86 = tmp_path / "x86"
    (x86 / "proc").mkdir(parents=True)
    (x86 / "proc/cpuinfo").write_text("processor\t: 0\nmodel name\t: Some Xeon\n"
                                      "flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512_vnni\n")
    isa = board_info(load_profile("x86-workstation"), x86)["isa"]
    assert isa["avx2"] and isa["avx512_vnni"] and not isa["amx_int8"] and "asimddp" not in isa

    # the Cortex-A72 (Pi 4) has no dot-product instructions, the Cortex-A76 (Pi 5) has; neither has i8mm
    for cpu, board, dot in (("cortex-a72", "rpi4", False), ("cortex-a76", "rpi5", True)):
        root = tmp_path / cpu
        (root / "proc").mkdir(parents=True)
        (root / "proc/cpuinfo").write_text((PI_CPUINFO / cpu).read_text())
        isa = board_info(load_profile(board), root)["isa"]
        assert isa["asimd"] and isa["asimddp"] is dot and not isa["i8mm"] and "avx2" not in isa
    assert isa_summary(isa).startswith("asimd asimdhp asimddp (no i8mm")
    assert board_info(load_profile("rpi4"), tmp_path / "nothing")["isa"] == {}


def test_an_emulated_run_is_marked_and_filed_apart_from_the_board(tmp_path, monkeypatch):
    root = _fake_pi(tmp_path)
    prof = detect_board(root, machine="aarch64")
    monkeypatch.delenv(EMULATED_ENV, raising=False)
    real = board_info(prof, root)
    monkeypatch.setenv(EMULATED_ENV, "qemu-user cortex-a76 on x86-64")
    emulated = board_info(prof, root)
    assert real["slug"] == "rpi5" and real["emulated"] == "" and "emulated" not in real["title"]
    assert emulated["slug"] == "rpi5-emulated" and emulated["title"].endswith("(emulated)")
    assert emulated["emulated"] == "qemu-user cortex-a76 on x86-64"
