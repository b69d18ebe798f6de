#!/usr/bin/env bash
# Put edge-app's settings file in place for the systemd unit: /etc/cytoedge/edge-app.toml, made from
# hardware/systemd/edge-app.toml with this checkout's paths. An existing file is never replaced.
#
#   bash hardware/systemd/install-config.sh [SOURCE]     SOURCE: the camera (default: keep the example's picam)
#
# hardware/pi/setup.sh and hardware/jetson/setup.sh call it; run it alone on any other board.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CONF="${CYTOEDGE_CONF:-/etc/cytoedge/edge-app.toml}"
SOURCE="${1:-}"

if [ -e "$CONF" ]; then
    echo "setup: $CONF exists, kept (compare it with hardware/systemd/edge-app.toml after an update)"
    exit 0
fi
echo "setup: device settings $CONF (edit model, source and out in it)"
SUDO=""
if [ ! -w "$(dirname "$CONF")" ] && [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
$SUDO mkdir -p "$(dirname "$CONF")"
sed -e "s#/home/pi/cytoedge-data#$HOME/cytoedge-data#" -e "s#/home/pi/cytoedge#$REPO#" \
    ${SOURCE:+-e "s#^source = .*#source = \"$SOURCE\"#"} \
    "$REPO/hardware/systemd/edge-app.toml" | $SUDO tee "$CONF" >/dev/null
$SUDO chmod 644 "$CONF"
PY="${VENV:-$REPO/.venv}/bin/python"
if [ -x "$PY" ]; then
    "$PY" -c "import sys; from cytoedge.edge_app.cli import SUBCOMMANDS, get_parser; from cytoedge.edge_app.clitools import run_cli; \
from cytoedge.edge_app.configfile import parse_args; \
sys.exit(run_cli('edge-app', lambda argv: parse_args(get_parser(), argv, sections=SUBCOMMANDS) and 0, ['--config', sys.argv[1]]))" "$CONF" \
        && echo "setup: $CONF is valid" || echo "setup: warning: fix $CONF (the line above says what is wrong)" >&2
fi
