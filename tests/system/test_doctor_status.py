"""``kiosk doctor`` names every problem with a fix and fails on it; ``kiosk status`` answers
a shop owner's first questions from the database and the broker's retained state."""

from __future__ import annotations

import io
import os
import socket
import sqlite3
from dataclasses import replace

from drivers.specs import SerialSpec
from kiosk.config import MqttSection
from kiosk.ops import doctor, status
from kiosk.testing.daemon import to_toml
from kiosk.testing.harness import RunningKiosk, sim_config, wait_for


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _members(db: str) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM members").fetchone()[0]


def _problems(findings: list[doctor.Finding]) -> dict[str, doctor.Finding]:
    return {f.check: f for f in findings if f.level == "fail"}


def test_doctor_passes_a_healthy_simulated_kiosk(kiosk, tmp_path):
    kiosk.wait_online()
    path = tmp_path / "kiosk.toml"
    path.write_text(to_toml(kiosk.config))
    out = io.StringIO()
    assert doctor.main(str(path), out) == 0, out.getvalue()
    text = out.getvalue()
    for line in ("[ ok ] config:", "[ ok ] database:", "[ ok ] outbox: 0 check-ins waiting",
                 "[ ok ] camera: simulated", "[ ok ] broker: 127.0.0.1:", "[ ok ] disk:"):
        assert line in text
    assert "kiosk doctor: 0 problem(s)" in text


def test_doctor_finds_a_plugged_in_scanner_and_refuses_plain_text_for_tls(tmp_path, mosquitto):
    reader, scanner = os.openpty()  # a real serial device node
    port = os.ttyname(scanner)
    try:
        config = replace(sim_config(tmp_path, mosquitto.port),
                         serial=SerialSpec(backend="pyserial", port=port),
                         mqtt=MqttSection(host="127.0.0.1", port=mosquitto.port, tls=True))
        findings = doctor.run_checks(config)
    finally:
        os.close(reader)
        os.close(scanner)
    serial = next(f for f in findings if f.check == "serial")
    assert serial.level == "ok" and serial.detail == port
    assert "TLS with 127.0.0.1" in _problems(findings)["broker"].detail


def test_status_of_an_online_kiosk(kiosk, backend, tmp_path):
    kiosk.wait_online()
    kiosk.show_card("LOY-ALICE01")
    kiosk.wait_drained()
    db = os.path.join(kiosk.config.kiosk.state_dir, "kiosk.db")
    wait_for(lambda: _members(db), what="the reply cached")
    path = tmp_path / "kiosk.toml"
    path.write_text(to_toml(kiosk.config))
    out = io.StringIO()
    assert status.main(str(path), out) == 0, out.getvalue()
    lines = out.getvalue().splitlines()
    assert lines[0] == "kiosk    kiosk-test at test-shop"
    assert lines[1] == "online   yes (retained status on 127.0.0.1)"
    assert lines[2] == "state    ready"
    assert lines[3].startswith("delivery 0 await the backend, 0 not sent yet; reported ")
    assert lines[4] == "outbox   0 check-ins waiting"
    assert lines[5].startswith("last     reply from the backend ") and lines[5].endswith(" s ago")


def test_status_of_an_offline_kiosk_with_visits_waiting(tmp_path):
    config = sim_config(tmp_path / "state", _free_port())
    kiosk = RunningKiosk(config).start()
    try:
        kiosk.type_code("LOY-ALICE01")
        wait_for(lambda: kiosk.app.outbox.depth == 1, what="the visit stored")
        path = tmp_path / "kiosk.toml"
        path.write_text(to_toml(config))
        out = io.StringIO()
        assert status.main(str(path), out) == 1
    finally:
        kiosk.stop()
    text = out.getvalue()
    assert "online   unknown: broker 127.0.0.1:" in text and "not reachable" in text
    assert "outbox   1 check-ins waiting, oldest stored " in text
    assert "last     check-in stored " in text
    assert text.rstrip().endswith("run `kiosk doctor` for what to do")
    with sqlite3.connect(tmp_path / "state" / "kiosk.db") as conn:  # status only read it
        assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 1
