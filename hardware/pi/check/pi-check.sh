#!/usr/bin/env bash
# make pi-check: CytoEdge's Raspberry Pi path, run on an emulated Pi and compared with x86.
#
# A Raspberry Pi OS Bookworm userland is Debian bookworm arm64 with Python 3.11; qemu-user
# runs it on this x86 machine. This script
#   1. registers qemu-aarch64 with binfmt_misc (so a chroot runs arm64 programs),
#   2. on x86 trains and converts a small model (cached) and makes synthetic fields and crops,
#   3. builds (or reuses) the Pi: debootstrap bookworm arm64, then hardware/pi/setup.sh run as a
#      user would (picamera2 from a stand-in .deb: it is not in Debian), and a plain `.[edge]`
#      venv (numpy 2, ai-edge-litert 2.3); both cached under ~/.cache/cytoedge, keyed by hash,
#   4. runs the same steps (steps.sh) on x86 and in the Pi, as a Pi 4 (QEMU_CPU=cortex-a72) and
#      a Pi 5 (cortex-a76): edge-app on the fields, edge-app report, edge-app classify (when it
#      exists), the classifier crop by crop (probe.py), bench-device,
#   5. compares every Pi run with x86 (compare.py): classes, logits, store, report,
#   6. checks the systemd unit with systemd-analyze verify in the Pi,
# and prints a table: step, wall time, CPU time, result. Emulated timings are not board timings.
#
# Needs root (debootstrap, chroot, mounts) and qemu-user-static, binfmt-support, debootstrap
# (the Makefile installs them). VENV is the x86 venv with the [all] extras (default .venv).
# CYTOEDGE_CACHE moves the cache; PI_CHECK_CPUS="cortex-a72" runs one CPU model;
# PI_CHECK_IF_CACHED=1 (.ci/run) skips the check, loudly, when this checkout's Pi is not cached.
# Without binfmt_misc (a container that may not mount it) a cached Pi is run with
# `qemu-aarch64-static -L` instead (PI_CHECK_MODE=qemu-L forces that); nothing can be built then.
set -euo pipefail

CHECK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$CHECK_DIR/../../.." && pwd)"
VENV="$(cd "${VENV:-$REPO_ROOT/.venv}" 2>/dev/null && pwd)" || VENV=${VENV:-$REPO_ROOT/.venv}
CACHE="${CYTOEDGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cytoedge}"
read -r -a CPUS <<<"${PI_CHECK_CPUS:-cortex-a72 cortex-a76}"
# shellcheck source=rootfs.sh
source "$CHECK_DIR/rootfs.sh"
# shellcheck source=timing.sh
source "$CHECK_DIR/timing.sh"

[[ -x "$VENV/bin/edge-convert" ]] || die "no x86 venv at $VENV: run 'make venv' (make test builds it) or pass VENV=..."

