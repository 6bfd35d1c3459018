"""Status LEDs and buzzer on GPIO, driven by named patterns.

The application asks for a *meaning* ("reward", "error"); the blink timings
live here, in one table. Patterns run in gpiozero's background threads, so a
call returns at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drivers import DriverError
from drivers.specs import LightsSpec

Blink = tuple[float, float, int | None]
"""``(on_s, off_s, times)``; ``times=None`` repeats until the next pattern."""


@dataclass(frozen=True)
class Pattern:
    """What each output does for one meaning; None leaves the output off."""

    green: Blink | None = None
    red: Blink | None = None
    buzzer: Blink | None = None


PATTERNS: dict[str, Pattern] = {
    "off": Pattern(),
    "ok": Pattern(green=(1.5, 0.0, 1)),
    "reward": Pattern(green=(0.15, 0.15, 8), buzzer=(0.08, 0.08, 3)),
    "error": Pattern(red=(0.2, 0.2, 3), buzzer=(0.4, 0.0, 1)),
    "offline": Pattern(red=(0.1, 2.9, None)),
    "full": Pattern(red=(1.0, 0.0, None), buzzer=(0.4, 0.2, 2)),
    "identify": Pattern(green=(0.25, 0.25, 20), red=(0.25, 0.25, 20), buzzer=(0.1, 0.9, 3)),
}


class Lights:
    """Green and red LEDs and an optional buzzer, on gpiozero's given pin factory."""

    def __init__(self, spec: LightsSpec, pin_factory: Any = None) -> None:
        from gpiozero import LED, Buzzer  # lazy: gpiozero probes pin libraries on import

        self._outputs: dict[str, Any] = {
            "green": LED(spec.green_pin, pin_factory=pin_factory),
            "red": LED(spec.red_pin, pin_factory=pin_factory),
        }
        if spec.buzzer_pin:
            self._outputs["buzzer"] = Buzzer(spec.buzzer_pin, pin_factory=pin_factory)
        self.current = "off"

    def show(self, name: str) -> None:
        """Start pattern ``name``, replacing whatever was running."""
        try:
            pattern = PATTERNS[name]
        except KeyError:
            raise DriverError(f"unknown light pattern {name!r}") from None
        for output_name, device in self._outputs.items():
            blink: Blink | None = getattr(pattern, output_name)
            if blink is None:
                device.off()
            else:
                on_s, off_s, times = blink
                device.blink(on_time=on_s, off_time=off_s, n=times, background=True)
        self.current = name

    def state(self) -> dict[str, bool]:
        """Which outputs are on right now (for the demo's terminal and for telemetry)."""
        return {name: bool(device.value) for name, device in self._outputs.items()}

    def close(self) -> None:
        """Turn everything off and release the pins."""
        for device in self._outputs.values():
            device.close()
