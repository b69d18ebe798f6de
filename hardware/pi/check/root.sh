# shellcheck shell=bash
# The emulated Raspberry Pi of `make pi-check`, built on the host without emulating any build:
# Debian bookworm's arm64 packages (Raspberry Pi OS Bookworm's base: Python 3.11) fetched by a
# private apt and unpacked with dpkg-deb -x (no maintainer script, no debootstrap second stage),
# the stdlib byte-compiled by the host's python3.11 (same magic number), and the Pi's wheels
# (hardware/pi/requirements.txt, what setup.sh installs on a real Pi) installed by the host's pip
# for aarch64. Sourced by pi-check.sh; the host's own apt and dpkg state are never touched.

PI_SUITE=bookworm
# Python and what the wheels load from the system (opencv-python: libGL, GLib; LiteRT: libgomp).
# setup.sh installs the same libraries on a real Pi (tests/pi/test_pi_packages.py holds them equal).
PI_DEBS="python3.11 libgl1 libglib2.0-0 libgomp1 libstdc++6 tzdata ca-certificates"
# libgl1 drags in Mesa and LLVM; `import cv2` needs only glvnd's libGL.so.1
PI_DEBS_SKIPPED='^(libllvm|libgl1-mesa-dri|libglx-mesa0|libz3-|libicu|libxml2|libdrm|libsensors)'
PI_PINS="$REPO_ROOT/hardware/pi/requirements.txt"
# The host's Python 3.11 (the x86 venv's) byte-compiles for the Pi's 3.11 and runs pip for aarch64
HOST_PY="${VENV:-}/bin/python"

say() { printf 'pi-check: %s\n' "$*" >&2; }
die() { printf 'pi-check: error: %s\n' "$*" >&2; exit 1; }

# The Debian mirrors this host's apt uses (the Pi's packages come from the same place).
host_mirror() {
    if [[ -n "${CYTOEDGE_PI_MIRROR:-}" ]]; then echo "$CYTOEDGE_PI_MIRROR"; return; fi
    apt-cache policy 2>/dev/null | awk -v s="$PI_SUITE/main" '$3 == s && $2 ~ /^https?:/ {print $2; exit}'
}
host_security_mirror() {
    apt-cache policy 2>/dev/null | awk -v s="$PI_SUITE-security/main" '$3 == s && $2 ~ /^https?:/ {print $2; exit}'
}

# private_apt DIR: an APT_CONFIG for arm64 whose state, cache and sources all live in DIR.
private_apt() {
    local dir=$1 mirror security key=/usr/share/keyrings/debian-archive-keyring.gpg
    mirror="$(host_mirror)"
    [[ -n "$mirror" ]] || die "no Debian $PI_SUITE mirror in this host's apt sources: set CYTOEDGE_PI_MIRROR=http://deb.debian.org/debian"
    security="$(host_security_mirror)"
    [[ -n "$security" ]] || security="${mirror%/debian}/debian-security"
    [[ -r "$key" ]] || die "$key is missing: install Debian's debian-archive-keyring"
    mkdir -p "$dir"/state/lists/partial "$dir"/cache/archives/partial "$dir"/etc/apt.conf.d \
        "$dir"/etc/preferences.d "$dir"/etc/trusted.gpg.d "$dir"/etc/sources.list.d
    : >"$dir/state/status"
    {
        echo "deb [arch=arm64 signed-by=$key] $mirror $PI_SUITE main"
        echo "deb [arch=arm64 signed-by=$key] $mirror $PI_SUITE-updates main"
        echo "deb [arch=arm64 signed-by=$key] $security $PI_SUITE-security main"
    } >"$dir/etc/sources.list"
    cat >"$dir/apt.conf" <<EOF
APT::Architecture "arm64";
APT::Architectures { "arm64"; };
APT::Install-Recommends "false";
Dir::State "$dir/state";
Dir::State::status "$dir/state/status";
Dir::Cache "$dir/cache";
Dir::Etc "$dir/etc";
Dir::Etc::SourceList "$dir/etc/sources.list";
Dir::Etc::SourceParts "$dir/etc/sources.list.d";
Dir::Etc::Parts "$dir/etc/apt.conf.d";
Dir::Etc::Preferences "$dir/etc/preferences";
Dir::Etc::PreferencesParts "$dir/etc/preferences.d";
Dir::Etc::TrustedParts "$dir/etc/trusted.gpg.d";
Debug::NoLocking "true";
EOF
}

# The pip options that pick aarch64 / CPython 3.11 wheels. pip 23 does not expand manylinux_2_36
# to the older tags, so every manylinux_2_NN is named.
pi_wheel_options() {
    local n
    printf '%s\n' --only-binary=:all: --no-deps --implementation cp --python-version 3.11 --abi cp311 \
        --platform manylinux2014_aarch64
    for n in $(seq 17 36); do printf '%s\n' --platform "manylinux_2_${n}_aarch64"; done
}

# part_start / part_end NAME RESULT: one timed row of the root's build, appended to $ROOT_ROWS
# (pi-check.sh's table: step, wall, CPU, result; timing.sh's clocks).
part_start() { PART_US=$(now_us); cpu_now "$PART_TIMES"; PART_CPU=$CPU_US; }
part_end() {
    cpu_now "$PART_TIMES"
    printf 'pi: root: %s\t%s s\t%s s\t%s\n' "$1" "$(secs $(( $(now_us) - PART_US )))" \
        "$(secs $(( CPU_US - PART_CPU )))" "$2" >>"${ROOT_ROWS:-/dev/null}"
}

