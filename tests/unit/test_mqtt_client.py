"""The one MQTT client factory (kiosk/mqtt/client.py) and the settings it takes: what a client
is made with, before it meets a broker (tests/system/test_mqtt_sessions.py meets one)."""

from __future__ import annotations

import paho.mqtt.client as mqtt

from kiosk.mqtt.client import Persistent, make_client
from kiosk.mqtt.settings import MqttSettings
from kiosk.staff.certs import make_certs


def test_a_client_takes_the_broker_the_protocol_and_the_timings_from_its_settings():
    settings = MqttSettings(host="broker.shop.lan", port=8883, protocol="3.1.1", keepalive_s=45,
                            username="kiosk-1", password="secret", connect_timeout_s=4.0)
    client = make_client(settings, "kiosk-1", inflight=7)
    assert (client.host, client.port, client.keepalive) == ("broker.shop.lan", 8883, 45)
    assert client.protocol == mqtt.MQTTv311
    assert (client.username, client.password) == ("kiosk-1", "secret")
    assert client.connect_timeout == 4.0
    assert client.max_inflight_messages == 7
    assert make_client(MqttSettings(), "staff").protocol == mqtt.MQTTv5


def test_making_a_client_sends_nothing():
    # Nothing listens on port 1: a client that tried to connect here would raise.
    client = make_client(MqttSettings(host="127.0.0.1", port=1), "quiet",
                         session=Persistent(60, resume_at_start=True))
    assert not client.is_connected()


def test_anonymous_settings_keep_the_broker_and_its_ca_but_no_identity(tmp_path):
    make_certs(tmp_path, kiosks=["kiosk-a"])
    settings = MqttSettings(host="broker.shop.lan", tls=True, ca_file=str(tmp_path / "ca.crt"),
                            cert_file=str(tmp_path / "kiosk-a.crt"),
                            key_file=str(tmp_path / "kiosk-a.key"),
                            username="kiosk-a", password="secret")
    nobody = settings.anonymous()
    assert (nobody.username, nobody.password, nobody.cert_file, nobody.key_file) == ("",) * 4
    assert (nobody.host, nobody.tls, nobody.ca_file) == (settings.host, True, settings.ca_file)
    assert make_client(nobody, "status-1").username is None
