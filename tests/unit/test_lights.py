"""Light and sound patterns on gpiozero's own MockFactory pins (PWM, as lgpio gives on a Pi).

State sequences are read from the mock pins' histories, with timing tolerance:
gpiozero's background threads are not real-time.
"""

from __future__ import annotations

import itertools
import json

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin
from gpiozero.tones import Tone

from drivers.factory import make_hardware
from drivers.lights import GOLD, Lights
from drivers.specs import CameraSpec, DisplaySpec, HardwareSpec, LightsSpec, SerialSpec
from kiosk.counter.events import Cue
from kiosk.testing.harness import wait_for
from kiosk.ui.lights import PATTERNS, cue

GREEN, RED, BLUE, BUZZER = 17, 27, 5, 22


class FrequencyPin(MockPWMPin):
    """A mock PWM pin that also keeps its frequency history (the tune a piezo plays)."""

    def __init__(self, factory, info):
        self.tones: list[float | None] = []
        super().__init__(factory, info)

    def _set_frequency(self, value):
        super()._set_frequency(value)
        if not self.tones or self.tones[-1] != value:
            self.tones.append(value)


@pytest.fixture
def factory():
    pins = MockFactory(pin_class=FrequencyPin)
    yield pins
    pins.reset()


@pytest.fixture
def make(factory):
    """Builds Lights on the mock pins; closes them after the test."""
    made: list[Lights] = []

    def build(**spec) -> Lights:
        options = {"backend": "sim", "green_pin": GREEN, "red_pin": RED, "buzzer_pin": BUZZER,
                   **spec}
        made.append(Lights(LightsSpec(**options), pin_factory=factory))
        return made[-1]

    yield build
    for lights in made:
        lights.close()


def _rises(pin) -> list[float]:
    """When the pin went from off to on (mock pins keep the time since the previous change)."""
    times, last, now = [], 0.0, 0.0
    for since, state in pin.states:
        now += since
        if state and not last:
            times.append(now)
        last = state
    return times


@pytest.mark.parametrize("led", ["discrete", "rgb"])
@pytest.mark.parametrize("buzzer", ["active", "tonal"])
def test_every_pattern_runs_and_off_turns_everything_off(make, factory, led, buzzer):
    lights = make(led=led, buzzer=buzzer, blue_pin=BLUE if led == "rgb" else 0)
    for name in PATTERNS:
        cue(lights, name)
        assert lights.current == name
    cue(lights, Cue("off"))
    state = lights.state()
    assert not any(state["led"].values()) and not state["buzzer"]
    with pytest.raises(ValueError, match="'disco' is not a valid Cue"):
        Cue("disco")


def test_checkin_ok_lights_green_only(make, factory):
    lights = make()
    cue(lights, Cue("ok"))
    wait_for(lambda: lights.state()["led"] == {"green": 1.0, "red": 0.0}, what="green on")
    assert factory.pin(GREEN).state and not factory.pin(RED).state


def test_error_blinks_red_three_times_and_beeps_once(make, factory):
    lights = make()
    cue(lights, Cue("error"))
    red, buzzer = factory.pin(RED), factory.pin(BUZZER)
    wait_for(lambda: len(_rises(red)) == 3 and not red.state, what="three red blinks")
    rises = _rises(red)
    assert all(0.3 <= b - a <= 0.6 for a, b in itertools.pairwise(rises))  # 0.4 s
    wait_for(lambda: len(_rises(buzzer)) == 1 and not buzzer.state, what="one beep")
    assert not factory.pin(GREEN).state


def test_a_reward_plays_its_tune_on_a_tonal_buzzer_without_blocking(make, factory):
    lights = make(buzzer="tonal")
    piezo = factory.pin(BUZZER)
    before = len(piezo.tones)  # the PWM device's own 100 Hz set-up
    cue(lights, Cue("reward"))
    assert lights.state()["buzzer"]  # still playing: show() did not wait for the tune
    wait_for(lambda: piezo.tones[-1:] == [None] and len(piezo.tones) > 2, 5,
             what="the tune to end")
    played = [Tone.from_frequency(f).note for f in piezo.tones[before:] if f is not None]
    assert played == ["C5", "E5", "G5", "C6"]


def test_an_rgb_led_shows_the_rewards_gold(make, factory):
    lights = make(led="rgb", blue_pin=BLUE)
    cue(lights, Cue("reward"))
    wait_for(lambda: tuple(lights.state()["led"].values()) == GOLD, what="gold")
    assert factory.pin(RED).state == 1.0 and factory.pin(GREEN).state == 0.6


def test_idle_breathes(make, factory):
    lights = make()
    cue(lights, Cue("idle"))
    green = factory.pin(GREEN)
    wait_for(lambda: len({round(s, 1) for _, s in green.states}) >= 5, 5,
             what="the green LED fading through several levels")
    assert not factory.pin(RED).state


def test_simulated_lights_write_their_state_next_to_the_display(tmp_path):
    spec = HardwareSpec(CameraSpec(backend="none"), SerialSpec(backend="none"),
                        DisplaySpec(backend="none"),
                        LightsSpec(backend="sim", buzzer_pin=BUZZER, buzzer="tonal",
                                   sim_state=str(tmp_path / "lights.json")))
    hardware, _ = make_hardware(spec)
    try:
        assert hardware.lights is not None
        cue(hardware.lights, Cue("full"))
        state = wait_for(lambda: _read(tmp_path / "lights.json").get("pattern") == "full"
                         and _read(tmp_path / "lights.json"), what="the state file")
        assert state["led"] == {"green": 0.0, "red": 1.0}
    finally:
        hardware.close()


def _read(path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
