# shellcheck shell=bash
# The emulated Raspberry Pi of `make pi-check`: an arm64 Debian bookworm userland (what Raspberry
# Pi OS Bookworm is built on: Python 3.11) run by qemu-user on this x86 machine.
# Sourced by pi-check.sh. Two cached layers, each keyed by the hash of what builds it, each built
# in a scratch folder and renamed into place only when complete (a killed build is never reused):
#   base  debootstrap minbase + the host's CA certificates and pip settings + the user pi
#   edge  base + CytoEdge installed by hardware/pi/setup.sh (picamera2 stand-in) + an [edge] venv
# Every mount is made in a private mount namespace (pi-check.sh) and unmounted on exit.

PI_SUITE=bookworm
PI_PACKAGES=python3,python3-venv,python3-pip,ca-certificates,sudo,systemd
PI_NP2_VENV=/opt/cytoedge-edge          # plain `pip install -e .[edge]`: numpy 2, ai-edge-litert 2.3
PI_REPO=/home/pi/cytoedge               # where setup.sh is run from, as on a Pi (its venv: $PI_REPO/.venv)
PI_FAKE_APT=/opt/cytoedge-fake-apt      # a flat apt repository holding the picamera2 stand-in

say() { printf 'pi-check: %s\n' "$*" >&2; }
die() { printf 'pi-check: error: %s\n' "$*" >&2; exit 1; }

# sha256 of files (names excluded), first 12 hex digits
hash_files() { cat "$@" | sha256sum | cut -c1-12; }

# The Debian mirror this host's apt uses (the Pi's packages come from the same place).
host_mirror() {
    if [[ -n "${CYTOEDGE_PI_MIRROR:-}" ]]; then echo "$CYTOEDGE_PI_MIRROR"; return; fi
    apt-cache policy 2>/dev/null | awk -v s="$PI_SUITE/main" '$3 == s && $2 ~ /^https?:/ {print $2; exit}'
}

# Every mount point at or below $1, deepest first.
mounts_below() {
    local root; root="$(readlink -f "$1")"
    awk -v r="$root" '$5 == r || index($5, r "/") == 1 {print $5}' /proc/self/mountinfo | sort -r
}

unmount_all() {
    local m
    for m in $(mounts_below "$1"); do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
}

# Remove a folder that may still hold mounts from a killed run, never crossing into them.
remove_tree() {
    [[ -e "$1" ]] || return 0
    unmount_all "$1"
    rm -rf --one-file-system "$1"
}

# Mount what the Pi's programs need: /proc with an ARM cpuinfo over the host's (LiteRT's CPU
# detection crashes on an x86 one), /sys (without it XNNPACK is silently off), /dev.
pi_mount() {
    local root=$1 cpu=$2
    mount -t proc proc "$root/proc"
    mount --rbind /sys "$root/sys" && mount --make-rslave "$root/sys"
    mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev"
    mount --bind "$CHECK_DIR/cpuinfo/$cpu" "$root/proc/cpuinfo"
    cp -L /etc/resolv.conf "$root/etc/resolv.conf"
}

# Run a command in the Pi as root, with a clean environment (the host's PIP_* and paths stay out).
# $QEMU_CPU picks the CPU model qemu emulates (its default, "max", gives wrong XNNPACK int8 results).
in_pi() {
    local root=$1; shift
    local pass=() v
    for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
        [[ -n "${!v:-}" ]] && pass+=("$v=${!v}")
    done
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 ${PIP_NO_COMPILE:+PIP_NO_COMPILE=1} \
        DEBIAN_FRONTEND=noninteractive QEMU_CPU="${QEMU_CPU:-cortex-a72}" "${pass[@]}" \
        chroot "$root" "$@"
}

