"""Rules change while kiosks check members in: ``kiosk backend`` re-reads its rules file on
SIGHUP and on ``POST /rules/reload``, refuses an invalid file and keeps the old rules, and
every check-in is credited once, under exactly one rules version that its ledger rows name."""

from __future__ import annotations

import hashlib
import json
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from backend import Ledger, admin_client
from kiosk.testing.broker import free_port
from kiosk.testing.harness import wait_for
from tests.system.senders import Sender, deliver_all

INVALID = "[points]\nper_visit = 'twenty'\n"


def rules_text(per_visit: int) -> str:
    return f"[points]\nper_visit = {per_visit}\n"


def version_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class Backend:
    """One ``kiosk backend`` process on SQLite, with its admin API and a rules file."""

    def __init__(self, broker_port: int, folder: Path) -> None:
        self.rules = folder / "rules.toml"
        self.rules.write_text(rules_text(10))
        self.db = folder / "ledger.db"
        self.token = secrets.token_urlsafe(24)
        (folder / "tokens").write_text(f"dana:{self.token}\n")
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = folder / "backend.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kiosk", "backend", "--host", "127.0.0.1", "--port",
                 str(broker_port), "--db", str(self.db), "--rules", str(self.rules),
                 "--admin-listen", self.url.removeprefix("http://"),
                 "--admin-tokens", str(folder / "tokens")],
                stdout=out, stderr=subprocess.STDOUT)
        wait_for(lambda: "subscribed:" in self.log.read_text(), 60, "backend subscribed")
        wait_for(self._serving, 30, "admin API serving")

    def _serving(self) -> bool:
        try:
            return bool(self.health())
        except OSError:
            return False

    def health(self) -> dict[str, object]:
        with urllib.request.urlopen(f"{self.url}/health", timeout=5) as response:
            return dict(json.loads(response.read()))

    def reload(self, capsys: pytest.CaptureFixture[str]) -> object:
        """``loyalty-admin reload-rules``: the answer, or AdminError with the one line."""
        code = admin_client.main(["--url", self.url, "reload-rules"])
        out, err = capsys.readouterr()
        if code:
            raise admin_client.AdminError(err.strip().removeprefix("loyalty-admin: "))
        return json.loads(out)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


def test_rules_reloaded_during_a_rush_credit_each_check_in_under_one_version(
        mosquitto, tmp_path, capsys, monkeypatch):
    backend = Backend(mosquitto.port, tmp_path)
    monkeypatch.setenv("LOYALTY_ADMIN_TOKEN", backend.token)
    kiosks = [Sender(mosquitto.host, mosquitto.port, f"kiosk-{k}") for k in range(2)]
    points = {version_of(rules_text(10)): 10}
    typed: list[str] = []
    done = threading.Event()

    def rush() -> None:  # about 150 check-ins a second from two kiosks, until done
        n = 0
        while not done.wait(0.006):
            kiosk = kiosks[n % 2]
            typed.append(kiosk.check_in(f"LOY-M{n % 25:04d}").event_id)
            kiosk.resend_unacknowledged(0.5)
            n += 1

    try:
        sender = threading.Thread(target=rush)
        sender.start()
        for step, per_visit in enumerate((20, 30, 40, 50)):
            time.sleep(0.25)
            text = rules_text(per_visit)
            backend.rules.write_text(text)
            points[version_of(text)] = per_visit
            if step % 2:
                answer = backend.reload(capsys)
                assert isinstance(answer, dict) and answer["version"] == version_of(text)
            else:
                backend.proc.send_signal(signal.SIGHUP)
                wait_for(lambda text=text: backend.health()["rules"]["version"]  # type: ignore[index]
                         == version_of(text), 30, "SIGHUP applied")
            if per_visit == 30:  # an invalid file: refused, the rules in force stay
                backend.rules.write_text(INVALID)
                with pytest.raises(admin_client.AdminError) as refused:
                    backend.reload(capsys)
                message = str(refused.value)
                assert message.startswith("422: ") and "points.per_visit: expected an " \
                    "integer" in message and "\n" not in message
                rules = backend.health()["rules"]
                assert rules == {"version": version_of(text), "source": str(backend.rules),
                                 "reload_error": message.removeprefix("422: ")}
                backend.proc.send_signal(signal.SIGHUP)  # refused the same way, and logged
                wait_for(lambda: backend.log.read_text().count("rules not reloaded") >= 2, 30,
                         "SIGHUP refusal logged")
        time.sleep(0.25)
        done.set()
        sender.join()
        deliver_all(kiosks, timeout=120)
        assert backend.health()["rules"]["reload_error"] == ""  # type: ignore[index]
    finally:
        for kiosk in kiosks:
            kiosk.close()
        backend.stop()
    ledger = Ledger(backend.db)
    try:
        visits = {e for k in kiosks for e, *_ in ledger.visits(k.device_id)}
        assert visits == set(typed) and len(typed) > 100  # typed = credited
        assert ledger.counts()["credited"] == len(typed)
        credited: Counter[str] = Counter()
        for member in {f"LOY-M{n:04d}" for n in range(25)}:
            entries = ledger.entries(member, limit=1000)
            assert sum(e["points"] for e in entries) == ledger.balance(member)
            for entry in entries:  # visits, and tier changes (the built-in tiers)
                assert entry["rules"] in points, entry
                if entry["kind"] == "visit":  # the points of the version it names
                    assert entry["points"] == points[entry["rules"]], entry
                    credited[entry["rules"]] += 1
        assert sum(credited.values()) == len(typed) and len(credited) >= 3, credited
    finally:
        ledger.close()
    twice = [e for k in kiosks for e, acks in k.acks.items() if acks.count("credited") > 1]
    assert twice == []
