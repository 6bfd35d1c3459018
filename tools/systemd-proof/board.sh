#!/bin/bash
# The fake Raspberry Pi board, made of kernel drivers, set up before kiosk.service starts:
# a 54-line GPIO chip (gpio-sim, configured through configfs as the kernel's
# Documentation/admin-guide/gpio/gpio-sim.rst says) and an I2C bus with a chip at 0x3c
# (i2c-stub; its address comes from /etc/modprobe.d/proof-board.conf). The USB serial
# adapter is QEMU's own (usb-serial, an FTDI: ftdi_sio).
set -euo pipefail
modprobe i2c-stub
modprobe i2c-dev
modprobe gpio-sim
mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config
chip=/sys/kernel/config/gpio-sim/pi
if [ ! -d "$chip" ]; then
    mkdir "$chip" "$chip/bank0"
    echo 54 > "$chip/bank0/num_lines"
    echo raspberry-pi-sim > "$chip/bank0/label"
    echo 1 > "$chip/live"
fi
udevadm settle  # the udev rules (group gpio, i2c) are applied before the kiosk starts
echo "board: $(cat "$chip/bank0/chip_name") on $(cat "$chip/dev_name")," \
    "i2c-stub on $(grep -l 'SMBus stub' /sys/bus/i2c/devices/i2c-*/name | cut -d/ -f6)"
