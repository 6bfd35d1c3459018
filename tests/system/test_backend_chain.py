"""A chain's owner, from docs/backend.md: PostgreSQL, two backend instances with a rules
file and the admin API; a kiosk checks a member in; staff look the member up, redeem a
reward and correct the balance with a reason, with ``loyalty-admin``."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend import admin_client
from kiosk.testing.broker import free_port
from kiosk.testing.harness import wait_for

ROOT = Path(__file__).resolve().parents[2]


class Chain:
    """Two ``kiosk backend`` processes sharing the check-ins, each with its admin API."""

    def __init__(self, broker_port: int, url: str, folder: Path) -> None:
        self.token = secrets.token_urlsafe(24)
        tokens = folder / "admin-tokens"
        tokens.write_text(f"# staff tokens\ndana:{self.token}\n")
        self.urls = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
        self.logs = [folder / f"backend-{n}.log" for n in range(2)]
        self.procs = []
        for n, (admin, log) in enumerate(zip(self.urls, self.logs, strict=True)):
            with log.open("wb") as out:
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "kiosk", "backend", "--port", str(broker_port),
                     "--host", "127.0.0.1", "--db", url,
                     "--rules", str(ROOT / "config" / "backend-rules.toml"),
                     "--share-group", "chain", "--client-id", f"backend-{n}",
                     "--admin-listen", admin.removeprefix("http://"),
                     "--admin-tokens", str(tokens)], stdout=out, stderr=subprocess.STDOUT))
        for log in self.logs:
            wait_for(lambda log=log: "subscribed:" in log.read_text(), timeout=60,
                     what=f"{log.name}: subscribed")
        for admin in self.urls:
            wait_for(lambda admin=admin: _up(admin), timeout=30, what=f"{admin} serving")

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            proc.wait(20)


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return json.loads(response.read())["status"] == "ok"
    except OSError:
        return False


@pytest.fixture
def chain(mosquitto, postgres_url, tmp_path) -> Iterator[Chain]:
    running = Chain(mosquitto.port, postgres_url, tmp_path)
    yield running
    running.stop()


def admin(capsys, chain: Chain, *args: str, instance: int = 0) -> object:
    code = admin_client.main(["--url", chain.urls[instance], *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_a_chain_checks_members_in_and_staff_correct_them(chain, kiosk, capsys, monkeypatch):
    monkeypatch.setenv("LOYALTY_ADMIN_TOKEN", chain.token)
    kiosk.wait_online()
    kiosk.type_code("LOY-ALICE01")
    assert kiosk.wait_credited(1, timeout=30) >= 1
    alice = admin(capsys, chain, "member", "LOY-ALICE01")
    assert (alice["balance"], alice["tier"], alice["visits"]) == (35, "Bronze", 1)
    # either instance answers for the same ledger
    assert admin(capsys, chain, "member", "LOY-ALICE01", instance=1)["balance"] == 35
    after = admin(capsys, chain, "adjust", "LOY-ALICE01", "20", "--reason", "machine broke")
    assert after["balance"] == 55
    assert admin(capsys, chain, "redeem", "LOY-ALICE01", "Free coffee",
                 instance=1)["balance"] == 5
    entries = admin(capsys, chain, "ledger", "LOY-ALICE01")
    assert [(e["kind"], e["points"], e["staff"]) for e in entries[:2]] == [
        ("redemption", -50, "dana"), ("adjustment", 20, "dana")]
    assert entries[1]["reason"] == "machine broke"
    assert entries[-1]["device_id"] == kiosk.app.device_id and entries[-1]["event_id"]
    made = admin(capsys, chain, "enrol", "LOY-BOB0002", "Bob", "--referred-by", "LOY-ALICE01")
    assert (made["display_name"], made["referred_by"]) == ("Bob", "LOY-ALICE01")
    assert admin_client.main(["--url", chain.urls[1], "refer", "LOY-ALICE01",
                              "LOY-BOB0002"]) == 1
    assert capsys.readouterr().err == ("loyalty-admin: 409: LOY-ALICE01 has had a credited "
                                       "visit: a referral counts only before the first one\n")
    rules = admin(capsys, chain, "rules")
    assert rules["visit_limit_minutes"] == 60 and rules["source"].endswith("backend-rules.toml")
    assert rules["referral_bonus"] == 50


def test_the_admin_api_refuses_without_a_token_or_a_reason(chain, capsys, monkeypatch):
    monkeypatch.setenv("LOYALTY_ADMIN_TOKEN", "not-" + chain.token)
    assert admin_client.main(["--url", chain.urls[0], "member", "LOY-ALICE01"]) == 1
    assert "401: a valid bearer token is needed" in capsys.readouterr().err
    monkeypatch.setenv("LOYALTY_ADMIN_TOKEN", chain.token)
    with pytest.raises(admin_client.AdminError, match="422"):
        admin_client.call(chain.urls[0], chain.token, "POST",
                          "/members/LOY-ALICE01/adjustments", {"points": 5, "reason": ""})
    assert admin_client.main(["--url", chain.urls[0], "adjust", "LOY-NOBODY9", "5",
                              "--reason", "x"]) == 1
    assert "404: LOY-NOBODY9 is not a member" in capsys.readouterr().err
    with urllib.request.urlopen(f"{chain.urls[0]}/openapi.json", timeout=5) as response:
        paths = json.loads(response.read())["paths"]
    assert {"/members/{member_id}/adjustments", "/members/{member_id}/redemptions",
            "/members/{member_id}/merge", "/members/{member_id}/ledger", "/members",
            "/rules", "/health"} <= set(paths)
