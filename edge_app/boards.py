"""Board profiles (``hardware/boards/*.toml``) and detecting which board this is.

A profile says what a board has (cores, RAM) and how edge_app runs on it (default
interpreter threads, interpreter, camera defaults). ``--board NAME`` picks one by
name, ``--board path/to/file.toml`` reads a file, and without ``--board`` the board
is detected: the Raspberry Pi model from ``/proc/device-tree/model``, a Jetson from
``/etc/nv_tegra_release`` (and its device-tree model), otherwise the CPU from
``/proc/cpuinfo`` and the machine type. ``bench-device`` reuses :func:`detect_board`
and :func:`load_profile`.

Profiles are found in ``$CYTOEDGE_HARDWARE/boards`` when that variable is set, else in the
``cytoedge.hardware.boards`` package data: in an installed wheel ``cytoedge/hardware/boards``
(pyproject.toml maps the repository's ``hardware/boards`` there), in a source checkout the
repository's own ``hardware/boards`` (``cytoedge/__init__.py`` puts the checkout's root on the
package's path). One copy of each profile, in git.
"""

from __future__ import annotations

import os
import platform
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cytoedge.edge_app.errors import BoardProfileError

HARDWARE_ENV = "CYTOEDGE_HARDWARE"
INTERPRETERS = ("litert", "tflite-runtime", "tensorflow")


@dataclass(frozen=True)
class CameraDefaults:
    source: str = "cam:0"  # a --source value (picam, cam:N, gst:PIPELINE)
    width: int = 1280
    height: int = 960
    fps: int = 10
    controls: dict[str, Any] = field(default_factory=dict)  # picamera2 controls (AeEnable, ExposureTime, ...)


@dataclass(frozen=True)
class BoardProfile:
    name: str  # the key --board takes, e.g. "rpi4"
    title: str  # human name, e.g. "Raspberry Pi 4 Model B"
    arch: str  # "aarch64" or "x86_64"
    cores: int  # CPU cores (0 in the file: this machine's count)
    default_threads: int  # interpreter threads when --threads is not given (0: all cores)
    interpreter: str = "litert"  # preferred TFLite interpreter, one of INTERPRETERS
    ram_gb: tuple[int, ...] = ()
    camera: CameraDefaults = field(default_factory=CameraDefaults)
    thermal_zone: str = ""  # sysfs file with the SoC temperature in millidegrees
    throttle_command: str = ""  # prints the throttle state (Raspberry Pi: vcgencmd get_throttled)
    detect: dict[str, tuple[str, ...]] = field(default_factory=dict)
    path: Path | None = None  # the TOML file it came from
    detected: str = ""  # what detection matched ("" when chosen by name)
    trust: tuple[Path, ...] = ()  # [security] trust: public keys a model card must be signed by (edge_app.signing)

    @property
    def threads(self) -> int:
        """Interpreter threads to use: the profile's default, or every core of this machine."""
        return self.default_threads or self.cores


def hardware_dir() -> Path:
    """The ``hardware/`` folder: ``$CYTOEDGE_HARDWARE``, else the one the ``cytoedge`` package holds.

    That is ``cytoedge/hardware`` of an installed wheel (its ``boards/`` only), or the checkout's
    ``hardware/`` (``cytoedge.__path__`` holds the checkout's root there).
    """
    env = os.environ.get(HARDWARE_ENV)
    if env:
        return Path(env)
    import cytoedge

    places = [Path(p) / "hardware" for p in cytoedge.__path__]
    return next((d for d in places if (d / "boards").is_dir()), places[0])


def boards_dir() -> Path:
    return hardware_dir() / "boards"


def list_profiles() -> list[str]:
    """Names of the profiles shipped in ``hardware/boards``."""
    d = boards_dir()
    return sorted(p.stem for p in d.glob("*.toml")) if d.is_dir() else []


