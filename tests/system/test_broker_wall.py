"""The broker is the first wall: the shipped mosquitto config, with TLS, run for real.

Every test starts mosquitto with ``config/mosquitto/loyalty.conf`` and
``loyalty.acl`` exactly as shipped (only the port and file paths moved) and
certificates from ``tools/make-certs`` (``kiosk.staff.certs``), made once per session.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from backend import Ledger, LoyaltyBackend
from kiosk.config import HomeAssistantSection, TelemetrySection
from kiosk.counter.checkin import CheckIn, uuid7
from kiosk.counter.members import MemberStatus
from kiosk.counter.screens import Sync, Welcome
from kiosk.mqtt import protocol
from kiosk.testing.broker import Mosquitto, find_mosquitto
from kiosk.testing.harness import RunningKiosk, wait_for
from kiosk.trust import pki
from tests import ROOT, hass_schema
from tests.system.wall import (
    BACKEND,
    FLEET,
    SITE,
    STAFF,
    A,
    B,
    shipped_broker,
    tls_kiosk_config,
)

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")


def _root(device: str) -> str:
    return f"loyalty/{SITE}/{device}"


class Peer:
    """One MQTT 5 client of the wall: what it receives and the broker's answer to each publish."""

    def __init__(self, broker: Mosquitto, certs: Path, identity: str | None, *,
                 client_id: str = "", tls: bool = True) -> None:
        self.received: list[tuple[str, bytes, bool]] = []
        self.acks: dict[int, Any] = {}
        self.subscribed = threading.Event()
        self.connected = threading.Event()
        self.gone = threading.Event()
        self.refusal = ""
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5)
        if tls:
            stem = pki.file_stem(identity) if identity else None
            client.tls_set(ca_certs=str(certs / "ca.crt"),
                           certfile=str(certs / f"{stem}.crt") if stem else None,
                           keyfile=str(certs / f"{stem}.key") if stem else None)
        client.on_connect = self._on_connect
        client.on_connect_fail = lambda *_: self._failed("connection failed")
        client.on_disconnect = lambda _c, _u, _f, reason, _p: self._failed(str(reason))
        client.on_message = lambda _c, _u, m: self.received.append(
            (m.topic, bytes(m.payload), bool(m.retain)))
        client.on_publish = lambda _c, _u, mid, reason, _p: self.acks.__setitem__(mid, reason)
        client.on_subscribe = lambda *_: self.subscribed.set()
        client.reconnect_delay_set(5, 5)  # a refused client should not hammer the broker
        self.client = client
        client.connect_async(broker.host if tls else "127.0.0.1", broker.port, keepalive=5)
        client.loop_start()

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._failed(str(reason))
        else:
            self.connected.set()

    def _failed(self, reason: str) -> None:
        self.refusal = self.refusal or reason
        self.gone.set()

    def up(self) -> Peer:
        wait_for(self.connected.is_set, 10, "the client to connect")
        return self

    def subscribe(self, *topics: str) -> Peer:
        self.subscribed.clear()
        self.client.subscribe([(topic, 1) for topic in topics])
        wait_for(self.subscribed.is_set, 5, "the SUBACK")
        return self

    def may_publish(self, topic: str, payload: bytes, retain: bool = False) -> bool:
        """Publish at QoS 1: True when the broker took it, False when it said "Not authorized"."""
        mid = self.client.publish(topic, payload, qos=1, retain=retain).mid
        reason = wait_for(lambda: self.acks.get(mid), 5, f"the PUBACK for {topic}")
        if reason.is_failure and str(reason) != "Not authorized":
            raise AssertionError(f"unexpected PUBACK for {topic}: {reason}")
        return not reason.is_failure

    def topics(self) -> list[str]:
        return [topic for topic, _, _ in self.received]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def peers(wall, certs):
    """Make connected clients by identity; all closed after the test."""
    made: list[Peer] = []

    def connect(identity: str | None, **options: Any) -> Peer:
        peer = Peer(wall, certs, identity, **options)
        made.append(peer)
        return peer

    yield connect
    for peer in made:
        peer.close()


def _checkin(device: str, member: str = "LOY-ALICE01") -> bytes:
    return protocol.encode_checkin(CheckIn(uuid7(), device, "b00t", 1, 1795388285.0, member,
                                           "serial"))


def _reply(event_id: str = "e1", name: str = "Pwned!") -> bytes:
    return protocol.encode_reply(event_id, "LOY-ALICE01",
                                 MemberStatus(name, 999_999, "Gold", 0, 1.0), protocol.Ack.CREDITED)


# --- the files --------------------------------------------------------------------------


# --- who gets in ----------------------------------------------------------------------


