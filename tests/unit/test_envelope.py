"""The signed envelope and the guard, directly: bounds, canonical bytes, the clock rule."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from kiosk.mqtt.envelope import Order, Rejected, seal, signed_bytes, target_for, unseal
from kiosk.provisioning.guard import Guard, SequenceBook, clock_synced
from kiosk.staff.issuer import Issuer
from kiosk.store.db import open_db
from kiosk.trust.signing import Signer, Verifier

STAFF = Signer.generate()


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    return open_db(tmp_path / "kiosk.db")[0]


def guard(conn: sqlite3.Connection, synced: bool) -> Guard:
    return Guard(Verifier({STAFF.key_id: STAFF.public}), "shop", "k1", SequenceBook(conn),
                 lambda: synced)


def test_a_sealed_order_opens_to_the_same_order():
    order, payload = Issuer(STAFF).command(target_for("shop", "k1"), "ping", {"n": 1.5})
    sealed = unseal(payload)
    assert sealed.order == order and sealed.kid == STAFF.key_id
    sealed.verify(Verifier({STAFF.key_id: STAFF.public}))


def test_signed_bytes_do_not_depend_on_key_order_or_spacing():
    order = Order("cmd", "ping", "a/b", "c", 1, 1.0, {"b": 1, "a": "é"})
    envelope = json.loads(seal(order, STAFF))
    envelope["body"] = dict(reversed(list(envelope["body"].items())))
    sealed = unseal(json.dumps(envelope, indent=3, ensure_ascii=False).encode())
    sealed.verify(Verifier({STAFF.key_id: STAFF.public}))
    assert signed_bytes(sealed.order) == signed_bytes(order)


@pytest.mark.parametrize(("payload", "why"), [
    (b"x" * 70_000, "bytes"),
    (b"{", "not JSON"),
    (b"\xff\xfe", "not UTF-8"),
    (b"[" * 5000 + b"]" * 5000, "nested"),
    (b'{"v":1,"body":{"a":NaN}}', "not a number"),
    (b'{"v":1,"body":{"a":"\\ud800"}}', "surrogate"),
    (b'{"v":1,"body":{"a":"' + b"y" * 5000 + b'"}}', "characters"),
    (b'{"v":1,"body":' + b'{"a":' * 20 + b"1" + b"}" * 20 + b"}", "nested"),
    (b'{"v":2}', "version"),
    (b'{"v":1,"body":[]}', "body"),
])
def test_what_is_not_an_envelope_is_malformed(payload, why):
    with pytest.raises(Rejected, match=why) as caught:
        unseal(payload)
    assert caught.value.code == "malformed"


def test_a_body_with_an_extra_field_is_malformed():
    envelope = json.loads(Issuer(STAFF).command("a/b", "ping")[1])
    envelope["body"]["extra"] = 1
    with pytest.raises(Rejected, match="unknown or missing"):
        unseal(json.dumps(envelope).encode())


def test_a_huge_number_is_malformed_not_an_overflow():
    envelope = json.loads(Issuer(STAFF).command("a/b", "ping")[1])
    envelope["body"]["expires_at"] = 10**400
    with pytest.raises(Rejected, match="out of range"):
        unseal(json.dumps(envelope).encode())


def test_expiry_is_checked_only_while_the_clock_is_synchronised(conn):
    issuer = Issuer(STAFF, clock=lambda: 1e9)  # issued in 2001
    _, stale = issuer.command(target_for("shop", "k1"), "ping")
    with pytest.raises(Rejected, match="expired"):
        guard(conn, synced=True).admit(unseal(stale), "cmd", "ping")
    guard(conn, synced=False).admit(unseal(stale), "cmd", "ping")  # sequence still checked
    with pytest.raises(Rejected) as caught:
        guard(conn, synced=False).admit(unseal(stale), "cmd", "ping")
    assert caught.value.code == "replayed"


def test_a_refused_order_does_not_use_up_its_sequence_number(conn):
    _, payload = Issuer(STAFF).command(target_for("shop", "other"), "ping")
    with pytest.raises(Rejected, match="wrong-target"):
        guard(conn, synced=True).admit(unseal(payload), "cmd", "ping")
    assert SequenceBook(conn).last(STAFF.key_id) == 0


def test_site_and_fleet_targets_are_obeyed(conn):
    issuer = Issuer(STAFF)
    for target in (target_for("shop"), target_for()):
        guard(conn, synced=True).admit(unseal(issuer.command(target, "ping")[1]), "cmd", "ping")


def test_the_clock_marker_decides(tmp_path):
    marker = tmp_path / "synchronized"
    probe = clock_synced(str(marker))
    assert not probe()
    marker.touch()
    assert probe()
    assert clock_synced("")()