def load_profile(name_or_path: str | os.PathLike[str]) -> BoardProfile:
    """A profile by name (``rpi4``) or from a TOML file path."""
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith(".toml") or os.sep in text):
        path = boards_dir() / f"{text}.toml"
        if not path.is_file():
            known = ", ".join(list_profiles()) or f"none found in {boards_dir()}"
            raise BoardProfileError(f"unknown board {text!r}: choose from {known}, or pass a .toml file")
    if not path.is_file():
        raise BoardProfileError(f"board profile {path} does not exist: pass a board name or an existing .toml file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BoardProfileError(f"board profile {path} cannot be read ({exc}): fix the TOML") from None
    return _profile_from_dict(data, path)


def _profile_from_dict(d: dict[str, Any], path: Path) -> BoardProfile:
    try:
        cam = d.get("camera", {})
        thermal = d.get("thermal", {})
        prof = BoardProfile(
            name=str(d.get("name") or path.stem),
            title=str(d["title"]),
            arch=str(d.get("arch", "")),
            cores=int(d.get("cores", 0)) or (os.cpu_count() or 1),
            default_threads=int(d.get("default_threads", 0)),
            interpreter=str(d.get("interpreter", "litert")),
            ram_gb=tuple(int(x) for x in d.get("ram_gb", ())),
            camera=CameraDefaults(source=str(cam.get("source", "cam:0")), width=int(cam.get("width", 1280)),
                                  height=int(cam.get("height", 960)), fps=int(cam.get("fps", 10)),
                                  controls=dict(cam.get("controls", {}))),
            thermal_zone=str(thermal.get("zone", "")),
            throttle_command=str(thermal.get("throttle_command", "")),
            detect={k: tuple(str(s) for s in v) for k, v in d.get("detect", {}).items()},
            path=path,
            trust=tuple(path.parent / str(k) for k in _as_list(d.get("security", {}).get("trust", []))),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BoardProfileError(f"board profile {path} is malformed ({type(exc).__name__}: {exc}): "
                                "compare it with hardware/boards/rpi4.toml") from None
    if prof.interpreter not in INTERPRETERS:
        raise BoardProfileError(f"board profile {path}: interpreter {prof.interpreter!r} is not one of "
                                f"{', '.join(INTERPRETERS)}")
    if prof.cores < 0 or prof.default_threads < 0:
        raise BoardProfileError(f"board profile {path}: cores and default_threads must be >= 0")
    return prof


def _as_list(value: Any) -> list[Any]:
    return [value] if isinstance(value, str) else list(value)


def _read(root: Path, rel: str) -> str:
    try:
        return (root / rel).read_bytes().replace(b"\x00", b"").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def machine_facts(root: str | os.PathLike[str] = "/") -> dict[str, str]:
    """What the files detection reads say: device-tree model, L4T release, CPU model, machine type."""
    r = Path(root)
    found: dict[str, str] = {}
    for line in _read(r, "proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        if value.strip():
            found.setdefault(key.strip().lower(), value.strip())
    # x86 lists a numeric "model" before "model name": take the name first
    cpu = next((found[k] for k in ("model name", "hardware", "model") if k in found), "")
    tegra = _read(r, "etc/nv_tegra_release").splitlines()
    return {
        "device_tree_model": _read(r, "proc/device-tree/model"),
        "nv_tegra_release": tegra[0] if tegra else "",
        "cpu_model": cpu,
        "machine": platform.machine() if r == Path("/") else "",
    }


DETECT_KEYS = ("device_tree_model", "nv_tegra_release", "machine")  # most specific first


def _facts(root: str | os.PathLike[str], machine: str | None) -> dict[str, str]:
    facts = machine_facts(root)
    if machine is not None:
        facts["machine"] = machine
    return facts


def _detected_by(prof: BoardProfile, facts: dict[str, str], keys: tuple[str, ...] = DETECT_KEYS) -> str:
    """``"key: text"`` when one of the profile's detection patterns matches these machine facts, else ``""``."""
    for key in keys:
        text = facts.get(key, "")
        if text and any(pattern.lower() in text.lower() for pattern in prof.detect.get(key, ())):
            return f"{key}: {text}"
    return ""


def detect_board(root: str | os.PathLike[str] = "/", machine: str | None = None) -> BoardProfile:
    """The profile of the board this runs on (``root`` and ``machine`` let tests fake a board).

    Device-tree model first (most specific), then the Jetson L4T release, then the
    machine type; a board nothing matches gets a generic profile built from its CPU.
    """
    facts = _facts(root, machine)
    profiles = [load_profile(n) for n in list_profiles()]
    for key in DETECT_KEYS:
        for prof in profiles:
            found = _detected_by(prof, facts, (key,))
            if found:
                return replace(prof, detected=found)
    title = facts["device_tree_model"] or facts["cpu_model"] or facts["machine"] or "unknown board"
    return BoardProfile(name="generic", title=title, arch=facts["machine"], cores=os.cpu_count() or 1,
                        default_threads=0, detected=f"no profile matched ({title})")


def board_check(profile: BoardProfile, root: str | os.PathLike[str] = "/",
                machine: str | None = None) -> dict[str, Any]:
    """Does a board named with ``--board`` match the machine this runs on? Both, and a warning when not.

    A named profile matches when one of its detection patterns matches this machine (or,
    for a profile without patterns, when its ``arch`` is this machine's type). Results of a
    run on another machine would otherwise be filed under the named board's name unnoticed.
    """
    detected = profile if profile.detected else detect_board(root, machine)
    record = {"named": "" if profile.detected else profile.name, "named_title": "" if profile.detected else profile.title,
              "detected": detected.name, "detected_title": detected.title, "detected_by": detected.detected,
              "matches": True, "warning": ""}
    if profile.detected or profile.name == detected.name:
        return record
    facts = _facts(root, machine)
    if profile.detect:
        matches = bool(_detected_by(profile, facts))
    else:  # a hand-written profile without detection patterns: all we can compare is the CPU architecture
        matches = not profile.arch or not facts.get("machine") or profile.arch == facts["machine"]
    if not matches:
        record["matches"] = False
        record["warning"] = (f"--board {profile.name} ({profile.title}) does not match this machine, detected as "
                             f"{detected.name} ({detected.detected}): results are filed under {profile.name} as if "
                             f"measured there; drop --board to use the detected board")
    return record


def resolve_board(board: str | None) -> BoardProfile:
    """``--board`` value -> profile; ``None`` or ``"auto"`` detects."""
    if board in (None, "", "auto"):
        return detect_board()
    return load_profile(board)
