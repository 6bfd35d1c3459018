#!/usr/bin/env bash
# Proof that the kiosk installs and passes its tests on 64-bit ARM (a Raspberry Pi's CPU),
# without a Pi: a Debian bookworm arm64 root under qemu-user emulation.
#
#   sudo nice -n 19 tools/arm64-proof.sh [WORKDIR]     (default /var/tmp/kiosk-arm64)
#
# 1. builds the root with mmdebstrap from Debian's own packages (qemu-user-static runs
#    its arm64 programs through binfmt_misc);
# 2. installs the kiosk there as README's "Install on a Raspberry Pi" says: git, a clone,
#    tools/install.sh (picamera2, lgpio and rpi-lgpio are Raspberry Pi OS packages, so
#    the installer skips them and the camera stays simulated);
# 3. runs the test suite there as README's Quickstart says (tools/dev.sh test); the root
#    also has build-essential and python3-dev, as Raspberry Pi OS does, because pip
#    compiles evdev (a test dependency) from source.
# Slow (emulation) and CPU-heavy: not part of CI. The log goes to WORKDIR/proof.log.
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-/var/tmp/kiosk-arm64}"
ROOTFS="$WORK/rootfs"
PROOF=arm64-proof
# shellcheck source=tools/proof-lib.sh
. "$SRC/tools/proof-lib.sh"
begin_proof
exec > >(tee -a "$WORK/proof.log") 2>&1
say "started $(date -u +%FT%TZ) on $(uname -m), source $(git -C "$SRC" rev-parse --short HEAD)"

need_tools mmdebstrap:mmdebstrap qemu-aarch64-static:qemu-user-static arch-test:arch-test
# Register qemu for arm64 programs unless something (systemd-binfmt) already did.
binfmt=/proc/sys/fs/binfmt_misc
[ -e "$binfmt/register" ] || mount -t binfmt_misc binfmt_misc "$binfmt"
if [ ! -e "$binfmt/qemu-aarch64" ]; then
    grep -v '^#' /usr/lib/binfmt.d/qemu-aarch64.conf > "$binfmt/register"
fi

if [ ! -x "$ROOTFS/usr/bin/python3" ]; then
    say "building the bookworm arm64 root"
    rm -rf "$ROOTFS"
    mmdebstrap --arch=arm64 --variant=minbase --include=ca-certificates,sudo,git,python3,systemd,build-essential,python3-dev \
        bookworm "$ROOTFS"
fi
share_host_trust
mount_host_fs
in_root update-ca-certificates >/dev/null
say "inside: $(in_root uname -m), $(in_root python3 --version)"

add_localhost "$(hostname)"
# The checkout goes where any user can read it (a test runs the daemon as nobody), as a
# clone in a Pi user's home is; not under /root.
CHECKOUT=/usr/local/src/loyalty-kiosk
rm -rf "$ROOTFS/root/loyalty-kiosk" "$ROOTFS$CHECKOUT"
mkdir -p "$ROOTFS$CHECKOUT"
git -C "$SRC" archive --format=tar HEAD | tar -x -C "$ROOTFS$CHECKOUT"
say "install as README says: sudo tools/install.sh"
in_root sh -c "cd $CHECKOUT && sudo tools/install.sh"
in_root /opt/kiosk/current/bin/kiosk check-config --config /etc/kiosk/kiosk.toml
say "second run (must change nothing)"
in_root sh -c "cd $CHECKOUT && sudo tools/install.sh" | grep 'change(s)'

say "test suite: tools/dev.sh test"
set +e
in_root sh -c "cd $CHECKOUT && tools/dev.sh test -q -p no:cacheprovider" \
    | tee "$WORK/pytest.log"
status=${PIPESTATUS[0]}
set -e
say "tests exit status $status; $(tail -1 "$WORK/pytest.log")"
say "took $(( ($(date +%s) - started) / 60 )) min"
exit "$status"
