"""Reading JSON that arrived over the network without trusting it.

Everything a kiosk receives (replies, staff commands, desired config) passes
through :func:`load_object` first and its fields are read through
:class:`Fields`. Both turn every way a payload can be hostile — too big, too
deep, ``NaN``, 5,000-digit numbers, lone surrogates, control characters,
duplicate keys, endless strings, wrong types, values out of range — into one
:class:`ProtocolError` with a short reason, so the caller counts it and drops
the message instead of crashing, stalling or storing it.

Which limits apply to which message is decided in :mod:`kiosk.mqtt.protocol`; this
module knows no topic and no field name.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from kiosk import KioskError


class ProtocolError(KioskError, ValueError):
    """A message does not follow the schema; the text says which field is wrong."""


@dataclass(frozen=True)
class Limits:
    """How big a message may be before it is even parsed, and what any string in it may hold."""

    max_bytes: int
    """Payload size; checked before parsing so a 1 MB message costs nothing."""
    max_depth: int = 8
    """Nesting of objects and arrays; checked before parsing (no ``RecursionError``)."""
    max_string: int = 1024
    """Characters in any string or key anywhere; fields usually have tighter limits."""


MAX_INT_DIGITS = 19
"""Integers beyond 64 bits are refused while parsing (Python would happily make 4,300 digits)."""

_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def load_object(payload: bytes | bytearray | str, limits: Limits) -> dict[str, Any]:
    """Parse a JSON object within ``limits``; raise :class:`ProtocolError` for anything else."""
    if len(payload) > limits.max_bytes:
        raise ProtocolError(f"payload of {len(payload)} bytes exceeds {limits.max_bytes}")
    if isinstance(payload, str):
        text = payload
    else:
        try:
            text = bytes(payload).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    pieces = _pieces(text) if text.count("[") + text.count("{") > limits.max_depth else None
    if pieces is not None:
        _check_depth(pieces, limits.max_depth)
    try:
        body = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ProtocolError("expected a JSON object")
    # Lone surrogates come from \u escapes (or a str payload): every string is looked at.
    # Otherwise no string is longer than the text, nor than the stretch between its
    # quotes, so the usual message needs no walk.
    surrogates = "\\u" in text or not text.isascii()
    if surrogates or (len(text) > limits.max_string and max(
            map(len, (pieces or _pieces(text))[1::2]), default=0) > limits.max_string):
        _check_strings(body, limits.max_string, surrogates)
    return body


def _pieces(text: str) -> list[str]:
    """``text`` cut at its quotes once escaped quotes and backslashes are made one plain
    character each: the even pieces are outside strings, the odd ones a string's content
    with every escape at least as long as what it stands for (so a length limit that holds
    for them holds for the strings).

    Escaped backslashes go first, so the quote in ``\\\\"`` still closes its string. Built
    from ``str.replace`` and ``str.split``: linear in the payload whatever it holds (a
    regex that skips whole strings is quadratic on an unterminated one full of escaped
    quotes), and C speed on a batch of 200 answers. A backslash outside a string makes
    the JSON invalid at that point, so what follows it is never parsed.
    """
    return text.replace("\\\\", "_").replace('\\"', "_").split('"')


def _check_depth(pieces: list[str], max_depth: int) -> None:
    """Refuse nesting deeper than ``max_depth`` before the parser recurses into it; only
    brackets outside strings count."""
    depth = 0
    for bracket in _NOT_BRACKET.sub("", "".join(pieces[::2])):
        depth += 1 if bracket in "[{" else -1
        if depth > max_depth:
            raise ProtocolError(f"nested deeper than {max_depth} levels")


def _no_constant(name: str) -> Any:
    raise ProtocolError(f"{name} is not a number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses to inf
        raise ProtocolError(f"number {text[:20]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ProtocolError(f"integer of {len(text)} digits is out of range")
    return int(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two readers could pick different copies of a repeated key: refuse it outright.
    body = dict(pairs)
    if len(body) != len(pairs):
        raise ProtocolError("a key appears twice")
    return body


_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float,
                            parse_int=_bounded_int, object_pairs_hook=_unique_keys)
"""Made once: ``json.loads`` with hooks builds a new decoder on every call (a backend
decodes thousands of check-ins a second)."""


def _check_strings(value: Any, max_string: int, surrogates: bool) -> None:
    """Every key and string: within ``max_string``, and encodable (no lone surrogates)."""
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is str:
            if len(item) > max_string:
                raise ProtocolError(f"a string of {len(item)} characters exceeds {max_string}")
            if surrogates and _SURROGATE.search(item):
                raise ProtocolError("a string holds a lone surrogate (not valid Unicode)")
        elif kind is dict:
            pending.extend(item)
            pending.extend(item.values())
        elif kind is list:
            pending.extend(item)


_REQUIRED: Any = object()


class Fields:
    """Typed, bounded access to the fields of one decoded object.

    Each getter checks type and range and raises :class:`ProtocolError` naming
    the field; ``default`` makes a field optional.
    """

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def text(self, name: str, max_len: int, default: Any = _REQUIRED, *,
             printable: bool = True) -> str:
        """A string of at most ``max_len`` characters; ``printable`` refuses control characters."""
        value = self.body.get(name)
        if type(value) is not str:  # the usual field skips the general check (a drain's answers)
            value = self._get(name, str, default)
        if len(value) > max_len:
            raise ProtocolError(f"field {name!r} is longer than {max_len} characters")
        if printable and not (value.isascii() and value.isprintable()) and _CONTROL.search(value):
            raise ProtocolError(f"field {name!r} holds a control character")
        return value

    def integer(self, name: str, low: int, high: int, default: Any = _REQUIRED) -> int:
        """An integer (not a bool) from ``low`` to ``high``."""
        value = self.body.get(name)
        if type(value) is not int:  # a bool, too, is an int to isinstance
            value = self._get(name, int, default)
        if not low <= value <= high:
            raise ProtocolError(f"field {name!r} is outside {low}..{high}")
        return value

    def number(self, name: str, low: float, high: float, default: Any = _REQUIRED) -> float:
        """A finite number from ``low`` to ``high``, as a float."""
        value = float(self._get(name, (int, float), default))
        if not low <= value <= high:  # NaN fails this too
            raise ProtocolError(f"field {name!r} is outside {low}..{high}")
        return value

    def flag(self, name: str, default: Any = _REQUIRED) -> bool:
        """``true`` or ``false``."""
        value: bool = self._get(name, bool, default)
        return value

    def _get(self, name: str, kind: type | tuple[type, ...], default: Any) -> Any:
        if name not in self.body:
            if default is _REQUIRED:
                raise ProtocolError(f"missing field {name!r}")
            return default
        value = self.body[name]
        wrong_bool = isinstance(value, bool) and kind is not bool
        if wrong_bool or not isinstance(value, kind):
            raise ProtocolError(f"field {name!r} has the wrong type ({type(value).__name__})")
        return value
