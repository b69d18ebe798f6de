"""A stand-in for Raspberry Pi's ``python3-picamera2``, installed only in the emulated Pi of ``make pi-check``.

picamera2 is not in Debian: it comes from Raspberry Pi's own apt repository, built on the
board's libcamera. This package lets ``hardware/pi/setup.sh`` run unchanged on a plain
Debian arm64 userland: apt installs it (and, as the real package does, Debian's numpy
beside it), and the script's ``from picamera2 import Picamera2`` check runs. There is no
camera here: ``global_camera_info()`` is empty and opening one raises, as the real
package does on a board with no camera connected.
"""

import numpy  # noqa: F401 - the real package imports numpy (Debian's, shadowed by a venv's own)

STAND_IN = True


class Picamera2:
    @staticmethod
    def global_camera_info() -> list:
        return []

    def __init__(self, camera_num: int = 0, **kwargs) -> None:
        raise RuntimeError(f"camera {camera_num} not found: this is the emulated Pi's picamera2 stand-in (no camera)")
