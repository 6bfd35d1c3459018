#!/usr/bin/env bash
# Install (or update) the kiosk on Raspberry Pi OS bookworm from this checkout.
#
#   sudo tools/install.sh                      install or update; safe to run again
#   sudo tools/install.sh --uninstall          remove program, unit and udev/module files;
#                                              keep /etc/kiosk, /var/lib/kiosk and the user
#   sudo tools/install.sh --uninstall --purge  remove those too
# Options:
#   --dry-run           say what would change, change nothing
#   --root DIR          install into the tree DIR (an image, a scratch directory): files,
#                       user, groups and the enabled unit; no apt-get, no service restart
#   --pip-options "..." extra pip options, e.g. "--no-index --find-links /media/wheels"
#
# What lands where: /opt/kiosk/releases/<version> (a venv; sees apt's picamera2, libcamera
# and lgpio through --system-site-packages) with /opt/kiosk/current and /opt/kiosk/committed
# pointing at it (an old /opt/kiosk/.venv is removed), /etc/kiosk/kiosk.toml (never
# overwritten), /var/lib/kiosk
# (state, 0750 kiosk:kiosk), /etc/systemd/system/kiosk.service (enabled), kiosk-updater.path
# (enabled), kiosk-updater.service, kiosk-release-check.service (enabled),
# /etc/modules-load.d/kiosk.conf, /etc/udev/rules.d/60-kiosk-devices.rules (groups
# gpio, i2c, spi on their nodes), /etc/udev/rules.d/99-kiosk-scanner.rules (example, never
# overwritten). A second run with nothing new changes nothing and says so.
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
ROOT="" DRY=0 UNINSTALL=0 PURGE=0 PIP_OPTIONS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT="$(realpath -m "$2")"; shift ;;
        --dry-run) DRY=1 ;;
        --uninstall) UNINSTALL=1 ;;
        --purge) PURGE=1 ;;
        --pip-options) PIP_OPTIONS="$2"; shift ;;
        *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[ "$ROOT" = "/" ] && ROOT=""

USER_NAME=kiosk
HW_GROUPS=(gpio video dialout i2c spi input)   # the unit's SupplementaryGroups=
APT_NEEDED=(python3-venv libzbar0 ca-certificates)
# Software updates (docs/updates.md): the path unit watches the kiosk's requests, the
# check at boot switches back a release left on trial, the service installs.
UPDATER_UNITS=(kiosk-updater.path kiosk-updater.service kiosk-release-check.service)
# Raspberry Pi OS archive: camera stack, GPIO for Pi 5, SPI bus, RPi.GPIO on lgpio;
# evdev for keyboard-wedge readers (pip would have to compile it). Skipped where absent.
APT_PI=(python3-picamera2 python3-lgpio python3-spidev python3-rpi-lgpio python3-evdev)
changes=0

say() { printf 'install.sh: %s\n' "$*"; }
# Every change goes through act: counted, and only announced under --dry-run.
act() {
    changes=$((changes + 1))
    if [ "$DRY" -eq 1 ]; then say "would $1"; return; fi
    say "$1"
    shift
    "$@"
}
live_system() { [ -z "$ROOT" ] && [ -d /run/systemd/system ]; }
user_id() { awk -F: -v n="$1" '$1 == n { print $3 }' "$ROOT/etc/passwd"; }
group_id() { awk -F: -v n="$1" '$1 == n { print $3 }' "$ROOT/etc/group"; }
in_group() { awk -F: -v g="$1" -v u="$2" '$1 == g { n = split($4, m, ","); \
    for (i = 1; i <= n; i++) if (m[i] == u) found = 1 } END { exit !found }' "$ROOT/etc/group"; }
prefix() { [ -n "$ROOT" ] && echo --prefix "$ROOT"; true; }

