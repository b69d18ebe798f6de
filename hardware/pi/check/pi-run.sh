#!/usr/bin/env bash
# One emulated-Pi run of steps.sh, as one CPU model (called by pi-check.sh).
#
#   pi-run.sh ROOT CPU VENV BOARD LABEL WORK [bench|-]
#
# ROOT the Pi's userland, CPU the model qemu emulates (cortex-a72: Pi 4, cortex-a76: Pi 5), VENV the
# venv in the Pi, WORK the host folder with model/, fields/, crops/ and the x86 run's outputs in
# x86/ (its input tensors are run here too); the outputs go to WORK/LABEL.
# PI_CHECK_MODE=chroot (binfmt registered): a chroot in its own mount namespace, so that runs of
# several CPU models go side by side, each with its own /proc/cpuinfo. PI_CHECK_MODE=qemu-L (no
# binfmt): the host's bash runs steps.sh and each command is the Pi's python3.11 under
# `qemu-aarch64-static -L ROOT`; a program started from there cannot start another arm64 program,
# so bench-device (fresh processes) is left out.
set -euo pipefail
CHECK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=rootfs.sh
source "$CHECK_DIR/rootfs.sh"
root=$1 cpu=$2 venv=$3 board=$4 label=$5 work=$6 bench=${7:--}
emulated="qemu-user $cpu on $(uname -m)"

if [[ "${PI_CHECK_MODE:-chroot}" == chroot ]]; then
    if [[ -z "${PI_RUN_IN_NAMESPACE:-}" ]]; then
        PI_RUN_IN_NAMESPACE=1 exec unshare --mount --propagation private bash "$0" "$@"
    fi
    pi_mount "$root" "$cpu"
    mkdir -p "$root/work"
    mount --bind "$work" "$root/work"
    QEMU_CPU=$cpu in_pi "$root" env PATH="$venv/bin:/usr/bin:/bin" CYTOEDGE_EMULATED="$emulated" \
        bash "$PI_REPO/hardware/pi/check/steps.sh" "/work/$label" /work/model /work/fields /work/crops "$board" \
        "$bench" /work/x86
    exit 0   # the namespace, and with it every mount above, ends here
fi

# qemu -L: qemu opens ROOT/PATH for a guest's /PATH when it exists, so the Pi's own /proc/cpuinfo
# stands in for the host's x86 one (LiteRT's CPU detection crashes on that)
bin="$work/.qemu-bin-$label"
mkdir -p "$bin"
rm -f "$root/proc/cpuinfo"
cp "$CHECK_DIR/cpuinfo/$cpu" "$root/proc/cpuinfo"
trap 'rm -f "$root/proc/cpuinfo"' EXIT
# the venv cannot be used as it is (its python is a link to a path that only means something in
# the Pi): the Pi's python3.11 adds the venv's site-packages, then runs the console script or file
launch='import site, sys
site.addsitedir(sys.argv.pop(1) + "/lib/python3.11/site-packages")
name = sys.argv.pop(1)
if name == "python":
    import runpy
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
else:
    from importlib.metadata import entry_points
    (ep,) = entry_points(group="console_scripts", name=name)
    sys.argv = [name] + sys.argv[1:]
    sys.exit(ep.load()())'
for name in python edge-app bench-device; do
    printf '#!/bin/sh\nexec env QEMU_CPU=%q CYTOEDGE_EMULATED=%q qemu-aarch64-static -L %q %q -c %q %q %q "$@"\n' \
        "$cpu" "$emulated" "$root" "$root/usr/bin/python3.11" "$launch" "$venv" "$name" >"$bin/$name"
    chmod +x "$bin/$name"
done
PATH="$bin:$PATH" bash "$CHECK_DIR/steps.sh" "$work/$label" "$work/model" "$work/fields" "$work/crops" "$board" - \
    "$work/x86"
