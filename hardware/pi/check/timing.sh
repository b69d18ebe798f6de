# shellcheck shell=bash
# Wall and CPU time of what a bash script runs (sourced by steps.sh and pi-check.sh).
# The CPU time (user + system of the finished children) is what counts on a busy or shared
# machine: wall time there depends on what else runs.

now_us() { echo "${EPOCHREALTIME/[.,]/}"; }

# cpu_now FILE: sets CPU_US, this shell's finished children's CPU time in microseconds. `times` is
# a builtin run in this shell: in a $(...) subshell it would count the subshell's children only.
cpu_now() {
    local line="" l r
    times >"$1"
    while IFS= read -r l; do line=$l; done <"$1"
    if [[ "$line" =~ ([0-9]+)m([0-9]+)[.,]([0-9]+)s\ ([0-9]+)m([0-9]+)[.,]([0-9]+)s ]]; then
        r=("${BASH_REMATCH[@]}")
        CPU_US=$(( (10#${r[1]} * 60 + 10#${r[2]} + 10#${r[4]} * 60 + 10#${r[5]}) * 1000000
                   + (10#${r[3]} + 10#${r[6]}) * 10 ** (6 - ${#r[3]}) ))
    else
        CPU_US=0
    fi
}

secs() { printf '%d.%02d' $(($1 / 1000000)) $(($1 % 1000000 / 10000)); }
