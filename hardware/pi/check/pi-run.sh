#!/usr/bin/env bash
# One emulated-Pi run of steps.sh, as one CPU model (called by pi-check.sh).
#
#   pi-run.sh ROOT CPU BOARD LABEL WORK [bench|-]
#
# ROOT the Pi's userland (root.sh), CPU the model qemu emulates (cortex-a72: Pi 4, cortex-a76: Pi 5),
# WORK the host folder with model/, fields/, crops/ and the x86 run's outputs in x86/ (its input
# tensors are run here too); the outputs go to WORK/LABEL.
#
# The host's bash runs steps.sh; `python`, `edge-app` and `bench-device` are the Pi's python3.11
# under qemu-aarch64 (QEMU_LD_PREFIX=ROOT: the guest's /usr/lib... is ROOT's, any path missing from
# ROOT is the host's). It all runs in a user and mount namespace of its own, which ends with this
# script and leaves nothing behind: there a private binfmt_misc registers qemu-aarch64 (so that a
# child python, such as edge-app's model probe, runs as aarch64 too; the host's binfmt_misc is not
# touched) and this CPU's cpuinfo is bind-mounted over ROOT/proc/cpuinfo (so runs of two CPU
# models go side by side).
set -euo pipefail
CHECK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root=$1 cpu=$2 board=$3 label=$4 work=$5 bench=${6:--}
QEMU_BIN="${QEMU_BIN:-$(command -v qemu-aarch64-static)}"

if [[ -z "${PI_RUN_IN_NAMESPACE:-}" ]]; then
    PI_RUN_IN_NAMESPACE=1 exec unshare --user --map-root-user --mount bash "$0" "$@"
fi

mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
# the ELF header of an aarch64 executable; flags F (qemu opened now) and P (argv[0] kept)
printf '%s' ":qemu-aarch64:M::\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:$QEMU_BIN:FP" \
    >/proc/sys/fs/binfmt_misc/register
mount --bind "$CHECK_DIR/cpuinfo/$cpu" "$root/proc/cpuinfo"

side="$work/$label"
bin="$work/.bin-$label"
rm -rf "$bin" "$side.home"
mkdir -p "$bin" "$side.home/tmp"
py="$root/usr/bin/python3.11"
printf '#!/bin/bash\nexec %q "$@"\n' "$py" >"$bin/python"
printf '#!/bin/bash\nexec %q -m cytoedge.edge_app "$@"\n' "$py" >"$bin/edge-app"
printf '#!/bin/bash\nexec %q -c %q "$@"\n' "$py" 'import sys; from cytoedge.benchmarks.cli import main; sys.exit(main())' \
    >"$bin/bench-device"
chmod +x "$bin"/*

# The environment of every emulated process (children inherit it): never QEMU_CPU=max (wrong int8
# results); the Pi's site folders only (no host paths on sys.path); its own cache and temp folders.
export QEMU_CPU="$cpu" QEMU_LD_PREFIX="$root" PYTHONPATH="/opt/cyto:/opt/site" PYTHONNOUSERSITE=1 \
    HOME="$side.home" XDG_CACHE_HOME="$side.home/cache" TMPDIR="$side.home/tmp" \
    CYTOEDGE_EMULATED="qemu-user $cpu on $(uname -m)" PATH="$bin:$PATH"
unset PYTHONHOME VIRTUAL_ENV
bash "$CHECK_DIR/steps.sh" "$side" "$work/model" "$work/fields" "$work/crops" "$board" "$bench" "$work/x86"
