"""The wire format: round trips, rejections, and the AsyncAPI document kept equal to the code."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from kiosk import protocol
from kiosk.checkin import CheckIn, uuid7
from kiosk.members import MemberStatus

CHECKIN = CheckIn(uuid7(), "pi-1", "b00t", 7, 1795388285.351, "LOY-ALICE01", "camera")
STATUS = MemberStatus("Alice", 120, "Silver", 30, 0.4, "")


@pytest.fixture(scope="module")
def spec():
    return json.loads(resources.files("kiosk").joinpath("asyncapi.json").read_text())


def test_a_check_in_round_trips_and_replay_is_marked():
    payload = protocol.encode_checkin(CHECKIN)
    assert protocol.decode_checkin(payload) == (CHECKIN, False)
    assert protocol.decode_checkin(protocol.mark_replayed(payload)) == (CHECKIN, True)


def test_a_reply_round_trips():
    payload = protocol.encode_reply(CHECKIN.event_id, CHECKIN.member_id, STATUS)
    assert protocol.decode_reply(payload) == (CHECKIN.event_id, CHECKIN.member_id, STATUS)


def test_uuid7_ids_sort_by_time_and_are_version_7():
    earlier, later = uuid7(1_700_000_000_000), uuid7(1_700_000_000_001)
    assert earlier < later
    assert earlier[14] == "7" and earlier[19] in "89ab"


@pytest.mark.parametrize(("payload", "message"), [
    (b"{", "not JSON"),
    (b'"text"', "expected a JSON object"),
    (b'{"v": 2}', "unsupported schema version 2"),
    (b'{"v": 1, "event_id": 5}', "field 'event_id' has the wrong type"),
    (b'{"v": 1, "event_id": "e"}', "missing field"),
])
def test_malformed_replies_say_what_is_wrong(payload, message):
    with pytest.raises(protocol.ProtocolError, match=message):
        protocol.decode_reply(payload)


def test_the_document_names_exactly_the_kiosks_topics(spec):
    topics = protocol.Topics("{prefix}", "{site}", "{device_id}")
    assert set(spec["channels"]) == {topics.status, topics.state, topics.checkin, topics.reply,
                                     topics.health}


@pytest.mark.parametrize(("schema", "payload"), [
    ("CheckIn", protocol.mark_replayed(protocol.encode_checkin(CHECKIN))),
    ("Reply", protocol.encode_reply(CHECKIN.event_id, CHECKIN.member_id,
                                    MemberStatus("A", 1, "B", 2, 0.5, "Free coffee"))),
    ("State", protocol.encode_state("degraded", "display: gone", "0.1.0")),
    ("Health", protocol.encode_health(protocol.Health(
        uptime_s=1.0, state="ready", problems=[], outbox_depth=0, outbox_oldest_s=0.0, scans=1,
        checkins=1, visits_refused=0, scans_lost=0, delivered=1, refused=0, decode_fps=9.8,
        connects=1, bad_messages=0, replies_refused=0, events_dropped=0, link_drops=0,
        cpu_temp_c=None))),
])
def test_the_document_describes_every_field_the_code_sends(spec, schema, payload):
    described = spec["components"]["schemas"][schema]
    sent = json.loads(payload)
    assert set(sent) == set(described["properties"])
    assert set(described["required"]) <= set(sent)
