"""``kiosk doctor``: every reason a kiosk may not take or deliver check-ins, each with a fix.

It reads and probes, never repairs: safe to run next to the daemon, as root or
as the kiosk user (``sudo -u kiosk kiosk doctor`` also checks that user's rights).
Exit status 0 when nothing failed (warnings included), 1 when something did.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import ssl
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from drivers import presence
from kiosk.config import Config, ConfigError, MqttSection, config_path
from kiosk.mqtt import protocol
from kiosk.ops import status
from kiosk.ops.identity import default_device_id
from kiosk.provisioning.overlay import InForce, load_in_force
from kiosk.store import dbview

CLOCK_FLOOR = 1767225600.0
"""2026-01-01 UTC, after this release was made: a clock before it was never set (no RTC)."""
MIB = 1024 * 1024
_CORRUPT_FIX = ("restart the kiosk (sudo systemctl restart kiosk): it moves a corrupt database "
                "aside and starts a fresh one")


@dataclass(frozen=True)
class Finding:
    """One check's verdict: ``ok``, ``warn`` or ``fail``, and what to do about it."""

    check: str
    level: str
    detail: str
    fix: str = ""


def state_dir(config: Config) -> list[Finding]:
    """The state directory exists, is writable here, and keeps the database private."""
    path = Path(config.kiosk.state_dir)
    fix_owner = (f"sudo install -d -o kiosk -g kiosk -m 750 {path} "
                 "(tools/install.sh creates it)")
    if not path.is_dir():
        return [Finding("state dir", "fail", f"{path} does not exist", fix_owner)]
    if not os.access(path, os.W_OK | os.X_OK):
        return [Finding("state dir", "fail", f"{path} is not writable by this user",
                        f"sudo chown -R kiosk:kiosk {path}")]
    found = [Finding("state dir", "ok", str(path))]
    if stat.S_IMODE(path.stat().st_mode) & 0o007:
        found.append(Finding("state dir", "warn", f"{path} is open to every user",
                             f"sudo chmod o-rwx {path}"))
    for item in sorted(path.glob("kiosk.db*")):
        if stat.S_IMODE(item.stat().st_mode) & 0o007:
            found.append(Finding("state dir", "fail", f"{item} is readable by every user",
                                 f"sudo chmod o-rwx {item}"))
    return found


def database(config: Config, now: float) -> list[Finding]:
    """The database passes its check; the outbox is not full and is draining."""
    path = Path(config.kiosk.state_dir) / "kiosk.db"
    try:
        facts = dbview.read(path)
    except FileNotFoundError:
        return [Finding("database", "warn", f"{path} not created yet",
                        "start the kiosk once: sudo systemctl start kiosk")]
    except sqlite3.OperationalError as exc:  # cannot open or read: rights, locks
        return [Finding("database", "fail", f"{path}: {exc}",
                        "run as root or the kiosk user (sudo -u kiosk kiosk doctor)")]
    except sqlite3.DatabaseError as exc:
        return [Finding("database", "fail", f"{path} is damaged: {exc}", _CORRUPT_FIX)]
    if facts.verdict != "ok":
        return [Finding("database", "fail", f"{path} fails its check: {facts.verdict}",
                        _CORRUPT_FIX)]
    found = [Finding("database", "ok", f"{path} passes quick_check")]
    limit = config.outbox.max_rows
    age = now - facts.oldest_waiting_at if facts.oldest_waiting_at else 0.0
    detail = f"{facts.waiting} check-ins waiting" + (
        f", oldest {dbview.ago(age)}" if facts.waiting else "")
    if facts.waiting >= 0.8 * limit:
        found.append(Finding("outbox", "fail", f"{detail}; max_rows is {limit}",
                             "get the broker reachable (see the broker check); new visits "
                             "are refused when the outbox is full"))
    elif age > 3600:
        found.append(Finding("outbox", "warn", f"{detail}: the backend has not acknowledged "
                             "them", "see the broker and delivery checks; kiosk status shows "
                             "whether the kiosk is online"))
    else:
        found.append(Finding("outbox", "ok", detail))
    return found


def hardware(config: Config, dev: Path = Path("/dev")) -> list[Finding]:
    """Every configured device has its device node, usable by this user."""
    return [Finding(p.device, "ok" if p.ok else "fail", p.detail, p.fix)
            for p in presence.check(config.hardware, dev)]


def broker(settings: MqttSection, timeout: float = 3.0) -> list[Finding]:
    """The broker answers on its port; with TLS, its certificate checks out against the CA."""
    where = f"{settings.host}:{settings.port}"
    try:
        sock = socket.create_connection((settings.host, settings.port), timeout=timeout)
    except OSError as exc:
        return [Finding("broker", "fail", f"cannot connect to {where}: {exc}",
                        "check mqtt.host and mqtt.port, the network (ip route; ping the "
                        "host) and that the broker runs")]
    with sock:
        if not settings.tls:
            return [Finding("broker", "ok", f"{where} accepts connections (no TLS)")]
        try:
            context = ssl.create_default_context(cafile=settings.ca_file or None)
            if settings.cert_file:
                context.load_cert_chain(settings.cert_file, settings.key_file)
            with context.wrap_socket(sock, server_hostname=settings.host) as tls:
                cert = tls.getpeercert() or {}
        except (ssl.SSLError, ssl.CertificateError, OSError) as exc:
            return [Finding("broker", "fail", f"TLS with {where} failed: {exc}",
                            "check mqtt.ca_file signs the broker's certificate, that mqtt.host "
                            "is a name in it, and the clock (see the clock check)")]
    expires = ssl.cert_time_to_seconds(str(cert["notAfter"])) if "notAfter" in cert else None
    if expires is not None and expires - time.time() < 30 * 86400:
        return [Finding("broker", "warn", f"{where}: the broker's certificate expires "
                        f"{time.strftime('%Y-%m-%d', time.gmtime(expires))}",
                        "renew the broker's certificate")]
    return [Finding("broker", "ok", f"{where} accepts TLS, certificate verified")]


