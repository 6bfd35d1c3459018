# shellcheck shell=bash
# Helpers shared by the proofs that build a Debian bookworm root with mmdebstrap
# (tools/arm64-proof.sh, tools/systemd-proof.sh). Sourced, not run. The caller sets
# PROOF (its name, for messages) and ROOTFS (the root being built) first.

say() { printf '%s: %s\n' "$PROOF" "$*"; }

# begin_proof: stop unless root (a proof builds a root file system), make WORK, start the clock.
begin_proof() {
    [ "$(id -u)" -eq 0 ] || { say "run as root (it builds a root file system)"; exit 1; }
    mkdir -p "$WORK"
    # shellcheck disable=SC2034  # the caller reports the time taken
    started=$(date +%s)
}

# need_tools COMMAND:PACKAGE...: apt-get installs the packages whose command is missing.
need_tools() {
    local missing=() tool
    for tool in "$@"; do
        command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
    done
    [ ${#missing[@]} -eq 0 ] && return
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Programs in the root reach the package indexes the way the host's do: the host's name
# server, local CA certificates (a proxy that inspects TLS has its own) and pip.conf.
share_host_trust() {
    cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        mkdir -p "$ROOTFS/usr/local/share/ca-certificates"
        cp /usr/local/share/ca-certificates/*.crt "$ROOTFS/usr/local/share/ca-certificates/"
    fi
    [ ! -e /etc/pip.conf ] || cp /etc/pip.conf "$ROOTFS/etc/pip.conf"
}

# A bare mmdebstrap root has no /etc/hosts: "localhost" (the TLS tests' broker name, the
# kiosk's default broker) would not resolve, as it does on every Raspberry Pi OS image.
add_localhost() {
    grep -qs '^127.0.0.1[[:space:]].*localhost' "$ROOTFS/etc/hosts" \
        || printf '127.0.0.1\tlocalhost %s\n::1\tlocalhost ip6-localhost\n' "$1" \
            >> "$ROOTFS/etc/hosts"
}

# The host's /proc, /sys and /dev inside the root (unmounted on exit) for chroot work.
mount_host_fs() {
    local fs
    for fs in proc sys dev dev/pts; do
        mountpoint -q "$ROOTFS/$fs" || mount --bind "/$fs" "$ROOTFS/$fs"
    done
    trap unmount_host_fs EXIT
}
unmount_host_fs() {
    local fs
    for fs in dev/pts dev sys proc; do umount "$ROOTFS/$fs" 2>/dev/null || true; done
}

in_root() { chroot "$ROOTFS" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 "$@"; }
