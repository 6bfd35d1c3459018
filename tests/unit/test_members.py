"""Member codes: plain ids, signed member cards, tag ids, and everything else refused with a reason.

The parser and every reader's framing are driven by hypothesis with 10,000 generated
inputs in all (counted beside the ``fuzz`` decorators below): whatever arrives, the answer is a
member id or a reason, never an exception.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.framing import MAX_CODE, MAX_LINE, LineFramer, StxEtxFramer
from drivers.nfc import NdefError, ndef_message, ndef_text, ndef_text_memory, read_tag_code
from drivers.sim import SimPn532
from drivers.wedge import KeyDecoder, evdev_key_codes
from kiosk.counter import members
from kiosk.counter.members import (
    MemberCodes,
    Refused,
    redact,
    sign_card,
    tag_sources,
    use_log_key,
)
from kiosk.trust.signing import Signer, Verifier

ISSUER = Signer.generate()
OTHER_ISSUER = Signer.generate()
CODES = MemberCodes(r"LOY-[A-Z0-9]{4,32}", Verifier({ISSUER.key_id: ISSUER.public}))


def fuzz(examples: int) -> settings:
    """Exactly ``examples`` generated inputs, with no per-example deadline on a busy machine."""
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize(("code", "source", "expected"), [
    ("LOY-ALICE01", "camera", "LOY-ALICE01"),
    ("  LOY-ALICE01 ", "serial", "LOY-ALICE01"),
    ("uid:04A1B2C3D4E5F6", "nfc", "uid:04A1B2C3D4E5F6"),
    ("uid:0F00A1B2C3", "serial", Refused("Tag not accepted")),  # a QR scanner: printed
    ("uid:04A1B2C3D4E5F6", "camera", Refused("Tag not accepted")),  # a printed "tag"
    ("uid:04A1B2C3D4E5F6", "keyboard", Refused("Tag not accepted")),
    ("https://example.com/LOY-ALICE01", "camera", Refused("Web address")),
    ("WIFI:T:WPA;S:shop;P:secret;;", "camera", Refused("Wi-Fi settings")),
    ("BEGIN:VCARD\nVERSION:3.0\nFN:Alice\nEND:VCARD", "camera", Refused("Unreadable code")),
    ("BEGIN:VCARD VERSION:3.0 FN:Alice END:VCARD", "camera", Refused("Contact card")),
    ("MECARD:N:Alice;;", "keyboard", Refused("Contact card")),
    ("LOY-\ufffd\ufffdBAD", "camera", Refused("Unreadable code")),  # was not UTF-8
    ("LOY-ALI\x07CE01", "serial", Refused("Unreadable code")),
    ("LOY-" + "A" * 4096, "serial", Refused("Code too long")),
    ("loy-alice01", "camera", Refused("Not a member code")),
    ("", "serial", Refused("Not a member code")),
])
def test_codes_are_member_ids_or_refused_with_a_reason(code, source, expected):
    assert CODES.parse(code, source) == expected


def test_a_signed_card_is_verified_offline_and_fits_a_small_qr_code():
    card = sign_card(ISSUER, "M-1234567")
    assert CODES.parse(card, "camera") == "M-1234567"
    assert len(card) <= 122  # a version 7 QR code at level M holds 122 bytes


def test_an_edited_guessed_or_foreign_card_is_refused():
    card = sign_card(ISSUER, "M-1234567")
    edited = card.replace("M-1234567", "M-1234568")
    assert CODES.parse(edited, "camera") == Refused("Card not valid")
    guessed = f"LOY1.{ISSUER.key_id}.M-7654321.{'A' * 86}"
    assert CODES.parse(guessed, "camera") == Refused("Card not valid")
    assert CODES.parse(sign_card(OTHER_ISSUER, "M-1"), "camera") == Refused("Unknown card issuer")
    assert CODES.parse("LOY1.broken", "camera") == Refused("Damaged card")
    assert CODES.parse(f"LOY1.{ISSUER.key_id}.M-1.!!!", "camera") == Refused("Card not valid")


def test_a_kiosk_without_card_keys_accepts_no_signed_card():
    plain_only = MemberCodes(r"LOY-[A-Z0-9]{4,32}")
    assert plain_only.parse(sign_card(ISSUER, "M-1"), "camera") == Refused("Unknown card issuer")


def test_signed_cards_only_and_no_tag_ids():
    strict = MemberCodes("", Verifier({ISSUER.key_id: ISSUER.public}), tag_ids=False)
    assert strict.parse("LOY-ALICE01", "camera") == Refused("Not a member code")
    assert strict.parse("uid:04A1B2C3", "nfc") == Refused("Tag not accepted")
    assert strict.parse(sign_card(ISSUER, "M-9"), "nfc") == "M-9"


# --- fuzzing: 10,000 inputs in all -----------------------------------------------------------
# Each generated example is a batch of exactly BATCH inputs (hypothesis's own overhead per
# example is larger than the work): examples x BATCH in the decorators add up to 10,000.

BATCH = 10


def batch(strategy: st.SearchStrategy) -> st.SearchStrategy:
    """Exactly BATCH values of ``strategy``."""
    return st.lists(strategy, min_size=BATCH, max_size=BATCH)


SOURCES = st.sampled_from(["camera", "serial", "keyboard", "nfc"])
ANY_CODE = st.one_of(st.text(max_size=200), st.binary(max_size=200).map(
    lambda raw: raw.decode("utf-8", errors="replace")))


@fuzz(400)  # 4,000 codes
@given(reads=batch(st.tuples(ANY_CODE, SOURCES)))
def test_whatever_is_read_the_parser_answers_an_id_or_a_short_reason(reads):
    for code, source in reads:
        result = CODES.parse(code, source)
        if isinstance(result, Refused):
            assert 0 < len(result.reason) <= 24  # fits the screen's banner
        else:
            assert result == code.strip() and result.startswith(("LOY-", "uid:"))


CARD = sign_card(ISSUER, "M-1234567")
MEMBER_AT = CARD.index(".M-") + 1


@fuzz(200)  # 2,000 edited cards
@given(edits=batch(st.tuples(st.integers(0, len(CARD) - 1), st.characters(codec="utf-8"))))
def test_no_edit_of_a_signed_card_changes_whose_card_it_is(edits):
    for at, char in edits:
        edited = CARD[:at] + char + CARD[at + 1:]
        result = CODES.parse(edited, "camera")
        # Refused, or the same member (base64's unused low bits in the last character).
        assert isinstance(result, Refused) or result == "M-1234567"
        if edited != CARD and MEMBER_AT <= at < MEMBER_AT + len("M-1234567"):
            assert isinstance(result, Refused)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


LINE_BYTES = st.binary(max_size=300) | st.lists(st.sampled_from(
    [b"\r", b"\n", b"LOY-A1", b"\x00", b"\xff", b"x" * 300]), max_size=12).map(b"".join)
STX_BYTES = st.binary(max_size=200) | st.lists(st.sampled_from(
    [b"\x02", b"\x03", b"0F00A1B2C3", b"6F", b"\xff"]), max_size=20).map(b"".join)
CUTS = st.lists(st.integers(0, 600), max_size=4)


@fuzz(100)  # 1,000 byte streams
@given(streams=batch(st.tuples(LINE_BYTES, CUTS)))
def test_line_framing_of_any_bytes_gives_bounded_text_however_they_are_split(streams):
    for data, cuts in streams:
        whole = LineFramer().feed(data)
        split = LineFramer()
        assert [f for chunk in _chunks(data, cuts) for f in split.feed(chunk)] == whole
        for frame in whole:  # what cannot be a code goes up too: the controller refuses it
            assert 0 < len(frame) <= MAX_LINE and b"\r" not in frame and b"\n" not in frame


@fuzz(100)  # 1,000 byte streams
@given(streams=batch(st.tuples(STX_BYTES, CUTS)))
def test_stx_etx_framing_of_any_bytes_gives_bounded_frames_however_they_are_split(streams):
    for data, cuts in streams:
        whole = StxEtxFramer().feed(data)
        split = StxEtxFramer()
        assert [f for chunk in _chunks(data, cuts) for f in split.feed(chunk)] == whole
        for frame in whole:
            assert len(frame) <= MAX_LINE and b"\x02" not in frame and b"\x03" not in frame


KEYS = evdev_key_codes()
KEY_EVENTS = st.lists(st.tuples(st.sampled_from([0, 1, 4, 17]),
                                st.sampled_from([*KEYS.values(), 0, 29, 59, 255, 1000]),
                                st.integers(-1, 3)), max_size=60)


@fuzz(100)  # 1,000 event sequences
@given(sequences=batch(KEY_EVENTS))
def test_any_key_events_give_bounded_printable_codes(sequences):
    for events in sequences:
        keys = KeyDecoder(KEYS)
        for kind, key, value in events:
            code = keys.feed(kind, key, value)
            if code is not None:
                assert 0 < len(code) <= MAX_CODE and code.isprintable() and code.isascii()


TAG_MEMORY = st.binary(max_size=120) | st.builds(ndef_text_memory, st.text(max_size=40))


@fuzz(100)  # 1,000 tags
@given(tags=batch(st.tuples(TAG_MEMORY, st.binary(min_size=4, max_size=10))))
def test_any_tag_memory_gives_its_text_or_its_uid(tags):
    for memory, uid in tags:
        try:
            message = ndef_message(memory)
            if message is not None:
                ndef_text(message)
        except NdefError:
            pass
        reader = SimPn532()
        reader.tap(uid, memory=memory)
        code = read_tag_code(reader, uid)
        assert code is None or len(code) <= MAX_CODE + 16


# --- at the counter ------------------------------------------------------------------------


def test_a_serial_reader_reads_tags_only_with_rfid_framing():
    rfid = MemberCodes(r"LOY-[A-Z0-9]{4,32}", tag_sources=tag_sources("stx-etx"))
    qr_scanner = MemberCodes(r"LOY-[A-Z0-9]{4,32}", tag_sources=tag_sources("lines"))
    assert rfid.parse("uid:0F00A1B2C3", "serial") == "uid:0F00A1B2C3"
    assert qr_scanner.parse("uid:0F00A1B2C3", "serial") == Refused("Tag not accepted")
    assert qr_scanner.parse("uid:0F00A1B2C3", "nfc") == "uid:0F00A1B2C3"
    assert rfid.parse("uid:0F00A1B2C3", "camera") == Refused("Tag not accepted")


def test_the_log_hash_is_keyed_per_install_and_64_bits_long(monkeypatch):
    monkeypatch.setattr(members, "_log_key", members._log_key)  # restored after the test
    use_log_key(b"a" * 32)
    first = redact("M-1234567")
    use_log_key(b"b" * 32)
    assert redact("M-1234567") != first
    assert first != "m:" + hashlib.sha256(b"M-1234567").hexdigest()[:len(first) - 2]
    assert len(first) == 2 + 16