@pytest.mark.parametrize(("files", "identity", "tls", "logged"), [
    (".", None, True, "peer did not return a certificate"),
    ("stranger", A, True, "certificate verify failed"),
    (".", A, False, "wrong version number"),
], ids=["no certificate", "another CA's certificate", "no TLS"])
def test_a_client_without_a_certificate_from_our_ca_is_refused(wall, certs, files, identity, tls,
                                                              logged):
    peer = Peer(wall, certs / files, identity, tls=tls)
    try:
        wait_for(peer.gone.is_set, 10, "the broker to refuse the client")
        assert not peer.connected.is_set()
        wait_for(lambda: logged in wall.log_text(), 5, f"the broker to log {logged!r}")
    finally:
        peer.close()


# --- who may write and read where ---------------------------------------------------------


def test_kiosk_a_cannot_publish_as_kiosk_b_nor_forge_its_retained_status(peers):
    staff = peers(STAFF).up().subscribe("loyalty/#")
    kiosk_a = peers(A).up()
    forged = {"status": b"offline", "state": b'{"v":1,"state":"degraded"}',
              "evt/checkin": _checkin(B), "tele/health": b"{}", "config/reported": b"{}",
              "cmd/ping/result": b"{}", "enroll": b"{}"}
    for leaf, payload in forged.items():
        retain = leaf in ("status", "state")
        assert not kiosk_a.may_publish(f"{_root(B)}/{leaf}", payload, retain), leaf
    assert kiosk_a.may_publish(f"{_root(A)}/status", b"online", retain=True)
    wait_for(lambda: f"{_root(A)}/status" in staff.topics(), 5, "kiosk A's own status")
    assert staff.topics() == [f"{_root(A)}/status"]
    # Nobody coming later finds a retained status or state for B either.
    late = peers(STAFF).up().subscribe(f"{_root(B)}/#", f"{_root(A)}/status")
    wait_for(lambda: late.received, 5, "the retained status of A")
    assert late.topics() == [f"{_root(A)}/status"]


def test_kiosk_a_cannot_read_kiosk_bs_replies_or_commands(peers):
    kiosk_a = peers(A).up().subscribe("loyalty/#", f"{_root(B)}/reply", f"{_root(B)}/cmd/+")
    kiosk_b = peers(B).up().subscribe(f"{_root(B)}/reply", f"{_root(B)}/cmd/+")
    backend, staff = peers(BACKEND).up(), peers(STAFF).up()
    assert backend.may_publish(f"{_root(B)}/reply", _reply())
    assert staff.may_publish(f"{_root(B)}/cmd/ping", b"{}")
    assert kiosk_b.may_publish(f"{_root(B)}/evt/checkin", _checkin(B))
    # Then what A may read, in the same order: once it has those, B's would have come first.
    assert backend.may_publish(f"{_root(A)}/reply", _reply())
    assert staff.may_publish(f"{_root(A)}/cmd/ping", b"{}")
    assert staff.may_publish(f"loyalty/{SITE}/_all/cmd/ping", b"{}")
    assert staff.may_publish("loyalty/_all/_all/cmd/ping", b"{}")
    wait_for(lambda: len(kiosk_a.received) == 4, 5, "what A may read")
    assert kiosk_a.topics() == [f"{_root(A)}/reply", f"{_root(A)}/cmd/ping",
                                f"loyalty/{SITE}/_all/cmd/ping", "loyalty/_all/_all/cmd/ping"]
    wait_for(lambda: len(kiosk_b.received) == 2, 5, "B's own reply and command")


def test_kiosk_a_cannot_kick_kiosk_b_off_by_reusing_its_client_id(peers):
    kiosk_b = peers(B, client_id=B).up()
    impostor = peers(A, client_id=B).up()  # the broker makes its client id its CN: kiosk-a
    assert not impostor.may_publish(f"{_root(B)}/status", b"offline")
    assert impostor.may_publish(f"{_root(A)}/status", b"online")
    assert kiosk_b.may_publish(f"{_root(B)}/status", b"online")
    assert not kiosk_b.gone.is_set()


def test_one_certificate_is_one_connection(peers):
    first = peers(STAFF, client_id="watch").up()
    peers(STAFF, client_id="command").up()  # both become client id "staff:admin"
    wait_for(first.gone.is_set, 5, "the first connection taken over")


