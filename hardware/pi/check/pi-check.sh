#!/usr/bin/env bash
# make pi-check: CytoEdge's Raspberry Pi path, run on an emulated Pi and compared with x86.
#
# A Raspberry Pi OS Bookworm userland is Debian bookworm arm64 with Python 3.11; qemu-user runs
# its programs on this x86 machine. Only the app runs under emulation; nothing is built there:
#   1. the Pi's root (root.sh, cached under ~/.cache/cytoedge keyed by the hash of the pin list
#      and of root.sh): Debian's arm64 packages unpacked on the host, the wheels of
#      hardware/pi/requirements.txt (what setup.sh installs on a real Pi) by the host's pip;
#   2. on x86, beside it: a small model trained and converted (cached), synthetic fields and crops;
#   3. this checkout into ROOT/opt/cyto (pip install --no-deps --target, pure Python);
#   4. the same steps (steps.sh) on x86 and in the Pi, as a Pi 4 (QEMU_CPU=cortex-a72) and a Pi 5
#      (cortex-a76) side by side: edge-app on the fields, edge-app report, edge-app classify, the
#      classifier crop by crop (probe.py), bench-device;
#   5. every Pi run compared with x86 (compare.py), cell by cell;
# and prints a table: step, wall time, CPU time, result. Emulated timings are not board timings.
#
# Needs root (it installs Debian's qemu-user-static when missing), apt-get and dpkg-deb (Debian's own),
# unshare (util-linux) and, for a cold cache, the network (Debian's mirror and the package index).
# VENV is the x86 venv with the [all] extras (default .venv). CYTOEDGE_CACHE moves the cache;
# PI_CHECK_CPUS="cortex-a72" runs one CPU model. Exits 1 with one line on stderr when anything differs.
set -euo pipefail

CHECK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$CHECK_DIR/../../.." && pwd)"
VENV="$(cd "${VENV:-$REPO_ROOT/.venv}" 2>/dev/null && pwd)" || VENV=${VENV:-$REPO_ROOT/.venv}
CACHE="${CYTOEDGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cytoedge}"
read -r -a CPUS <<<"${PI_CHECK_CPUS:-cortex-a72 cortex-a76}"
# shellcheck source=root.sh
source "$CHECK_DIR/root.sh"
# shellcheck source=timing.sh
source "$CHECK_DIR/timing.sh"

[[ -x "$VENV/bin/edge-convert" ]] || die "no x86 venv at $VENV: run 'make venv' (make test builds it) or pass VENV=..."
[[ "$("$HOST_PY" -c 'import sys; print(sys.version_info[:2] == (3, 11))')" == True ]] \
    || die "$HOST_PY is not Python 3.11: the Pi's .pyc files must be compiled by the same Python minor version"
[[ "$(id -u)" == 0 ]] || die "it needs root (installs qemu-user-static; a private binfmt_misc): run 'sudo make pi-check' (CI runs as root)"
for tool in apt-get dpkg-deb unshare; do
    command -v "$tool" >/dev/null || die "$tool is missing: pi-check needs a Debian host (apt-get, dpkg-deb, util-linux)"
done
unshare --user --map-root-user --mount true 2>/dev/null \
    || die "unshare --user --mount is not allowed here: the emulated Pi's child processes need a private binfmt_misc"

mkdir -p "$CACHE"
exec 9>"$CACHE/.pi-check.lock"
flock -w 1800 9 || die "another pi-check holds $CACHE/.pi-check.lock"
clean_partials
WORK="$CACHE/pi-check-last"
ROWS="$(mktemp)"
MODEL_PID=""
pids=()
kill_tree() {  # a background job and everything it started (by process id, children first)
    local child
    for child in $(pgrep -P "$1" 2>/dev/null); do kill_tree "$child"; done
    kill "$1" 2>/dev/null || true
}
cleanup() {
    local pid
    for pid in $MODEL_PID "${pids[@]}"; do kill_tree "$pid"; done
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
        edge-train synth --out data --per-class 24 --frames 4 --fields 3 --non-cells 6 --seed 0
        edge-train --data data --model shufflenet_v2_x1_0 --input-size 64 --folds 2 --fold 0 --epochs 40 \
            --lr 0.05 --grad-clip 2 --loss ce --no-progress --seed 0 --threads 1 --out runs
        edge-convert runs/fold_0 --int8 --calib-images 20 --max-batch 8 --max-drop 100 --out model
    ) >"$out.log" 2>&1 || { tail -20 "$out.log" >&2; die "building the x86 model failed: full log $out.log"; }
    rm -f "$out.log"
}
build_root_timed() {  # the root layer, with one table row per part
    ROOT_ROWS="$ROWS" build_root "$1" >"$ROWS.root"
}
model_key="$( (declare -f build_model; cd "$REPO_ROOT" && git ls-files -z --cached --others --exclude-standard \
    -- train convert edge_app/card.py edge_app/preprocess.py pyproject.toml | sort -z | xargs -0 cat) | sha256sum | cut -c1-12)"
