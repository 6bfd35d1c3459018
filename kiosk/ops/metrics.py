"""The kiosk's health in Prometheus text format, as a file for node_exporter's textfile collector.

Why a file and not an HTTP endpoint (docs/integrations.md says it for users):
a Pi that is monitored already runs node_exporter for its CPU, memory and SD
card, so the kiosk's figures join the one scrape target there; the daemon opens
no port (nothing new to firewall or secure, and its sandbox stays as it is); and
a kiosk that has stopped is still visible, because node_exporter reports the
file's age (``node_textfile_mtime_seconds``) and the alert rules in
``config/prometheus/`` fire on it.

The figures are exactly those of the ``tele/health`` report (one gatherer,
:class:`kiosk.daemon.health.HealthReport`), with Prometheus' names and types:
counters end in ``_total`` and only go up while the kiosk runs (a restart sets
them back to 0, which ``rate()`` and ``increase()`` allow for).

The file is replaced whole (a temporary file, then a rename in the same folder)
so node_exporter never reads half of one, but not fsynced: it is rewritten every
``metrics.interval_s``, and an fsync that often would wear an SD card for a file
that is worthless after a power cut anyway.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path

from kiosk import __version__
from kiosk.mqtt import protocol

log = logging.getLogger(__name__)

FILE_NAME = "kiosk.prom"
"""node_exporter reads ``*.prom`` files only; the temporary file is named otherwise."""

_COUNTERS = (
    ("scans", "scans_total", "Codes the readers handed up, member codes or not."),
    ("checkins", "checkins_total", "Check-ins committed to the outbox."),
    ("visits_refused", "visits_refused_total",
     "Check-ins the outbox could not take (full or storage error); the customer was told."),
    ("scans_lost", "scans_lost_total", "Scans that arrived faster than they could be taken."),
    ("published", "published_total", "Check-ins the broker took (PUBACK)."),
    ("delivered", "delivered_total",
     "Check-ins the backend acknowledged (credited or duplicate) and the kiosk deleted."),
    ("backend_refused", "backend_refused_total", "Check-ins the backend refused for good."),
    ("resent", "resent_total", "Check-ins sent again: the backend had not acknowledged them."),
    ("refused", "broker_refused_total", "Check-ins the broker refused."),
    ("batches_unrouted", "batches_unrouted_total",
     "Batches of check-ins nobody took (sent again one a message): the backend takes none."),
    ("connects", "connects_total", "Connections made to the broker."),
    ("link_drops", "link_drops_total", "Connections given up on (silent broker, no CONNACK)."),
    ("bad_messages", "bad_messages_total", "Malformed messages received and dropped."),
    ("replies_refused", "replies_refused_total",
     "Replies for no check-in of this kiosk, or naming another member."),
    ("events_dropped", "events_dropped_total", "Incoming events dropped under a flood."),
)
_GAUGES = (
    ("uptime_s", "uptime_seconds", "Seconds since the kiosk started."),
    ("outbox_depth", "outbox_depth", "Check-ins waiting in the outbox."),
    ("outbox_oldest_s", "outbox_oldest_seconds", "Age of the oldest waiting check-in."),
    ("unsent", "unsent", "Check-ins not sent yet."),
    ("awaiting_backend", "awaiting_backend",
     "Check-ins sent and not yet acknowledged by the backend."),
    ("awaiting_oldest_s", "awaiting_oldest_seconds",
     "Age of the oldest check-in awaiting the backend."),
    ("backend_silent_s", "backend_silent_seconds",
     "How long the backend has left sent check-ins unacknowledged."),
    ("checkins_today", "checkins_today", "Check-ins recorded since local midnight."),
    ("decode_fps", "decode_fps", "Camera frames decoded per second."),
    ("last_scan_at", "last_scan_timestamp_seconds", "Unix time of the last scan."),
    ("cpu_temp_c", "cpu_temperature_celsius", "SoC temperature."),
)


def prometheus_text(health: protocol.Health, device_id: str, site: str, online: bool) -> str:
    """The exposition text of one health report (text format 0.0.4)."""
    labels = f'device_id="{_label(device_id)}",site="{_label(site)}"'
    lines: list[str] = []

    def metric(name: str, kind: str, text: str, value: float, extra: str = "") -> None:
        lines.extend((f"# HELP kiosk_{name} {text}", f"# TYPE kiosk_{name} {kind}",
                      f"kiosk_{name}{{{labels}{extra}}} {_number(value)}"))

    metric("info", "gauge", "The kiosk's version (always 1).", 1,
           f',version="{_label(__version__)}"')
    metric("online", "gauge", "1 while the kiosk is connected to the broker.", int(online))
    lines += ["# HELP kiosk_ready 1 when the kiosk is ready, 0 when degraded.",
              "# TYPE kiosk_ready gauge",
              f"kiosk_ready{{{labels}}} {int(health.state == 'ready')}"]
    metric("problems", "gauge", "Devices or storage the kiosk reports a problem with.",
           len(health.problems))
    for field, name, text in _GAUGES:
        value = getattr(health, field)
        if value is not None:  # no temperature sensor, no scan yet: no sample, not a 0
            metric(name, "gauge", text, value)
    for field, name, text in _COUNTERS:
        metric(name, "counter", text, getattr(health, field))
    return "\n".join(lines) + "\n"


def _label(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN"
    return repr(value) if isinstance(value, float) else str(int(value))


class MetricsFile:
    """Writes :func:`prometheus_text` into ``folder`` every ``interval_s``; controller thread."""

    def __init__(self, folder: Path, interval_s: float, device_id: str, site: str) -> None:
        self.path = folder / FILE_NAME
        self._interval_s = interval_s
        self._device_id = device_id
        self._site = site
        self._next = 0.0

    def tick(self, now: float, health: Callable[[], protocol.Health], online: bool) -> None:
        """Write the file when it is due (``now``: monotonic). A folder that cannot be written
        is logged (repeats are held back by the logging setup); the counter goes on."""
        if now < self._next:
            return
        self._next = now + self._interval_s
        self.write(health(), online)

    def write(self, health: protocol.Health, online: bool) -> None:
        """Write the file now (also at a clean stop, saying offline: the alert rules then
        report the kiosk down instead of showing its last figures as current)."""
        text = prometheus_text(health, self._device_id, self._site, online)
        partial = self.path.with_name(f".{FILE_NAME}.{os.getpid()}")
        try:
            partial.write_text(text)
            os.replace(partial, self.path)
        except OSError as exc:
            log.warning("metrics file %s not written: %s", self.path, exc.strerror or exc)
