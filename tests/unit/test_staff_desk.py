"""The kiosk's staff desk and its commands, directly: real signing keys, a real sequence
book on SQLite, and a recording stand-in for the narrow adapter to the running kiosk."""

from __future__ import annotations

import json
import time
from dataclasses import fields
from pathlib import Path

import pytest
from PIL import Image

from kiosk.config import Config, ConfigError, KioskSection, load_config
from kiosk.counter.events import Cue, StaffMessage
from kiosk.mqtt import protocol
from kiosk.mqtt.envelope import MAX_SEQ, Order, Rejected, seal, target_for, unseal
from kiosk.provisioning import desk as staff_desk
from kiosk.provisioning import overlay, remote
from kiosk.provisioning.commands import CommandError, Commands
from kiosk.provisioning.desk import StaffDesk
from kiosk.provisioning.guard import Guard, SequenceBook
from kiosk.provisioning.shadow import Shadow
from kiosk.staff.issuer import Issuer
from kiosk.store.db import open_db
from kiosk.testing.staff import trusting
from kiosk.trust.signing import Signer, Verifier, public_key_text
from tests.payloads import health

TOPICS = protocol.Topics("loyalty", "shop", "k1")
TARGET = target_for("shop", "k1")
HEALTH = health(scans=3, checkins=2, published=2, delivered=2, connects=1)


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


def test_a_flood_of_junk_is_answered_at_a_bounded_rate_and_fresh_orders_always(
        desk, issuer, sent):
    flood = staff_desk.ANSWER_BURST + 30
    for _ in range(flood):
        _command(desk, b'{"v":1,"body":{}}', "ping")
    answered = len(sent.results("ping"))
    assert desk.rejected == flood and answered + desk.unanswered == flood
    assert answered <= staff_desk.ANSWER_BURST + 5 and desk.unanswered >= 25
    _, sealed = issuer.command(TARGET, "ping")
    _command(desk, sealed, "ping")
    assert sent.results("ping")[-1]["status"] == "ok"
    unanswered = desk.unanswered
    _command(desk, sealed, "ping")  # a replay: anyone who captured it can send it again
    assert sent.results("ping")[-1]["status"] == "ok" and desk.unanswered == unanswered + 1


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


# --- a control plane that cannot be turned against itself ---------------------------


def _config(desk: StaffDesk, payload: bytes) -> None:
    desk.handle(StaffMessage(TOPICS.config_desired, payload, True))


def _refusals(sent: Outgoing) -> list[str]:
    return [json.loads(payload)["rejected"]["reason"] for topic, payload, _ in sent
            if topic == TOPICS.config_reported]


def _written(desk: StaffDesk, folder: Path) -> tuple[int, list[tuple[str, int]]]:
    """What a desk has written: rows changed in its database, files under the state dir."""
    files = sorted((str(path), path.stat().st_mtime_ns) for path in folder.rglob("*")
                   if path.is_file() and not path.name.startswith("kiosk.db"))
    return desk.guard._book._conn.total_changes, files


def test_every_config_key_is_remote_or_local_for_a_stated_reason():
    every = {(section.name, key.name) for section in fields(Config)
             for key in fields(section.default_factory)}
    assert set(remote.REMOTE) | set(overlay.LOCAL_ONLY) == every
    assert not set(remote.REMOTE) & set(overlay.LOCAL_ONLY)
    unreviewed = [key for key, why in overlay.LOCAL_ONLY.items() if "not reviewed" in why]
    assert unreviewed == []