def test_only_the_backend_may_write_a_reply(peers):
    kiosk_b = peers(B).up().subscribe(f"{_root(B)}/reply")
    for writer in (peers(A).up(), kiosk_b, peers(STAFF).up()):
        assert not writer.may_publish(f"{_root(B)}/reply", _reply())
    assert peers(BACKEND).up().may_publish(f"{_root(B)}/reply", _reply(name="Alice"))
    wait_for(lambda: kiosk_b.received, 5, "the backend's reply")
    assert [json.loads(payload)["display_name"] for _, payload, _ in kiosk_b.received] == ["Alice"]


def test_a_packet_too_big_for_any_kiosk_never_reaches_one(peers):
    kiosk_b = peers(B).up().subscribe(f"{_root(B)}/cmd/+", f"{_root(B)}/reply")
    staff = peers(STAFF).up()
    staff.client.publish(f"{_root(B)}/cmd/ping", b"x" * (1 << 20), qos=1)
    wait_for(staff.gone.is_set, 5, "the broker to disconnect the sender")
    assert peers(BACKEND).up().may_publish(f"{_root(B)}/reply", _reply(name="Alice"))
    wait_for(lambda: kiosk_b.received, 5, "the reply after it")
    assert kiosk_b.topics() == [f"{_root(B)}/reply"]


def test_staff_command_and_configure_but_cannot_act_as_a_kiosk_or_the_backend(peers):
    staff = peers(STAFF).up()
    assert staff.may_publish(f"{_root(B)}/config/desired", b"{}", retain=True)
    assert staff.may_publish(f"{_root(B)}/cmd/identify", b"{}")
    assert staff.may_publish(f"loyalty/{SITE}/_all/cmd/identify", b"{}")
    for leaf in ("status", "evt/checkin", "cmd/identify/result", "reply"):
        assert not staff.may_publish(f"{_root(B)}/{leaf}", b"{}"), leaf
    # Not even under a root named after itself (the patterns would give that to any CN).
    assert not staff.may_publish(f"loyalty/{SITE}/{STAFF}/evt/checkin", _checkin(STAFF))
    assert not peers(A).up().may_publish(f"{_root(B)}/config/desired", b"{}")


def test_the_fleet_service_hears_staff_orders_and_answers_staff_but_orders_nothing(peers):
    service = peers(FLEET).up().subscribe(f"{_root(B)}/cmd/+", f"{_root(B)}/config/desired",
                                          "loyalty/_fleet/service/ask")
    staff = peers(STAFF).up()
    for topic in (f"{_root(B)}/cmd/identify", f"{_root(B)}/config/desired",
                  "loyalty/_fleet/service/ask"):
        assert staff.may_publish(topic, b"{}"), topic
    wait_for(lambda: len(service.topics()) == 3, 5, "the orders and the question")
    assert service.may_publish("loyalty/_fleet/service/answer/kioskctl-1", b"{}")
    assert service.may_publish("loyalty/_fleet/service/status", b"online", retain=True)
    for topic in (f"{_root(B)}/cmd/identify", f"{_root(B)}/config/desired", f"{_root(B)}/status",
                  "loyalty/_fleet/rollout/r1", "loyalty/_fleet/service/ask"):
        assert not service.may_publish(topic, b"{}"), topic
    assert not staff.may_publish("loyalty/_fleet/service/answer/kioskctl-1", b"{}")
    assert not staff.may_publish("loyalty/_fleet/service/status", b"offline")
    assert not peers(A).up().may_publish("loyalty/_fleet/service/ask", b"{}")


@pytest.fixture
def tls_ledger(tmp_path):
    book = Ledger(tmp_path / "ledger.db")
    yield book
    book.close()


@pytest.fixture
def tls_backend(wall, certs, tls_ledger):
    service = LoyaltyBackend(wall.host, wall.port, tls_ledger, ca_file=str(certs / "ca.crt"),
                             cert_file=str(certs / "backend-loyalty.crt"),
                             key_file=str(certs / "backend-loyalty.key"))
    service.start()
    if not service.connected.wait(10):
        raise TimeoutError("backend did not connect over TLS")
    yield service
    service.stop()


def test_a_forged_check_in_is_never_credited(peers, tls_backend, tls_ledger):
    staff = peers(STAFF).up()
    assert not staff.may_publish(f"{_root(B)}/evt/checkin", _checkin(B))
    kiosk_a = peers(A).up()
    # A kiosk may write its own check-in topic, but not a visit in another kiosk's name.
    assert kiosk_a.may_publish(f"{_root(A)}/evt/checkin", _checkin(B))
    wait_for(lambda: tls_backend.rejected == 1, 5, "the backend to refuse it")
    assert kiosk_a.may_publish(f"{_root(A)}/evt/checkin", _checkin(A, "LOY-BOB0002"))
    wait_for(lambda: tls_backend.received == 1, 5, "A's own check-in credited")
    assert tls_ledger.visits(B) == [] and tls_ledger.balance("LOY-ALICE01") == 0
    assert [member for *_, member, _ in tls_ledger.visits(A)] == ["LOY-BOB0002"]


