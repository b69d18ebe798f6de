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
# `qemu-aarch64-static -L ROOT`, through wrapper scripts (a program started that way cannot start
# another arm64 program by itself: its child pythons go through the wrapper too).
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
# The venv's python is a link to a path that means something only in the Pi, so each wrapper runs
# the Pi's python3.11 without its site folders (-S), adds the venv's (and the system's when the
# venv sees them) and runs the console script, or (the
# "python" wrapper) the -c code, -m module or file. sys.executable is the "python" wrapper: a
# child python (edge-app's model check, bench-device's fresh processes) goes through qemu too.
launch='import runpy, site, sys
venv = sys.argv.pop(1)
site.addsitedir(venv + "/lib/python3.11/site-packages")
if "include-system-site-packages = true" in open(venv + "/pyvenv.cfg").read():
    for d in site.getsitepackages():  # python3.11 -S: the system folders only when the venv sees them
        site.addsitedir(d)
sys.executable = sys.argv.pop(1)
name, args = sys.argv.pop(1), sys.argv[1:]
if name != "python":
    from importlib.metadata import entry_points
    (ep,) = entry_points(group="console_scripts", name=name)
    sys.argv = [name] + args
    sys.exit(ep.load()())
if args[:1] == ["-c"]:
    sys.argv = ["-c"] + args[2:]
    exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__"})
elif args[:1] == ["-m"]:
    sys.argv = args[1:]
    runpy.run_module(args[1], run_name="__main__", alter_sys=True)
else:
    sys.argv = args
    runpy.run_path(args[0], run_name="__main__")'
for name in python edge-app bench-device; do
    printf '#!/bin/bash\nexec env QEMU_CPU=%q CYTOEDGE_EMULATED=%q qemu-aarch64-static -L %q %q -S -c %q %q %q %q "$@"\n' \
        "$cpu" "$emulated" "$root" "$root/usr/bin/python3.11" "$launch" "$venv" "$bin/python" "$name" >"$bin/$name"
    chmod +x "$bin/$name"
done
PATH="$bin:$PATH" bash "$CHECK_DIR/steps.sh" "$work/$label" "$work/model" "$work/fields" "$work/crops" "$board" \
    "$bench" "$work/x86"