@pytest.mark.parametrize(("section", "key", "value"), [
    ("camera", "spool_dir", "{state}"),  # the hostile tester's: it deleted kiosk.db
    ("camera", "spool_dir", "/tmp/elsewhere"),
    ("display", "sim_png", "{state}/kiosk.db"),
    ("lights", "sim_state", "{state}/log-key"),
    ("serial", "sim_link", "{state}/config/good.json"),
    ("metrics", "textfile_dir", "{state}"),
    ("staff", "clock_synced_file", "/etc/hostname"),
    ("mqtt", "ca_file", "/etc/hostname"),
    ("mqtt", "tls", True),
    ("kiosk", "site", "another-shop"),
    ("kiosk", "state_dir", "/tmp"),
    ("display", "i2c_address", 61),
    ("lights", "green_pin", 4),
    ("camera", "backend", "none"),
])
def test_a_signed_config_cannot_touch_what_only_the_shop_may_set(
        desk, issuer, parts, sent, tmp_path, section, key, value):
    if isinstance(value, str):
        value = value.format(state=tmp_path)
    before = _written(desk, tmp_path)
    _, payload = issuer.config(TARGET, 1, {section: {key: value}})
    _config(desk, payload)
    [reason] = _refusals(sent)
    assert reason.startswith(f"invalid: {section}.{key}: can only be set in the local config")
    assert parts.restarts == [] and _written(desk, tmp_path) == before


def test_a_signed_config_may_still_tune_the_kiosk(desk, issuer, parts, tmp_path):
    _, payload = issuer.config(TARGET, 1, {"ui": {"store_name": "Corner Shop"},
                                           "camera": {"fps": 10.0}, "counter": {"cooldown_s": 9}})
    _config(desk, payload)
    assert parts.restarts == ["config version 1"]
    assert (tmp_path / "config" / "trial.json").exists()


def test_a_promoted_config_that_aims_a_path_at_the_state_directory_is_left_out(tmp_path):
    base = Config(kiosk=KioskSection(device_id="k1", state_dir=str(tmp_path)))
    folder = overlay.folder_of(base)
    folder.mkdir()
    (folder / "good.json").write_text(json.dumps(
        {"version": 3, "cmd_id": "c3", "config": {"camera": {"spool_dir": str(tmp_path)}}}))
    found = overlay.in_force(base)
    assert found.applied is None and found.config.camera.spool_dir != str(tmp_path)
    assert "camera.spool_dir: can only be set in the local config file" in found.problem


@pytest.mark.parametrize(("section", "key", "value", "error"), [
    ("camera", "spool_dir", "{state}", "holds kiosk.state_dir"),
    ("camera", "spool_dir", "{state}/config", "holds kiosk.state_dir's config"),
    ("camera", "spool_dir", "{state}/sim", "holds display.sim_png"),
    ("display", "sim_png", "{state}/kiosk.db", "is the state directory's own"),
    ("lights", "sim_state", "{state}/sim/display.png", "is already display.sim_png"),
    ("metrics", "textfile_dir", "{state}", "is the state directory's own"),
])
def test_a_local_config_cannot_aim_one_part_at_anothers_files(tmp_path, section, key, value,
                                                             error):
    table = {"kiosk": {"state_dir": str(tmp_path)},
             "display": {"sim_png": str(tmp_path / "sim" / "display.png")}}
    table.setdefault(section, {})[key] = value.format(state=tmp_path)
    path = tmp_path / "kiosk.toml"
    path.write_text("\n".join(f"[{name}]\n" + "\n".join(f"{k} = {json.dumps(v)}"
                                                        for k, v in values.items())
                              for name, values in table.items()))
    with pytest.raises(ConfigError, match=f"{section}.{key}: .*{error}"):
        load_config(path)


def test_an_order_numbered_by_a_clock_a_year_ahead_is_refused_and_locks_nothing(
        desk, staff_key, parts, sent, tmp_path):
    before = _written(desk, tmp_path)
    ahead = Issuer(staff_key, clock=lambda: time.time() + 365 * 86400)
    _, payload = ahead.command(TARGET, "restart")
    _command(desk, payload, "restart")
    [refused] = sent.results("restart")
    assert refused["error"].startswith("future-sequence: ") and parts.restarts == []
    assert _written(desk, tmp_path) == before
    _, payload = Issuer(staff_key).command(TARGET, "restart")  # the right clock: obeyed
    _command(desk, payload, "restart")
    assert sent.results("restart")[-1]["status"] == "ok"
    assert parts.restarts == ["restart command"]


def test_an_order_with_the_largest_sequence_number_locks_nothing(desk, staff_key, parts, sent):
    order = Order("cmd", "ping", TARGET, "c-huge", MAX_SEQ, time.time() + 60)
    _command(desk, seal(order, staff_key), "ping")
    assert sent.results("ping")[-1]["error"].startswith("future-sequence: ")
    _command(desk, Issuer(staff_key).command(TARGET, "ping")[1], "ping")
    assert sent.results("ping")[-1]["status"] == "ok"


