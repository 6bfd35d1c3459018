"""Topics other parts read through kiosk/mqtt/protocol.py instead of spelling them: what staff
subscribe to, and how a topic splits into kiosk and leaf. (The broker's ACL built from them is
checked against the shipped one in test_pki.py.)"""

from __future__ import annotations

import pytest

from kiosk.mqtt import protocol
from kiosk.mqtt.protocol import Leaf, Topics

KIOSK = Topics("loyalty", "shop", "kiosk-1")


def test_staff_hear_every_kiosks_retained_messages_health_results_and_rollouts():
    assert protocol.staff_view("loyalty") == [
        "loyalty/+/+/status", "loyalty/+/+/state", "loyalty/+/+/config/reported",
        "loyalty/+/+/config/version", "loyalty/+/+/config/desired", "loyalty/+/+/enroll",
        "loyalty/+/+/tele/health", "loyalty/+/+/cmd/+/result", "loyalty/_fleet/rollout/+"]


def test_a_summary_hears_only_small_retained_messages_and_the_service_hears_orders_too():
    assert protocol.summary_view("loyalty") == [
        "loyalty/+/+/status", "loyalty/+/+/state", "loyalty/+/+/config/version",
        "loyalty/+/+/enroll", "loyalty/+/+/tele/health"]
    heard = protocol.fleet_service_view("loyalty")
    assert {"loyalty/+/+/cmd/+", "loyalty/+/+/config/desired", "loyalty/+/+/cmd/+/result",
            "loyalty/_fleet/service/ask"} <= set(heard)


@pytest.mark.parametrize(("topic", "leaf"), [
    (KIOSK.health, Leaf.HEALTH), (KIOSK.config_reported, Leaf.CONFIG_REPORTED),
    (KIOSK.command_result("ping"), "cmd/ping/result"),
    (protocol.command_topic("loyalty", "shop", name="ping"), None),  # a site's group topic
    ("loyalty/shop", None),
])
def test_a_topic_splits_into_its_kiosk_and_leaf(topic, leaf):
    assert protocol.leaf_of(topic) == leaf
    assert (protocol.kiosk_of(topic) == ("shop", "kiosk-1")) == (leaf is not None)


def test_only_a_kiosks_answer_to_a_command_is_a_command_result():
    assert protocol.is_command_result(KIOSK.command_result("ping"))
    assert not protocol.is_command_result(KIOSK.command("ping"))
    assert not protocol.is_command_result(KIOSK.state)
