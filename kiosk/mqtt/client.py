"""The one MQTT client factory: every paho client of the project is made here.

The kiosk's link, the reference backend, staff's client, ``kiosk status`` and the
test broker's listener all reach a broker the same way, from one
:class:`~kiosk.mqtt.settings.MqttSettings`: the same protocol version, the same
credentials, TLS with the broker's certificate checked against the CA *and* its
host name, the same reconnect delays and connect timeout, and paho's packet trace
in our log at ``DEBUG``. Only what really differs is chosen by the caller: the client id, the
callbacks, whether the broker keeps a session for it (:class:`Persistent`) and how
many QoS 1 messages it keeps in flight.

The client comes back pointed at the broker (paho's ``connect_async``: nothing is
sent yet). ``loop_start()`` then connects in the background and keeps retrying, as
daemons want; :func:`connect_now` connects at once and fails at once, as a command
a person waits for wants.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from drivers.files import write_atomically
from kiosk.mqtt.settings import MqttSettings

log = logging.getLogger(__name__)

Callback = Callable[..., Any]
"""A paho callback (``CallbackAPIVersion.VERSION2`` signatures)."""


@dataclass(frozen=True)
class Persistent:
    """A session the broker keeps while the client is away: what was sent to it then
    (replies, staff orders, check-ins) is delivered when it is back.

    Without one, a client's session ends when it disconnects.
    """

    expiry_s: int
    """MQTT 5 session expiry: how long the broker keeps the session after a disconnect."""
    resume_at_start: bool = False
    """Take up the session a previous process left, on the very first connect too (the
    backend: check-ins sent while it was down are in it; a kiosk whose identity has not
    changed, :func:`session_kept`). Otherwise the first connect starts a fresh session and
    only reconnects resume it (MQTT 5; an MQTT 3.1.1 session is simply kept)."""


def session_kept(marker: Path, settings: MqttSettings, client_id: str, site: str) -> bool:
    """True when the broker may still hold this client's session from an earlier process:
    the same broker, client id, user, protocol and topics as the last start (``marker``
    remembers them). Otherwise the identity changed: record the new one and start clean,
    so no subscription or message of the old identity is taken up.

    A kiosk resumes its session at start on this answer, so a staff command sent while the
    daemon restarted (or was killed) is delivered when it is back, unless it expired.
    """
    identity = json.dumps([settings.host, settings.port, settings.protocol, settings.username,
                           settings.topic_prefix, site, client_id]).encode()
    try:
        if marker.read_bytes() == identity:
            return True
    except OSError:
        pass  # no marker (a first start) or unreadable: start clean
    try:
        write_atomically(marker, lambda file: file.write(identity))
    except OSError as exc:  # a full disk: start clean now, remember it at a later start
        log.warning("MQTT session identity not saved (%s): this start is a clean one", exc)
    return False


def make_client(settings: MqttSettings, client_id: str, *, session: Persistent | None = None,
                inflight: int = 20, on_connect: Callback | None = None,
                on_connect_fail: Callback | None = None,
                on_disconnect: Callback | None = None, on_message: Callback | None = None,
                on_publish: Callback | None = None, on_subscribe: Callback | None = None,
                on_pre_connect: Callback | None = None) -> mqtt.Client:
    """A paho client for ``settings``, pointed at the broker but not yet connected.

    ``inflight``: QoS 1 messages paho sends before holding the rest back until PUBACKs
    come (paho 2.2.0 ignores a broker's Receive Maximum: ``client.py`` never reads it);
    0: no limit, for a caller that keeps its own window. Callbacks run on paho's network
    thread.
    """
    v5 = settings.protocol == "5"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                         # MQTT 3.1.1 chooses the session here, MQTT 5 at connect (below).
                         clean_session=None if v5 else session is None)
    if log.isEnabledFor(logging.DEBUG):
        # paho's packet trace, only when asked for: at ERROR level paho also reports a
        # normal disconnect racing its network thread ("Client is not connected").
        client.enable_logger(log)
    client.reconnect_delay_set(  # paho takes float seconds despite its int hints
        settings.reconnect_min_s, settings.reconnect_max_s)  # type: ignore[arg-type]
    client.connect_timeout = settings.connect_timeout_s  # the TCP (and TLS) part of it
    client.max_inflight_messages_set(inflight)
    if settings.username:
        client.username_pw_set(settings.username, settings.password or None)
    if settings.tls:  # the CA checks the broker's certificate, and paho its host name
        client.tls_set(ca_certs=settings.ca_file or None, certfile=settings.cert_file or None,
                       keyfile=settings.key_file or None, cert_reqs=ssl.CERT_REQUIRED)
    client.on_connect = on_connect
    client.on_connect_fail = on_connect_fail
    client.on_disconnect = on_disconnect
    client.on_message = on_message
    client.on_publish = on_publish
    client.on_subscribe = on_subscribe
    client.on_pre_connect = on_pre_connect
    if v5 and session is not None:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = session.expiry_s
        client.connect_async(settings.host, settings.port, settings.keepalive_s,
                             clean_start=(False if session.resume_at_start
                                          else mqtt.MQTT_CLEAN_START_FIRST_ONLY),
                             properties=properties)
    else:
        client.connect_async(settings.host, settings.port, settings.keepalive_s)
    log.debug("MQTT client %s for %s:%d: MQTT %s%s%s, %s session", client_id, settings.host,
              settings.port, settings.protocol, ", TLS" if settings.tls else "",
              ", client certificate" if settings.cert_file else "",
              "persistent" if session else "clean")
    return client


def connect_now(client: mqtt.Client) -> None:
    """Connect ``client`` (from :func:`make_client`) at once, then start its network thread.

    Raises ``OSError`` (``ssl.SSLError`` among them) when the broker cannot be reached
    or its certificate does not check out; the broker's answer arrives in ``on_connect``.
    """
    client.reconnect()  # the first connect: make_client gave paho the address and session
    client.loop_start()


def max_packet(connack_properties: Any) -> int | None:
    """The Maximum Packet Size a broker announced in its CONNACK (MQTT 5), or None (none
    announced, or MQTT 3.1.1). paho 2.2.0 sets each property it read as an attribute of
    ``Properties`` (``properties.py``, ``__setattr__``) and hands them to ``on_connect``."""
    size = getattr(connack_properties, "MaximumPacketSize", None)
    return size if isinstance(size, int) else None