def delivery(config: Config, now: float) -> list[Finding]:
    """Whether the backend keeps up, from the kiosk's last retained health report: check-ins
    sent and not acknowledged, and not sent yet."""
    settings = config.mqtt
    if settings.username or settings.cert_file:
        return []  # asking under the kiosk's own credentials would take over its session
    topics = protocol.Topics(settings.topic_prefix, config.kiosk.site,
                             config.kiosk.device_id or default_device_id())
    view = status.retained(settings, topics)
    if isinstance(view, str):
        return []  # the broker check says why
    if topics.health not in view:
        return [Finding("delivery", "ok", "no health report retained (telemetry.interval_s "
                        "is 0, or the kiosk never connected)")]
    try:
        waiting = protocol.decode_waiting(view[topics.health])
    except protocol.ProtocolError as exc:
        return [Finding("delivery", "warn", f"unreadable health report: {exc}")]
    detail = status.waiting_text(waiting, now)
    if waiting.awaiting_backend and waiting.awaiting_oldest_s > config.outbox.backend_alarm_s:
        return [Finding("delivery", "warn", detail,
                        "check that the loyalty backend runs and is subscribed (its log; "
                        "kioskctl list shows every kiosk's AWAIT column); the kiosk keeps "
                        "every check-in and sends it again")]
    return [Finding("delivery", "ok", detail)]


def clock(now: float, synced_flag: Path = Path("/run/systemd/timesync/synchronized"),
          ) -> list[Finding]:
    """The Pi has no real-time clock: until NTP answers, time starts where it stopped."""
    if now < CLOCK_FLOOR:
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        return [Finding("clock", "fail", f"the clock says {day}",
                        "the kiosk needs network time: timedatectl status; check that "
                        "systemd-timesyncd reaches an NTP server")]
    if not synced_flag.exists():
        return [Finding("clock", "warn", "not known to be synchronised (no systemd-timesyncd "
                        "sync flag)", "timedatectl status; check-ins carry captured_at from "
                        "this clock")]
    return [Finding("clock", "ok", "synchronised by systemd-timesyncd")]


def disk(config: Config) -> list[Finding]:
    """Room for the outbox: a full SD card refuses every new visit."""
    path = Path(config.kiosk.state_dir)
    free = shutil.disk_usage(path if path.exists() else path.parent).free
    detail = f"{free // MIB} MiB free under {path}"
    if free < 100 * MIB:
        return [Finding("disk", "fail", detail, "free space: sudo journalctl --vacuum-size=50M; "
                        "sudo apt-get clean")]
    if free < 500 * MIB:
        return [Finding("disk", "warn", detail, "free some space before the outbox needs it")]
    return [Finding("disk", "ok", detail)]


def run_checks(config: Config, now: float | None = None, dev: Path = Path("/dev"),
               ) -> list[Finding]:
    """Every check, in the order a person would look."""
    now = time.time() if now is None else now
    checks: list[Callable[[], list[Finding]]] = [
        lambda: state_dir(config), lambda: database(config, now), lambda: disk(config),
        lambda: hardware(config, dev), lambda: broker(config.mqtt),
        lambda: delivery(config, now), lambda: clock(now)]
    return [finding for check in checks for finding in check()]


def report(findings: list[Finding], out: TextIO = sys.stdout) -> int:
    """Print one line per finding (and its fix); 1 if any failed, else 0."""
    marks = {"ok": " ok ", "warn": "warn", "fail": "FAIL"}
    for finding in findings:
        print(f"[{marks[finding.level]}] {finding.check}: {finding.detail}", file=out)
        if finding.fix and finding.level != "ok":
            print(f"       fix: {finding.fix}", file=out)
    failed = sum(finding.level == "fail" for finding in findings)
    print(f"kiosk doctor: {failed} problem(s), "
          f"{sum(f.level == 'warn' for f in findings)} warning(s)", file=out)
    return 1 if failed else 0


def layers(path: Path, config: InForce) -> list[Finding]:
    """Where the config in force comes from: the file, then each value staff set over it."""
    found = [Finding("config", "ok", str(path))]
    found += [Finding("config", "ok", line) for line in config.staff_values()]
    if config.problem:
        found.append(Finding("config", "warn", config.problem,
                             "run as the kiosk user (sudo -u kiosk kiosk doctor); if it "
                             "still shows, the kiosk runs on the file alone too: staff can send "
                             "their config again (kioskctl config apply)"))
    return found


def main(config_arg: str | None, out: TextIO = sys.stdout) -> int:
    """``kiosk doctor``: load the config in force (exit 2 when the file is wrong), then run
    every check against it: after staff moved the kiosk, the broker it uses now."""
    path = config_path(config_arg)
    try:
        config = load_in_force(path)
    except ConfigError as exc:
        print(f"[FAIL] config: {exc}\n       fix: edit {path}; config/kiosk.toml documents "
              "every key", file=out)
        return 2
    return report([*layers(path, config), *run_checks(config.config)], out)
