"""One list of the Raspberry Pi's packages: what hardware/pi/setup.sh installs on a real Pi is what
`make pi-check` installs into its emulated Pi (hardware/pi/check/root.sh), pinned and complete.

The scripts are read as bash reads them: root.sh is sourced by bash, setup.sh's commands are split
with shlex.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
PINS = REPO / "hardware/pi/requirements.txt"
SETUP = REPO / "hardware/pi/setup.sh"
ROOT_SH = REPO / "hardware/pi/check/root.sh"
# apt packages of setup.sh that the emulated root does not take from Debian, and why
NOT_IN_ROOT = {
    "python3-picamera2": "not in Debian (Raspberry Pi's own repository); the emulated Pi has no camera",
    "python3-venv": "the emulated Pi runs the wheels from a --target folder, not a venv",
}


def pins(text: str) -> dict[str, str]:
    """``name==version`` lines (comments and blanks skipped), by canonical name; anything else is an error."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][0-9A-Za-z.+!-]*)", line)
        assert m, f"not an exact pin: {line!r}"
        name = canonicalize_name(m.group(1))
        assert name not in found, f"{name} pinned twice"
        found[name] = m.group(2)
    return found


def root_settings() -> dict[str, str]:
    """PI_PINS and PI_DEBS as bash sees them after sourcing root.sh."""
    script = f'REPO_ROOT={shlex.quote(str(REPO))}; source {shlex.quote(str(ROOT_SH))}; ' \
             'printf "%s\\n%s\\n" "$PI_PINS" "$PI_DEBS"'
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    pins_path, debs = done.stdout.splitlines()
    return {"pins": pins_path, "debs": debs}


def setup_commands(program: str) -> list[list[str]]:
    """Every command line of setup.sh that runs ``program`` (continuation lines joined), split by shlex."""
    text = SETUP.read_text().replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in text.splitlines()
            if re.search(rf"(^|\s|/){re.escape(program)}\s+", line) and not line.lstrip().startswith("#")]


def test_the_pin_list_is_exact_and_pins_every_edge_requirement_within_its_range():
    pinned = pins(PINS.read_text())
    edge = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["edge"]
    for spec in edge:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pinned, f"[edge] needs {spec} but {PINS.name} does not pin it"
        assert req.specifier.contains(pinned[name], prereleases=True), f"{name}=={pinned[name]} is outside {spec}"
    # the Pi's venv sees apt's picamera2, whose JPEG encoder must import under the pinned numpy
    assert int(pinned["numpy"].split(".")[0]) >= 2 and "simplejpeg" in pinned


def test_a_loose_or_doubled_pin_is_refused():
    for bad in ("numpy>=2\n", "numpy==2.4.6\nNumPy==2.4.6\n", "numpy\n"):
        try:
            pins(bad)
        except AssertionError:
            continue
        raise AssertionError(f"accepted {bad!r}")


def test_setup_sh_installs_exactly_the_pin_list_and_the_edge_extra():
    installs = [c[c.index("install") + 1:] for c in setup_commands("pip")]
    installs = [args for args in installs if args != ["--quiet", "--upgrade", "pip"]]
    assert len(installs) == 1, installs
    args = [a for a in installs[0] if a not in ("--quiet", "-q")]
    assert args == ["-r", "$REPO/hardware/pi/requirements.txt", "-e", "$REPO[edge]"], \
        f"setup.sh's pip install must take the Pi's packages from the pin list only, not {args}"


def test_pi_check_installs_the_same_pin_list():
    settings = root_settings()
    assert Path(settings["pins"]).resolve() == PINS.resolve()
    text = ROOT_SH.read_text()
    assert re.search(r'pip install .*--target "\$out/opt/site"', text) and '-r "$PI_PINS"' in text
    assert "--no-deps" in text  # so the list alone decides what the emulated Pi gets


def test_the_libraries_setup_sh_installs_with_apt_are_in_the_emulated_root():
    (apt,) = [c for c in setup_commands("apt-get") if "install" in c]
    packages = {a for a in apt[apt.index("install") + 1:] if not a.startswith("-")}
    debs = set(root_settings()["debs"].split())
    missing = packages - debs - set(NOT_IN_ROOT)
    assert not missing, f"setup.sh installs {sorted(missing)} with apt but the emulated Pi's root does not"
    assert {"libgl1", "libglib2.0-0"} <= packages & debs  # what opencv-python's wheel loads from the system
    assert set(NOT_IN_ROOT) <= packages, "NOT_IN_ROOT names a package setup.sh no longer installs"