root_key="$( (declare -f build_root private_apt pi_wheel_options; echo "$PI_SUITE $PI_DEBS $PI_DEBS_SKIPPED"; \
    cat "$PI_PINS") | sha256sum | cut -c1-12)"

# ---- 0. x86: model, fields, crops (in the background: it overlaps qemu's install and the Pi's root) ----
[[ -d "$CACHE/pi-model-$model_key" ]] && model_how=reused || model_how="trained (64 px ShuffleNetV2, 40 short epochs) + converted"
(
    TIMES_FILE="$ROWS.times-model"
    mark
    ensure_layer model "$model_key" build_model >"$ROWS.model"
    lap
    echo "$WALL	$CPU" >"$ROWS.model-time"
) &
MODEL_PID=$!

# ---- 1. qemu on the host ----------------------------------------------------------------------------
mark
command -v qemu-aarch64-static >/dev/null && qemu_how=present || qemu_how=installed
ensure_qemu
lap; row "host: qemu-user-static" "$WALL" "$CPU" "$qemu_how: $(qemu-aarch64-static --version | head -1)"

# ---- 2. the Pi's root ------------------------------------------------------------------------------
mark
if [[ -d "$CACHE/pi-root-$root_key" ]]; then
    PI_ROOT="$CACHE/pi-root-$root_key"
    lap; row "pi: root (Debian $PI_SUITE arm64 + wheels)" "$WALL" "$CPU" "cached: $PI_ROOT"
else
    # in the background and waited for, so that a TERM or INT (CI's timeout) is handled at once
    ensure_layer root "$root_key" build_root_timed >"$ROWS.root-path" &
    pids=($!)
    wait "${pids[0]}" || die "building the Pi's root failed (see above)"
    pids=()
    PI_ROOT="$(cat "$ROWS.root-path")"
    lap
    n_debs="$(cat "$ROWS.root")"
    row "pi: root (Debian $PI_SUITE arm64 + wheels)" "$WALL" "$CPU" \
        "built: $n_debs .debs unpacked (dpkg-deb -x), stdlib compiled on the host, $(grep -c '==' "$PI_PINS") wheels ($(basename "$PI_PINS"))"
fi
py_version="$(QEMU_CPU=cortex-a72 QEMU_LD_PREFIX="$PI_ROOT" qemu-aarch64-static "$PI_ROOT/usr/bin/python3.11" -c \
    'import platform; print(platform.python_version(), platform.machine())' 2>&1)" \
    || die "the Pi's python3.11 does not start under qemu: $py_version"

# ---- 3. this checkout into the Pi --------------------------------------------------------------------
mark
install_project "$PI_ROOT"
lap; row "pi: CytoEdge into ROOT/opt/cyto (pip --no-deps --target)" "$WALL" "$CPU" "ok: Python $py_version"
# picamera2 (apt, on a real Pi) encodes JPEG with simplejpeg: the pinned wheel must work under the pinned numpy
mark
jpeg_code='import numpy, simplejpeg
simplejpeg.decode_jpeg(simplejpeg.encode_jpeg(numpy.zeros((16, 16, 3), numpy.uint8)))
print("simplejpeg", simplejpeg.__version__, "encodes and decodes under numpy", numpy.__version__)'
if jpeg="$(QEMU_CPU=cortex-a72 QEMU_LD_PREFIX="$PI_ROOT" PYTHONPATH=/opt/site PYTHONNOUSERSITE=1 \
        qemu-aarch64-static "$PI_ROOT/usr/bin/python3.11" -c "$jpeg_code" 2>&1)"; then
    lap; row "pi: picamera2's JPEG encoder with the Pi's numpy" "$WALL" "$CPU" "ok: $jpeg"
