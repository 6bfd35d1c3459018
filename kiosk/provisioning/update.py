"""The kiosk's side of a software update: the ``update`` command, the fetch, the report.

The kiosk is unprivileged and sandboxed, so it only *asks*: the ``update`` command
(signed like every command) carries a release manifest signed by a release key; it is
verified here before anything else, checked against the running version, and only then
answered ``{"accepted": version}``. A thread fetches the files into the state
directory (see :mod:`kiosk.provisioning.fetch`) and writes the request that
kiosk-updater.path watches; the updater does the rest and reports in
``release.json``, which the kiosk publishes as ``state.release``. While it runs,
the kiosk writes a heartbeat the updater commits a new release on.
"""

from __future__ import annotations

import logging
import platform
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kiosk import __version__
from kiosk.config import Config
from kiosk.provisioning.commands import CommandError
from kiosk.provisioning.fetch import FetchError, fetch_all
from kiosk.provisioning.releases import (
    Layout,
    UpdateRefused,
    check_release,
    read_status,
    write_heartbeat,
    write_json,
)
from kiosk.trust.release import ManifestError, Release, parse_manifest
from kiosk.trust.signing import SignatureError, Verifier

log = logging.getLogger(__name__)

HEARTBEAT_S = 2.0
"""How often the heartbeat is written (the updater calls one older than 10 s stale)."""
STATUS_S = 2.0
"""How often the updater's report is read for changes."""


class Updates:
    """Runs the ``update`` command and keeps ``state.release`` current (controller thread)."""

    def __init__(self, config: Config, layout: Layout, republish: Callable[[], None],
                 connected: Callable[[], bool], lifecycle: Callable[[], str]) -> None:
        self._layout = layout
        self._verifier = Verifier.from_texts(list(config.update.release_keys))
        self._has_keys = bool(config.update.release_keys)
        self._may_downgrade = config.update.allow_downgrade
        self._republish = republish
        self._connected = connected
        self._lifecycle = lifecycle
        self._status = read_status(layout.status_file)
        self._failure: dict[str, str] | None = None
        """The last fetch that failed (the updater never heard of it)."""
        self._fetching: threading.Thread | None = None
        self._fetched: tuple[str, str | None] | None = None
        """Set by the fetch thread when it ends: the version, and why it failed (None: ok)."""
        self._next_beat = self._next_status = 0.0
        self._beat_told = False
        self.state: dict[str, Any] = self._release_state()
        """What ``state.release`` says; replaced whole, so paho's thread may read it."""

    def command(self, args: dict[str, Any]) -> dict[str, Any]:
        """The ``update`` command: verify the release, check it may replace this one, and
        start fetching it; :class:`CommandError` (the refusal's reason) otherwise."""
        unknown = set(args) - {"manifest", "downgrade"}
        if unknown:
            raise CommandError(f"unknown argument {sorted(unknown)[0][:40]!r}")
        downgrade = args.get("downgrade", False)
        if not isinstance(downgrade, bool):
            raise CommandError("argument 'downgrade': expected true or false")
        try:
            release = parse_manifest(args.get("manifest")).verify(self._verifier)
        except (ManifestError, SignatureError) as exc:
            raise CommandError(f"{exc}" if self._has_keys else
                               "no release key is trusted (update.release_keys is empty)") from None
        if not release.url:
            raise CommandError("the release names no URL to fetch it from")
        busy = self._busy()
        if busy:
            raise CommandError(busy)
        try:
            check_release(release, __version__, downgrade and self._may_downgrade)
        except UpdateRefused as exc:
            raise CommandError(str(exc)) from None
        self._fetched = None
        self._fetching = threading.Thread(target=self._fetch, args=(release, args, downgrade),
                                          name="update fetch", daemon=True)
        self._fetching.start()
        log.info("update to %s accepted: fetching from %s", release.version, release.url)
        return {"accepted": release.version}

    def tick(self, now: float) -> None:
        """Write the heartbeat; notice the fetch ending and the updater's report changing."""
        if now >= self._next_beat:
            self._next_beat = now + HEARTBEAT_S
            self._beat()
        changed = False
        if self._fetched is not None:
            version, failure = self._fetched
            if failure is not None:
                self._failure = {"version": version, "reason": failure[:200]}
            self._fetched, self._fetching, changed = None, None, True
        if now >= self._next_status:
            self._next_status = now + STATUS_S
            status = read_status(self._layout.status_file)
            changed = changed or status != self._status
            self._status = status
        if changed:
            self.state = self._release_state()
            self._republish()

    def _release_state(self) -> dict[str, Any]:
        failure = self._status.last_failure
        if self._failure is not None:
            failure = self._failure  # the newer: a fetch fails before the updater hears of it
        return {"running": __version__, "trying": self._status.trying, "last_failure": failure}

    def _busy(self) -> str:
        if self._fetching is not None:
            return "an update is being fetched already"
        status = read_status(self._layout.status_file)
        if status.trying:
            return f"release {status.trying} is on trial"
        if self._layout.request.exists():
            return "an update is waiting for the updater already"
        if self._layout.work.exists():  # it took the request and is copying or installing
            return "the updater is installing a release"
        return ""

    def _fetch(self, release: Release, args: dict[str, Any], downgrade: bool) -> None:
        """On its own thread: fetch, then ask the updater. Touches nothing of the controller's;
        the result goes to ``_fetched``, which :meth:`tick` reads."""
        folder = self._layout.files(release.version)
        try:
            for other in folder.parent.glob("*"):  # one release's files at most, not one each
                if other != folder:
                    shutil.rmtree(other, ignore_errors=True)
            fetch_all(release.url, release.files_for(platform.machine()), folder)
            write_json(self._layout.request, {"manifest": args["manifest"],
                                              "downgrade": downgrade})
        except (FetchError, OSError) as exc:
            log.error("update to %s not fetched: %s", release.version, exc)
            self._fetched = (release.version, f"fetch failed: {exc}")
            return
        log.info("update to %s fetched; the updater takes over", release.version)
        self._fetched = (release.version, None)

    def _beat(self) -> None:
        """The heartbeat, where the unit's RuntimeDirectory made a place for it (not on a
        developer's machine, where nobody reads it)."""
        path: Path = self._layout.health_file
        if not path.parent.is_dir():
            return
        try:
            write_heartbeat(path, __version__, self._connected(), self._lifecycle())
        except OSError as exc:
            if not self._beat_told:
                log.error("cannot write the release heartbeat %s: %s", path, exc)
                self._beat_told = True
