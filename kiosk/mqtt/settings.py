"""How to reach the broker: the ``[mqtt]`` settings every MQTT client of the project takes.

The kiosk's config (``kiosk.config``, as ``MqttSection``), kioskctl's config and the
reference backend all describe a broker with this one type, so neither this package
nor the backend needs the kiosk's config module. A wrong value raises ``ValueError``
naming the key; the config loader turns it into a one-line ``ConfigError``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from kiosk.mqtt.protocol import TOPIC_WORD


@dataclass(frozen=True)
class MqttSettings:
    """The broker connection."""

    host: str = "localhost"
    port: int = 1883
    protocol: str = "5"
    topic_prefix: str = "loyalty"
    keepalive_s: int = 30
    username: str = ""
    password: str = ""
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 2.0
    connect_timeout_s: float = 2.5
    session_expiry_s: int = 86400

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("host: expected a host name or address")
        if not 1 <= self.port <= 65535:
            raise ValueError("port: expected a TCP port from 1 to 65535")
        if self.protocol not in ("5", "3.1.1"):
            raise ValueError('protocol: expected "5" or "3.1.1"')
        if not TOPIC_WORD.match(self.topic_prefix):
            raise ValueError("topic_prefix: expected 1-64 letters, digits, '_', '-' or '.'")
        if not 5 <= self.keepalive_s <= 3600:
            raise ValueError("keepalive_s: expected 5 to 3600 s")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise ValueError("reconnect_max_s: expected at least reconnect_min_s, both above 0")
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("key_file: expected cert_file and key_file together")
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, key)
            if self.tls and path and not Path(path).is_file():
                raise ValueError(f"{key}: no such file {path}")
        if not 0.5 <= self.connect_timeout_s <= 60:
            raise ValueError("connect_timeout_s: expected 0.5 to 60 s")
        if self.session_expiry_s < 0:
            raise ValueError("session_expiry_s: expected 0 s or more")

    def anonymous(self) -> MqttSettings:
        """The same broker, reached as nobody: no credentials, no client certificate.

        For a short look (``kiosk status``) beside a running kiosk: under the kiosk's
        identity the broker would hand that session the kiosk's place and drop the daemon.
        The CA is kept: the broker is still checked.
        """
        return replace(self, username="", password="", cert_file="", key_file="")
