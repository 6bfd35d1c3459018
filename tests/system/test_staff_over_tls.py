"""The operations section, end to end through the shipped broker config with TLS.

A kiosk and kioskctl each use their own certificate from ``tools/make-certs``; the
kiosk is enrolled with its pairing code, configured and commanded — and an order
signed with a key it does not trust is refused even though the broker let it in.
"""

from __future__ import annotations

import json

import pytest

from kiosk.staff.kioskctl import OK, REFUSED, main
from kiosk.testing.harness import RunningKiosk, wait_for
from kiosk.trust.pki import file_stem
from tests.system.wall import STAFF, A, tls_kiosk_config


@pytest.fixture
def kioskctl(tmp_path, wall, certs, capsys):
    staff = file_stem(STAFF)
    settings = tmp_path / "kioskctl.toml"
    settings.write_text(
        f'[mqtt]\nhost = "localhost"\nport = {wall.port}\ntls = true\n'
        f'ca_file = "{certs / "ca.crt"}"\ncert_file = "{certs / f"{staff}.crt"}"\n'
        f'key_file = "{certs / f"{staff}.key"}"\n[keys]\ndir = "{tmp_path / "keys"}"\n')

    def run(*argv: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main(["--config", str(settings), "--timeout", "20", *argv])
        return code, capsys.readouterr().out

    return run


def test_enroll_configure_and_command_a_kiosk_over_tls(tmp_path, wall, certs, kioskctl):
    assert kioskctl("keys", "gen", "admin")[0] == OK
    kiosk = RunningKiosk(tls_kiosk_config(tmp_path, wall, certs, A)).start()
    try:
        kiosk.wait_online()
        wait_for(lambda: kiosk.app.staff.shadow.reported, 10, "the kiosk's report")
        code = kiosk.app.staff.enrollment.code  # read off its screen
        assert kioskctl("enroll", A, code)[0] == OK
        kiosk.wait_restarted()
        kiosk.wait_online()
        wait_for(lambda: kiosk.app.staff.shadow.reported, 10, "the enrolled kiosk's report")

        change = tmp_path / "change.toml"
        change.write_text("[counter]\nreply_timeout_s = 5.0\n")
        status, out = kioskctl("--json", "config", "apply", str(change), A)
        assert status == OK and json.loads(out)[A]["outcome"] == "applied"
        assert kiosk.app.config.counter.reply_timeout_s == 5.0  # taken by the running parts
        wait_for(lambda: kiosk.app.staff.shadow.reported, 10, "the configured kiosk's report")
        assert kioskctl("cmd", A, "ping")[0] == OK

        # The broker lets staff write commands; the kiosk still wants a trusted signature.
        assert kioskctl("keys", "gen", "intruder")[0] == OK
        status, out = kioskctl("--key", "intruder", "cmd", A, "restart")
        assert status == REFUSED and "unknown-key" in out
        assert kiosk.restarts == 1  # the enrollment's
    finally:
        kiosk.stop()
