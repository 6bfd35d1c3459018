"""kioskctl end to end: a real mosquitto, a fleet of three simulated kiosks, the real CLI."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from kiosk.config import Config, StaffSection, TelemetrySection
from kiosk.counter.screens import Pairing
from kiosk.staff.keyring import Keyring
from kiosk.staff.kioskctl import NO_ANSWER, OK, REFUSED, UNKNOWN, main
from kiosk.testing.broker import Mosquitto
from kiosk.testing.harness import RunningKiosk, sim_config, wait_for
from kiosk.trust.signing import Signer, public_key_text

FLEET = (("kiosk-a", "shop-1"), ("kiosk-b", "shop-1"), ("kiosk-c", "shop-2"))


class Staff:
    """Runs kioskctl with a staff config file pointing at the test broker."""

    def __init__(self, tmp_path: Path, broker: Mosquitto, capsys: pytest.CaptureFixture) -> None:
        self.keys = tmp_path / "keys"
        self.config = tmp_path / "kioskctl.toml"
        self.config.write_text(f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
                               f'[keys]\ndir = "{self.keys}"\n')
        self._capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self._capsys.readouterr()
        code = main(["--config", str(self.config), "--timeout", "20", *argv])
        out, err = self._capsys.readouterr()
        return code, out, err

    def json(self, *argv: str) -> tuple[int, object]:
        code, out, _ = self("--json", *argv)
        return code, json.loads(out)


def kiosk_config(tmp_path: Path, broker: Mosquitto, device_id: str, site: str,
                 trusted: tuple[str, ...]) -> Config:
    config = sim_config(tmp_path / device_id, broker.port, device_id=device_id, site=site,
                        serial=False)
    return replace(config, camera=replace(config.camera, backend="none"),
                   telemetry=TelemetrySection(interval_s=1.0),
                   staff=StaffSection(trusted_keys=trusted, clock_synced_file=""))


@pytest.fixture
def staff(tmp_path: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture) -> Staff:
    return Staff(tmp_path, mosquitto, capsys)


@pytest.fixture
def fleet(tmp_path: Path, mosquitto: Mosquitto, staff: Staff) -> Iterator[list[RunningKiosk]]:
    assert staff("keys", "gen", "alice")[0] == OK
    trusted = (Keyring(staff.keys).list()[0].public,)
    kiosks = [RunningKiosk(kiosk_config(tmp_path, mosquitto, device_id, site, trusted)).start()
              for device_id, site in FLEET]
    try:
        for kiosk in kiosks:
            kiosk.wait_online()
        wait_for(lambda: all(kiosk.app.staff.shadow.reported for kiosk in kiosks), 10,
                 "every kiosk to report its config")
        yield kiosks
    finally:
        for kiosk in kiosks:
            kiosk.stop()


def test_keys_are_made_added_and_listed(staff):
    code, out, _ = staff("keys", "gen", "alice")
    assert code == OK and "public key" in out
    colleague = public_key_text(Signer.generate().public)
    assert staff("keys", "add", "bob", colleague)[0] == OK
    code, keys = staff.json("keys", "list")
    assert code == OK and [(k["name"], k["private"]) for k in keys] == [
        ("alice", True), ("bob", False)]
    assert (staff.keys / "alice.key").stat().st_mode & 0o777 == 0o600
    assert staff("keys", "gen", "alice")[0] == 1  # never overwrites a key


def test_a_public_key_that_starts_with_a_dash_is_added(staff):
    """One base64url key in 64 starts with "-", which argparse took for an option (the test
    above failed on such a key now and then)."""
    dashed = next(text for text in (public_key_text(Signer.generate().public)
                                    for _ in range(10_000)) if text.startswith("-"))
    assert staff("keys", "add", "carol", dashed)[0] == OK
    assert staff("keys", "add", "dave", dashed, "--json")[0] == OK
    code, keys = staff.json("keys", "list")
    assert code == OK and {k["name"] for k in keys} >= {"carol", "dave"}


def test_staff_see_every_kiosk_and_what_it_reports(staff, fleet):
    wait_for(lambda: all(k.app.link.connects for k in fleet), 5, "connections")
    code, out, _ = staff("list")
    assert code == OK
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["DEVICE", "SITE", "STATUS", "STATE"]
    assert sorted(line.split()[:3] for line in lines[1:]) == [
        [device, site, "online"] for device, site in FLEET]
    code, kiosks = staff.json("list")
    assert {k["device_id"]: k["config_version"] for k in kiosks} == {
        "kiosk-a": 0, "kiosk-b": 0, "kiosk-c": 0}

    code, shown = staff.json("show", "kiosk-a")
    assert code == OK and shown["status"] == "online" and shown["site"] == "shop-1"
    code, reported = staff.json("config", "get", "kiosk-b")
    assert code == OK and reported["version"] == 0
    assert reported["config"]["kiosk"]["device_id"] == "kiosk-b"
    assert staff("show", "nobody")[0] == UNKNOWN


def test_commands_wait_for_every_answer(staff, fleet):
    code, answers = staff.json("cmd", "kiosk-a", "ping")
    assert code == OK and answers["kiosk-a"]["status"] == "ok"
    code, out, _ = staff("cmd", "kiosk-b", "set-brightness", "level=999")
    assert code == REFUSED and "0 to 255" in out
    assert staff("cmd", "nobody", "ping")[0] == UNKNOWN

    code, answers = staff.json("cmd", "--site", "shop-1", "ping")
    assert code == OK and sorted(answers) == ["kiosk-a", "kiosk-b"]
    code, answers = staff.json("cmd", "--all", "status")
    assert code == OK and sorted(answers) == ["kiosk-a", "kiosk-b", "kiosk-c"]
    assert all(body["data"]["config_version"] == 0 for body in answers.values())


def test_a_config_is_pushed_to_the_fleet_with_progress(staff, fleet, tmp_path, monkeypatch):
    change = tmp_path / "slower.toml"
    change.write_text("[counter]\nreply_timeout_s = 4.5\n")
    with monkeypatch.context() as terminal:
        terminal.setattr(sys.stderr, "isatty", lambda: True)
        code, out, err = staff("config", "apply", str(change), "--all")
    assert code == OK, out + err
    assert "3/3" in err  # progress on a terminal, never into a pipe (below)
    assert sorted(line.split()[:3] for line in out.splitlines()[1:]) == [
        ["kiosk-a", "1", "applied"], ["kiosk-b", "1", "applied"], ["kiosk-c", "1", "applied"]]
    for kiosk in fleet:
        assert kiosk.app.config.counter.reply_timeout_s == 4.5
    bad = tmp_path / "bad.toml"
    bad.write_text("[counter]\nreply_timeout_s = -1\n")
    code, out, err = staff("config", "apply", str(bad), "kiosk-c", "--json")
    outcomes = json.loads(out)
    assert code == REFUSED and outcomes["kiosk-c"]["outcome"] == "refused" and err == ""
    assert "reply_timeout_s" in outcomes["kiosk-c"]["reason"]
    assert fleet[2].app.config.counter.reply_timeout_s == 4.5


def test_a_site_config_reaches_only_that_site(staff, fleet, tmp_path):
    change = tmp_path / "site.toml"
    change.write_text("[counter]\nresult_screen_s = 3.0\n")
    code, outcomes = staff.json("config", "apply", str(change), "--site", "shop-2")
    assert code == OK and list(outcomes) == ["kiosk-c"]
    assert [k.app.config.counter.result_screen_s for k in fleet] == [2.0, 2.0, 3.0]


def test_watch_prints_live_health_reports(staff, fleet):
    code, out, _ = staff("watch", "kiosk-a", "--count", "2")
    lines = out.splitlines()
    assert code == OK and len(lines) == 2 and all("kiosk-a" in line for line in lines)
    assert "outbox_depth=0" in lines[0]


def test_a_kiosk_that_does_not_answer_is_reported(staff, fleet):
    fleet[0].stop()
    code, answers = staff.json("--timeout", "1", "cmd", "kiosk-a", "ping")
    assert code == NO_ANSWER and answers == {"kiosk-a": None}


# --- enrollment --------------------------------------------------------------------


@pytest.fixture
def newcomer(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[RunningKiosk]:
    kiosk = RunningKiosk(kiosk_config(tmp_path, mosquitto, "kiosk-new", "shop-1", ())).start()
    try:
        kiosk.wait_online()
        yield kiosk
    finally:
        kiosk.stop()


def test_an_unprovisioned_kiosk_shows_a_pairing_code_and_asks_to_be_enrolled(staff, newcomer):
    screen = wait_for(lambda: newcomer.app.screen if isinstance(newcomer.app.screen, Pairing)
                      else None, 5, "the pairing screen")
    assert screen.device_id == "kiosk-new" and len(screen.code) == 9
    code, kiosks = staff.json("list")
    assert code == OK and kiosks[0]["waiting_to_enroll"] is True


def test_enrollment_with_the_right_code_trusts_the_staff_key(staff, newcomer, tmp_path):
    staff("keys", "gen", "alice")
    assert staff("enroll", "kiosk-new", "WRONG-CODE")[0] == REFUSED
    first = tmp_path / "first.toml"
    first.write_text("[counter]\nreply_timeout_s = 5.0\n")
    pairing = newcomer.app.staff.enrollment.code.lower()  # typed in any case
    code, out, err = staff("enroll", "kiosk-new", f"{pairing[:4]}-{pairing[4:]}",
                           "--apply", str(first))
    assert code == OK, out + err
    app = newcomer.wait_restarted()
    newcomer.wait_online()
    assert app.config.staff.trusted_keys == (Keyring(staff.keys).list()[0].public,)
    assert app.config.counter.reply_timeout_s == 5.0 and not app.staff.enrollment.waiting
    assert staff("cmd", "kiosk-new", "ping")[0] == OK
    code, kiosks = staff.json("list")
    assert kiosks[0]["waiting_to_enroll"] is False and kiosks[0]["config_version"] == 1


# --- what a kiosk says reaches a staff terminal only as printable text ------------------

HOSTILE = "evil-1"
ESCAPES = ("\x1b[8m", "\x1b]0;owned\x07", "\u202e", "\r", "\x9b2J")
FAKE_ROW = "\nkiosk-z  shop-1  online  ready  1.0  7  0  0  1s ago"


def _hostile(intruder, leaf: str, payload: str, retain: bool = True) -> None:
    topic = f"loyalty/shop-1/{HOSTILE}/{leaf}"
    intruder.publish(topic, payload.encode(), qos=1, retain=retain).wait_for_publish(10)


def _says_hostile_things(intruder, retain: bool = True) -> None:
    sneaky = "".join(ESCAPES) + FAKE_ROW
    _hostile(intruder, "status", "online" + sneaky)
    _hostile(intruder, "state", json.dumps({"v": 1, "state": "ready" + sneaky, "reason": sneaky,
                                            "firmware": sneaky}))
    _hostile(intruder, "tele/health", json.dumps(
        {"v": 1, "state": "ready" + sneaky, "outbox_depth": 0, "problems": [sneaky],
         "sent_at": 1.0, "uptime_s": 5}), retain)


def _clean(text: str) -> None:
    assert not any(escape in text for escape in ESCAPES), repr(text)
    assert "\x1b" not in text and "\x07" not in text
    assert "kiosk-z" not in text.split("\n", 1)[0] and "\nkiosk-z" not in text


def test_a_kiosk_cannot_put_escapes_or_rows_into_list_show_or_watch(staff, intruder):
    _says_hostile_things(intruder)
    code, out, _ = staff("list")
    assert code == OK and len(out.splitlines()) == 2, out
    _clean(out)
    assert all(len(line) <= 80 for line in out.splitlines())
    code, out, _ = staff("show", HOSTILE)
    assert code == OK and out.startswith("kiosk:")
    _clean(out)
    code, shown = staff.json("show", HOSTILE)  # JSON escapes control characters itself
    assert shown["status"].startswith("online\x1b[8m")

    watched: list[tuple[int, str, str]] = []
    watcher = threading.Thread(target=lambda: watched.append(staff("watch", "--count", "1")),
                               daemon=True)
    watcher.start()
    deadline = time.monotonic() + 30
    while watcher.is_alive() and time.monotonic() < deadline:
        _hostile(intruder, "tele/health", json.dumps({"v": 1, "state": "ready" + "".join(
            ESCAPES) + FAKE_ROW, "outbox_depth": 0, "sent_at": 1.0}), retain=False)
        time.sleep(1.0)  # quiet between reports: kioskctl has settled before it watches
    [(code, out, _)] = watched
    assert code == OK and len(out.splitlines()) == 1, out
    _clean(out)


def test_json_may_come_anywhere_and_show_is_a_summary(staff, fleet):
    for argv in (["--json", "list"], ["list", "--json"]):
        code, out, _ = staff(*argv)
        assert code == OK and {k["device_id"] for k in json.loads(out)} >= {"kiosk-a"}
    code, out, _ = staff("show", "kiosk-a")
    assert code == OK and len(out.splitlines()) < 25, out
    assert "status:" in out and "online" in out and "config:" in out and "version 0" in out
