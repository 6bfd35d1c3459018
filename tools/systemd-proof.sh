#!/usr/bin/env bash
# Proof that the kiosk's unit keeps its promises under a real systemd, with real kernel
# drivers for its devices, without a Pi: a Debian bookworm guest booted under QEMU.
#
#   sudo tools/systemd-proof.sh [WORKDIR]     (default /var/tmp/kiosk-systemd)
#
# 1. builds a guest disk with mmdebstrap (cached in WORKDIR: later runs reuse it) and a
#    gpio-sim module for the guest's kernel: Debian's kernels lack CONFIG_GPIO_SIM, so it
#    is built out of tree from linux-source against the matching linux-headers;
# 2. boots it under QEMU with systemd as PID 1 (TCG: no KVM needed), a fake board made of
#    kernel drivers: gpio-sim (a 54-line chip, as a Pi's), i2c-stub at 0x3c (the OLED's
#    address; it answers SMBus commands only, so the panel fails to start, as a broken
#    display does) and QEMU's emulated USB serial adapter (an FTDI, /dev/ttyUSB0) whose
#    other end is a pipe here;
# 3. installs the kiosk inside exactly as README's "Install on a Raspberry Pi" says (the
#    guest reaches the package indexes through QEMU's user network), reboots, and runs
#    the checks in tools/systemd-proof/guest.sh; each prints PASS or FAIL with its time;
# 4. software updates (docs/updates.md): with a mosquitto and a web server in the guest, the
#    kiosk installed by tools/install.sh (v1) is ordered to v2 (committed), to a v3 that
#    cannot import (switched back by itself), and to v4, during whose trial the guest is
#    reset (sysrq: a power cut); the third boot must run the committed release.
# The checks run as root inside the guest; the result goes to WORKDIR/proof.log, the
# guest's console to WORKDIR/console.log. Slow (emulation) and CPU-heavy: not part of CI.
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-/var/tmp/kiosk-systemd}"
ROOTFS="$WORK/rootfs"
PROOF=systemd-proof
# shellcheck source=tools/proof-lib.sh
. "$SRC/tools/proof-lib.sh"
begin_proof
say "started $(date -u +%FT%TZ), source $(git -C "$SRC" rev-parse --short HEAD)"
need_tools mmdebstrap:mmdebstrap qemu-system-x86_64:qemu-system-x86 mkfs.ext4:e2fsprogs

# Hardware drivers the kiosk meets on a Pi, as loaded modules of the guest's kernel.
# gpio-sim needs the kernel's irq_sim, which Debian builds only for modules it enables
# (CONFIG_IRQ_SIM is not set): it is compiled into the module. irq_sim.c calls the
# unexported irq_to_desc(); generic_handle_irq() runs the same handle_simple_irq.
build_gpio_sim() {
    local kver="$1" src=/usr/src/gpio-sim
    local build=(linux-headers-"$kver" linux-source-"${kver%%.0-*}" build-essential xz-utils)
    say "building gpio-sim for $kver out of tree"
    in_root apt-get install -y -qq --no-install-recommends "${build[@]}" >/dev/null
    rm -rf "${ROOTFS:?}$src"
    mkdir -p "$ROOTFS$src"
    # gpio-sim.c includes the private "gpiolib.h" beside it in the kernel tree.
    tar -xJf "$ROOTFS"/usr/src/linux-source-*.tar.xz -C "$ROOTFS$src" --strip-components=3 \
        --wildcards '*/drivers/gpio/gpio-sim.c' '*/drivers/gpio/gpiolib.h' '*/kernel/irq/irq_sim.c'
    mv "$ROOTFS$src/gpio-sim.c" "$ROOTFS$src/gpio-sim-core.c"
    sed -i 's/handle_simple_irq(irq_to_desc(irqnum));/generic_handle_irq(irqnum);/' \
        "$ROOTFS$src/irq_sim.c"
    printf 'obj-m := gpio-sim.o\ngpio-sim-y := gpio-sim-core.o irq_sim.o\n' > "$ROOTFS$src/Makefile"
    in_root nice -n 10 make -s -C "/lib/modules/$kver/build" M="$src" modules
    install -D -m 644 "$ROOTFS$src/gpio-sim.ko" "$ROOTFS/lib/modules/$kver/updates/gpio-sim.ko"
    in_root depmod "$kver"
    in_root apt-get purge -y -qq "${build[@]}" >/dev/null
    in_root apt-get autoremove --purge -y -qq >/dev/null
    rm -rf "${ROOTFS:?}$src" "$ROOTFS"/usr/src/linux-source-*
}