def test_a_batch_goes_only_on_a_kiosks_own_topic_and_a_forged_entry_is_refused_alone(
        peers, tls_backend, tls_ledger):
    batch = protocol.encode_checkins([_checkin(A, "LOY-BOB0002"), _checkin(B)])
    assert not peers(STAFF).up().may_publish(f"{_root(A)}/evt/checkins", batch)
    kiosk_a = peers(A).up()
    assert not kiosk_a.may_publish(f"{_root(B)}/evt/checkins", batch)
    assert kiosk_a.may_publish(f"{_root(A)}/evt/checkins", batch)
    wait_for(lambda: (tls_backend.received, tls_backend.rejected) == (1, 1), 5,
             "A's own check-in credited, the one in B's name refused")
    assert tls_ledger.visits(B) == [] and tls_ledger.balance("LOY-ALICE01") == 0
    assert [member for *_, member, _ in tls_ledger.visits(A)] == ["LOY-BOB0002"]


# --- a real kiosk through the wall ----------------------------------------------------------


def test_a_simulated_kiosk_delivers_a_check_in_over_tls(tmp_path, wall, certs, tls_backend,
                                                        tls_ledger, peers):
    staff = peers(STAFF).up().subscribe(f"{_root(A)}/status")
    kiosk = RunningKiosk(tls_kiosk_config(tmp_path, wall, certs, A)).start()
    try:
        kiosk.wait_online()
        kiosk.type_code("LOY-ALICE01")
        wait_for(lambda: isinstance(screen := kiosk.app.screen, Welcome)
                 and screen.sync is Sync.SYNCED, what="the reply on screen")
        assert tls_ledger.balance("LOY-ALICE01") == 10
        wait_for(lambda: (f"{_root(A)}/status", b"online", False) in staff.received
                 or (f"{_root(A)}/status", b"online", True) in staff.received, 5,
                 "the kiosk's status")
    finally:
        kiosk.stop()


def test_the_kiosk_refuses_a_broker_whose_certificate_names_another_host(tmp_path, certs, caplog):
    broker = shipped_broker(tmp_path / "broker", certs / "wrong-name")
    kiosk = RunningKiosk(tls_kiosk_config(tmp_path, broker, certs, A))
    caplog.set_level(logging.WARNING, logger="kiosk.mqtt.link")
    try:
        kiosk.start()
        wait_for(lambda: any("Hostname mismatch" in record.getMessage()
                             for record in caplog.records), 10, "the host name check to fail")
        assert kiosk.app.link.connects == 0
    finally:
        kiosk.stop()
        broker.stop()


