"""Hostile payloads meet the decoders: one ProtocolError each, never a crash or a stall.

Hand-picked cases, property-based ones, and the seeded fuzz of :mod:`kiosk.testing.fuzz`
(the same generator the system tests flood a running kiosk with)."""

from __future__ import annotations

import collections
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk.counter.checkin import CheckIn
from kiosk.counter.members import MemberStatus
from kiosk.mqtt import protocol
from kiosk.mqtt.wire import Fields, Limits, ProtocolError, load_object
from kiosk.staff.issuer import Issuer
from tests.payloads import order_fuzz, reply_fuzz

GOOD = {"v": 1, "event_id": "e1", "member_id": "LOY-ALICE01", "display_name": "Alice",
        "balance": 120, "tier": "Silver", "points_to_next": 30, "progress": 0.4,
        "reward_unlocked": ""}


def _reply(**changes: object) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


def _raw(field: str, literal: str) -> bytes:
    """The good reply with ``field`` set to a raw JSON literal (NaN, 1e999, "\\ud800" ...)."""
    return _reply(**{field: "@@"}).replace(b'"@@"', literal.encode())


@pytest.mark.parametrize(("payload", "reason"), [
    (_raw("display_name", '"' + "x" * 200_000 + '"'), "exceeds 4096"),
    (_reply(display_name="M" * (1 << 20)), "exceeds 4096"),
    (_reply(display_name="Mallory" * 6), "display_name' is longer than 40"),
    (b'{"v":1,"x":' + b"[" * 2000 + b"]" * 2000 + b"}", "nested deeper"),
    (_raw("progress", "NaN"), "NaN is not a number"),
    (_raw("progress", "Infinity"), "Infinity is not a number"),
    (_raw("balance", "-Infinity"), "-Infinity is not a number"),
    (_raw("balance", "1e999"), "out of range"),
    (_raw("balance", "9" * 3000), "out of range"),
    (_reply(balance=-5), "'balance' is outside"),
    (_reply(balance=10**12), "'balance' is outside"),
    (_reply(points_to_next=-1), "'points_to_next' is outside"),
    (_reply(progress=1.5), "'progress' is outside"),
    (_reply(progress=-0.1), "'progress' is outside"),
    (_reply(balance=True), "'balance' has the wrong type"),
    (_reply(balance=1.5), "'balance' has the wrong type"),
    (_reply(tier=["Gold"]), "'tier' has the wrong type"),
    (_raw("display_name", '"\\ud800"'), "lone surrogate"),
    (_raw("tier", '"\\udfff Gold"'), "lone surrogate"),
    (_raw("display_name", '"Al\\u0000ice"'), "control character"),
    (_reply(display_name="Al\nice"), "control character"),
    (_reply(display_name="Al\x9bice"), "control character"),
    (_raw("v", "true"), "unsupported schema version True"),
    (_reply()[:-1] + b',"balance":999999}', "a key appears twice"),
    (b'\xed\xa0\x80', "not UTF-8"),
    (b"", "not JSON"),
])
def test_a_hostile_reply_is_refused_with_a_reason(payload, reason):
    with pytest.raises(ProtocolError, match=reason):
        protocol.decode_reply(payload)


def test_the_good_reply_and_odd_but_valid_names_pass():
    assert protocol.decode_reply(_reply()).status == MemberStatus("Alice", 120, "Silver", 30, 0.4)
    # The screen may not draw all of these; that is the renderer's business, not a threat.
    for name in ("Zoë", "李小龙", "👩🏽‍🍳 Ana", "\u202eevil"):
        assert protocol.decode_reply(_reply(display_name=name)).status.display_name == name


def test_nesting_far_beyond_the_recursion_limit_is_refused_before_parsing():
    deep = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(ProtocolError, match="nested deeper than 8"):
        load_object(deep, Limits(max_bytes=1 << 20))
    # Brackets inside strings are text, not nesting.
    assert load_object(b'{"a":"[[[[[[[[[[[[[[[[[["}', Limits(max_bytes=100))["a"] == "[" * 18


@pytest.mark.timeout(20)  # the first pre-scan (a regex) took hours on this: quadratic
def test_an_unterminated_string_of_escaped_quotes_is_refused_without_stalling():
    sneaky = b'{"a":"' + b'\\"' * (1 << 19)  # 1 MiB: the regex engine retried at every quote
    with pytest.raises(ProtocolError, match="not JSON"):
        load_object(sneaky, Limits(max_bytes=2 << 20))


