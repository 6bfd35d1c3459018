"""Clients from the one factory (kiosk/mqtt/client.py) on a real mosquitto: the session each
kind of client asks for, and the broker check every client makes."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiosk.mqtt.client import Persistent, connect_now, make_client
from kiosk.mqtt.settings import MqttSettings
from kiosk.testing.broker import Mosquitto
from kiosk.testing.harness import wait_for
from tests.system.wall import shipped_broker

TOPIC = "loyalty/test-shop/sessions/reply"


class Peer:
    """One factory-made client and what it heard."""

    def __init__(self, settings: MqttSettings, client_id: str,
                 session: Persistent | None) -> None:
        self.heard: list[bytes] = []
        self.subscribed = threading.Event()
        self.client = make_client(settings, client_id, session=session,
                                  on_message=lambda _c, _u, m: self.heard.append(bytes(m.payload)),
                                  on_subscribe=lambda *_: self.subscribed.set())
        connect_now(self.client)

    def subscribe(self) -> None:
        self.client.subscribe(TOPIC, qos=1)
        assert self.subscribed.wait(10), "no SUBACK"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def peers(mosquitto: Mosquitto) -> Iterator:
    made: list[Peer] = []

    def make(client_id: str, session: Persistent | None = None, protocol: str = "5") -> Peer:
        settings = MqttSettings(host=mosquitto.host, port=mosquitto.port, protocol=protocol)
        made.append(Peer(settings, client_id, session))
        return made[-1]

    yield make
    for peer in made:
        peer.close()


def _sent_while_away(peers, client_id: str, session: Persistent | None,
                     protocol: str = "5") -> list[bytes]:
    """Subscribe, go away, have a reply sent, come back as a new client under the same id
    and subscribe again: what it hears up to the next reply."""
    away = peers(client_id, session, protocol)
    away.subscribe()
    away.close()
    sender = peers("sender")
    sender.client.publish(TOPIC, b"sent while away", qos=1).wait_for_publish(10)
    back = peers(client_id, session, protocol)
    back.subscribe()
    sender.client.publish(TOPIC, b"sent after", qos=1).wait_for_publish(10)
    wait_for(lambda: b"sent after" in back.heard, 5, "the reply sent after")
    return back.heard


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_backend_session_is_taken_up_by_the_next_process(peers, protocol):
    session = Persistent(60, resume_at_start=True)
    heard = _sent_while_away(peers, "backend-1", session, protocol)
    assert heard == [b"sent while away", b"sent after"]


def test_a_session_not_resumed_at_start_is_fresh_and_kept_from_then_on(peers):
    # MQTT 5 clean start on a client's first connect only: reconnects resume (test_link.py).
    # A kiosk resumes at start too unless its identity changed (test_session_across_restarts).
    assert _sent_while_away(peers, "kiosk-1", Persistent(60), "5") == [b"sent after"]


def test_a_client_without_a_session_leaves_nothing_behind(peers):
    assert _sent_while_away(peers, "staff-1", None) == [b"sent after"]


def test_every_client_refuses_a_broker_whose_certificate_names_another_host(tmp_path: Path,
                                                                            certs: Path):
    broker = shipped_broker(tmp_path / "broker", certs / "wrong-name")
    settings = MqttSettings(host="localhost", port=broker.port, tls=True,
                            ca_file=str(certs / "ca.crt"))
    try:
        for client_id, session in (("status-1", None), ("backend-1", Persistent(60))):
            client = make_client(settings, client_id, session=session)
            with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
                connect_now(client)
    finally:
        broker.stop()
