"""The wire format: round trips, rejections, and the AsyncAPI document kept equal to the code."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from importlib import resources

import pytest

from kiosk.counter.checkin import CheckIn, uuid7
from kiosk.counter.members import MemberStatus
from kiosk.mqtt import protocol
from kiosk.mqtt.envelope import Order, seal
from kiosk.staff.issuer import Issuer
from kiosk.trust.signing import Signer

CREDITED = protocol.Ack.CREDITED

CHECKIN = CheckIn(uuid7(), "pi-1", "b00t", 7, 1795388285.351, "LOY-ALICE01", "camera")
STATUS = MemberStatus("Alice", 120, "Silver", 30, 0.4, "")


@pytest.fixture(scope="module")
def spec():
    return json.loads(resources.files("kiosk.mqtt").joinpath("asyncapi.json").read_text())


def test_a_check_in_round_trips_and_replay_is_marked():
    payload = protocol.encode_checkin(CHECKIN)
    assert protocol.decode_checkin(payload) == (CHECKIN, False)
    assert protocol.decode_checkin(protocol.mark_replayed(payload)) == (CHECKIN, True)


def test_answers_to_one_kiosk_go_in_batches_and_a_bad_answer_is_refused_alone():
    answers = [protocol.encode_reply(f"e{n}", "LOY-ALICE01", STATUS, CREDITED)
               for n in range(450)]
    messages = protocol.encode_replies(answers)
    assert len(messages) == 3 and all(len(m) <= protocol.REPLY_BATCH_LIMITS.max_bytes
                                      for m in messages)
    decoded = [a for m in messages for a in protocol.decode_replies(m)[0]]
    assert [a.event_id for a in decoded] == [f"e{n}" for n in range(450)]
    assert protocol.encode_replies(answers[:1]) == answers[:1]  # one answer goes as it is
    named = protocol.encode_reply("e1", "LOY-ALICE01", replace(STATUS, badge="answers"),
                                  CREDITED)
    assert protocol.decode_replies(named)[0][0].status.badge == "answers"
    broken = messages[0].replace(b'"event_id":"e7"', b'"event_id":7', 1)
    good, refused = protocol.decode_replies(broken)
    assert len(good) == 199 and refused == ["field 'event_id' has the wrong type (int)"]
    with pytest.raises(protocol.ProtocolError):  # a single answer keeps its 4 KiB limit
        protocol.decode_replies(protocol.encode_reply(
            "e1", "LOY-ALICE01", replace(STATUS, badge="x" * 5000), CREDITED))


def test_check_ins_go_in_batches_and_a_bad_one_is_refused_alone_by_name():
    later = replace(CHECKIN, event_id=uuid7(), seq=8)
    payloads = [protocol.encode_checkin(CHECKIN), protocol.mark_replayed(
        protocol.encode_checkin(later))]
    broken = protocol.encode_checkin(replace(CHECKIN, event_id="e-bad")).replace(
        b'"seq":7', b'"seq":-1')
    unversioned = protocol.encode_checkin(replace(CHECKIN, event_id="e-v2")).replace(
        b'"v":1', b'"v":2')
    control = broken.replace(b'"e-bad"', b'"e\\nforged log line"')
    batch = protocol.encode_checkins([*payloads, broken, b"5", unversioned, control])
    first, second, bad, nameless, v2, unnamed = protocol.decode_checkins(batch)
    assert (first, second) == ((CHECKIN, False), (later, True))
    assert all(isinstance(entry, protocol.Unreadable) for entry in (bad, nameless, v2, unnamed))
    assert bad.event_id == "e-bad" and "seq" in bad.reason
    assert json.loads(bad.payload)["seq"] == -1
    assert (nameless.event_id, nameless.reason) == (None, "a check-in is not an object")
    assert (v2.event_id, v2.reason) == ("e-v2", "unsupported schema version 2")
    assert unnamed.event_id is None  # a control character: not a name to answer or log


def test_a_batch_beyond_its_limits_is_refused_whole():
    one = protocol.encode_checkin(CHECKIN)
    with pytest.raises(protocol.ProtocolError, match="1 to 200"):
        protocol.decode_checkins(protocol.encode_checkins([one] * 201))
    with pytest.raises(protocol.ProtocolError, match="1 to 200"):
        protocol.decode_checkins(protocol.encode_checkins([]))
    with pytest.raises(protocol.ProtocolError, match="bytes"):
        protocol.decode_checkins(protocol.encode_checkins([one] * 200).replace(
            b'"camera"', b'"' + b"c" * 200 + b'"'))


def test_pack_fills_a_batch_to_its_count_or_size_and_always_takes_one():
    limit = protocol.CHECKIN_BATCH_LIMITS.max_bytes
    assert protocol.pack([250] * 500, protocol.MAX_CHECKINS, limit) == protocol.MAX_CHECKINS
    assert protocol.pack([20_000] * 5, protocol.MAX_CHECKINS, limit) == 2
    assert protocol.pack([70_000], protocol.MAX_CHECKINS, limit) == 1
    sizes = [len(protocol.encode_checkin(CHECKIN))] * 300
    packed = protocol.encode_checkins([protocol.encode_checkin(CHECKIN)] * protocol.pack(
        sizes, protocol.MAX_CHECKINS, 20_000))
    assert len(packed) <= 20_000 < len(packed) + sizes[0] + 64  # full, but for the reserve


def test_a_batch_is_answered_where_a_single_check_in_is():
    topics = protocol.Topics("loyalty", "shop", "pi-1")
    assert protocol.is_batch(topics.checkins) and not protocol.is_batch(topics.checkin)
    for topic in (topics.checkin, topics.checkins):
        assert protocol.reply_topic_for(topic) == topics.reply
        assert protocol.device_of(topic) == "pi-1"
    with pytest.raises(protocol.ProtocolError):
        protocol.reply_topic_for(topics.reply)


def test_a_refusal_with_the_longest_reason_can_be_read_alone():
    reason = "x" * protocol.MAX_REASON
    answer = protocol.decode_reply(protocol.encode_refusal("e1", "LOY-ALICE01", reason))
    assert answer.reason == reason and answer.ack is protocol.Ack.REFUSED
    entry = json.loads(protocol.encode_checkin(CHECKIN))
    entry["v"] = "v" * 250  # a refusal repeats it, cut short
    [bad] = protocol.decode_checkins(protocol.encode_checkins([json.dumps(entry).encode()]))
    assert isinstance(bad, protocol.Unreadable) and len(bad.reason) < 80
    assert protocol.decode_reply(protocol.encode_refusal(
        CHECKIN.event_id, "", bad.reason)).reason == bad.reason


def test_a_reply_round_trips():
    payload = protocol.encode_reply(CHECKIN.event_id, CHECKIN.member_id, STATUS, CREDITED)
    assert protocol.decode_reply(payload) == protocol.Answer(
        CHECKIN.event_id, CHECKIN.member_id, STATUS, CREDITED)
    assert b"batches" not in payload  # a backend that takes no batches says nothing


def test_an_answer_says_whether_its_backend_takes_batches():
    reply = protocol.encode_reply(CHECKIN.event_id, CHECKIN.member_id, STATUS, CREDITED,
                                  batches=True)
    refusal = protocol.encode_refusal("e1", "", "member_id: too long", batches=True)
    assert b'"batches":true' in reply and b'"batches":true' in refusal
    assert protocol.decode_reply(reply).batches and protocol.decode_reply(refusal).batches
    answers, _ = protocol.decode_replies(protocol.encode_replies([reply, refusal])[0])
    assert [answer.batches for answer in answers] == [True, True]
    with pytest.raises(protocol.ProtocolError, match="batches"):
        protocol.decode_reply(reply.replace(b'"batches":true', b'"batches":"yes"'))


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
    assert set(spec["channels"]) == {topics.status, topics.state, topics.checkin,
                                     topics.checkins, topics.reply,
                                     topics.health, topics.config_desired,
                                     topics.config_reported, topics.config_version,
                                     topics.command("{name}"),
                                     topics.command_result("{name}"), topics.enroll}


@pytest.mark.parametrize(("schema", "payload"), [
    ("CheckIn", protocol.mark_replayed(protocol.encode_checkin(CHECKIN))),
    ("CheckInBatch", protocol.encode_checkins([protocol.encode_checkin(CHECKIN)] * 2)),
    ("Reply", protocol.encode_reply(CHECKIN.event_id, CHECKIN.member_id,
                                    MemberStatus("A", 1, "B", 2, 0.5, "Free coffee"),
                                    CREDITED, batches=True)),
    ("Refusal", protocol.encode_refusal(CHECKIN.event_id, "", "member_id: too long",
                                        batches=True)),
    ("ConfigVersion", protocol.encode_config_version(3, "0123456789abcdef")),
    ("ReplyBatch", protocol.encode_replies([
        protocol.encode_refusal("e1", "", "x"), protocol.encode_refusal("e2", "", "y")])[0]),
    ("State", protocol.encode_state("degraded", "display: gone", "0.1.0", {
        "running": "0.1.0", "trying": None, "last_failure": {"version": "0.2.0", "reason": "x"}})),
    ("Health", protocol.encode_health(protocol.Health(
        uptime_s=1.0, state="ready", problems=[], outbox_depth=0, outbox_oldest_s=0.0,
        unsent=0, unsent_oldest_s=0.0, awaiting_backend=0, awaiting_oldest_s=0.0,
        backend_silent_s=0.0, scans=1, checkins=1, visits_refused=0, scans_lost=0,
        published=1, delivered=1, backend_refused=0, resent=0, refused=0, decode_fps=9.8,
        connects=1, bad_messages=0, replies_refused=0, codes_refused=0,
        log_lines_held_back=0, events_dropped=0, link_drops=0,
        cpu_temp_c=None), 1795388285.0)),
    ("Result", protocol.encode_result("c1", False, "replayed: seq 5", {"a": 1})),
    ("Reported", protocol.encode_reported(3, "c1", {"kiosk": {}}, {"reason": "x"})),
    ("EnrollRequest", protocol.encode_enroll_request("pi-1", "shop", "0.1.0")),
    ("Envelope", seal(Order("enroll", "enroll", "shop/pi-1", "c1", 1, 1.0, {}),
                      Signer.generate(), pairing_code="ABCD-EFGH")),
])
def test_the_document_describes_every_field_the_code_sends(spec, schema, payload):
    described = spec["components"]["schemas"][schema]
    sent = json.loads(payload)
    assert set(sent) == set(described["properties"])
    assert set(described["required"]) <= set(sent)


def test_the_envelope_body_is_described_field_by_field(spec):
    sent = json.loads(Issuer(Signer.generate()).command("shop/pi-1", "ping")[1])["body"]
    described = spec["components"]["schemas"]["Envelope"]["properties"]["body"]
    assert set(sent) == set(described["properties"]) == set(described["required"])


@pytest.mark.parametrize(("topic", "route"), [
    ("loyalty/s/k/config/desired", ("config", "config")),
    ("loyalty/s/k/cmd/ping", ("cmd", "ping")),
    ("loyalty/s/_all/cmd/identify", ("cmd", "identify")),
    ("loyalty/_all/_all/cmd/restart", ("cmd", "restart")),
    ("loyalty/s/k/cmd/enroll", ("enroll", "enroll")),
    ("loyalty/s/k/cmd/ping/result", None),
    ("loyalty/other/k/cmd/ping", None),
    ("loyalty/s/other/cmd/ping", None),
    ("loyalty/s/k/reply", None),
])
def test_staff_topics_are_routed_by_the_kiosk(topic, route):
    assert protocol.Topics("loyalty", "s", "k").staff_order(topic) == route


def test_event_ids_are_unique_version_7_uuids_across_the_entropy_pool():
    """Thousands of ids (the pool of random bytes is refilled many times): all distinct,
    version 7, RFC 9562 variant, and in time order."""
    ids = [uuid7(unix_ms=1_795_000_000_000 + n // 100) for n in range(5000)]
    assert len(set(ids)) == len(ids)
    parsed = [uuid.UUID(text) for text in ids]
    assert {u.version for u in parsed} == {7}
    assert {u.variant for u in parsed} == {uuid.RFC_4122}
    assert [u.int >> 80 for u in parsed] == sorted(u.int >> 80 for u in parsed)
