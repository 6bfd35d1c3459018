"""The fleet at a glance: one line per site, from what every kiosk keeps retained.

Per site: how many kiosks, online, offline, degraded, waiting to be enrolled, how many
run a config version other than the newest one the site runs (drift), the oldest
check-in waiting for the backend, and the firmware versions. A kiosk staff have heard
nothing from since its status (no state, no config report) is counted as *unheard*, so
a summary never looks complete when it is not.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from kiosk.staff.fleet import Kiosk


@dataclass
class Site:
    """One site's kiosks, counted."""

    site: str
    kiosks: int = 0
    online: int = 0
    offline: int = 0
    degraded: int = 0
    enrolling: int = 0
    unheard: int = 0
    """Kiosks with a status but no state or config report: what they run is unknown."""
    drift: int = 0
    """Kiosks on a config version other than the site's newest."""
    newest_config: int = 0
    oldest_waiting_s: float = 0.0
    """The oldest check-in any of its kiosks has waiting for the backend (health reports)."""
    firmware: dict[str, int] = field(default_factory=dict)


def summarise(kiosks: list[Kiosk]) -> list[Site]:
    """One :class:`Site` per site, in name order, and a last one named ``*`` for them all."""
    sites: dict[str, list[Kiosk]] = {}
    for kiosk in kiosks:
        sites.setdefault(kiosk.site, []).append(kiosk)
    found = [_site(name, members) for name, members in sorted(sites.items())]
    total = Site("*")
    for site in found:
        for name in ("kiosks", "online", "offline", "degraded", "enrolling", "unheard", "drift"):
            setattr(total, name, getattr(total, name) + getattr(site, name))
        total.newest_config = max(total.newest_config, site.newest_config)
        total.oldest_waiting_s = max(total.oldest_waiting_s, site.oldest_waiting_s)
        total.firmware = dict(Counter(total.firmware) + Counter(site.firmware))
    return [*found, total]


def _site(name: str, kiosks: list[Kiosk]) -> Site:
    versions = [k.config_version for k in kiosks if k.config_version is not None]
    newest = max(versions, default=0)
    return Site(
        site=name, kiosks=len(kiosks),
        online=sum(k.status == "online" for k in kiosks),
        offline=sum(k.status != "online" for k in kiosks),
        degraded=sum(k.state == "degraded" for k in kiosks),
        enrolling=sum(k.waiting_to_enroll for k in kiosks),
        unheard=sum(not k.state and k.config_version is None and not k.waiting_to_enroll
                    for k in kiosks),
        drift=sum(version != newest for version in versions), newest_config=newest,
        oldest_waiting_s=max((k.awaiting_oldest_s or 0.0 for k in kiosks), default=0.0),
        firmware=dict(Counter(k.firmware or "?" for k in kiosks)))
