#!/usr/bin/env bash
# Set up everything the kiosk needs on Debian 12 / Raspberry Pi OS (bookworm), then run it.
#
#   tools/dev.sh demo [--scans N]   set up, then run the simulated demo
#   tools/dev.sh test [pytest args] set up, then lint and run the test suite
#   tools/dev.sh setup              set up only
#
# Installs what is missing and nothing else: mosquitto, libzbar0, python3-venv, systemd
# (for systemd-analyze) and postgresql (the backend's tests) through apt-get, and runs
# apt-get only then; the package and its dependencies into ./.venv through pip.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'dev.sh: %s\n' "$*" >&2; }

has_library() {
    # Capture the cache, then match: piping `ldconfig -p` into `grep -q` fails at random
    # under pipefail (grep exits at the first match, ldconfig dies of SIGPIPE).
    # ldconfig lives in /sbin, which is not on a normal user's PATH on Debian.
    local cache
    cache="$(ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null || true)"
    [[ "$cache" == *"$1"* ]]
}

missing_packages() {
    command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || echo mosquitto
    has_library 'libzbar.so.0' || echo libzbar0
    python3 -c 'import ensurepip, venv' 2>/dev/null || echo python3-venv
    # systemd-analyze checks the unit's hardening score in the tests.
    command -v systemd-analyze >/dev/null || echo systemd
    # The reference backend's PostgreSQL store is tested on a private server (initdb, pg_ctl).
    command -v initdb >/dev/null || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null \
        || echo postgresql
}

system_packages() {
    local missing
    mapfile -t missing < <(missing_packages)
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
        .venv/bin/mypy kiosk drivers backend
        exec .venv/bin/pytest "$@"
        ;;
    *) say "unknown command '$command' (use demo, test or setup)"; exit 2 ;;
esac