# The guest's own set-up: network, the run disk with the checks, the fake board's units.
configure_guest() {
    echo kiosk-proof > "$ROOTFS/etc/hostname"
    add_localhost kiosk-proof
    printf '/dev/vda / ext4 rw 0 1\n/dev/vdb /proof ext4 ro,nofail 0 0\n' > "$ROOTFS/etc/fstab"
    mkdir -p "$ROOTFS/proof"
    printf '[Match]\nName=en*\n[Network]\nDHCP=yes\n' \
        > "$ROOTFS/etc/systemd/network/10-wired.network"
    echo 'nameserver 10.0.2.3' > "$ROOTFS/etc/resolv.conf"  # QEMU's user network
    echo 'options i2c-stub chip_addr=0x3c' > "$ROOTFS/etc/modprobe.d/proof-board.conf"
    cat > "$ROOTFS/etc/systemd/system/proof-board.service" <<'EOF'
[Unit]
Description=Fake Raspberry Pi board (gpio-sim, i2c-stub)
DefaultDependencies=no
After=systemd-modules-load.service sys-kernel-config.mount proof.mount
Before=kiosk.service sysinit.target
RequiresMountsFor=/proof
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/proof/board.sh
[Install]
WantedBy=sysinit.target
EOF
    cat > "$ROOTFS/etc/systemd/system/proof.service" <<'EOF'
[Unit]
Description=Kiosk systemd proof
After=multi-user.target kiosk.service network-online.target
Wants=network-online.target
RequiresMountsFor=/proof
[Service]
Type=oneshot
ExecStart=/proof/guest.sh
StandardOutput=file:/dev/ttyS1
StandardError=inherit
TimeoutStartSec=infinity
[Install]
WantedBy=multi-user.target
EOF
    in_root systemctl enable --quiet proof-board.service proof.service systemd-networkd \
        systemd-networkd-wait-online.service
}

IMAGE="$WORK/guest.img"
if [ ! -e "$IMAGE" ]; then
    say "building the bookworm guest (once; cached in $WORK)"
    if [ ! -e "$WORK/rootfs.done" ]; then
        rm -rf "$ROOTFS"
        nice -n 10 mmdebstrap --variant=minbase \
            --include=systemd-sysv,udev,linux-image-amd64,initramfs-tools,kmod,sudo,git,python3,ca-certificates,iproute2,procps \
            bookworm "$ROOTFS"
        touch "$WORK/rootfs.done"
    fi
    share_host_trust
    mount_host_fs
    in_root update-ca-certificates >/dev/null
    kver="$(ls "$ROOTFS/lib/modules")"
    in_root apt-get update -qq
    [ -e "$ROOTFS/lib/modules/$kver/updates/gpio-sim.ko" ] || build_gpio_sim "$kver"
    configure_guest
    unmount_host_fs
    cp "$ROOTFS/boot/vmlinuz-$kver" "$WORK/vmlinuz"
    cp "$ROOTFS/boot/initrd.img-$kver" "$WORK/initrd.img"
    rm -f "$IMAGE.new"
    truncate -s 6G "$IMAGE.new"
    mkfs.ext4 -q -L kiosk-proof -d "$ROOTFS" "$IMAGE.new"
    mv "$IMAGE.new" "$IMAGE"
    say "guest built: kernel $kver, $(du -h "$IMAGE" | cut -f1) used"
fi

# The run disk (/proof in the guest): this checkout as a git bundle to clone, the checks.
RUN="$WORK/run"
rm -rf "$RUN"
mkdir -p "$RUN/disk"
git -C "$SRC" bundle create -q "$RUN/disk/kiosk.bundle" HEAD
install -m 755 "$SRC"/tools/systemd-proof/*.sh "$RUN/disk/"
install -m 644 "$SRC"/tools/systemd-proof/*.py "$RUN/disk/"
truncate -s 64M "$RUN/proof.img"
mkfs.ext4 -q -d "$RUN/disk" "$RUN/proof.img"

# QEMU plugs the adapter in only while its other end is open: a pipe always is.
mkfifo "$RUN/scanner.in" "$RUN/scanner.out"
say "booting the guest (TCG); the checks follow"
: > "$WORK/proof.log"
: > "$WORK/console.log"
# snapshot=on: the cached disk is never written; the guest's changes live until QEMU exits
# (the reboot between install and checks keeps them).
nice -n 10 qemu-system-x86_64 -machine q35 -accel tcg -cpu max -smp 2 -m 2048 \
    -display none -monitor none \
    -kernel "$WORK/vmlinuz" -initrd "$WORK/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0 net.ifnames=1" \
    -drive "file=$IMAGE,format=raw,if=virtio,snapshot=on" \
    -drive "file=$RUN/proof.img,format=raw,if=virtio,readonly=on" \
    -netdev user,id=net0 -device virtio-net-pci,netdev=net0 \
    -device qemu-xhci -chardev "pipe,id=scanner,path=$RUN/scanner" \
    -device usb-serial,chardev=scanner \
    -serial "file:$WORK/console.log" -serial "file:$RUN/ttyS1.log" &
qemu=$!
# "|| true": under set -e a failing kill (QEMU already gone) made the script exit 1 after a
# passing run.
trap 'kill "$qemu" 2>/dev/null || true; unmount_host_fs' EXIT

# Pass the guest's lines on as they come; type each code it asks for into the adapter.
shown=0 typed=0 deadline=$(( $(date +%s) + 5400 ))
while kill -0 "$qemu" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do
    mapfile -t lines < <(tr -d '\r' < "$RUN/ttyS1.log")
    for ((; shown < ${#lines[@]}; shown++)); do
        printf '%s\n' "${lines[shown]}" | tee -a "$WORK/proof.log"
    done
    mapfile -t asked < <(printf '%s\n' "${lines[@]}" | sed -n 's/^TYPE //p')
    for ((; typed < ${#asked[@]}; typed++)); do
        printf '%s\r' "${asked[typed]}" > "$RUN/scanner.in"
    done
    sleep 1
done
kill "$qemu" 2>/dev/null || true
wait "$qemu" 2>/dev/null || true
say "took $(( ($(date +%s) - started) / 60 )) min"
result="$(grep '^RESULT: ' "$WORK/proof.log" | tail -1)"
say "${result:-no result: see $WORK/console.log}"
case "$result" in "RESULT: 0 failed"*) ;; *) exit 1 ;; esac