else
    lap; row "pi: picamera2's JPEG encoder with the Pi's numpy" "$WALL" "$CPU" "FAILED: $(tail -1 <<<"$jpeg")"; FAILED=1
fi

wait "$MODEL_PID" || die "building the x86 model failed (see above)"
MODEL_PID=""
MODEL_DIR="$(cat "$ROWS.model")"
IFS=$'\t' read -r model_wall model_cpu <"$ROWS.model-time"
row "x86: model (beside qemu's install and the Pi's root)" "$model_wall" "$model_cpu" "$model_how: int8 + fp32 LiteRT, model card"
rm -rf --one-file-system "$WORK"
mkdir -p "$WORK/fields" "$WORK/crops"
cp -a "$MODEL_DIR/model" "$WORK/"
# 2 synthetic 1280x960 slide fields and 2 single-cell crops per class: emulated inference is slow
find "$MODEL_DIR/data/fields" -name '*.png' | sort | head -2 | xargs cp -t "$WORK/fields/"
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

PATH="$VENV/bin:$PATH" PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}" XDG_CACHE_HOME="$WORK/x86.home/cache" \
    bash "$CHECK_DIR/steps.sh" "$WORK/x86" "$WORK/model" "$WORK/fields" "$WORK/crops" auto bench
add_step_rows "x86" "$WORK/x86"

RUNS=("pi4 cortex-a72 rpi4" "pi5 cortex-a76 rpi5")   # label, CPU model, board profile
mark
pids=()
for spec in "${RUNS[@]}"; do
    read -r label cpu board <<<"$spec"
    [[ " ${CPUS[*]} " == *" $cpu "* ]] || continue
    bash "$CHECK_DIR/pi-run.sh" "$PI_ROOT" "$cpu" "$board" "$label" "$WORK" bench >"$WORK/$label.run.log" 2>&1 &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || FAILED=1; done
lap; row "pi: ${#pids[@]} runs side by side" "$WALL" "$CPU" "$EMULATED_NOTE"
pids=()
for spec in "${RUNS[@]}"; do
    read -r label cpu _ <<<"$spec"
    if [[ ! -f "$WORK/$label/steps.tsv" ]]; then
        [[ " ${CPUS[*]} " == *" $cpu "* ]] && { row "$label $cpu" - - "FAILED: no steps ran: see $WORK/$label.run.log"; FAILED=1; }
        continue
    fi
    add_step_rows "$label $cpu ($EMULATED_NOTE)" "$WORK/$label"
    "$VENV/bin/python" "$CHECK_DIR/compare.py" "$WORK/x86" "$WORK/$label" --roots "$WORK" \
        --rows "$ROWS" --label "$label vs x86" >/dev/null || FAILED=1
done

# ---- the table -----------------------------------------------------------------------------------------
MARK_US=$START_US MARK_CPU=0
lap
echo
echo "make pi-check: the Raspberry Pi path on an emulated Pi (qemu-user, Debian $PI_SUITE arm64) compared with x86"
echo "Emulated times are NOT Raspberry Pi timings: they measure qemu on this host. Real boards: none yet."
echo "CPU = user + system seconds (on a shared machine the wall time depends on what else runs)."
column -t -s $'\t' -N step,wall,CPU,result "$ROWS" 2>/dev/null || cat "$ROWS"
echo "total $WALL wall, $CPU CPU (load average now $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs:" \
     "$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1));"
echo "outputs and logs in $WORK"
if [[ "$FAILED" != 0 ]]; then
    bad="$(awk -F'\t' '$4 ~ /^(FAILED|DIFFERS)/ {print $1; exit}' "$ROWS")"
    echo "pi-check: FAILED: ${bad:-see the rows above} (and every row marked FAILED or DIFFERS above; logs in $WORK)" >&2
    exit 1
fi
echo "pi-check: passed"
