"""The board a benchmark ran on, its environment, and its thermal state before and after.

Detection is :func:`edge_app.boards.detect_board` (the Pi from the device tree, a
Jetson from ``/etc/nv_tegra_release``, else the CPU). Throttling silently ruins Pi
benchmarks, so the SoC temperature and the throttle state are read before and after
every run: on a Pi from ``vcgencmd get_throttled`` (the profile's
``throttle_command``), elsewhere from ``/sys/class/thermal`` (a zone at or above its
passive trip point is throttling). The CPU's ISA features that decide which kernels
XNNPACK can use (AVX2 / AVX-512 VNNI on x86, dot product and i8mm on ARM) are recorded
with every result, and a run under an emulator (``$CYTOEDGE_EMULATED``) is marked and
filed apart from the real board's.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cytoedge.edge_app.boards import BoardProfile, machine_facts

# vcgencmd get_throttled bits (Raspberry Pi documentation, "vcgencmd")
PI_THROTTLE_BITS = {
    0: "under-voltage now", 1: "ARM frequency capped now", 2: "throttled now", 3: "soft temperature limit now",
    16: "under-voltage occurred", 17: "ARM frequency capping occurred", 18: "throttling occurred",
    19: "soft temperature limit occurred",
}


# CPU features that decide which int8 / fp32 kernels (XNNPACK) a figure could use, per architecture,
# as /proc/cpuinfo names them ("flags" on x86, "Features" on ARM)
ISA_FEATURES = {
    "x86": ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"),
    "arm": ("asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2"),
}
# set by whoever runs bench-device under an emulator (make pi-check: "qemu-user cortex-a72 on x86-64")
EMULATED_ENV = "CYTOEDGE_EMULATED"


def isa_from_cpuinfo(text: str) -> dict[str, bool]:
    """Which of the kernel-relevant features (:data:`ISA_FEATURES`) the first CPU of a ``/proc/cpuinfo`` text has.

    >>> isa_from_cpuinfo("processor : 0" + chr(10) + "Features : fp asimd evtstrm crc32 asimddp")
    {'asimd': True, 'asimdhp': False, 'asimddp': True, 'i8mm': False, 'bf16': False, 'sve': False, 'sve2': False}
    """
    for line in text.splitlines():
        key, _, value = line.partition(":")
        arch = {"flags": "x86", "features": "arm"}.get(key.strip().lower())
        if arch:
            have = set(value.split())
            return {f: f in have for f in ISA_FEATURES[arch]}
    return {}


def isa_features(root: str | os.PathLike[str] = "/") -> dict[str, bool]:
    """:func:`isa_from_cpuinfo` of this machine (``{}`` when ``/proc/cpuinfo`` cannot be read)."""
    try:
        return isa_from_cpuinfo((Path(root) / "proc/cpuinfo").read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return {}


def isa_summary(isa: dict[str, bool]) -> str:
    """The features a CPU has, then those it lacks.

    >>> isa_summary({"asimd": True, "asimddp": False, "i8mm": False})
    'asimd (no asimddp, i8mm)'
    >>> isa_summary({})
    'not recorded'
    """
    if not isa:
        return "not recorded"
    have = " ".join(f for f, on in isa.items() if on) or "none of " + ", ".join(isa)
    lack = [f for f, on in isa.items() if not on]
    return have + (f" (no {', '.join(lack)})" if lack and len(lack) < len(isa) else "")


def board_slug(profile: BoardProfile) -> str:
    """A folder name for a board: the profile name, or the detected title for a generic board."""
    text = profile.title if profile.name == "generic" else profile.name
    return re.sub(r"[^0-9a-z]+", "-", text.lower()).strip("-") or "unknown-board"


def _mem_total_bytes(root: Path) -> int:
    try:
        for line in (root / "proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def board_info(profile: BoardProfile, root: str | os.PathLike[str] = "/") -> dict[str, Any]:
    """Who ran: the profile, what detection read, the CPU's ISA features, cores, RAM, OS, Python.

    Under an emulator (``$CYTOEDGE_EMULATED`` says which) the title and folder say so.
    """
    facts = machine_facts(root)
    emulated = os.environ.get(EMULATED_ENV, "").strip()
    return {
        "name": profile.name,
        # an emulated run is filed apart from the real board's: its timings say nothing about the board
        "title": f"{profile.title} (emulated)" if emulated else profile.title,
        "slug": board_slug(profile) + ("-emulated" if emulated else ""),
        "emulated": emulated,
        "isa": isa_features(root),
        "detected": profile.detected,
        "profile": str(profile.path) if profile.path else "",
        "default_threads": profile.threads,
        "cpu_model": facts.get("cpu_model", ""),
        "device_tree_model": facts.get("device_tree_model", ""),
        "nv_tegra_release": facts.get("nv_tegra_release", ""),
        "machine": platform.machine(),
        "cores": os.cpu_count() or 0,
        "ram_bytes": _mem_total_bytes(Path(root)),
        "os": platform.platform(),
        "python": sys.version.split()[0],
    }


def parse_pi_throttled(text: str) -> dict[str, Any]:
    """``throttled=0x50005`` -> the raw value and the named flags set.

    >>> parse_pi_throttled("throttled=0x50005")["flags"]
    ['under-voltage now', 'throttled now', 'under-voltage occurred', 'throttling occurred']
    """
    m = re.search(r"0x[0-9a-fA-F]+|\b\d+\b", text)
    if not m:
        return {"raw": text.strip(), "value": None, "flags": []}
    value = int(m.group(0), 0)
    return {"raw": text.strip(), "value": value, "flags": [name for bit, name in PI_THROTTLE_BITS.items() if value >> bit & 1]}


def _run(command: str) -> str | None:
    try:
        done = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def thermal_zones(root: str | os.PathLike[str] = "/") -> list[dict[str, Any]]:
    """Every ``/sys/class/thermal/thermal_zone*``: type, temperature and passive trip point (degC)."""
    zones = []
    for z in sorted(Path(root, "sys/class/thermal").glob("thermal_zone*")):
        temp = _read_int(z / "temp")
        if temp is None:
            continue
        passive = []
        for tp in z.glob("trip_point_*_type"):
            try:
                kind = tp.read_text().strip()
            except OSError:
                continue
            t = _read_int(tp.with_name(tp.name.replace("_type", "_temp")))
            if kind == "passive" and t and t > 0:
                passive.append(t / 1000)
        try:
            ztype = (z / "type").read_text().strip()
        except OSError:
            ztype = z.name
        zones.append({"zone": z.name, "type": ztype, "temp_c": temp / 1000, "passive_trip_c": min(passive) if passive else None})
    return zones


def thermal_snapshot(profile: BoardProfile, root: str | os.PathLike[str] = "/",
                     run: Callable[[str], str | None] = _run) -> dict[str, Any]:
    """SoC temperature and throttle state now (empty fields where the board has no such sensor)."""
    snap: dict[str, Any] = {"temp_c": None, "zones": thermal_zones(root), "throttle": None}
    if profile.thermal_zone:
        t = _read_int(Path(root) / profile.thermal_zone.lstrip("/"))
        snap["temp_c"] = t / 1000 if t is not None else None
    if snap["temp_c"] is None and snap["zones"]:
        snap["temp_c"] = max(z["temp_c"] for z in snap["zones"])
    if profile.throttle_command:
        out = run(profile.throttle_command)
        if out is not None:
            snap["throttle"] = parse_pi_throttled(out)
    snap["zones_at_trip"] = [z["type"] for z in snap["zones"]
                             if z["passive_trip_c"] is not None and z["temp_c"] >= z["passive_trip_c"]]
    return snap


def throttle_warning(before: dict[str, Any], after: dict[str, Any]) -> str:
    """A one-line warning when the board throttled (or was throttling) around the run, else ``""``."""
    reasons: list[str] = []
    tb, ta = before.get("throttle"), after.get("throttle")
    if ta and ta.get("value") is not None:
        old = (tb or {}).get("value") or 0
        new_bits = ta["value"] & ~old
        now = [PI_THROTTLE_BITS[b] for b in (0, 1, 2, 3) if ta["value"] >> b & 1]
        happened = [PI_THROTTLE_BITS[b] for b in (16, 17, 18, 19) if new_bits >> b & 1]
        reasons += now + happened
        if not reasons and old:
            reasons.append(f"throttle flags were already set before the run ({tb['raw']})")
    for when, snap in (("before", before), ("after", after)):
        if snap.get("zones_at_trip"):
            reasons.append(f"{', '.join(snap['zones_at_trip'])} at its passive trip point {when} the run")
    if not reasons:
        return ""
    return ("the board throttled during this benchmark (" + "; ".join(dict.fromkeys(reasons)) +
            "): latencies are pessimistic - cool the board (heatsink, fan) and use a 5 V supply that holds, then run again")