# ---- layer 1: base -------------------------------------------------------------------------------
build_base() {
    local out=$1 mirror
    mirror="$(host_mirror)"
    [[ -n "$mirror" ]] || die "no Debian $PI_SUITE mirror in this host's apt sources: set CYTOEDGE_PI_MIRROR=http://deb.debian.org/debian"
    say "base: debootstrap --arch=arm64 --variant=minbase $PI_SUITE from $mirror (first stage, host tools)"
    debootstrap --arch=arm64 --foreign --variant=minbase --include="$PI_PACKAGES" "$PI_SUITE" "$out" "$mirror" \
        >"$out.log" 2>&1 || { tail -20 "$out.log" >&2; die "debootstrap (first stage) failed: full log $out.log"; }
    # pip inside must trust what the host trusts (e.g. a proxy's authority): the second stage's
    # update-ca-certificates (configuring ca-certificates) adds these to the Pi's bundle
    mkdir -p "$out/usr/local/share/ca-certificates"
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$out/usr/local/share/ca-certificates/"
    fi
    say "base: second stage, under emulation (about 3 minutes on 2 cores)"
    in_pi "$out" /debootstrap/debootstrap --second-stage >>"$out.log" 2>&1 \
        || { tail -20 "$out.log" >&2; die "debootstrap --second-stage failed: full log $out.log"; }
    unmount_all "$out"   # the second stage mounts /proc and /sys itself
    rm -f "$out.log"
    local crt
    for crt in /usr/local/share/ca-certificates/*.crt; do
        [[ -e "$crt" ]] || continue
        grep -qF "$(sed -n 2p "$crt")" "$out/etc/ssl/certs/ca-certificates.crt" \
            || die "the host's $crt did not reach the Pi's certificate bundle"
    done
    python3 "$CHECK_DIR/pipconf.py" >"$out/etc/pip.conf"   # the same package index as the host
    # Raspberry Pi OS's user, with passwordless sudo as there (setup.sh calls sudo)
    in_pi "$out" useradd --create-home --shell /bin/bash --groups sudo,video pi
    echo 'pi ALL=(ALL) NOPASSWD: ALL' >"$out/etc/sudoers.d/010_pi-nopasswd"
    chmod 0440 "$out/etc/sudoers.d/010_pi-nopasswd"
    in_pi "$out" apt-get clean
}

# ---- layer 2: edge (CytoEdge installed) ----------------------------------------------------------
# The picamera2 stand-in as a .deb in a flat apt repository inside the Pi, so that setup.sh's
# `apt-get install python3-picamera2` works unchanged.
make_fake_apt() {
    local root=$1 pkg repo
    pkg="$(mktemp -d)"
    repo="$root$PI_FAKE_APT"
    mkdir -p "$pkg/DEBIAN" "$pkg/usr/lib/python3/dist-packages" "$repo"
    cp "$CHECK_DIR/fake-picamera2/control" "$pkg/DEBIAN/control"
    cp -r "$CHECK_DIR/fake-picamera2/picamera2" "$pkg/usr/lib/python3/dist-packages/"
    find "$pkg" -name __pycache__ -prune -exec rm -rf {} +
    dpkg-deb --root-owner-group --build "$pkg" "$repo/python3-picamera2.deb" >/dev/null
    rm -rf "$pkg"
    {
        dpkg-deb --field "$repo/python3-picamera2.deb"
        echo "Filename: ./python3-picamera2.deb"
        echo "Size: $(stat -c %s "$repo/python3-picamera2.deb")"
        echo "SHA256: $(sha256sum "$repo/python3-picamera2.deb" | cut -d' ' -f1)"
        echo
    } >"$repo/Packages"
    echo "deb [trusted=yes] file:$PI_FAKE_APT ./" >"$root/etc/apt/sources.list.d/cytoedge-fake-picamera2.list"
}

# The checkout's files (tracked and new, not ignored) into the Pi's $PI_REPO; its venv stays.
copy_repo() {
    local root=$1 dest="$1$PI_REPO"
    mkdir -p "$dest"
    find "$dest" -mindepth 1 -maxdepth 1 ! -name .venv ! -name '*.egg-info' -exec rm -rf {} +
    (cd "$REPO_ROOT" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf -) | tar -xf - -C "$dest"
}

build_edge() {
    local out=$1 np2
    make_fake_apt "$out"
    copy_repo "$out"
    # pip byte-compiles every file it installs: under emulation that costs more than the rest of
    # the install, and Python compiles what it imports on first use anyway
    local PIP_NO_COMPILE=1
    say "edge: hardware/pi/setup.sh in the Pi (apt: picamera2 stand-in; pip: .[edge] \"numpy<2\"), and side by side"
    say "edge: a plain [edge] venv ($PI_NP2_VENV: numpy 2, ai-edge-litert 2.3)"
    in_pi "$out" bash -c "python3 -m venv $PI_NP2_VENV && $PI_NP2_VENV/bin/python -m pip install --quiet \
        -c $PI_REPO/hardware/pi/check/edge-aarch64.txt -e '$PI_REPO[edge]'" >"$out.edge.log" 2>&1 &
    np2=$!
    if ! in_pi "$out" bash "$PI_REPO/hardware/pi/setup.sh" >"$out.log" 2>&1; then
        wait "$np2" || true
        tail -30 "$out.log" >&2
        die "hardware/pi/setup.sh failed in the emulated Pi: full log $out.log"
    fi
    wait "$np2" || { tail -30 "$out.edge.log" >&2; die "pip install -e .[edge] failed in the emulated Pi: full log $out.edge.log"; }
    in_pi "$out" chown -R pi:pi /home/pi
    in_pi "$out" apt-get clean
    rm -f "$out.log" "$out.edge.log"
}

# ---- the cache -----------------------------------------------------------------------------------
# ensure_layer NAME KEY BUILD_FN [FROM]: $CACHE/pi-NAME-KEY, built when missing (from a copy of FROM).
# Prints the layer's path. Other keys of the same layer are removed once the new one is in place.
ensure_layer() {
    local name=$1 key=$2 build=$3 from=${4:-} final tmp
    final="$CACHE/pi-$name-$key"
    if [[ -d "$final" ]]; then echo "$final"; return; fi
    tmp="$CACHE/.pi-$name-$key.partial.$$"
    remove_tree "$tmp"
    if [[ -n "$from" ]]; then cp -a "$from" "$tmp"; else mkdir -p "$tmp"; fi
    "$build" "$tmp" >&2
    unmount_all "$tmp"
    mv -T "$tmp" "$final"   # atomic: the layer appears whole or not at all
    local old
    for old in "$CACHE"/pi-"$name"-*; do [[ "$old" == "$final" ]] || remove_tree "$old"; done
    echo "$final"
}

# Left behind by a killed run: scratch layers (and any mounts under them).
clean_partials() {
    local p
    for p in "$CACHE"/.pi-*.partial.*; do [[ -e "$p" ]] && remove_tree "$p"; done
    rm -f "$CACHE"/.pi-*.partial.*.log
    return 0
}
