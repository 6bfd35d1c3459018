"""Hostile payloads, made from one valid message, for fuzzing whatever a kiosk receives.

:func:`hostile_payloads` breaks a valid JSON message in every way the wire
decoder (:mod:`kiosk.mqtt.wire`) must refuse — malformed JSON, wrong types, missing
fields, a wrong schema version, ``NaN``, huge numbers, long strings, 1 MiB
payloads, deep nesting, unterminated strings, lone surrogates, invalid UTF-8,
duplicate keys — plus odd but *valid* Unicode in free-text fields, which a
receiver must accept.
Each :class:`Case` says which it is, by construction, so a test can count:
refused == sent - valid. Point it at any topic (``reply``, ``cmd/<name>``,
``config/desired``) with that topic's valid message as the template.

It assumes what the kiosk's limits guarantee: payloads under 1 MiB, strings
under 4,097 characters, nesting under 50 levels, numbers under 1e19 — and a
template whose integer fields hold ints and whose other number fields hold
floats. Deterministic for a given ``seed``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

MIB = 1 << 20

ODD_TEXT = ("Zoë", "李小龙", "👩🏽\u200d🍳", "\u202eevil", "a\u200bb", "Ωμέγα", "\ufeffbom", "ﷺ",
            "e\u0301\u0301\u0301", "\U0001d518\U0001d52b\U0001d526")
"""Valid Unicode that renderers find awkward: combining marks, RTL override, ZWJ, BOM, astral."""

BAD_UTF8 = (b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xf8\x88\x80\x80\x80")
"""Not UTF-8: an invalid byte, an overlong '/', an encoded surrogate, a cut sequence, 5 bytes."""


@dataclass(frozen=True)
class Case:
    """One fuzzed message: how it was broken, the bytes, and whether it is still valid."""

    kind: str
    payload: bytes
    valid: bool = False


class _Maker:
    def __init__(self, template: Mapping[str, Any], seed: int, free_text: Collection[str],
                 optional: Collection[str]) -> None:
        self.template = dict(template)
        self.rng = random.Random(seed)
        self.free_text = [name for name in template if name in free_text]
        self.required = [name for name in template if name not in optional and name != "v"]
        self.strings = [name for name, value in template.items() if isinstance(value, str)]
        self.numbers = [name for name, value in template.items()
                        if isinstance(value, int | float) and not isinstance(value, bool)]

    def field(self, names: list[str] | None = None) -> str:
        return self.rng.choice(names or list(self.template))

    def dump(self, body: Mapping[str, Any]) -> bytes:
        return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")

    def with_raw(self, name: str, literal: str) -> bytes:
        """The template with ``name`` set to a raw JSON literal (NaN, 1e999, a surrogate)."""
        marker = "\u0000fuzz\u0000"
        text = json.dumps({**self.template, name: marker})
        return text.replace(json.dumps(marker), literal).encode()

    # --- one method per kind: each returns a payload broken that way ---------------

    def truncated(self) -> bytes:
        whole = self.dump(self.template)
        return whole[:self.rng.randrange(0, len(whole) - 1)]

    def garbage(self) -> bytes:
        return bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 300)))

    def not_object(self) -> bytes:
        return self.dump_any(self.rng.choice([[self.template], "text", 42, None, True, []]))

    def dump_any(self, value: Any) -> bytes:
        return json.dumps(value).encode()

    def wrong_type(self) -> bytes:
        name = self.field(self.strings + self.numbers)
        value = self.template[name]
        if isinstance(value, str):
            choices: list[Any] = [7, 1.5, True, None, [value], {"text": value}]
        elif isinstance(value, float):
            choices = [str(value), True, None, [value], {"n": value}]
        else:
            choices = [str(value), value + 0.5, True, None, [value], {"n": value}]
        return self.dump({**self.template, name: self.rng.choice(choices)})

    def missing_field(self) -> bytes:
        name = self.field([*self.required, "v"])
        return self.dump({key: value for key, value in self.template.items() if key != name})

    def wrong_version(self) -> bytes:
        version = self.rng.choice([0, 2, 99, -1, "1", 1.0, True, None])
        return self.dump({**self.template, "v": version})

    def non_finite(self) -> bytes:
        name = self.field(self.numbers + self.strings)
        return self.with_raw(name, self.rng.choice(["NaN", "Infinity", "-Infinity"]))

    def huge_number(self) -> bytes:
        name = self.field(self.numbers)
        digits = self.rng.randrange(20, 4000)
        literal = self.rng.choice(["1e999", "-1e999", "9" * digits, "-" + "9" * digits,
                                   "1" + "0" * digits + ".5"])
        return self.with_raw(name, literal)

    def long_string(self) -> bytes:
        name = self.field(self.strings)
        return self.dump({**self.template, name: "x" * self.rng.randrange(4097, 50_000)})

    def big_payload(self) -> bytes:
        return self.dump({**self.template, "padding": "M" * MIB})

    def deep_nesting(self) -> bytes:
        depth = self.rng.randrange(50, 20_000)
        opener, closer = self.rng.choice([("[", "]"), ('{"a":', "}")])
        nested = opener * depth + "1" + closer * depth
        return self.with_raw(self.field(), nested)

    def unterminated_string(self) -> bytes:
        """A string of escaped quotes that never ends: quadratic for a naive string regex."""
        whole = self.with_raw(self.field(self.strings), '"@@')
        return whole.replace(b"@@", b'\\"' * self.rng.randrange(100, 1500))[:-1]

    def lone_surrogate(self) -> bytes:
        name = self.field(self.strings)
        surrogate = f"\\u{self.rng.randrange(0xD800, 0xE000):04x}"
        return self.with_raw(name, f'"ab{surrogate}cd"')

    def bad_utf8(self) -> bytes:
        name = self.field(self.strings)
        whole = self.with_raw(name, '"@@"')
        return whole.replace(b"@@", self.rng.choice(BAD_UTF8))

    def duplicate_key(self) -> bytes:
        name = self.field()
        whole = self.dump(self.template)
        return whole[:-1] + b", " + self.dump_any(name) + b": " + self.dump_any(
            self.template[name]) + b"}"

    def odd_unicode(self) -> bytes:
        name = self.field(self.free_text)
        return self.dump({**self.template, name: self.rng.choice(ODD_TEXT)})


_BROKEN: dict[str, tuple[Callable[[_Maker], bytes], int]] = {
    # kind: (how, weight) — 1 MiB payloads are rare so a run stays quick.
    "truncated": (_Maker.truncated, 8), "garbage": (_Maker.garbage, 8),
    "not-object": (_Maker.not_object, 4), "wrong-type": (_Maker.wrong_type, 12),
    "missing-field": (_Maker.missing_field, 8), "wrong-version": (_Maker.wrong_version, 6),
    "non-finite": (_Maker.non_finite, 8), "huge-number": (_Maker.huge_number, 8),
    "long-string": (_Maker.long_string, 6), "big-payload": (_Maker.big_payload, 1),
    "deep-nesting": (_Maker.deep_nesting, 6), "lone-surrogate": (_Maker.lone_surrogate, 8),
    "bad-utf8": (_Maker.bad_utf8, 8), "duplicate-key": (_Maker.duplicate_key, 4),
    "unterminated-string": (_Maker.unterminated_string, 4),
}


def hostile_payloads(template: Mapping[str, Any], count: int, *, seed: int = 0,
                     free_text: Collection[str] = (), optional: Collection[str] = (),
                     ) -> list[Case]:
    """``count`` cases made from ``template`` (a valid message with ``"v"``).

    ``free_text`` names string fields where any short printable text is valid
    (they get the valid odd-Unicode cases); ``optional`` names fields whose
    absence is valid (never removed). Every kind appears at least once when
    ``count`` allows.
    """
    maker = _Maker(template, seed, free_text, optional)
    kinds = list(_BROKEN)
    weights = [weight for _, weight in _BROKEN.values()]
    if maker.free_text:
        kinds.append("odd-unicode")
        weights.append(6)
    chosen = kinds[:count] + maker.rng.choices(kinds, weights, k=max(0, count - len(kinds)))
    maker.rng.shuffle(chosen)
    return [_case(maker, kind) for kind in chosen]


def _case(maker: _Maker, kind: str) -> Case:
    if kind == "odd-unicode":
        return Case(kind, maker.odd_unicode(), valid=True)
    return Case(kind, _BROKEN[kind][0](maker))