# Every mount below lives in a private mount namespace: even a kill -9 leaves none behind.
if [[ -z "${PI_CHECK_IN_NAMESPACE:-}" ]] && unshare --mount --propagation private true 2>/dev/null; then
    PI_CHECK_IN_NAMESPACE=1 exec unshare --mount --propagation private bash "$0" "$@"
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.pi-check.lock"
flock -w 1800 9 || die "another pi-check holds $CACHE/.pi-check.lock"
clean_partials
WORK="$CACHE/pi-check-last"
ROWS="$(mktemp)"
MODEL_PID=""
cleanup() {
    [[ -n "$MODEL_PID" ]] && kill "$MODEL_PID" 2>/dev/null
    local layer
    for layer in "$CACHE"/pi-edge-* "$CACHE"/.pi-*.partial.*; do [[ -d "$layer" ]] && unmount_all "$layer"; done
    rm -f "$ROWS" "$ROWS".*
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

EMULATED_NOTE="emulated, not board timings"
row() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$ROWS"; }   # step, wall, CPU, result
START_US=$(now_us)
# mark: start timing a phase; lap: WALL and CPU since the mark (both in this shell: not in $(...))
TIMES_FILE="$ROWS.times"
mark() { MARK_US=$(now_us); cpu_now "$TIMES_FILE"; MARK_CPU=$CPU_US; }
lap() { cpu_now "$TIMES_FILE"; WALL="$(secs $(( $(now_us) - MARK_US ))) s"; CPU="$(secs $(( CPU_US - MARK_CPU ))) s"; }
FAILED=0

# ---- the cache keys: what builds each layer ------------------------------------------------------
build_model() {
    local out=$1
    (
        export PATH="$VENV/bin:$PATH" PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
        cd "$out"
        edge-train synth --out data --per-class 24 --frames 4 --fields 4 --seed 0
        edge-train --data data --model shufflenet_v2_x1_0 --input-size 64 --folds 2 --fold 0 --epochs 40 \
            --lr 0.05 --grad-clip 2 --loss ce --no-progress --seed 0 --out runs
        edge-convert runs/fold_0 --int8 --calib-images 20 --max-batch 8 --max-drop 100 --out model
        mkdir -p crops
        for d in data/im_*/CROPPED; do
            cls="$(basename "$(dirname "$d")")"
            find "$d" -name '*.bmp' | sort | head -4 | while read -r f; do cp "$f" "crops/${cls#im_}_$(basename "$f")"; done
        done
    ) >"$out.log" 2>&1 || { tail -20 "$out.log" >&2; die "building the x86 model failed: full log $out.log"; }
    rm -f "$out.log"
}
model_key="$( (declare -f build_model; cd "$REPO_ROOT" && git ls-files -z --cached --others --exclude-standard \
    -- train convert edge_app/card.py edge_app/preprocess.py pyproject.toml | sort -z | xargs -0 cat) | sha256sum | cut -c1-12)"
base_key="$( (declare -f build_base in_pi; echo "$PI_SUITE $PI_PACKAGES"; cat "$CHECK_DIR/pipconf.py") | sha256sum | cut -c1-12)"
edge_key="$( (echo "$base_key"; declare -f build_edge make_fake_apt copy_repo; cd "$REPO_ROOT" && cat \
    hardware/pi/setup.sh pyproject.toml "$CHECK_DIR/edge-aarch64.txt" "$CHECK_DIR"/fake-picamera2/control \
    "$CHECK_DIR"/fake-picamera2/picamera2/*.py) | sha256sum | cut -c1-12)"

# PI_CHECK_IF_CACHED=1 (what .ci/run sets): run only when this checkout's Pi is cached. A cold build
# (debootstrap and pip under emulation) takes far longer than CI can give it on 2 shared cores.
if [[ -n "${PI_CHECK_IF_CACHED:-}" && ! -d "$CACHE/pi-edge-$edge_key" ]]; then
    cat >&2 <<EOF
pi-check: SKIPPED: no emulated Pi is cached for this checkout ($CACHE/pi-edge-$edge_key is missing:
pi-check: never built here, or hardware/pi/setup.sh, pyproject.toml or the Pi's pins changed since).
pi-check: The Raspberry Pi path is NOT checked by this run. Build the Pi once with 'sudo make pi-check'
pi-check: (cold: debootstrap + pip under emulation, tens of minutes on 2 busy cores); later runs check it.
EOF
    exit 0
fi
[[ "$(id -u)" == 0 ]] || die "it needs root (debootstrap, chroot, mounts): run 'sudo make pi-check' (CI runs as root)"
for tool in qemu-aarch64-static debootstrap update-binfmts; do
    command -v "$tool" >/dev/null || die "$tool is missing: 'make pi-check' installs qemu-user-static binfmt-support debootstrap"
done

# ---- 1. binfmt -----------------------------------------------------------------------------------
mark
export PI_CHECK_MODE=${PI_CHECK_MODE:-chroot}   # PI_CHECK_MODE=qemu-L tries the fallback on purpose
if [[ "$PI_CHECK_MODE" == chroot ]]; then
    if [[ ! -e /proc/sys/fs/binfmt_misc/status ]]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
    fi
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
fi
QEMU="$(qemu-aarch64-static --version | head -1 | sed 's/ version / /')"
if [[ "$PI_CHECK_MODE" == chroot ]] && grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
    lap; row "host: binfmt_misc qemu-aarch64" "$WALL" "$CPU" "registered ($QEMU)"
elif [[ -d "$CACHE/pi-edge-$edge_key" ]]; then
    PI_CHECK_MODE=qemu-L
    say "WARNING: qemu-aarch64 is not registered with binfmt_misc here: running the cached Pi with"
    say "WARNING: qemu-aarch64-static -L instead; the Pi cannot be rebuilt here"
    lap; row "host: binfmt_misc qemu-aarch64" "$WALL" "$CPU" \
        "NOT registered: fallback qemu-aarch64-static -L on the cached Pi ($QEMU)"
else
    die "qemu-aarch64 cannot be registered with binfmt_misc here (no binfmt_misc, or not allowed in this container),
    and no emulated Pi is cached: it cannot be built without binfmt (dpkg runs arm64 programs).
    The Raspberry Pi path is NOT checked. Run 'make pi-check' where binfmt_misc can be mounted
    (a VM, or a privileged container), as CI does; then a run here can use the cached Pi."
fi

# ---- 2. x86: model, fields, crops (in the background: it overlaps the Pi's build) ----------------
[[ -d "$CACHE/pi-model-$model_key" ]] && model_how=reused || model_how="trained (64 px ShuffleNetV2, 40 short epochs) + converted"
(
    TIMES_FILE="$ROWS.times-model"
    mark
    ensure_layer model "$model_key" build_model >"$ROWS.model"
    lap
    echo "$WALL	$CPU" >"$ROWS.model-time"
) &
MODEL_PID=$!

# ---- 3. the Pi -----------------------------------------------------------------------------------
if [[ "$PI_CHECK_MODE" == chroot ]]; then
    mark
    [[ -d "$CACHE/pi-base-$base_key" ]] && how=cached || how=built
    BASE="$(ensure_layer base "$base_key" build_base)"
    lap; row "pi: rootfs (debootstrap $PI_SUITE arm64 minbase)" "$WALL" "$CPU" "$how: $(in_pi "$BASE" python3 -V 2>&1)"
    mark
    [[ -d "$CACHE/pi-edge-$edge_key" ]] && how=cached || how=built
    PI_ROOT="$(ensure_layer edge "$edge_key" build_edge "$BASE")"
else
    mark
    how=cached PI_ROOT="$CACHE/pi-edge-$edge_key"
fi
copy_repo "$PI_ROOT"     # this checkout's code (the venvs hold editable installs of $PI_REPO)
lap; row "pi: CytoEdge installed (setup.sh venv + [edge] venv)" "$WALL" "$CPU" "$how (versions: the rows of each run)"

wait "$MODEL_PID" || die "building the x86 model failed (see above)"
MODEL_PID=""
MODEL_DIR="$(cat "$ROWS.model")"
IFS=$'\t' read -r model_wall model_cpu <"$ROWS.model-time"
row "x86: model (beside the Pi's build)" "$model_wall" "$model_cpu" "$model_how: int8 + fp32 TFLite"
remove_tree "$WORK"
mkdir -p "$WORK/fields" "$WORK/crops"
cp -a "$MODEL_DIR/model" "$WORK/"
# 3 synthetic 1280x960 slide fields and 2 single-cell crops per class: emulated inference is slow
find "$MODEL_DIR/data/fields" -name '*.png' | sort | head -3 | xargs cp -t "$WORK/fields/"
for cls in "$MODEL_DIR"/data/im_*; do
    find "$cls/CROPPED" -name '*.bmp' | sort | head -2 | while read -r f; do
        cp "$f" "$WORK/crops/$(basename "${cls#*/im_}")_$(basename "$f")"
    done
done

# ---- 4. the same steps on x86 and in the Pi --------------------------------------------------------
add_step_rows() {  # add_step_rows LABEL DIR
    local name wall_s cpu_s rc
    while IFS=$'\t' read -r name wall_s cpu_s rc; do
        if [[ "$rc" == 0 ]]; then row "$1: $name" "$wall_s s" "$cpu_s s" "ok"
        else row "$1: $name" "$wall_s s" "$cpu_s s" "FAILED (exit $rc): see $2/$name.log"; FAILED=1; fi
    done <"$2/steps.tsv"
}

PATH="$VENV/bin:$PATH" PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}" \
    bash "$CHECK_DIR/steps.sh" "$WORK/x86" "$WORK/model" "$WORK/fields" "$WORK/crops" auto bench
add_step_rows "x86" "$WORK/x86"

# label cpu venv board bench: Pi 4 and Pi 5 with the plain [edge] venv (numpy 2), Pi 4 with setup.sh's
RUNS=("pi4 cortex-a72 $PI_NP2_VENV rpi4 bench" "pi5 cortex-a76 $PI_NP2_VENV rpi5 bench"
      "pi4-setup-venv cortex-a72 $PI_REPO/.venv rpi4 -")
[[ "$PI_CHECK_MODE" == chroot ]] && seen=/work || seen="$WORK"   # WORK as the Pi's programs name it
mark
pids=()
for spec in "${RUNS[@]}"; do
    read -r label cpu venv board bench <<<"$spec"
    [[ " ${CPUS[*]} " == *" $cpu "* ]] || continue
    bash "$CHECK_DIR/pi-run.sh" "$PI_ROOT" "$cpu" "$venv" "$board" "$label" "$WORK" "$bench" >"$WORK/$label.run.log" 2>&1 &
    pids+=($!)
    [[ "$PI_CHECK_MODE" == chroot ]] || wait $!   # qemu -L: one at a time (one /proc/cpuinfo file)
done
for pid in "${pids[@]}"; do wait "$pid" || FAILED=1; done
lap; row "pi: ${#pids[@]} runs side by side" "$WALL" "$CPU" "$EMULATED_NOTE"
for spec in "${RUNS[@]}"; do
    read -r label cpu _ <<<"$spec"
    [[ -f "$WORK/$label/steps.tsv" ]] || continue
    add_step_rows "$label $cpu ($EMULATED_NOTE)" "$WORK/$label"
    "$VENV/bin/python" "$CHECK_DIR/compare.py" "$WORK/x86" "$WORK/$label" --roots "$WORK" "$seen" \
        --outs "$WORK/x86" "$seen/$label" --rows "$ROWS" --label "$label vs x86" >/dev/null || FAILED=1
done

# ---- 5. the systemd unit -----------------------------------------------------------------------------
mark
cp "$REPO_ROOT/hardware/systemd/cytoedge.service" "$PI_ROOT/etc/systemd/system/cytoedge.service"
if [[ "$PI_CHECK_MODE" == chroot ]]; then
    verify() { in_pi "$PI_ROOT" systemd-analyze "$@"; }
else
    verify() { QEMU_CPU=cortex-a72 qemu-aarch64-static -L "$PI_ROOT" "$PI_ROOT/usr/bin/systemd-analyze" "$@"; }
fi
if out="$(verify verify /etc/systemd/system/cytoedge.service 2>&1)" && [[ -z "$out" ]]; then
    exposure="$(verify security --offline=yes /etc/systemd/system/cytoedge.service 2>/dev/null | grep -o 'Overall exposure level.*' | sed 's/for [^:]*: //' || true)"
    lap; row "pi: systemd-analyze verify cytoedge.service" "$WALL" "$CPU" "ok; ${exposure:-exposure not rated}"
else
    lap; row "pi: systemd-analyze verify cytoedge.service" "$WALL" "$CPU" "FAILED: ${out//$'\n'/ | }"; FAILED=1
fi
rm -f "$PI_ROOT/etc/systemd/system/cytoedge.service"

# ---- the table -----------------------------------------------------------------------------------------
MARK_US=$START_US MARK_CPU=0
lap
echo
echo "make pi-check: the Raspberry Pi path on an emulated Pi (qemu-user, Debian $PI_SUITE arm64) compared with x86"
echo "Emulated times are NOT Raspberry Pi timings: they measure qemu on this host. Real boards: none yet."
echo "CPU = user + system seconds (on a shared machine the wall time depends on what else runs)."
column -t -s $'\t' -N step,wall,CPU,result "$ROWS" 2>/dev/null || cat "$ROWS"
echo "total $WALL wall, $CPU CPU ($PI_CHECK_MODE mode, load average now $(cut -d' ' -f1-3 /proc/loadavg));"
echo "outputs and logs in $WORK"
if [[ "$FAILED" != 0 ]]; then
    echo "pi-check: FAILED (see the rows above)" >&2
    exit 1
fi
echo "pi-check: passed"