def test_every_string_and_key_is_bounded_wherever_it_is():
    limits = Limits(max_bytes=10_000, max_string=10)
    with pytest.raises(ProtocolError, match="11 characters exceeds 10"):
        load_object(b'{"a":[{"b":"' + b"x" * 11 + b'"}]}', limits)
    with pytest.raises(ProtocolError, match="11 characters exceeds 10"):
        load_object(b'{"' + b"k" * 11 + b'":1}', limits)
    with pytest.raises(ProtocolError, match="lone surrogate"):
        load_object(b'{"\\ud800":1}', limits)


def test_in_a_message_of_many_objects_escapes_neither_hide_a_long_string_nor_nesting():
    """A batch of answers is checked from its quotes (the fast path): escaped quotes and
    backslashes count as the characters they stand for, and a quote after an escaped
    backslash still closes its string."""
    limits = Limits(max_bytes=100_000, max_depth=3, max_string=10)
    many = b'{"a":[' + b",".join([b"{}"] * 20) + b"]"
    for escaped in (b'\\"' * 11, b"\\\\" * 11):
        with pytest.raises(ProtocolError, match="11 characters exceeds 10"):
            load_object(many + b',"b":"' + escaped + b'"}', limits)
    with pytest.raises(ProtocolError, match="nested deeper than 3"):
        load_object(many + b',"b":"\\\\","c":[[[[]]]]}', limits)
    assert load_object(many + b',"b":"[[[[\\"[[[["}', limits)["b"] == '[[[["[[[['


def test_fields_check_type_and_range():
    fields = Fields({"n": 3, "f": 0.5, "b": True, "s": "ok"})
    assert (fields.integer("n", 0, 5), fields.number("f", 0, 1), fields.flag("b")) == (3, 0.5, True)
    assert fields.text("missing", 10, "default") == "default"
    with pytest.raises(ProtocolError, match="'b' has the wrong type"):
        fields.integer("b", 0, 5)
    with pytest.raises(ProtocolError, match="missing field 'x'"):
        fields.text("x", 5)


def test_a_check_in_is_bounded_too():
    checkin = json.loads(protocol.encode_checkin(
        CheckIn("e1", "pi-1", "b00t", 7, 1795388285.351, "LOY-ALICE01", "camera")))
    with pytest.raises(ProtocolError, match="'seq' is outside"):
        protocol.decode_checkin(json.dumps({**checkin, "seq": -1}).encode())
    with pytest.raises(ProtocolError, match="'captured_at' is outside"):
        protocol.decode_checkin(json.dumps({**checkin, "captured_at": 1e300}).encode())
    with pytest.raises(ProtocolError, match="exceeds 4096"):
        protocol.decode_checkin(b'{"v":1,"member_id":"' + b"x" * 5000 + b'"}')


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), _JSON.map(lambda v: json.dumps(v).encode()),
                 st.dictionaries(st.sampled_from(sorted(GOOD)), _JSON).map(
                     lambda fields: json.dumps({**GOOD, **fields}).encode())))
def test_whatever_arrives_the_decoder_returns_a_bounded_reply_or_a_protocol_error(payload):
    try:
        answer = protocol.decode_reply(payload)
        event_id, member_id, status = answer.event_id, answer.member_id, answer.status
    except ProtocolError:
        return
    assert len(event_id) <= protocol.MAX_ID and len(member_id) <= protocol.MAX_MEMBER_ID
    assert status is not None and len(status.display_name) <= protocol.MAX_NAME
    assert 0 <= status.balance <= protocol.MAX_POINTS
    assert math.isfinite(status.progress) and 0 <= status.progress <= 1
    status.display_name.encode()  # storable: no lone surrogates


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_decoder_refuses_every_broken_reply_and_takes_every_valid_one(seed):
    cases = reply_fuzz("e1", "LOY-ALICE01", 3000, seed)
    assert {case.kind for case in cases} >= {"big-payload", "deep-nesting", "lone-surrogate",
                                            "non-finite", "odd-unicode", "bad-utf8"}
    for case in cases:
        try:
            protocol.decode_reply(case.payload)
        except ProtocolError:
            assert not case.valid, case.kind
        else:
            assert case.valid, (case.kind, case.payload[:200])


def test_the_fuzz_is_the_same_for_the_same_seed():
    assert reply_fuzz("e1", "m", 200, 7) == reply_fuzz("e1", "m", 200, 7)
    assert reply_fuzz("e1", "m", 200, 7) != reply_fuzz("e1", "m", 200, 8)


def test_the_fuzz_covers_every_kind_on_both_templates(issuer: Issuer):
    _, command = issuer.command("shop/k", "restart")
    kinds = collections.Counter(case.kind for case in order_fuzz(command, seed=11))
    assert {"deep-nesting", "big-payload", "lone-surrogate", "bad-utf8", "non-finite",
            "duplicate-key", "wrong-type", "garbage"} <= set(kinds)