def test_an_unsynchronised_kiosk_allows_a_day_ahead_of_what_it_has_seen(tmp_path, staff_key):
    conn, _ = open_db(tmp_path / "kiosk.db")
    wall = [time.time()]
    guard = Guard(Verifier.from_texts([public_key_text(staff_key.public)]), "shop", "k1",
                  SequenceBook(conn), lambda: False, lambda: wall[0])
    try:
        for hours_ahead, accepted in ((2, True), (25, True), (50, False)):
            issuer = Issuer(staff_key, clock=lambda h=hours_ahead: wall[0] + h * 3600)
            _, payload = issuer.command(TARGET, "ping")
            if accepted:
                guard.admit(unseal(payload), "cmd", "ping")
            else:
                with pytest.raises(Rejected, match=r"future-sequence: .* unsynchronised clock"):
                    guard.admit(unseal(payload), "cmd", "ping")
    finally:
        conn.close()


def test_a_staff_machine_that_numbered_ahead_numbers_from_its_clock_again(staff_key):
    issuer = Issuer(staff_key, last_seq=MAX_SEQ - 10)
    order, _ = issuer.command(TARGET, "ping")
    assert abs(order.seq - time.time() * 1000) < 60_000


def test_wrong_pairing_codes_are_answered_at_a_bounded_rate(tmp_path, staff_key, parts, sent):
    config = Config(kiosk=KioskSection(device_id="k1", site="shop", state_dir=str(tmp_path)))
    conn, _ = open_db(tmp_path / "kiosk.db")
    desk = StaffDesk(parts, config, conn, TOPICS, sent,
                     Shadow(config, overlay.startup(config), TOPICS, sent, parts.request_restart))
    try:
        issuer, key = Issuer(staff_key), public_key_text(staff_key.public)
        for _ in range(200):
            order, _ = issuer.order("enroll", "enroll", TARGET, {
                "key": key, "version": 1, "config": {"staff": {"trusted_keys": [key]}}}, 300)
            desk.handle(StaffMessage(TOPICS.command("enroll"),
                                     seal(order, staff_key, "WRONGCODE"), False))
        answered = sent.results("enroll")
        assert len(answered) <= staff_desk.ANSWER_BURST + 5
        assert desk.enrollment.failures >= 3 and conn.total_changes == 0
    finally:
        conn.close()


def test_a_replayed_config_writes_nothing_and_is_answered_once(desk, issuer, sent, tmp_path):
    _, payload = issuer.config(TARGET, 1, {"camera": {"spool_dir": str(tmp_path)}})
    _config(desk, payload)
    before = _written(desk, tmp_path)
    for _ in range(200):
        _config(desk, payload)
    assert _written(desk, tmp_path) == before and len(_refusals(sent)) == 1


def test_replays_of_a_carried_out_command_write_nothing_and_are_answered_at_a_bounded_rate(
        desk, issuer, parts, sent, tmp_path):
    _, payload = issuer.command(TARGET, "ping")
    _command(desk, payload, "ping")
    before = _written(desk, tmp_path)
    for _ in range(200):
        _command(desk, payload, "ping")
    refused = sent.results("ping")[1:]
    assert all(body["error"].startswith("replayed: ") for body in refused)
    assert len(refused) <= staff_desk.ANSWER_BURST + 5
    assert _written(desk, tmp_path) == before and desk.carried_out == 1


def test_a_config_equal_to_the_one_in_force_changes_nothing(desk, issuer, parts, sent, tmp_path):
    before = _written(desk, tmp_path)
    _, payload = issuer.config(TARGET, 1, {"counter": {"cooldown_s": 30.0},  # the defaults
                                           "ui": {"store_name": ""}})
    _config(desk, payload)
    [reason] = _refusals(sent)
    assert reason.startswith("unchanged: equal to the config in force (version 0)")
    assert parts.restarts == [] and _written(desk, tmp_path) == before