# build_root OUT: the Debian userland, then the wheels; prints the number of .debs unpacked.
build_root() {
    local out=$1 apt="$1.apt" deb n=0 opts=() PART_TIMES="$1.times"
    rm -rf "$apt"
    part_start
    private_apt "$apt"
    (
        export APT_CONFIG="$apt/apt.conf"
        # shellcheck disable=SC2086
        apt-get -q update >"$apt/log" 2>&1 && apt-get -q -y --download-only install $PI_DEBS >>"$apt/log" 2>&1
    ) || { tail -20 "$apt/log" >&2; die "apt (arm64, download only) failed: full log $apt/log"; }
    part_end "apt-get --download-only (private APT_CONFIG, arm64)" \
        "$(find "$apt/cache/archives" -name '*.deb' | wc -l) .debs, $(du -sm "$apt/cache/archives" | cut -f1) MB"
    part_start
    for deb in "$apt"/cache/archives/*.deb; do
        [[ "$(basename "$deb")" =~ $PI_DEBS_SKIPPED ]] && continue
        dpkg-deb -x "$deb" "$out" || die "dpkg-deb -x $deb failed"
        n=$((n + 1))
    done
    [[ -x "$out/usr/bin/python3.11" ]] || die "the arm64 root has no usr/bin/python3.11 after unpacking $n packages"
    rm -rf "$apt"
    # The root's own /tmp and /root (otherwise they fall through to the host's), and a /proc whose
    # cpuinfo each run bind-mounts (qemu serves ROOT/proc/cpuinfo: LiteRT crashes on the host's x86 one).
    # No /sys: the host's is what keeps XNNPACK on.
    mkdir -p "$out/tmp" "$out/root" "$out/proc" "$out/opt/site"
    chmod 1777 "$out/tmp"
    : >"$out/proc/cpuinfo"
    # Debian compiles the stdlib in a maintainer script; the host's python3.11 writes the same .pyc files
    "$HOST_PY" -m compileall -q -j 0 -s "$out" -p / "$out/usr/lib/python3.11" >/dev/null 2>&1 || true
    part_end "dpkg-deb -x + stdlib compiled on the host" "$n .debs unpacked (Mesa/LLVM skipped), $(du -sm "$out" | cut -f1) MB"
    part_start
    mapfile -t opts < <(pi_wheel_options)
    "$HOST_PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$out/opt/site" \
        "${opts[@]}" -r "$PI_PINS" >"$out.pip.log" 2>&1 \
        || { grep -v '^WARNING: Location' "$out.pip.log" | tail -20 >&2; die "pip (aarch64 wheels of $PI_PINS) failed: full log $out.pip.log"; }
    rm -f "$out.pip.log"
    part_end "host pip --target, aarch64 wheels" "$(grep -c '==' "$PI_PINS") pinned wheels, $(du -sm "$out/opt/site" | cut -f1) MB"
    rm -f "$PART_TIMES"
    echo "$n"
}

# install_project ROOT: this checkout (tracked and new files, not ignored) into ROOT/opt/cyto, pure Python.
# Built from a copy, so that no build/ folder lands in the checkout.
install_project() {
    local root=$1 src
    src="$(mktemp -d)"
    (cd "$REPO_ROOT" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf -) | tar -xf - -C "$src"
    rm -rf "$root/opt/cyto"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
        --no-build-isolation --no-compile --target "$root/opt/cyto" "$src" >"$src.log" 2>&1 \
        || { tail -20 "$src.log" >&2; rm -rf "$src"; die "pip install --target $root/opt/cyto . failed"; }
    "$HOST_PY" -m compileall -q -s "$root" -p / "$root/opt/cyto" >/dev/null 2>&1 || true
    rm -rf "$src" "$src.log"
}

# ensure_qemu: Debian's qemu-user-static on the host (installed when missing: needs root and apt).
ensure_qemu() {
    command -v qemu-aarch64-static >/dev/null && return 0
    command -v apt-get >/dev/null || die "qemu-aarch64-static is missing and there is no apt-get: install qemu-user-static"
    say "installing Debian's qemu-user-static"
    { apt-get -o DPkg::Lock::Timeout=600 update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
            qemu-user-static; } >"$CACHE/.qemu-install.log" 2>&1 \
        || { tail -5 "$CACHE/.qemu-install.log" >&2; die "apt-get install qemu-user-static failed: log $CACHE/.qemu-install.log"; }
    rm -f "$CACHE/.qemu-install.log"
    command -v qemu-aarch64-static >/dev/null || die "qemu-user-static installed no qemu-aarch64-static"
}

# ---- the cache -----------------------------------------------------------------------------------
# ensure_layer NAME KEY BUILD_FN: $CACHE/pi-NAME-KEY, built when missing in a scratch folder that is
# renamed into place only when complete (a killed build is never reused). Older keys are removed.
ensure_layer() {
    local name=$1 key=$2 build=$3 final tmp old
    final="$CACHE/pi-$name-$key"
    if [[ -d "$final" ]]; then echo "$final"; return; fi
    tmp="$CACHE/.pi-$name-$key.partial.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    "$build" "$tmp" >&2
    mv -T "$tmp" "$final"
    for old in "$CACHE"/pi-"$name"-*; do [[ "$old" == "$final" ]] || rm -rf --one-file-system "$old"; done
    echo "$final"
}

clean_partials() {
    rm -rf --one-file-system "$CACHE"/.pi-*.partial.* 2>/dev/null
    return 0
}
