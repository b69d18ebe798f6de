#!/usr/bin/env bash
# Set up CytoEdge's device runtime on a Raspberry Pi 4 or 5 (Raspberry Pi OS Bookworm 64-bit, Python 3.11).
#
#   git clone <repo> ~/cytoedge && cd ~/cytoedge && bash hardware/pi/setup.sh
#
# What it does: installs picamera2 from apt (it is not pip-installable: it needs the
# system's libcamera bindings), makes a venv that can see it (--system-site-packages),
# installs CytoEdge's [edge] extra into that venv with the Pi's pinned packages
# (hardware/pi/requirements.txt: the same list `make pi-check` runs on an emulated Pi 4 and 5),
# and checks the result. The pins include PyPI's simplejpeg, built against numpy 2: apt's
# python3-simplejpeg (picamera2's JPEG encoder) is built against Bookworm's numpy 1.24 and does
# not import under the venv's numpy 2 (raspberrypi/picamera2 issues 1088, 1211).
# Re-running the script is safe.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VENV:-$REPO/.venv}"
PY="${PYTHON:-python3}"

if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "setup: CytoEdge needs Python >= 3.11 (Raspberry Pi OS Bookworm has it); found $("$PY" -V 2>&1)" >&2
    exit 1
fi
case "$(uname -m)" in
    aarch64) ;;
    *) echo "setup: this is $(uname -m); LiteRT wheels need 64-bit Raspberry Pi OS (aarch64)" >&2; exit 1 ;;
esac

# libgl1, libglib2.0-0: opencv-python's wheel loads libGL.so.1 and GLib from the system, and Raspberry
# Pi OS Lite (no desktop) has no libGL: without it 'import cv2' fails (found by make pi-check).
echo "setup: apt packages (python3-picamera2, python3-venv, libgl1, libglib2.0-0)"
sudo apt-get update -qq
sudo apt-get install -y --no-install-recommends python3-picamera2 python3-venv libgl1 libglib2.0-0

echo "setup: venv $VENV (with system site packages, for picamera2)"
"$PY" -m venv --system-site-packages "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r "$REPO/hardware/pi/requirements.txt" -e "$REPO[edge]"

echo "setup: checking"
"$VENV/bin/python" -c 'import cv2, numpy; from ai_edge_litert.interpreter import Interpreter; print("opencv", cv2.__version__, "numpy", numpy.__version__, "LiteRT ok")'
"$VENV/bin/python" -c 'from picamera2 import Picamera2; print("picamera2 ok:", len(Picamera2.global_camera_info()), "camera(s)")' \
    || echo "setup: warning: picamera2 does not import in the venv; the picam source will not work" >&2
"$VENV/bin/edge-app" boards
VENV="$VENV" bash "$REPO/hardware/systemd/install-config.sh"

cat <<MSG
setup: done. Try it:
  $VENV/bin/edge-app --model MODEL_DIR --source picam --slide test --max-frames 20 --save-annotated
Settings: /etc/cytoedge/edge-app.toml (edge-app --config reads it); start at boot: see hardware/systemd/cytoedge.service
MSG
