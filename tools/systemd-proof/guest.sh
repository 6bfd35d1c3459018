#!/bin/bash
# The checks of tools/systemd-proof.sh, run as root inside the guest by proof.service,
# its output going to the host. First boot: install the kiosk as README says, set it up
# for the fake board, reboot. Second boot: the checks, each "PASS|FAIL <seconds> <name>"
# (seconds: how long the check took; "at" lines give the time since the kernel started).
# A line "TYPE <code>" asks the host to type <code> into the USB serial adapter.
set -uo pipefail
export LANG=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin
CHECKOUT=/root/loyalty-kiosk
CONFIG=/etc/kiosk/kiosk.toml
VENV=/opt/kiosk/current
STAGE=/var/lib/proof-stage
failed=0

uptime_s() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$(uptime_s)" -v b="$1" 'BEGIN { printf "%.1f", a - b }'; }
usec_to_s() { awk -v u="$1" 'BEGIN { printf "%.1f", u / 1000000 }'; }
# Seconds since the kiosk's main process started (monotonic clock, as /proc/uptime).
kiosk_age() { since "$(usec_to_s "$(unit ExecMainStartTimestampMonotonic)")"; }
# check NAME FUNCTION [ARGS]: runs the function, prints its result, its time and its lines.
check() {
    local name="$1" started out status
    shift
    started=$(uptime_s)
    out="$("$@" 2>&1)"
    status=$?
    [ "$status" -eq 0 ] || failed=$((failed + 1))
    printf '%s %6.1fs  %s\n' "$([ "$status" -eq 0 ] && echo PASS || echo FAIL)" \
        "$(since "$started")" "$name"
    [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/      /'
}
unit() { systemctl show -P "$1" kiosk.service; }
fd_targets() { local fd; for fd in "/proc/$1"/fd/*; do readlink "$fd"; done; }
main_pid() { unit MainPID; }
journal_since() { journalctl -q -o cat -u kiosk.service --since "@$1"; }
is_active() { [ "$(unit ActiveState)" = active ]; }
restarted_since() { [ "$(unit NRestarts)" -gt "$1" ]; }
# wait_for SECONDS COMMAND...: true once COMMAND is, false after SECONDS.
wait_for() {
    local deadline=$(( $(date +%s) + $1 ))
    shift
    until "$@"; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.5
    done
}

# set_keys SECTION.KEY=VALUE...: edits the installed config in place, keeping its comments.
set_keys() {
    python3 - "$CONFIG" "$@" <<'EOF'
import re
import sys

path, *pairs = sys.argv[1:]
lines = open(path).read().splitlines()
for pair in pairs:
    name, value = pair.split("=", 1)
    section, key = name.split(".")
    current, done = None, False
    for i, line in enumerate(lines):
        header = re.match(r"\[(\w+)\]", line)
        if header:
            current = header.group(1)
        elif current == section and re.match(rf"{key}\s*=", line):
            lines[i], done = f"{key} = {value}", True
            break
    if not done:
        sys.exit(f"no {name} in {path}")
open(path, "w").write("\n".join(lines) + "\n")
EOF
}

i2c_bus() { grep -l 'SMBus stub' /sys/bus/i2c/devices/i2c-*/name | cut -d/ -f6 | cut -d- -f2; }
sim_dir() {
    local chip=/sys/kernel/config/gpio-sim/pi
    echo "/sys/devices/platform/$(cat $chip/dev_name)/$(cat $chip/bank0/chip_name)"
}

# --- first boot: install ------------------------------------------------------------

install_as_readme_says() {
    rm -rf "$CHECKOUT"
    git -c advice.detachedHead=false clone -q /proof/kiosk.bundle "$CHECKOUT" || return 1
    cd "$CHECKOUT" && sudo tools/install.sh | tail -4
    [ "${PIPESTATUS[0]}" -eq 0 ]
}
second_install_changes_nothing() {
    cd "$CHECKOUT" && sudo tools/install.sh | tee /dev/stderr | grep -q '^install.sh: 0 change(s)$'
}
set_up_for_the_board() {
    set_keys kiosk.device_id='"qemu-1"' kiosk.site='"proof"' camera.backend='"none"' \
        serial.backend='"pyserial"' serial.port='"/dev/ttyUSB0"' \
        display.i2c_port="$(i2c_bus)" lights.backend='"none"' || return 1
    "$VENV/bin/kiosk" check-config --config "$CONFIG"
}
gpio_tools() {  # lgpio (Raspberry Pi OS's python3-lgpio) and gpiozero for the gpio check
    python3 -m venv /opt/proof-gpio && /opt/proof-gpio/bin/pip install -q lgpio gpiozero
}

first_boot() {
    echo "first boot: $(systemctl --version | head -1), kernel $(uname -r)"
    echo "$(uptime_s)s at first boot"
    check "install as README says (sudo tools/install.sh)" install_as_readme_says
    check "second install run: 0 change(s)" second_install_changes_nothing
    check "set up for the fake board (kiosk check-config)" set_up_for_the_board
    check "lgpio and gpiozero for the gpio check (pip, a separate venv)" gpio_tools
    if [ "$failed" -eq 0 ]; then
        echo 2 > "$STAGE"
        echo "rebooting"
        systemctl --no-block start reboot.target
    else
        echo "RESULT: $failed failed before the reboot"
        systemctl --no-block start poweroff.target
    fi
}

# --- second boot: the checks --------------------------------------------------------

starts_at_boot() {
    local active_s
    [ "$(systemctl is-enabled kiosk.service)" = enabled ] || return 1
    wait_for 180 is_active || { unit ActiveState; return 1; }
    active_s=$(usec_to_s "$(unit ActiveEnterTimestampMonotonic)")
    echo "active ${active_s}s after the kernel started; restarts: $(unit NRestarts)"
    [ "$(unit NRestarts)" -eq 0 ]
}
ready_notified() {
    local started ready
    started=$(unit ExecMainStartTimestampMonotonic)
    ready=$(unit ActiveEnterTimestampMonotonic)
    # Type=notify: "active" only after READY=1 from the main process.
    echo "Type=$(unit Type); READY=1 $(usec_to_s $((ready - started))) s" \
        "after exec; status: $(unit StatusText)"
    [ "$(unit Type)" = notify ] && [ "$ready" -gt "$started" ]
}
no_directory_mode_warning() {
    local lines
    lines="$(journalctl -b -q -o cat -u kiosk.service | grep -i 'ConfigurationDirectory\|mode is different')"
    echo "/etc/kiosk: $(stat -c '%a %U:%G' /etc/kiosk)${lines:+; journal: $lines}"
    [ -z "$lines" ] && [ "$(stat -c %a /etc/kiosk)" = 750 ]
}
gpio_group_owns_the_chips() {
    local chip
    for chip in /dev/gpiochip*; do
        echo "$chip: $(stat -c '%U:%G %a' "$chip")"
        [ "$(stat -c '%G %a' "$chip")" = "gpio 660" ] || return 1
    done
}
devices_held_by_the_kiosk() {
    local pid
    pid=$(main_pid)
    fd_targets "$pid" | grep '^/dev/' | sort | uniq -c | sed 's/$/ held by the kiosk/'
    fd_targets "$pid" | grep -qx /dev/ttyUSB0
}
# sandboxed COMMAND...: runs COMMAND as the kiosk is run, in a copy of kiosk.service (its
# user, groups, device list and every protection; not its runtime directory, which
# systemd would remove from under the running kiosk when the copy stops).
sandboxed() {
    local copy=/run/systemd/system/kiosk-sandbox.service
    sed -e '/^\[Install\]/,$d' -e '/^ExecStart=/d' -e '/^Type=/d' -e '/^WatchdogSec=/d' \
        -e '/^Restart/d' -e '/^NotifyAccess=/d' -e '/^RuntimeDirectory=/d' \
        /etc/systemd/system/kiosk.service > "$copy"
    printf 'Type=oneshot\nStandardOutput=truncate:/run/kiosk-sandbox.out\nStandardError=inherit\n' \
        >> "$copy"
    printf 'ExecStart=%s\n' "$*" >> "$copy"
    systemctl daemon-reload
    systemctl start kiosk-sandbox.service
    local status=$?
    cat /run/kiosk-sandbox.out
    systemctl reset-failed kiosk-sandbox.service 2>/dev/null
    return "$status"
}
devices_under_the_sandbox() {
    # Allowed (group and DeviceAllow=): the GPIO chip, the I2C bus, the USB serial adapter.
    # Refused: world-writable nodes outside the device list (the cgroup refuses them)
    # and the disk (neither group nor list).
    # /dev/dri/card0 and /dev/fb0 (QEMU's display adapter) are group video's, as the
    # kiosk's camera nodes are, but not in the device list: only the cgroup refuses them.
    local refused=() node
    for node in /dev/dri/card0 /dev/fb0 /dev/net/tun /dev/fuse /dev/vda; do
        [ ! -e "$node" ] || refused+=("$node=refused")
    done
    sandboxed "$VENV/bin/python" /proof/devices.py /dev/gpiochip0=ok "/dev/i2c-$(i2c_bus)=ok" \
        /dev/ttyUSB0=ok "${refused[@]}"
}
gpio_lines_read_back() {
    sandboxed /opt/proof-gpio/bin/python /proof/gpio.py 0 "$(sim_dir)"
}
outbox_has() {
    python3 - "$1" <<'EOF'
import sqlite3
import sys

db = sqlite3.connect("file:/var/lib/kiosk/kiosk.db?mode=ro", uri=True)
found = db.execute("SELECT COUNT(*) FROM outbox WHERE CAST(payload AS TEXT) LIKE ?",
                   (f"%{sys.argv[1]}%",)).fetchone()[0]
sys.exit(0 if found else 1)
EOF
}
typed_code_reaches_the_outbox() {
    local code=LOY-QEMU0001 asked
    asked=$(uptime_s)
    echo "TYPE $code" > /dev/ttyS1  # the host types it into the adapter's other end
    wait_for 60 outbox_has "$code" || { journalctl -b -q -o cat -u kiosk | tail -5; return 1; }
    echo "$code in the outbox $(since "$asked") s after it was asked for"
}
i2c_descriptors() { fd_targets "$1" | grep -c '^/dev/i2c-'; }
display_retries_leak_nothing() {
    # The panel on i2c-stub fails in its constructor (luma writes its frame with I2C_RDWR,
    # which i2c-stub does not do: EOPNOTSUPP) after opening the bus; the kiosk retries
    # after 0.5 s, doubling up to 30 s: by 240 s after start about 13 constructors failed.
    local pid first first_age last reason
    pid=$(main_pid)
    first=$(i2c_descriptors "$pid") first_age=$(kiosk_age)
    while awk -v age="$(kiosk_age)" 'BEGIN { exit !(age < 240) }'; do sleep 2; done
    last=$(i2c_descriptors "$pid")
    reason="$(journalctl -b -q -o cat -u kiosk.service | grep -A30 'display write failed' \
        | grep -E '^[A-Za-z_.]+(Error|Exception)' | tail -1)"
    echo "the panel fails with: ${reason:-nothing logged}"
    echo "/dev/i2c-* descriptors held: $first at ${first_age} s after start, $last at" \
        "$(kiosk_age) s"
    [[ "$reason" == *"Operation not supported"* ]] && [ "$last" -le 1 ]
}
hung_controller_is_restarted() {
    local pid restarts frozen tracer
    pid=$(main_pid)
    restarts=$(unit NRestarts)
    frozen=$(date +%s)
    python3 /proof/freeze.py "$pid" 120 &
    tracer=$!
    sleep 5
    echo "threads of $pid: $(grep -h '^State' /proc/"$pid"/task/*/status | sort | uniq -c | xargs)"
    if ! wait_for 120 restarted_since "$restarts"; then
        kill "$tracer" 2>/dev/null
        echo "MainPID $pid -> $(main_pid), NRestarts $restarts -> $(unit NRestarts)," \
            "$(systemctl show -p WatchdogTimestampMonotonic kiosk.service)"
        journalctl -q -o short-monotonic -u kiosk.service --since "@$frozen" \
            | grep -v 'cannot reach the broker' | tail -40
        return 1
    fi
    wait_for 120 is_active || return 1
    wait "$tracer"
    journal_since "$frozen" | grep -E -m4 'Watchdog timeout|Fatal Python|Thread 0x|Current thread'
    echo "controller thread $pid stopped; a new kiosk (pid $(main_pid)) active" \
        "$(( $(date +%s) - frozen )) s later"
    journal_since "$frozen" | grep -q 'Watchdog timeout' && [ "$(main_pid)" != "$pid" ]
}
sigterm_is_clean() {
    local stopping
    stopping=$(date +%s)
    systemctl stop kiosk.service
    echo "stopped in $(( $(date +%s) - stopping )) s: Result=$(unit Result)," \
        "status $(unit ExecMainStatus)"
    journal_since "$stopping" | tail -3
    local ok=0
    [ "$(unit Result)" = success ] && [ "$(unit ExecMainStatus)" = 0 ] || ok=1
    systemctl start kiosk.service
    return "$ok"
}
config_error_is_not_restarted() {
    local restarts
    cp "$CONFIG" /root/kiosk.toml.good
    printf '[mqtt]\nport = 0\n' > "$CONFIG"
    systemctl restart kiosk.service
    restarts=$(unit NRestarts)
    sleep 15  # RestartSec=2: several restarts would have happened by now
    echo "ActiveState=$(unit ActiveState), status $(unit ExecMainStatus)," \
        "restarts $restarts -> $(unit NRestarts)"
    journalctl -b -q -o cat -u kiosk | grep -m1 'mqtt.port'
    local ok=0
    [ "$(unit ActiveState)" = failed ] && [ "$(unit ExecMainStatus)" = 2 ] \
        && [ "$(unit NRestarts)" = "$restarts" ] || ok=1
    cp /root/kiosk.toml.good "$CONFIG"
    systemctl reset-failed kiosk.service
    systemctl start kiosk.service
    return "$ok"
}
exposure_score() {
    local line
    line="$(systemd-analyze security kiosk.service | grep 'Overall exposure level')"
    echo "$line"
    [ "$(echo "${line#*: }" | cut -d' ' -f1 | awk '{ print ($1 <= 2.0) }')" = 1 ]
}
offline_install_does_not_abort() {
    # python3-evdev and -spidev are in Debian's archive: apt knows them, cannot fetch them.
    apt-get purge -y -qq python3-evdev python3-spidev >/dev/null
    apt-get clean  # no .deb left to install from
    local link out status
    link=$(ip -o link show | awk -F': ' '$2 ~ /^en/ { print $2; exit }')
    ip link set "$link" down
    out="$(cd "$CHECKOUT" && sudo tools/install.sh --pip-options "--no-index --find-links /nonexistent")"
    status=$?
    ip link set "$link" up
    echo "$out"
    [ "$status" -eq 0 ] && grep -q 'could not install python3-spidev python3-evdev' <<< "$out"
}

# --- software updates (docs/updates.md) -----------------------------------------------
# v1 is what tools/install.sh installed; v2 and v4 are this checkout with a higher version,
# v3 the same but unable to import; the kiosk fetches them from a web server here and is
# ordered to install them over MQTT (a mosquitto here), as staff would.
V1=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$CHECKOUT/kiosk/__init__.py" 2>/dev/null)
V2=99.0.1 V3=99.0.2 V4=99.0.3
WWW=/srv/releases
kioskctl() { "$VENV/bin/kioskctl" --config /root/kioskctl.toml "$@"; }
linked() { readlink "/opt/kiosk/$1"; }
# The release the kiosk's main process runs: its interpreter is that release's venv's.
kiosk_release() { tr '\0' '\n' < "/proc/$(main_pid)/cmdline" | head -1 | cut -d/ -f5; }
release_json() { tr -d '\n' < /opt/kiosk/release.json | tr -s ' '; }
heartbeat_connected() { grep -q '"connected": true' /run/kiosk/release-health.json 2>/dev/null; }
releases_layout() {
    echo "current -> $(linked current), committed -> $(linked committed);" \
        "the kiosk runs $(kiosk_release); $(release_json)"
    [ "$(linked current)" = "releases/$V1" ] && [ "$(linked committed)" = "releases/$V1" ] \
        && [ "$(kiosk_release)" = "$V1" ] \
        && systemctl is-enabled --quiet kiosk-updater.path kiosk-release-check.service \
        && systemctl is-active --quiet kiosk-updater.path
}
update_setup() {
    apt-get install -y -qq --no-install-recommends mosquitto >/dev/null || return 1
    systemctl is-active --quiet mosquitto || systemctl start mosquitto || return 1
    printf '[mqtt]\nhost = "localhost"\n[keys]\ndir = "/root/kioskctl-keys"\n' \
        > /root/kioskctl.toml
    kioskctl keys gen proof >/dev/null && kioskctl release key /root/release.key >/dev/null \
        || return 1
    set_keys staff.trusted_keys="[\"$(cat /root/kioskctl-keys/proof.pub)\"]" \
        update.release_keys="[\"$(cat /root/release.pub)\"]" update.health_s=30 \
        update.start_s=120 || return 1
    mkdir -p "$WWW"
    systemd-run --quiet --unit proof-web python3 -m http.server 8080 --bind 127.0.0.1 \
        --directory "$WWW" || return 1
    systemctl restart kiosk.service
    wait_for 180 heartbeat_connected || { cat /run/kiosk/release-health.json; return 1; }
    echo "kiosk connected to mosquitto: $(cat /run/kiosk/release-health.json)"
}
# build_release VERSION [broken]: this checkout at VERSION, built, signed and published.
build_release() {
    local src="/root/src-$1"
    rm -rf "$src" "/root/rel-$1"
    git -c advice.detachedHead=false clone -q "$CHECKOUT" "$src" || return 1
    sed -i "s/^version = \".*\"/version = \"$1\"/" "$src/pyproject.toml"
    sed -i "s/^__version__ = \".*\"/__version__ = \"$1\"/" "$src/kiosk/__init__.py"
    [ "${2:-}" != broken ] || echo 'import kiosk_no_such_module  # broken' >> "$src/kiosk/cli.py"
    kioskctl release build --checkout "$src" --out "/root/rel-$1" --machine x86_64 \
        --min-previous "$V1" | head -1 \
        && kioskctl release sign "/root/rel-$1" --key /root/release.key \
            --url "http://127.0.0.1:8080/$1/" \
        && kioskctl release publish "/root/rel-$1" --to "$WWW"
}
build_releases() {
    HOME=/root build_release "$V2" && HOME=/root build_release "$V3" broken \
        && HOME=/root build_release "$V4"
}
order() { kioskctl cmd qemu-1 update "manifest=$(cat "$WWW/$1/manifest.json")"; }
committed_is() {
    [ "$(linked committed)" = "releases/$1" ] && [ "$(linked current)" = "releases/$1" ] \
        && grep -q '"trying": null' /opt/kiosk/release.json
}
current_is() { [ "$(linked current)" = "releases/$1" ]; }
failed_is() { grep -q "\"version\": \"$1\"" /opt/kiosk/release.json; }
updater_log() { journalctl -b -q -o cat -u kiosk-updater.service | tail -"${1:-5}"; }
v2_committed() {
    local asked
    asked=$(uptime_s)
    order "$V2" || return 1
    wait_for 1200 committed_is "$V2" || { release_json; updater_log 20; return 1; }
    wait_for 180 is_active || return 1
    echo "committed $(since "$asked") s after the order; the kiosk runs $(kiosk_release);" \
        "$(release_json)"
    updater_log 3
    [ "$(kiosk_release)" = "$V2" ] && [ -d "/opt/kiosk/releases/$V1" ]  # the one before, kept
}
v3_rolled_back() {
    local asked
    asked=$(uptime_s)
    order "$V3" || return 1
    wait_for 1200 failed_is "$V3" || { release_json; updater_log 20; return 1; }
    wait_for 180 is_active || return 1
    wait_for 60 heartbeat_connected
    echo "switched back $(since "$asked") s after the order; the kiosk runs $(kiosk_release);" \
        "$(release_json)"
    journalctl -b -q -o cat -u kiosk.service --since "@$(( $(date +%s) - 600 ))" \
        | grep -m3 -E 'kiosk_no_such_module|Scheduled restart job|repeated too quickly'
    updater_log 3
    committed_is "$V2" && [ "$(kiosk_release)" = "$V2" ] && [ ! -e "/opt/kiosk/releases/$V3" ]
}
v4_on_trial() {
    order "$V4" || return 1
    wait_for 1200 current_is "$V4" || { updater_log 20; return 1; }
    echo "current -> $(linked current), committed -> $(linked committed): on trial"
    [ "$(linked committed)" = "releases/$V2" ]
}
boots_a_working_release() {
    wait_for 300 is_active || return 1
    wait_for 120 heartbeat_connected
    echo "current -> $(linked current), committed -> $(linked committed);" \
        "the kiosk runs $(kiosk_release); $(release_json)"
    journalctl -b -q -o cat -u kiosk-release-check.service | tail -2
    committed_is "$V2" && [ "$(kiosk_release)" = "$V2" ] \
        && grep -q '"version": "'"$V4"'", "reason": "interrupted' <(release_json)
}

finish() {
    echo "RESULT: $failed failed; $(uptime_s)s after the kernel started"
    journalctl -b -q -o short-monotonic -u kiosk.service -u kiosk-updater.service \
        -u kiosk-release-check.service > /dev/ttyS0
    rm -f "$STAGE"
    systemctl --no-block start poweroff.target
}

# Third boot: after the power cut (the guest reset with sysrq, nothing synced) mid-trial.
third_boot() {
    failed=$(cut -d' ' -f2 "$STAGE")
    echo "third boot, after the power cut: $(uptime_s)s after the kernel started"
    check "after a power cut mid-trial it boots the committed release" \
        boots_a_working_release
    finish
}

second_boot() {
    echo "second boot: $(uptime_s)s after the kernel started; $(/proof/board.sh 2>&1 | tail -1)"
    check "kiosk.service starts at boot" starts_at_boot
    check "READY=1 reached (Type=notify)" ready_notified
    check "no ConfigurationDirectory mode warning" no_directory_mode_warning
    check "udev gives group gpio the GPIO chips" gpio_group_owns_the_chips
    check "the kiosk holds its devices under the unit" devices_held_by_the_kiosk
    check "device nodes under the unit's sandbox: allowed open, others refused" \
        devices_under_the_sandbox
    check "lgpio and gpiozero drive gpio-sim lines that read back" gpio_lines_read_back
    check "a code typed into the USB serial adapter reaches the outbox" \
        typed_code_reaches_the_outbox
    check "a hung controller is restarted by the watchdog" hung_controller_is_restarted
    check "a failing display leaks no descriptors over its retries" display_retries_leak_nothing
    check "SIGTERM (systemctl stop) is clean: exit 0" sigterm_is_clean
    check "a config error (exit 2) is not restarted" config_error_is_not_restarted
    check "systemd-analyze security kiosk.service <= 2.0 (live)" exposure_score
    check "offline install: Pi packages apt cannot fetch do not abort it" \
        offline_install_does_not_abort
    check "v1 in the releases layout, the updater's units enabled" releases_layout
    check "update set-up: mosquitto, staff and release keys trusted, a release server" \
        update_setup
    check "releases v2, v3 (cannot import) and v4 built, signed, published" build_releases
    check "update to v2: installed beside v1, switched, healthy for 30 s, committed" \
        v2_committed
    check "update to a broken v3: switched back to v2 by itself, with the reason" \
        v3_rolled_back
    local before=$failed
    check "update to v4: switched, on trial" v4_on_trial
    if [ "$failed" -eq "$before" ]; then
        echo "3 $failed" > "$STAGE"
        sync "$STAGE"
        echo "cutting the power (sysrq reset, nothing else synced)"
        echo b > /proc/sysrq-trigger
    fi
    finish
}

case "$(cut -d' ' -f1 "$STAGE" 2>/dev/null)" in
    2) second_boot ;;
    3) third_boot ;;
    *) first_boot ;;
esac
