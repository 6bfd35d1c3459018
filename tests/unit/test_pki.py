"""Certificates and the broker's ACL as files: what tools/make-certs writes (kiosk.staff.certs,
from kiosk.trust.pki and kiosk.mqtt.acl) and the shipped mosquitto config."""

from __future__ import annotations

import pytest

from kiosk.staff import certs
from kiosk.trust import pki
from tests import ROOT

SHIPPED = ROOT / "config" / "mosquitto"


A, B = "kiosk-a", "kiosk-b"


def test_the_shipped_acl_is_what_make_certs_writes_for_its_example_identities(tmp_path):
    certs.make_certs(tmp_path, staff=["admin"], backends=["loyalty"], home_assistants=["home"],
                     fleet_services=["main"])
    assert (tmp_path / "loyalty.acl").read_text() == (SHIPPED / "loyalty.acl").read_text()


def test_the_shipped_config_sets_the_listener_options_after_the_listener_line():
    keys = [line.split()[0] for line in (SHIPPED / "loyalty.conf").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    per_listener = {"cafile", "certfile", "keyfile", "tls_version", "require_certificate",
                    "use_identity_as_username", "use_username_as_clientid"}
    assert keys.count("listener") == 1
    assert per_listener <= set(keys[keys.index("listener") + 1:])
    assert "allow_anonymous" in keys and "acl_file" in keys


@pytest.mark.parametrize("device", ["staff:admin", "_all", "rollout", "service", "a/b", "+",
                                    "#", "", "x" * 65])
def test_make_certs_refuses_a_kiosk_name_that_could_be_another_role_or_a_wildcard(device):
    with pytest.raises(pki.CertError):
        pki.kiosk_identity(device)


def test_make_certs_adds_to_a_directory_and_keeps_its_ca(tmp_path, capsys):
    assert certs.main([str(tmp_path), "--kiosk", A]) == 0
    ca = (tmp_path / "ca.crt").read_bytes()
    assert certs.main([str(tmp_path), "--staff", "ann"]) == 0
    assert (tmp_path / "ca.crt").read_bytes() == ca
    assert "user staff:ann" in (tmp_path / "loyalty.acl").read_text()
    assert (tmp_path / "kiosk-a.key").stat().st_mode & 0o077 == 0
    assert certs.main([str(tmp_path), "--kiosk", "bad/name"]) == 1
    assert "expected a device id" in capsys.readouterr().err
