#!/usr/bin/env bash
# One side of `make pi-check`: the same commands on x86 and in the emulated Pi, each timed.
#
#   PATH=VENV/bin:$PATH steps.sh OUT MODEL FIELDS CROPS BOARD [bench|-] [REFERENCE]
#
# Writes into OUT: the app's store (store/), the slide report (report.json, report.md), the
# classify table (classify.json), the classifier's outputs
# crop by crop and its input tensors (probe.json, inputs-*.npy; with REFERENCE, the reference
# machine's tensors run here too), bench-device's result files (bench/, with "bench"), a log per
# step and steps.tsv (step, wall seconds, CPU seconds, exit status). A failed step is recorded,
# not fatal: compare.py and pi-check.sh report it. BOARD is a profile name, or "auto" to detect it.
set -uo pipefail
out=$1 model=$2 fields=$3 crops=$4 board=$5 bench=${6:-} reference=${7:-}
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=timing.sh
source "$here/timing.sh"
slide=pi-check
rm -rf "$out" && mkdir -p "$out"
: >"$out/steps.tsv"
board_opt=()
[[ "$board" == auto ]] || board_opt=(--board "$board")

step() {  # step NAME COMMAND...: run it, its output in OUT/NAME.log, its times and status in steps.tsv
    local name=$1 t0 c0 rc
    shift
    t0=$(now_us)
    cpu_now "$out/.times"
    c0=$CPU_US
    "$@" >"$out/$name.log" 2>&1
    rc=$?
    cpu_now "$out/.times"
    printf '%s\t%s\t%s\t%s\n' "$name" "$(secs $(( $(now_us) - t0 )))" "$(secs $(( CPU_US - c0 )))" "$rc" \
        >>"$out/steps.tsv"
    return 0
}

# a fresh store per run: a rerun on the same store would resume instead of classifying again
step edge-app edge-app --model "$model" --source "$fields" --slide "$slide" --out "$out/store" \
    "${board_opt[@]}" --threads 2 --save-crops review
step report edge-app report --slide "$slide" --out "$out/store" --report-format json -o "$out/report.json"
step report-md edge-app report --slide "$slide" --out "$out/store" --report-format md -o "$out/report.md"
step classify edge-app classify --model "$model" "$crops" --json "$out/classify.json"
step probe python "$here/probe.py" "$model" "$fields" "$crops" "$out" --threads 2 ${reference:+--reference "$reference"}
if [[ "$bench" == bench ]]; then
    step bench-device bench-device "$model" --formats tflite-int8,tflite-fp32 --threads 2 "${board_opt[@]}" \
        --out "$out/bench" --warmup 1 --min-runs 3 --min-time 0
fi
exit 0