# directory PATH MODE OWNER:GROUP (names resolved in the target's own passwd and group)
directory() {
    local path="$ROOT$1" uid gid
    uid="$(user_id "${3%:*}")" gid="$(group_id "${3#*:}")"
    if [ ! -d "$path" ]; then
        act "create $1" install -d -m "$2" -o "$uid" -g "$gid" "$path"
    elif [ "$(stat -c '%a %u:%g' "$path")" != "$2 $uid:$gid" ]; then
        act "set $1 to $2 $3" chown_mode "$2" "$uid:$gid" "$path"
    fi
}
chown_mode() { chmod "$1" "$3" && chown "$2" "$3"; }

# file SRC DEST MODE OWNER:GROUP [keep]: copy when different; "keep" never overwrites
file() {
    local dest="$ROOT$2" uid gid
    uid="$(user_id "${4%:*}")" gid="$(group_id "${4#*:}")"
    if [ ! -e "$dest" ]; then
        act "install $2" install -D -m "$3" -o "$uid" -g "$gid" "$1" "$dest"
        return
    fi
    if [ "${5:-}" != keep ] && ! cmp -s "$1" "$dest"; then
        act "update $2" install -m "$3" -o "$uid" -g "$gid" "$1" "$dest"
    elif [ "$(stat -c '%a %u:%g' "$dest")" != "$3 $uid:$gid" ]; then
        act "set $2 to $3 $4" chown_mode "$3" "$uid:$gid" "$dest"
    fi
}

remove() { if [ -e "$ROOT$1" ] || [ -L "$ROOT$1" ]; then act "remove $1" rm -rf "$ROOT$1"; fi; }

packages() {
    if [ -n "$ROOT" ]; then say "apt: skipped under --root"; return; fi
    local missing=() package
    for package in "${APT_NEEDED[@]}" "${APT_PI[@]}"; do
        [ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" = "install ok installed" ] \
            || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return
    # Refresh the lists only when they cannot answer: a required package is missing or
    # there are none yet. Otherwise a board without Raspberry Pi OS's archive would
    # run apt-get update on every run for packages it can never have.
    local lists=(/var/lib/apt/lists/*_Packages)
    if [[ " ${APT_NEEDED[*]} " == *" ${missing[0]} "* ]] || [ ! -e "${lists[0]}" ]; then
        act "update the apt package lists" apt-get update -qq
    fi
    local needed=() optional=()
    for package in "${missing[@]}"; do
        if [[ " ${APT_NEEDED[*]} " == *" $package "* ]]; then
            needed+=("$package")
        elif [ -n "$(apt-cache madison "$package" 2>/dev/null)" ]; then
            optional+=("$package")
        else
            say "$package is not in this system's archives (Raspberry Pi OS has it): skipped"
        fi
    done
    [ ${#needed[@]} -eq 0 ] || act "apt-get install ${needed[*]}" apt_install "${needed[@]}"
    # The archive knows the Pi packages, but offline (wheels on a USB stick) apt cannot
    # fetch them: the kiosk runs without them (no SPI display, no keyboard-wedge reader).
    [ ${#optional[@]} -eq 0 ] \
        || act "apt-get install ${optional[*]}" apt_optional "${optional[@]}"
}
apt_install() {
    env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}
apt_optional() {
    apt_install "$@" || say "could not install $* (offline?): skipped; run again online to add"
}

interfaces() {  # I2C and SPI buses for the display, through raspi-config when it is there
    [ -z "$ROOT" ] && command -v raspi-config >/dev/null || return 0
    local bus
    for bus in i2c spi; do
        [ "$(raspi-config nonint "get_$bus")" = 0 ] \
            || act "enable $bus (takes effect after a reboot)" raspi-config nonint "do_$bus" 0
    done
}

account() {
    local group
    for group in "${HW_GROUPS[@]}"; do  # on a Pi they exist; elsewhere the unit needs them
        [ -n "$(group_id "$group")" ] \
            || act "create group $group" groupadd $(prefix) --system "$group"
    done
    if [ -z "$(user_id "$USER_NAME")" ]; then
        act "create system user $USER_NAME" useradd $(prefix) --system --user-group \
            --home-dir /var/lib/kiosk --no-create-home --shell /usr/sbin/nologin "$USER_NAME"
    fi
    for group in "${HW_GROUPS[@]}"; do
        in_group "$group" "$USER_NAME" \
            || act "add $USER_NAME to group $group" usermod $(prefix) -a -G "$group" "$USER_NAME"
    done
}

program() {
    # One venv per release beside the others (docs/updates.md): kiosk.service runs
    # /opt/kiosk/current, kiosk-updater switches it; this checkout's release becomes both
    # the current and the committed one.
    local version release venv extras=pi-io stamp
    version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$SRC/kiosk/__init__.py")"
    release="/opt/kiosk/releases/$version" venv="$ROOT/opt/kiosk/releases/$version"
    directory /opt/kiosk 755 root:root
    directory /opt/kiosk/releases 755 root:root
    [ -x "$venv/bin/python" ] \
        || act "create $release" python3 -m venv --system-site-packages "$venv"
    # picamera2 comes from Raspberry Pi OS's archive; where apt has none, pip cannot build it.
    python3 -c 'import picamera2' 2>/dev/null && extras=pi
    stamp="$venv/.installed-$( (cd "$SRC" && find pyproject.toml kiosk drivers -type f \
        -not -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16)"
    if [ ! -e "$stamp" ]; then
        # shellcheck disable=SC2086  # PIP_OPTIONS holds several options
        act "install the kiosk ($extras) into $release" sh -c \
            '"$1/bin/python" -m pip install -q $2 "$3[$4]" && rm -f "$1"/.installed-* \
             && touch "$5" && echo "$6" > "$1/.complete"' \
            sh "$venv" "$PIP_OPTIONS" "$SRC" "$extras" "$stamp" "$version"
    fi
    local link
    for link in current committed; do
        [ "$(readlink "$ROOT/opt/kiosk/$link" 2>/dev/null)" = "releases/$version" ] \
            || act "switch /opt/kiosk/$link to $version" switch_link "$link" "$version"
    done
    # The old layout (one venv at /opt/kiosk/.venv), once the release above is in place.
    [ ! -e "$ROOT/opt/kiosk/.venv" ] \
        || act "remove /opt/kiosk/.venv (replaced by $release)" rm -rf "$ROOT/opt/kiosk/.venv"
    file "$SRC/README.md" /opt/kiosk/README.md 644 root:root
}
# switch_link NAME VERSION: one rename, so a power cut leaves the old link or the new one;
# the updater's report says which release runs.
switch_link() {
    ln -sfn "releases/$2" "$ROOT/opt/kiosk/.$1.new"
    mv -T "$ROOT/opt/kiosk/.$1.new" "$ROOT/opt/kiosk/$1"
    printf '{"running": "%s", "trying": null, "last_failure": null}\n' "$2" \
        > "$ROOT/opt/kiosk/release.json"
}

configuration() {
    directory /etc/kiosk 750 root:$USER_NAME
    file "$SRC/config/kiosk.toml" /etc/kiosk/kiosk.toml 640 root:$USER_NAME keep
    directory /var/lib/kiosk 750 $USER_NAME:$USER_NAME
    file "$SRC/systemd/kiosk-modules.conf" /etc/modules-load.d/kiosk.conf 644 root:root
    local before=$changes
    file "$SRC/systemd/60-kiosk-devices.rules" /etc/udev/rules.d/60-kiosk-devices.rules 644 root:root
    if live_system && [ "$changes" -gt "$before" ]; then  # the nodes there now, too
        act "apply the device rule" udevadm trigger --subsystem-match=gpio \
            --subsystem-match=i2c-dev --subsystem-match=spidev
    fi
    file "$SRC/systemd/99-kiosk-scanner.rules" /etc/udev/rules.d/99-kiosk-scanner.rules \
        644 root:root keep
    file "$SRC/systemd/kiosk.service" /etc/systemd/system/kiosk.service 644 root:root
    local unit
    for unit in "${UPDATER_UNITS[@]}"; do
        file "$SRC/systemd/$unit" "/etc/systemd/system/$unit" 644 root:root
    done
}

service() {
    local root_opt=()
    [ -n "$ROOT" ] && root_opt=(--root="$ROOT")
    local unit
    for unit in kiosk.service kiosk-release-check.service kiosk-updater.path; do
        if [ "$(systemctl "${root_opt[@]}" is-enabled "$unit" 2>/dev/null)" != enabled ]; then
            act "enable $unit" systemctl "${root_opt[@]}" --quiet enable "$unit"
        fi
    done
    if live_system && [ "$changes" -gt 0 ]; then
        act "reload systemd" systemctl daemon-reload
        if systemctl --quiet is-active kiosk.service; then
            act "restart kiosk.service" systemctl restart kiosk.service
        fi
        systemctl --quiet is-active kiosk-updater.path \
            || act "start kiosk-updater.path" systemctl start kiosk-updater.path
    fi
}

install_all() {
    packages
    interfaces
    account
    program
    configuration
    service
    say "$changes change(s)$([ "$DRY" -eq 1 ] && echo ' to make')"
    if [ -z "$ROOT" ] && [ "$DRY" -eq 0 ] && ! systemctl --quiet is-active kiosk.service 2>/dev/null; then
        say "next: edit /etc/kiosk/kiosk.toml, then: sudo /opt/kiosk/current/bin/kiosk doctor" \
            "&& sudo systemctl start kiosk"
    fi
}

uninstall_all() {
    local unit
    if live_system && systemctl --quiet is-enabled kiosk.service 2>/dev/null; then
        act "stop and disable kiosk.service" systemctl disable --now kiosk.service
    elif [ -n "$ROOT" ] && [ -e "$ROOT/etc/systemd/system/kiosk.service" ]; then
        act "disable kiosk.service" systemctl --root="$ROOT" --quiet disable kiosk.service
    fi
    for unit in "${UPDATER_UNITS[@]}"; do
        if live_system && systemctl --quiet is-enabled "$unit" 2>/dev/null; then
            act "stop and disable $unit" systemctl disable --now "$unit"
        elif [ -n "$ROOT" ] && [ -e "$ROOT/etc/systemd/system/$unit" ]; then
            act "disable $unit" systemctl --root="$ROOT" --quiet disable "$unit"
        fi
        remove "/etc/systemd/system/$unit"
    done
    remove /etc/systemd/system/kiosk.service
    remove /etc/modules-load.d/kiosk.conf
    remove /etc/udev/rules.d/60-kiosk-devices.rules
    if cmp -s "$SRC/systemd/99-kiosk-scanner.rules" "$ROOT/etc/udev/rules.d/99-kiosk-scanner.rules"; then
        remove /etc/udev/rules.d/99-kiosk-scanner.rules  # an edited rule is the shop's own
    fi
    local path
    for path in .venv releases current committed release.json work.json; do
        remove "/opt/kiosk/$path"
    done
    remove /opt/kiosk/README.md
    [ "$ROOT/opt/kiosk" = "$SRC" ] || rmdir "$ROOT/opt/kiosk" 2>/dev/null || true
    if [ "$PURGE" -eq 1 ]; then
        remove /etc/kiosk
        remove /var/lib/kiosk
        [ -z "$(user_id "$USER_NAME")" ] \
            || act "delete user $USER_NAME" userdel $(prefix) "$USER_NAME"
    else
        say "kept /etc/kiosk, /var/lib/kiosk and user $USER_NAME (--purge removes them)"
    fi
    say "$changes change(s)$([ "$DRY" -eq 1 ] && echo ' to make')"
}

[ "$(id -u)" -eq 0 ] || { say "run as root (sudo)"; exit 1; }
if [ "$UNINSTALL" -eq 1 ]; then uninstall_all; else install_all; fi
