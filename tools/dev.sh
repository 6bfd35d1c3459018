#!/usr/bin/env bash
# Set up everything the kiosk needs on Debian 12 / Raspberry Pi OS (bookworm), then run it.
#
#   tools/dev.sh demo [--scans N]   set up, then run the simulated demo
#   tools/dev.sh test [pytest args] set up, then lint and run the test suite
#   tools/dev.sh setup              set up only
#
# Installs what is missing and nothing else: mosquitto, libzbar0 and python3-venv
# through apt-get; the package and its dependencies into ./.venv through pip.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'dev.sh: %s\n' "$*" >&2; }

system_packages() {
    local missing=()
    command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
    # ldconfig lives in /sbin, which is not on a normal user's PATH on Debian.
    { ldconfig -p || /sbin/ldconfig -p; } 2>/dev/null | grep -q 'libzbar\.so\.0' \
        || missing+=(libzbar0)
    python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
    [ ${#missing[@]} -eq 0 ] && return
    say "installing ${missing[*]} with apt-get"
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

python_packages() {
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || { say "Python 3.11 or newer is needed (found $(python3 --version))"; exit 1; }
    [ -x .venv/bin/python ] || { say "creating .venv"; python3 -m venv .venv; }
    # Re-install only when pyproject.toml changed since the last install.
    local stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
    if [ ! -e "$stamp" ]; then
        say "installing the kiosk and its dependencies into .venv"
        .venv/bin/python -m pip install -q --upgrade pip
        .venv/bin/python -m pip install -q -e '.[dev]'
        rm -f .venv/.installed-*
        touch "$stamp"
    fi
}

command="${1:-demo}"
shift || true
system_packages
python_packages
case "$command" in
    setup) say "ready: .venv/bin/kiosk --help" ;;
    demo) exec .venv/bin/kiosk demo "$@" ;;
    test)
        .venv/bin/ruff check .
        .venv/bin/mypy kiosk drivers
        exec .venv/bin/pytest "$@"
        ;;
    *) say "unknown command '$command' (use demo, test or setup)"; exit 2 ;;
esac
