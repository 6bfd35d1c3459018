"""Status light and buzzer on GPIO, playing patterns: a light (colour, blink, pulse) and a tune.

What a pattern *means* ("reward", "error") is the application's vocabulary
(``kiosk.ui.lights``); this module only knows how to play one. Every pattern
runs on gpiozero's own background threads (``blink``/``pulse`` with
``background=True``, and a buzzer's ``source`` iterator for tunes), so
:meth:`Lights.play` returns at once; replacing a pattern only waits for
gpiozero to stop the old thread, which wakes within one step (20 ms).

Checked against gpiozero 2.0.1 (``gpiozero/output_devices.py``: ``PWMLED``,
``RGBLED.blink/pulse``, ``Buzzer``, ``TonalBuzzer`` whose ``value`` is
``log2(f / mid_tone) / octaves`` and whose pin must do PWM; ``mixins.py``:
``SourceMixin._copy_values`` sets ``value`` every ``source_delay`` seconds).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from drivers.specs import LightsSpec

Colour = tuple[float, float, float]
RED: Colour = (1.0, 0.0, 0.0)
GREEN: Colour = (0.0, 1.0, 0.0)
GOLD: Colour = (1.0, 0.6, 0.0)
WHITE: Colour = (1.0, 1.0, 1.0)
TEAL: Colour = (0.0, 0.35, 0.5)
STEP_S = 0.02
"""How often a tune's buzzer value is updated."""
TONAL_OCTAVES = 2
"""A TonalBuzzer around A4 spans A2-A6 (110-1760 Hz): every note below."""


@dataclass(frozen=True)
class Light:
    """What the status light does. Discrete LEDs light red for ``colour[0]`` and green for
    ``colour[1]`` (gold lights both)."""

    colour: Colour
    style: str = "blink"
    """``steady``, ``blink`` or ``pulse`` (breathing)."""
    on_s: float = 0.0
    """blink: time on; pulse: fade-in time."""
    off_s: float = 0.0
    """blink: time off; pulse: fade-out time."""
    times: int | None = 1
    """How often; None repeats until the next pattern."""


Tone = tuple[str | None, float]
"""A note (``"C5"``) or a rest (None), and how long it lasts in seconds."""


@dataclass(frozen=True)
class Pattern:
    """The light and the tune for one meaning."""

    light: Light | None = None
    tune: tuple[Tone, ...] = ()


class Lights:
    """The status light (two LEDs or one RGB LED) and an optional buzzer."""

    def __init__(self, spec: LightsSpec, pin_factory: Any = None) -> None:
        from gpiozero import PWMLED, RGBLED, Buzzer, TonalBuzzer  # lazy: probes pin libraries

        self._rgb: Any = None
        self._leds: dict[str, Any] = {}
        if spec.led == "rgb":
            self._rgb = RGBLED(spec.red_pin, spec.green_pin, spec.blue_pin,
                               pin_factory=pin_factory)
        else:
            self._leds = {"green": PWMLED(spec.green_pin, pin_factory=pin_factory),
                          "red": PWMLED(spec.red_pin, pin_factory=pin_factory)}
        self._buzzer: Any = None
        self._tonal = spec.buzzer == "tonal"
        if spec.buzzer_pin:
            self._buzzer = TonalBuzzer(spec.buzzer_pin, octaves=TONAL_OCTAVES,
                                       pin_factory=pin_factory) if self._tonal \
                else Buzzer(spec.buzzer_pin, pin_factory=pin_factory)
            self._buzzer.source_delay = STEP_S
        self.current = "off"

    def play(self, pattern: Pattern, name: str) -> None:
        """Start ``pattern`` (called ``name`` in :meth:`state`), replacing whatever was
        running; returns at once."""
        self._light(pattern.light)
        if self._buzzer is not None:
            self._buzzer.source = self._values(pattern.tune) if pattern.tune else None
            if not pattern.tune:
                self._buzzer.value = None if self._tonal else 0
        self.current = name

    def _light(self, light: Light | None) -> None:
        if self._rgb is not None:
            _drive(self._rgb, light, light.colour if light else WHITE, (0.0, 0.0, 0.0))
            return
        for index, led in ((0, self._leds["red"]), (1, self._leds["green"])):
            level = light.colour[index] if light else 0.0
            _drive(led, light if level else None, level, 0.0)

    def _values(self, tune: tuple[Tone, ...]) -> Iterator[float | None]:
        """The buzzer's value every ``STEP_S``: a tone (TonalBuzzer) or on/off, then silence."""
        for note, seconds in tune:
            value = self._tone_value(note) if self._tonal else float(note is not None)
            for _ in range(max(1, round(seconds / STEP_S))):
                yield value
        yield None if self._tonal else 0.0

    def _tone_value(self, note: str | None) -> float | None:
        if note is None:
            return None
        from gpiozero.tones import Tone as GpioTone

        mid = self._buzzer.mid_tone.frequency
        return math.log2(GpioTone(note).frequency / mid) / self._buzzer.octaves

    def state(self) -> dict[str, Any]:
        """What the light and buzzer do right now (the demo's terminal, the sim's JSON file)."""
        leds = dict(zip(("red", "green", "blue"), self._rgb.value, strict=True)) \
            if self._rgb is not None else {name: led.value for name, led in self._leds.items()}
        state: dict[str, Any] = {"pattern": self.current,
                                 "led": {name: round(v, 2) for name, v in leds.items()}}
        if self._buzzer is not None:
            if self._tonal:
                tone = self._buzzer.tone
                state["buzzer"] = tone.note if tone is not None else ""
            else:
                state["buzzer"] = "on" if self._buzzer.value else ""
        return state

    def close(self) -> None:
        """Turn everything off and release the pins."""
        for device in (self._rgb, *self._leds.values(), self._buzzer):
            if device is not None:
                device.close()


def _drive(device: Any, light: Light | None, on: Any, off: Any) -> None:
    """Run ``light`` on a PWMLED (``on`` = brightness) or an RGBLED (``on`` = colour)."""
    rgb = isinstance(on, tuple)
    if light is None:
        device.off()
    elif light.style == "steady":
        device.value = on
    elif light.style == "pulse":
        colours = {"on_color": on, "off_color": off} if rgb else {}
        device.pulse(fade_in_time=light.on_s, fade_out_time=light.off_s, n=light.times,
                     background=True, **colours)
    else:
        colours = {"on_color": on, "off_color": off} if rgb else {}
        device.blink(on_time=light.on_s, off_time=light.off_s, n=light.times,
                     background=True, **colours)
