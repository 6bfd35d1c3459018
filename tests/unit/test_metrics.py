"""The kiosk's figures for Prometheus: the text format read back by the reference client's
parser, and the shipped alert rules checked (and run on series) by promtool."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kiosk.mqtt import protocol
from kiosk.ops.metrics import MetricsFile, prometheus_text
from tests import ROOT
from tests.payloads import health

RULES = ROOT / "config" / "prometheus" / "kiosk-alerts.yml"
RULE_TESTS = ROOT / "tests" / "prometheus" / "kiosk-alerts.test.yml"
HEALTH = health(
    uptime_s=12.5, state="degraded", problems=["camera: unplugged"], outbox_depth=3,
    outbox_oldest_s=42.0, awaiting_backend=2, awaiting_oldest_s=30.0, scans=9, checkins=7,
    scans_lost=1, published=5, delivered=4, decode_fps=9.5, connects=2, link_drops=1,
    checkins_today=5, last_scan_at=1795388285.25)


def _samples(text: str) -> dict[str, float]:
    return {sample.name: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples}


def test_the_health_report_in_prometheus_text_format():
    text = prometheus_text(HEALTH, 'pi-"7"', "shop", online=True)
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert families["kiosk_checkins"].type == "counter"  # the parser drops "_total"
    assert families["kiosk_outbox_depth"].type == "gauge"
    samples = _samples(text)
    assert samples["kiosk_online"] == 1 and samples["kiosk_ready"] == 0
    assert samples["kiosk_problems"] == 1 and samples["kiosk_checkins_total"] == 7
    assert samples["kiosk_checkins_today"] == 5 and samples["kiosk_scans_lost_total"] == 1
    assert samples["kiosk_last_scan_timestamp_seconds"] == 1795388285.25
    assert "kiosk_cpu_temperature_celsius" not in samples  # unknown: no sample, not a 0
    labels = families["kiosk_online"].samples[0].labels
    assert labels == {"device_id": 'pi-"7"', "site": "shop"}  # quotes escaped, read back


def test_the_file_is_replaced_whole_and_only_when_due(tmp_path):
    metrics = MetricsFile(tmp_path, 15.0, "pi-7", "shop")
    calls = []

    def health() -> protocol.Health:
        calls.append(1)
        return HEALTH

    metrics.tick(100.0, health, online=True)
    metrics.tick(110.0, health, online=True)  # not due yet: not even computed
    assert len(calls) == 1
    assert [path.name for path in tmp_path.iterdir()] == ["kiosk.prom"]
    metrics.write(HEALTH, online=False)
    assert _samples((tmp_path / "kiosk.prom").read_text())["kiosk_online"] == 0


def test_a_folder_that_cannot_be_written_is_logged_not_raised(tmp_path, caplog):
    MetricsFile(tmp_path / "missing", 15.0, "pi-7", "shop").write(HEALTH, online=True)
    assert "metrics file" in caplog.text and "not written" in caplog.text


def test_every_kiosk_metric_the_alert_rules_use_is_written():
    written = set(_samples(prometheus_text(HEALTH, "pi-7", "shop", online=True)))
    used = set(re.findall(r"\bkiosk_[a-z_]+", RULES.read_text()))
    assert used and used <= written, used - written


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool is not installed (Debian: the prometheus package)")
def test_the_alert_rules_are_valid_and_fire_when_they_should():
    for command in (["check", "rules", str(RULES)], ["test", "rules", str(RULE_TESTS)]):
        result = subprocess.run(["promtool", *command], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
