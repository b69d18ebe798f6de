#!/usr/bin/env bash
# Set up CytoEdge's device runtime on a Jetson (Orin Nano with JetPack 6, or a Nano with a newer Python).
#
#   git clone <repo> ~/cytoedge && cd ~/cytoedge && bash hardware/jetson/setup.sh
#
# The model runs on the CPU through LiteRT (the GPU is not used). CytoEdge needs Python >= 3.11:
# JetPack 6 (Ubuntu 22.04) ships 3.10 and JetPack 4 (the Nano's last, Ubuntu 18.04) ships 3.6,
# so install a 3.11 first (on 22.04: the deadsnakes PPA, 'sudo apt install python3.11 python3.11-venv')
# and pass it as PYTHON=python3.11.
#
# Cameras: a USB camera works as cam:0 with pip's OpenCV. A CSI camera needs GStreamer
# (nvarguscamerasrc), which pip's opencv-python is built without: see hardware/CAMERA.md.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VENV:-$REPO/.venv}"
PY="${PYTHON:-python3.11}"

if ! command -v "$PY" >/dev/null || ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "setup: CytoEdge needs Python >= 3.11; '$PY' is missing or older. Install python3.11 and run" \
         "PYTHON=python3.11 bash hardware/jetson/setup.sh" >&2
    exit 1
fi
if [ ! -e /etc/nv_tegra_release ]; then
    echo "setup: warning: /etc/nv_tegra_release not found; is this a Jetson?" >&2
fi

echo "setup: venv $VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e "$REPO[edge]"

echo "setup: checking"
"$VENV/bin/python" -c 'import cv2; from ai_edge_litert.interpreter import Interpreter; print("opencv", cv2.__version__, "LiteRT ok")'
"$VENV/bin/edge-app" boards
VENV="$VENV" bash "$REPO/hardware/systemd/install-config.sh" cam:0

cat <<MSG
setup: done. Try it with a USB camera:
  $VENV/bin/edge-app --model MODEL_DIR --source cam:0 --slide test --max-frames 20 --save-annotated
Settings: /etc/cytoedge/edge-app.toml (edge-app --config reads it); start at boot: see hardware/systemd/cytoedge.service
MSG
