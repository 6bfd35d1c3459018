"""Two backend instances, each with a certificate of its own, share the check-ins through the
shipped broker config (TLS, certificate name as username and client id, the ACL make-certs
writes): mosquitto's ACL lets a shared subscription through."""

from __future__ import annotations

from pathlib import Path

from backend import Ledger, LoyaltyBackend
from kiosk.staff.certs import make_certs
from kiosk.testing.harness import RunningKiosk, wait_for
from tests.system.wall import A, shipped_broker, tls_kiosk_config


def test_two_instances_with_their_own_certificates_share_the_check_ins(tmp_path: Path):
    certs = tmp_path / "certs"
    make_certs(certs, kiosks=[A], backends=["loyalty-1", "loyalty-2"])
    broker = shipped_broker(tmp_path / "broker", certs)
    ledger = Ledger(tmp_path / "ledger.db")
    instances = [LoyaltyBackend("localhost", broker.port, ledger, share_group="chain",
                                ca_file=str(certs / "ca.crt"),
                                cert_file=str(certs / f"backend-loyalty-{n}.crt"),
                                key_file=str(certs / f"backend-loyalty-{n}.key"))
                 for n in (1, 2)]
    kiosk = RunningKiosk(tls_kiosk_config(tmp_path, broker, certs, A))
    try:
        for instance in instances:
            instance.start()
            assert instance.connected.wait(15), "a backend could not subscribe over TLS"
        kiosk.start()
        kiosk.wait_online(15)
        members = [f"LOY-SHARE{n:03d}" for n in range(6)]
        for done, member in enumerate(members, 1):  # one customer at a time: a message each
            kiosk.type_code(member)                  # (a rush would go in a batch or two)
            assert kiosk.wait_credited(done, timeout=60) >= done
        wait_for(lambda: sum(i.received for i in instances) >= 6, 10, "both answered")
        assert [i.received > 0 for i in instances] == [True, True]  # the load was shared
        assert all(ledger.balance(member) == 10 for member in members)
    finally:
        kiosk.stop()
        for instance in instances:
            instance.stop()
        ledger.close()
        broker.stop()
