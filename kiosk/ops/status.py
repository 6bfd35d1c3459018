"""``kiosk status``: what a shop owner asks first — is it online, is anything waiting,
when did it last check someone in, what is wrong.

The database is read read-only (no ``sqlite3`` command needed). The broker is
asked for the kiosk's retained ``status`` and ``state`` under a client id of its
own: anonymously when the kiosk itself connects without credentials, or with a
reader's certificate (``--cert-file``/``--key-file``), never with the kiosk's
own: with the kiosk's identity (and ``use_username_as_clientid``, as the shipped
broker config has it) the broker would hand this short session the kiosk's place
and drop the daemon.
"""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import paho.mqtt.client as mqtt

from kiosk.config import MqttSection, config_path
from kiosk.mqtt import protocol
from kiosk.mqtt.client import connect_now, make_client
from kiosk.mqtt.protocol import ProtocolError
from kiosk.ops.identity import default_device_id
from kiosk.provisioning.overlay import load_in_force
from kiosk.store import dbview


def retained(settings: MqttSection, topics: protocol.Topics,
             timeout: float = 3.0) -> dict[str, bytes] | str:
    """The retained ``status``, ``state`` and ``tele/health`` payloads by topic, or why they
    could not be read (``settings``: never the kiosk's own credentials, see the module's
    docstring)."""
    got: dict[str, bytes] = {}
    done = threading.Event()
    wanted = {topics.status, topics.state, topics.health}

    def on_message(_client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        got[message.topic] = bytes(message.payload)
        if set(got) == wanted:
            done.set()

    client = make_client(settings, f"status-{uuid.uuid4().hex[:12]}",
                         on_connect=lambda c, *_: c.subscribe([(topic, 1) for topic in wanted]),
                         on_message=on_message)
    try:
        connect_now(client)
    except OSError as exc:
        return f"broker {settings.host}:{settings.port} not reachable: {exc}"
    done.wait(timeout)  # a retained message arrives at once; none at all means none is kept
    client.disconnect()
    client.loop_stop()
    return got


def main(config_arg: str | None, out: TextIO = sys.stdout,
         reader: tuple[str, str] | None = None) -> int:
    """Print the status; 0 when online with nothing old waiting, 1 otherwise.

    It reads the config in force, so after staff moved the kiosk to another broker it
    asks that broker; ``reader`` is a ``(certificate, key)`` that may read the kiosk's
    retained status there (a broker that knows the kiosk by its certificate)."""
    layers = load_in_force(config_path(config_arg))
    config = layers.config
    device_id = config.kiosk.device_id or default_device_id()
    topics = protocol.Topics(config.mqtt.topic_prefix, config.kiosk.site, device_id)
    now = time.time()
    print(f"kiosk    {device_id} at {config.kiosk.site}", file=out)
    if layers.applied:
        print(f"config   the file, with staff config version {layers.applied.version}", file=out)
    elif layers.problem:
        print(f"config   the file alone here: {layers.problem}", file=out)
    healthy = _broker_view(config.mqtt, topics, out, reader)
    db = Path(config.kiosk.state_dir) / "kiosk.db"
    try:
        facts = dbview.read(db)
    except (FileNotFoundError, sqlite3.Error) as exc:
        print(f"outbox   unknown: {exc}", file=out)
        return 1
    waiting = f"{facts.waiting} check-ins waiting"
    if facts.oldest_waiting_at is not None:
        waiting += f", oldest stored {dbview.ago(now - facts.oldest_waiting_at)}"
        healthy = healthy and now - facts.oldest_waiting_at < 60
    print(f"outbox   {waiting}", file=out)
    # Delivered check-ins leave the outbox; the member cache remembers the last reply.
    last = [(at, what) for at, what in ((facts.newest_waiting_at, "check-in stored"),
                                        (facts.last_reply_at, "reply from the backend"))
            if at is not None]
    print("last     " + ("; ".join(f"{what} {dbview.ago(now - at)}" for at, what in last)
                         or "no check-in yet"), file=out)
    if facts.verdict != "ok":
        print(f"problem  database fails its check: {facts.verdict}", file=out)
        healthy = False
    if not healthy:
        print("run `kiosk doctor` for what to do", file=out)
    return 0 if healthy else 1


def _broker_view(settings: MqttSection, topics: protocol.Topics, out: TextIO,
                 reader: tuple[str, str] | None) -> bool:
    if reader is not None:
        settings = replace(settings.anonymous(), cert_file=reader[0], key_file=reader[1])
    elif settings.username or settings.cert_file:
        print(f"online   not asked: the broker knows this kiosk by its credentials, and a "
              f"second session under them would take over the kiosk's. Give a certificate "
              f"that may read {topics.status} and {topics.state}, used by no other program "
              f"right now: kiosk status --cert-file F --key-file K (tools/make-certs DIR "
              f"--home-assistant NAME makes one; staff certificates may too)", file=out)
        return True
    else:
        settings = settings.anonymous()
    view = retained(settings, topics)
    if isinstance(view, str):
        print(f"online   unknown: {view}", file=out)
        return False
    status = view.get(topics.status)
    if status is None:
        print(f"online   unknown: no retained status on {topics.status} (never connected, "
              "or this anonymous client may not read it)", file=out)
        return False
    online = status == protocol.ONLINE
    print(f"online   {'yes' if online else 'no'} (retained status on {settings.host})", file=out)
    healthy = online
    if topics.state in view:
        try:
            state, reason = protocol.decode_state(view[topics.state])
        except ProtocolError as exc:
            print(f"state    unreadable: {exc}", file=out)
            return False
        print(f"state    {state}" + (f": {reason}" if reason else ""), file=out)
        if state != "ready":
            print(f"problem  {reason or state}", file=out)
            healthy = False
    if topics.health in view:
        _delivery(view[topics.health], out)
    return healthy


def _delivery(health: bytes, out: TextIO) -> None:
    try:
        waiting = protocol.decode_waiting(health)
    except ProtocolError as exc:
        print(f"delivery unreadable health report: {exc}", file=out)
        return
    print(f"delivery {waiting_text(waiting, time.time())}", file=out)


def waiting_text(waiting: protocol.Waiting, now: float) -> str:
    """What a health report says waits: sent and not acknowledged by the backend, and not sent
    yet (the database alone cannot tell the two apart)."""
    parts = [f"{count} {what}" + (f" (oldest stored {dbview.ago(age)})" if count else "")
             for count, age, what in (
                 (waiting.awaiting_backend, waiting.awaiting_oldest_s, "await the backend"),
                 (waiting.unsent, waiting.unsent_oldest_s, "not sent yet"))]
    return f"{', '.join(parts)}; reported {dbview.ago(now - waiting.sent_at)}"