def test_tools_make_certs_runs_from_the_checkout(tmp_path):
    script = ROOT / "tools" / "make-certs"
    if not (script.parent.parent / ".venv" / "bin" / "python").exists():
        pytest.skip("the checkout was not set up by tools/dev.sh")
    done = subprocess.run([str(script), str(tmp_path), "--kiosk", A, "--backend", "loyalty"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert {"ca.crt", "broker.crt", "kiosk-a.crt", "backend-loyalty.key", "loyalty.acl"} <= {
        path.name for path in tmp_path.iterdir()}


def _persistent(wall: Mosquitto, certs: Path, identity: str, received: list[bytes]
                ) -> mqtt.Client:
    """``identity`` connected with a session that outlives the connection (as a kiosk's)."""
    stem = pki.file_stem(identity)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=identity, protocol=mqtt.MQTTv5)
    client.tls_set(ca_certs=str(certs / "ca.crt"), certfile=str(certs / f"{stem}.crt"),
                   keyfile=str(certs / f"{stem}.key"))
    client.on_message = lambda _c, _u, m: received.append(bytes(m.payload))
    properties = mqtt.Properties(mqtt.PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 3600
    client.connect(wall.host, wall.port, keepalive=5, clean_start=False, properties=properties)
    client.loop_start()
    return client


def test_an_offline_kiosk_is_queued_at_most_a_mebibyte_of_staff_commands(wall, certs, peers):
    """A staff certificate publishing junk for a kiosk that is away: the shipped
    max_queued_bytes holds the broker to 1 MiB for it (on today's config: all 4 MB)."""
    received: list[bytes] = []
    kiosk = _persistent(wall, certs, A, received)
    kiosk.subscribe(f"{_root(A)}/cmd/#", qos=1)
    time.sleep(0.5)
    kiosk.disconnect()
    kiosk.loop_stop()
    staff = peers(STAFF).up()
    junk = b"x" * 40_000
    for _ in range(100):  # 4 MB of commands the kiosk cannot read while it is away
        assert staff.may_publish(f"{_root(A)}/cmd/ping", junk)
    kiosk = _persistent(wall, certs, A, received)
    try:
        wait_for(lambda: received, 10, "the queued commands")
        time.sleep(1.0)
        assert 20 <= len(received) <= 1 + (1 << 20) // len(junk)
    finally:
        kiosk.disconnect()
        kiosk.loop_stop()


# --- Home Assistant discovery -----------------------------------------------------------

HASS = "hass:home"
DISCOVERY = "homeassistant/#"


def _configs(peer: Peer) -> dict[str, dict[str, Any]]:
    """The discovery configs a peer holds now: the latest per topic, removed ones left out."""
    latest = {topic: payload for topic, payload, _ in peer.received
              if topic.startswith("homeassistant/") and topic.endswith("/config")}
    return {topic: json.loads(payload) for topic, payload in latest.items() if payload}


def _latest(peer: Peer) -> dict[str, bytes]:
    return {topic: payload for topic, payload, _ in peer.received}


def test_a_kiosk_may_publish_its_own_discovery_configs_and_nothing_more(peers):
    kiosk_a = peers(A).up()
    own = f"homeassistant/sensor/{A}/outbox_depth/config"
    assert kiosk_a.may_publish(own, b"{}", retain=True)
    for topic in (f"homeassistant/sensor/{B}/outbox_depth/config", "homeassistant/status",
                  "homeassistant/sensor/outbox_depth/config", f"homeassistant/sensor/{A}/x/state",
                  f"homeassistant/device/{A}/config", "homeassistant/sensor/x/y/z/config"):
        assert not kiosk_a.may_publish(topic, b"{}", retain=True), topic
    assert kiosk_a.may_publish(own, b"", retain=True)  # and removes it again


def test_home_assistant_discovers_a_tls_kiosk_and_it_is_removed_when_switched_off(
        tmp_path, wall, certs, peers):
    hass = peers(HASS).up().subscribe(DISCOVERY, f"{_root(A)}/state", f"{_root(A)}/tele/health",
                                      f"{_root(A)}/status")
    config = tls_kiosk_config(tmp_path, wall, certs, A)
    config = replace(config, homeassistant=HomeAssistantSection(discovery=True),
                     telemetry=TelemetrySection(interval_s=1.0))
    kiosk = RunningKiosk(config).start()
    try:
        kiosk.wait_online()
        kiosk.type_code("LOY-ALICE01")
        configs = wait_for(lambda: len(_configs(hass)) == 5 and _configs(hass), 10,
                           "five discovery configs")
        # what the entities read is there, with every field their templates name
        health = f"{_root(A)}/tele/health"
        wait_for(lambda: json.loads(_latest(hass).get(health, b"{}")).get("checkins_today") == 1,
                 10, "a health report counting the check-in")
        latest = _latest(hass)
        for topic, body in configs.items():
            assert hass_schema.problems(topic, body) == []
            assert body["availability_topic"] == f"{_root(A)}/status"
            source = json.loads(latest[body["state_topic"]])
            named = re.findall(r"value_json\.(\w+)", body["value_template"]
                               + body.get("json_attributes_template", ""))
            assert named and set(named) <= source.keys(), (topic, named)
        assert {body["device"]["identifiers"][0] for body in configs.values()} == {
            f"loyalty-kiosk-{A}"}
        assert latest[f"{_root(A)}/status"] == b"online"
        # Home Assistant restarts and says so: the kiosk publishes every config again
        sent = len([t for t, _, _ in hass.received if t.endswith("/config")])
        assert hass.may_publish("homeassistant/status", b"online")
        wait_for(lambda: len([t for t, _, _ in hass.received if t.endswith("/config")])
                 == sent + 5, 10, "the configs again")
        # and that is all Home Assistant may do to a kiosk
        assert not hass.may_publish(f"{_root(A)}/cmd/ping", b"{}")
        assert not hass.may_publish(f"homeassistant/sensor/{A}/outbox_depth/config", b"",
                                    retain=True)
    finally:
        kiosk.stop()
    off = RunningKiosk(replace(config, homeassistant=HomeAssistantSection(discovery=False)))
    off.start()
    try:
        off.wait_online()
        wait_for(lambda: not _configs(hass), 10, "every config removed (empty, retained)")
    finally:
        off.stop()
    late = peers(HASS).up().subscribe(DISCOVERY)
    time.sleep(1.0)  # retained messages arrive right after the SUBACK; none should
    assert late.received == []
