"""The kiosk's MQTT link on a real mosquitto, directly: what it emits, what it subscribes
to, how it gives up on a silent connection, and what it does with a malformed reply."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from kiosk.config import MqttSection, TelemetrySection
from kiosk.counter.events import Acked, Event, LinkDown, LinkUp, Reply, StaffMessage
from kiosk.counter.members import MemberStatus
from kiosk.mqtt import protocol
from kiosk.mqtt.link import Link
from kiosk.testing.broker import Mosquitto
from kiosk.testing.harness import RunningKiosk, wait_for

CREDITED = protocol.Ack.CREDITED

TOPICS = protocol.Topics("loyalty", "shop", "link-1")
ALICE = MemberStatus("Alice", 10, "Bronze", 40, 0.2)


class Events(list):
    """What the link emitted, in order (appended from paho's thread)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.append(event)

    def of(self, kind: type) -> list:
        with self._lock:
            return [event for event in self if isinstance(event, kind)]


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def link(mosquitto: Mosquitto, events: Events) -> Iterator[Link]:
    started = Link(MqttSection(host=mosquitto.host, port=mosquitto.port, keepalive_s=5),
                   TOPICS, "link-1", events)
    started.start()
    try:
        wait_for(lambda: events.of(LinkUp), what="LinkUp")
        yield started
    finally:
        started.stop()


def test_connecting_emits_link_up_and_says_online_retained(link, mosquitto, events):
    assert link.connected and link.connects == 1 and link.alive()
    with mosquitto.listen(TOPICS.status) as statuses:
        wait_for(lambda: statuses == [protocol.ONLINE], what="the retained online status")


def test_replies_and_staff_orders_on_its_topics_are_emitted_and_nothing_else(link, intruder,
                                                                             events):
    intruder.publish("loyalty/shop/other-kiosk/reply",
                     protocol.encode_reply("e0", "LOY-ALICE01", ALICE, CREDITED),
                     qos=1).wait_for_publish(5)
    intruder.publish(TOPICS.reply, protocol.encode_reply("e1", "LOY-ALICE01", ALICE, CREDITED),
                     qos=1).wait_for_publish(5)
    for topic in (TOPICS.command("ping"), protocol.command_topic("loyalty", "shop", name="ping"),
                  protocol.command_topic("loyalty", name="ping"), TOPICS.config_desired):
        intruder.publish(topic, b"{}", qos=1).wait_for_publish(5)
    wait_for(lambda: len(events.of(StaffMessage)) == 4, what="the four staff messages")
    assert events.of(Reply) == [Reply("e1", "LOY-ALICE01", ALICE, "credited")]
    assert [message.topic for message in events.of(StaffMessage)] == [
        TOPICS.command("ping"), protocol.command_topic("loyalty", "shop", name="ping"),
        protocol.command_topic("loyalty", name="ping"), TOPICS.config_desired]


def test_a_malformed_reply_is_counted_and_not_emitted(link, intruder, events):
    intruder.publish(TOPICS.reply, b'{"v":1,"balance":"lots"}', qos=1).wait_for_publish(5)
    intruder.publish(TOPICS.reply, protocol.encode_reply("e1", "LOY-ALICE01", ALICE, CREDITED),
                     qos=1).wait_for_publish(5)
    wait_for(lambda: events.of(Reply), what="the good reply after it")
    assert link.bad_messages == 1 and len(events.of(Reply)) == 1


def test_a_publish_is_acknowledged_by_its_message_id(link, events):
    mid = link.publish(TOPICS.checkin, b'{"v":1}', qos=1)
    wait_for(lambda: any(ack.mid == mid for ack in events.of(Acked)), what="the PUBACK")
    [ack] = [ack for ack in events.of(Acked) if ack.mid == mid]
    assert not ack.ok and "No matching subscribers" in ack.reason  # nobody listens: not delivery


def test_a_silent_link_is_dropped_by_supervise_and_comes_back(link, events):
    link.supervise(link.last_heard + 1.0)  # quiet for less than a keepalive: nothing happens
    assert link.drops == 0 and not events.of(LinkDown)
    link.supervise(link.last_heard + 5.0)  # a whole keepalive without a word from the broker
    assert link.drops == 1
    wait_for(lambda: events.of(LinkDown), what="LinkDown")
    wait_for(lambda: len(events.of(LinkUp)) == 2, what="LinkUp again")
    assert link.connects == 2 and link.connected


def test_a_silent_broker_is_noticed_within_a_keepalive_while_health_reports_go_out(
        kiosk_config, mosquitto):
    # Health reports are QoS 0: paho calls on_publish for them once they are written to the
    # socket, which says nothing about the broker. Every second one goes out here.
    config = replace(kiosk_config, telemetry=TelemetrySection(interval_s=1.0))
    keepalive = config.mqtt.keepalive_s
    kiosk = RunningKiosk(config).start()
    try:
        kiosk.wait_online()
        # Reports have been going out for a while, and paho's own PINGREQ has just been
        # answered: paho alone would need two more keepalives to give up.
        time.sleep(1.5 * keepalive)
        mosquitto.pause()  # connections stay open; nothing is answered
        silent_at = time.monotonic()
        wait_for(lambda: not kiosk.app.controller.online, timeout=4 * keepalive,
                 what="the kiosk to notice the silent broker")
        noticed = time.monotonic() - silent_at
        assert noticed <= 1.1 * keepalive, f"noticed after {noticed:.1f} s"
    finally:
        mosquitto.resume()
        kiosk.stop()
