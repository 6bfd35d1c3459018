"""The kiosk's staff desk and its commands, directly: real signing keys, a real sequence
book on SQLite, and a recording stand-in for the narrow adapter to the running kiosk."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from PIL import Image

from kiosk.config import Config, KioskSection
from kiosk.counter.events import Cue, StaffMessage
from kiosk.mqtt import protocol
from kiosk.mqtt.envelope import target_for
from kiosk.provisioning import desk as staff_desk
from kiosk.provisioning import overlay
from kiosk.provisioning.commands import CommandError, Commands
from kiosk.provisioning.desk import StaffDesk
from kiosk.provisioning.shadow import Shadow
from kiosk.staff.issuer import Issuer
from kiosk.store.db import open_db
from kiosk.testing.staff import trusting
from kiosk.trust.signing import Signer

TOPICS = protocol.Topics("loyalty", "shop", "k1")
TARGET = target_for("shop", "k1")
HEALTH = protocol.Health(12.0, "ready", [], 0, 0.0, 3, 2, 0, 0, 2, 0, 0.0, 1, 0, 0, 0, 0, 0, 0,
                         None)


class RecordingParts:
    """What commands may touch of a running kiosk, noting what they did to it."""

    def __init__(self, lights: bool = True, display: tuple[int, int] | None = (128, 64)) -> None:
        self.lights = lights
        self.display = display
        self.signals: list[Cue] = []
        self.frames: list[Image.Image | None] = []
        self.contrast: list[int] = []
        self.restarts: list[str] = []
        self.cached = 3

    def health(self) -> protocol.Health:
        return HEALTH

    def signal(self, meaning: Cue) -> bool:
        self.signals.append(meaning)
        return self.lights

    def display_size(self) -> tuple[int, int] | None:
        return self.display

    def show_frame(self, image: Image.Image | None) -> None:
        self.frames.append(image)

    def set_contrast(self, level: int) -> bool:
        self.contrast.append(level)
        return self.display is not None

    def flush_member_cache(self) -> int:
        forgotten, self.cached = self.cached, 0
        return forgotten

    def request_restart(self, reason: str) -> None:
        self.restarts.append(reason)


class Outgoing(list):
    """What the desk published: ``(topic, payload, retain)``."""

    def __call__(self, topic: str, payload: bytes, retain: bool) -> None:
        self.append((topic, payload, retain))

    def results(self, name: str) -> list[dict]:
        return [json.loads(payload) for topic, payload, _ in self
                if topic == TOPICS.command_result(name)]


@pytest.fixture
def parts() -> RecordingParts:
    return RecordingParts()


@pytest.fixture
def sent() -> Outgoing:
    return Outgoing()


@pytest.fixture
def desk(tmp_path: Path, staff_key: Signer, parts: RecordingParts, sent: Outgoing):
    config = trusting(Config(kiosk=KioskSection(device_id="k1", site="shop",
                                                state_dir=str(tmp_path))), staff_key)
    conn, _ = open_db(tmp_path / "kiosk.db")
    shadow = Shadow(config, overlay.startup(config), TOPICS, sent, parts.request_restart)
    try:
        yield StaffDesk(parts, config, conn, TOPICS, sent, shadow)
    finally:
        conn.close()


def _command(desk: StaffDesk, payload: bytes, name: str, retained: bool = False) -> None:
    desk.handle(StaffMessage(TOPICS.command(name), payload, retained))


def test_a_signed_command_is_carried_out_and_answered(desk, issuer, sent):
    order, sealed = issuer.command(TARGET, "ping")
    _command(desk, sealed, "ping")
    [result] = sent.results("ping")
    assert result["cmd_id"] == order.cmd_id and result["status"] == "ok"
    assert result["data"]["pong"] is True and desk.carried_out == 1


def test_a_retained_command_is_dropped_unanswered(desk, issuer, parts, sent):
    _, sealed = issuer.command(TARGET, "restart")
    _command(desk, sealed, "restart", retained=True)
    assert (desk.retained_dropped, desk.carried_out, desk.rejected) == (1, 0, 0)
    assert sent == [] and parts.restarts == []


def test_a_command_nobody_trusted_signed_is_refused_with_an_answer(desk, parts, sent):
    _, sealed = Issuer(Signer.generate()).command(TARGET, "restart")
    _command(desk, sealed, "restart")
    [result] = sent.results("restart")
    assert result["status"] != "ok" and result["error"].startswith("unknown-key")
    assert desk.rejected == 1 and parts.restarts == []


def test_a_flood_of_junk_is_answered_at_a_bounded_rate_and_signed_refusals_always(
        desk, issuer, sent):
    flood = staff_desk.ANSWER_BURST + 30
    for _ in range(flood):
        _command(desk, b'{"v":1,"body":{}}', "ping")
    answered = len(sent.results("ping"))
    assert desk.rejected == flood and answered + desk.unanswered == flood
    assert answered <= staff_desk.ANSWER_BURST + 5 and desk.unanswered >= 25
    _, sealed = issuer.command(TARGET, "ping")
    _command(desk, sealed, "ping")
    _command(desk, sealed, "ping")  # a replay: signed by a trusted key, so it gets its answer
    replayed = sent.results("ping")[-1]
    assert replayed["status"] != "ok" and "replay" in replayed["error"]


def test_an_unknown_command_is_an_error_result(desk, issuer, sent):
    _, sealed = issuer.command(TARGET, "dance")
    _command(desk, sealed, "dance")
    [result] = sent.results("dance")
    assert result["status"] != "ok" and "unknown command 'dance'" in result["error"]
    assert desk.carried_out == 0


def test_a_message_on_no_staff_topic_is_ignored(desk, issuer, sent):
    _, sealed = issuer.command(TARGET, "ping")
    desk.handle(StaffMessage(TOPICS.reply, sealed, False))
    assert sent == [] and desk.rejected == 0 and desk.carried_out == 0


@pytest.fixture
def commands(parts: RecordingParts) -> Commands:
    return Commands(parts, lambda: 7)


@pytest.mark.parametrize(("name", "args", "error"), [
    ("ping", {"x": 1}, "takes no arguments, got x"),
    ("set-brightness", {}, "argument 'level' is required"),
    ("set-brightness", {"level": 256}, "expected a number from 0 to 255"),
    ("set-brightness", {"level": True}, "expected a number from 0 to 255"),
    ("set-brightness", {"level": "high"}, "expected a number from 0 to 255"),
    ("set-brightness", {"level": 9, "colour": 1}, "unknown argument 'colour'"),
    ("display-test", {"seconds": 0.5}, "expected a number from 1 to 30"),
    ("reboot", {}, "unknown command 'reboot'"),
])
def test_bad_arguments_and_unknown_commands_are_refused(commands, parts, name, args, error):
    with pytest.raises(CommandError, match=error):
        commands.run(name, args)
    assert parts.contrast == [] and parts.frames == []


def test_the_display_test_shows_a_pattern_then_gives_the_panel_back_on_a_tick(commands, parts):
    assert commands.run("display-test", {"seconds": 2}) == {
        "width": 128, "height": 64, "seconds": 2.0}
    [pattern] = parts.frames
    assert pattern is not None and pattern.size == (128, 64)
    commands.tick(time.monotonic() + 1.0)
    assert parts.frames == [pattern]  # still testing
    commands.tick(time.monotonic() + 2.5)
    assert parts.frames == [pattern, None]  # the customer's screen again
    commands.tick(time.monotonic() + 10.0)
    assert parts.frames == [pattern, None]  # once


def test_commands_say_when_the_part_they_need_is_not_fitted():
    commands = Commands(RecordingParts(lights=False, display=None), lambda: 0)
    for name, args in (("identify", {}), ("display-test", {}), ("set-brightness", {"level": 1})):
        with pytest.raises(CommandError, match=r"no (lights|display) fitted"):
            commands.run(name, args)


def test_each_command_reaches_its_part(commands, parts):
    assert commands.run("identify", {}) == {} and parts.signals == [Cue.IDENTIFY]
    assert commands.run("set-brightness", {"level": 40}) == {"level": 40, "until": "restart"}
    assert parts.contrast == [40]
    assert commands.run("flush-cache", {}) == {"forgotten": 3} and parts.cached == 0
    assert commands.run("status", {})["config_version"] == 7
    assert commands.run("status", {})["checkins"] == HEALTH.checkins
    assert commands.run("restart", {}) == {"restarting": True}
    assert parts.restarts == ["restart command"]
