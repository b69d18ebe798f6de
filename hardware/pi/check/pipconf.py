"""The pip configuration for the emulated Pi, made from this host's (``make pi-check``).

pip inside the Pi must reach the same package index as the host (a mirror, a proxy, the
host's certificate authority), but not the host's local wheel folders: those hold x86
wheels, and their paths do not exist in the Pi. So the host's settings are read in pip's
own order (``/etc/xdg/pip/pip.conf``, ``/etc/pip.conf``, the user's files, then ``PIP_*``
variables, later wins) and only the keys that mean the same on another machine are kept,
with local paths and ``file:`` URLs dropped. ``cert`` always names the Pi's own bundle,
which ``update-ca-certificates`` builds there from the host's extra authorities.

    python3 pipconf.py > ROOTFS/etc/pip.conf
"""

from __future__ import annotations

import configparser
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

# keys that mean the same on another machine; values that are local paths or file: URLs are dropped
PORTABLE_KEYS = ("index-url", "extra-index-url", "trusted-host", "proxy", "timeout", "default-timeout", "retries")
LIST_KEYS = ("extra-index-url", "trusted-host")
PI_CERT = "/etc/ssl/certs/ca-certificates.crt"


def host_config_files(home: str | None = None) -> list[Path]:
    """pip's configuration files on this host, lowest priority first."""
    home = home if home is not None else os.path.expanduser("~")
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    return [Path("/etc/xdg/pip/pip.conf"), Path("/etc/pip.conf"), Path(home, ".pip/pip.conf"), Path(xdg, "pip/pip.conf")]


def _portable(value: str) -> bool:
    v = value.strip()
    return bool(v) and not v.startswith(("/", "file:", "~", "."))


def pi_settings(texts: Iterable[str], env: Mapping[str, str]) -> dict[str, str]:
    """The portable ``[global]``/``[install]`` settings of ``texts`` (lowest priority first) and ``PIP_*`` ``env``.

    >>> pi_settings(["[global]\\nfind-links = /opt/wheels\\nindex-url = https://mirror.example/simple\\n"
    ...              "extra-index-url = file:///opt/pypi/simple https://extra.example/simple\\n"
    ...              "constraint = /etc/xdg/pip/constraints.txt\\n"], {"PIP_DEFAULT_TIMEOUT": "180"})
    {'index-url': 'https://mirror.example/simple', 'extra-index-url': 'https://extra.example/simple', 'default-timeout': '180', 'cert': '/etc/ssl/certs/ca-certificates.crt'}
    """
    found: dict[str, str] = {}
    for text in texts:
        cp = configparser.RawConfigParser()
        cp.read_string(text)
        for section in ("global", "install"):
            if cp.has_section(section):
                for key, value in cp.items(section):
                    found[key] = value
    for name, value in env.items():
        if name.startswith("PIP_"):
            found[name[4:].lower().replace("_", "-")] = value
    out: dict[str, str] = {}
    for key in PORTABLE_KEYS:
        if key not in found:
            continue
        values = found[key].split() if key in LIST_KEYS else [found[key].strip()]
        kept = [v for v in values if _portable(v)]
        if kept:
            out[key] = " ".join(kept)
    out["cert"] = PI_CERT
    return out


def render(settings: Mapping[str, str]) -> str:
    """``[global]`` with one ``key = value`` line per setting.

    >>> print(render({"cert": "/etc/ssl/certs/ca-certificates.crt"}), end="")
    # made by hardware/pi/check/pipconf.py from the host's pip settings (local paths left out)
    [global]
    cert = /etc/ssl/certs/ca-certificates.crt
    """
    lines = ["# made by hardware/pi/check/pipconf.py from the host's pip settings (local paths left out)", "[global]"]
    lines += [f"{k} = {v}" for k, v in settings.items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    texts = []
    for path in host_config_files():
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except OSError:
            continue
    try:
        settings = pi_settings(texts, os.environ)
    except configparser.Error as exc:
        print(f"pipconf: cannot read the host's pip configuration ({exc}): fix it or remove it", file=sys.stderr)
        return 2
    sys.stdout.write(render(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
