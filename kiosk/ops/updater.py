"""``kiosk-updater``: the one privileged part of an update, run by kiosk-updater.service.

The kiosk stays unprivileged: it verifies an ``update`` order, fetches the files into
its state directory and writes a request there. This program (root, sandboxed, no
network) trusts none of that: it verifies the manifest's release signature itself
against the release keys in the local config file (never staff's overlay), copies
every file into a root-owned folder while hashing it, installs a new venv beside the
running one, switches ``/opt/kiosk/current`` by one rename, restarts kiosk.service,
and keeps the new release only when the kiosk's heartbeat shows it ready, connected
and healthy for ``update.health_s``; otherwise it switches back by itself and says why
in ``release.json`` (the kiosk publishes it as ``state.release``).

Each step leaves a state from which :func:`recover` (run at boot, before
kiosk.service, and before every run) reaches a working release: ``work.json`` names
an order in progress, ``current != committed`` a release on trial, a release folder
without ``.complete`` an install cut short. Tests kill this process at every step
(``KIOSK_UPDATER_CRASH_AT``) and check exactly that.

    kiosk-updater boot [--root DIR] [--config FILE]   switch back an unfinished trial
    kiosk-updater run  [--root DIR] [--config FILE]   carry out the kiosk's request
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from drivers.files import sync_folder
from kiosk.config import DEFAULT_PATH, Config, ConfigError, load_config
from kiosk.provisioning.releases import (
    Layout,
    Status,
    UpdateRefused,
    check_release,
    read_heartbeat,
    read_json,
    read_status,
    write_json,
)
from kiosk.trust.release import ManifestError, Release, parse_manifest, version_key
from kiosk.trust.signing import SignatureError, Verifier

log = logging.getLogger("kiosk-updater")

COMPLETE = ".complete"
KEEP = 2
"""Releases kept: the committed one and the one before it."""
STALE_S = 10.0
"""A heartbeat older than this is a kiosk that stopped (it writes one every 2 s)."""
POLL_S = 0.5
SPACE_FACTOR = 4
"""Free space asked for, as a multiple of the wheels' size: the copies plus what they unpack
to (numpy's wheel unpacks to about 2.5 times its size)."""


def _checkpoint(step: str) -> None:
    """Where a test may cut the power: ``KIOSK_UPDATER_CRASH_AT=<step>`` kills this process
    with SIGKILL there (no cleanup runs, as after a power cut)."""
    if os.environ.get("KIOSK_UPDATER_CRASH_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)


def switch(link: Path, version: str) -> None:
    """Point ``link`` at release ``version`` in one rename(2): a reader, or the next boot,
    sees the old target or the new one, never none."""
    temp = link.with_name(f".{link.name}.new")
    temp.unlink(missing_ok=True)
    os.symlink(f"releases/{version}", temp)
    os.replace(temp, link)
    sync_folder(link.parent)


class Updater:
    """Carries out one request, or recovers from one cut short."""

    def __init__(self, config: Config, layout: Layout) -> None:
        self.config = config
        self.layout = layout
        self.verifier = Verifier.from_texts(list(config.update.release_keys))

    # --- recovery -------------------------------------------------------------------

    def recover(self, *, restart: bool) -> bool:
        """Switch back a trial or an order cut short (a power cut, a kill); True if it did.
        ``restart``: restart kiosk.service too (not at boot: it starts after us)."""
        layout = self.layout
        work = read_json(layout.work)
        committed = layout.linked(layout.committed)
        current = layout.linked(layout.current)
        status = read_status(layout.status_file)
        changed = False
        if committed is not None and current != committed:
            tried = current or status.trying or "?"
            switch(layout.current, committed)
            self._report(Status(committed, None, {"version": tried, "reason": (
                "interrupted while on trial (power cut or updater stopped): switched back")}))
            if restart:
                _restart_kiosk()
            changed = True
        elif isinstance(work, dict):
            version = str(work.get("version", "?"))[:40]
            if version == committed:  # cut between the commit and its report
                self._report(Status(committed, None, status.last_failure))
            else:
                self._report(Status(committed, None, {"version": version, "reason": (
                    "interrupted before the switch (power cut or updater stopped): "
                    "not installed")}))
            changed = True
        layout.work.unlink(missing_ok=True)
        self._remove_incomplete()
        return changed

    def _remove_incomplete(self) -> None:
        keep = {self.layout.linked(self.layout.current), self.layout.linked(self.layout.committed)}
        if not self.layout.releases.is_dir():
            return
        for folder in self.layout.releases.iterdir():
            if folder.name not in keep and not (folder / COMPLETE).exists():
                shutil.rmtree(folder, ignore_errors=True)

    # --- one request ----------------------------------------------------------------

    def run(self) -> Status:
        """Recover if needed, then carry out the kiosk's request, if there is one."""
        self.recover(restart=True)
        request = read_json(self.layout.request)
        if request is None:
            self.layout.request.unlink(missing_ok=True)
            return read_status(self.layout.status_file)
        release: Release | None = None
        try:
            release, downgrade = self._order(request)
            write_json(self.layout.work, {"version": release.version})
            self.layout.request.unlink(missing_ok=True)
            _checkpoint("accepted")
            self._check(release, downgrade)
            _checkpoint("verified")
            self._install(release)
            _checkpoint("installed")
        except UpdateRefused as exc:
            version = release.version if release else "?"
            log.error("update to %s refused: %s", version, exc)
            self._report(Status(self.layout.linked(self.layout.committed), None,
                                {"version": version, "reason": str(exc)[:200]}))
            self.layout.request.unlink(missing_ok=True)
            self.layout.work.unlink(missing_ok=True)
            self._remove_incomplete()
            return read_status(self.layout.status_file)
        try:
            return self._trial(release)
        except Exception:  # a full disk, a hung systemctl: the kiosk must not stay on trial
            log.exception("the trial of %s failed", release.version)
            self.recover(restart=True)
            raise

    def _order(self, request: object) -> tuple[Release, bool]:
        if not isinstance(request, dict):
            raise UpdateRefused("the request is not an object")
        try:
            release = parse_manifest(request.get("manifest")).verify(self.verifier)
        except (ManifestError, SignatureError) as exc:
            raise UpdateRefused(str(exc)) from None
        # Only where the shop's own config allows it: the kiosk wrote this request.
        return release, request.get("downgrade") is True and self.config.update.allow_downgrade

    def _check(self, release: Release, downgrade: bool) -> None:
        check_release(release, self.layout.linked(self.layout.committed), downgrade)
        needed = SPACE_FACTOR * sum(f.size for f in release.files_for(platform.machine()))
        free = _free_bytes(self.layout.opt)
        if free < needed:
            raise UpdateRefused(f"not enough space in {self.layout.opt}: {free // 2**20} MiB "
                                f"free, {needed // 2**20} MiB needed")

    def _install(self, release: Release) -> None:
        """A new venv at ``releases/<version>`` (its scripts name that path: a venv cannot be
        moved, so ``.complete``, written last, says it is whole), from the wheels copied into
        it and checked byte by byte there, not where the kiosk could still change them."""
        target = self.layout.releases / release.version
        if (target / COMPLETE).exists():
            return  # installed before (a downgrade back to it, or a retried order)
        shutil.rmtree(target, ignore_errors=True)
        wheels = target / "wheels"
        wheels.mkdir(parents=True)
        source = self.layout.files(release.version)
        for file in release.files_for(platform.machine()):
            _copy_verified(source / file.name, wheels / file.name, file.size, file.sha256)
        _checkpoint("copied")
        # pip comes with the release (the next update runs from this venv and needs it);
        # a release without its wheel gets the interpreter's own, which takes longer.
        pip = [wheels / f.name for f in release.files if f.name.startswith("pip-")]
        _run([sys.executable, "-m", "venv", "--system-site-packages",
              *(["--without-pip"] if pip else []), str(target)], "make the venv")
        _run([sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"),
              "install", "--quiet", "--no-index", "--no-cache-dir", "--disable-pip-version-check",
              "--find-links", str(wheels), str(wheels / release.kiosk), *map(str, pip)],
             "install the wheels")
        shutil.rmtree(wheels)
        (target / COMPLETE).write_text(release.version + "\n")
        sync_folder(target)

    def _trial(self, release: Release) -> Status:
        layout, version = self.layout, release.version
        committed = layout.linked(layout.committed)
        self._report(Status(committed, version, read_status(layout.status_file).last_failure))
        _checkpoint("trying")
        switch(layout.current, version)
        _checkpoint("switched")
        layout.health_file.unlink(missing_ok=True)  # the old release's heartbeat says nothing
        _restart_kiosk()
        _checkpoint("restarted")
        failure = self._watch(version)
        if failure is None:
            _checkpoint("healthy")
            switch(layout.committed, version)
            _checkpoint("committed")
            status = Status(version, None, read_status(layout.status_file).last_failure)
            log.info("release %s committed", version)
        else:
            log.error("release %s switched back: %s", version, failure)
            switch(layout.current, committed or version)
            status = Status(committed, None, {"version": version, "reason": failure})
            _restart_kiosk()
            if version != committed:  # a release that failed is not one of the two kept
                shutil.rmtree(layout.releases / version, ignore_errors=True)
        self._report(status)
        layout.work.unlink(missing_ok=True)
        self._prune()
        return status

    def _watch(self, version: str) -> str | None:
        """None once ``version`` has been ready, connected and healthy for ``health_s`` without
        a restart; else why not (when ``start_s`` + ``health_s`` have passed, or at once
        when it restarted: a crash loop)."""
        update = self.config.update
        start = time.monotonic()
        deadline = start + update.start_s + update.health_s
        pid: int | None = None
        good_since: float | None = None
        connected_once = False
        why = f"never reached READY: no heartbeat from {version}"
        while (now := time.monotonic()) < deadline:
            beat = read_heartbeat(self.layout.health_file)
            if beat is not None and beat.version == version and beat.fresh(time.time(), STALE_S):
                if pid is not None and beat.pid != pid:
                    return f"restarted while on trial (crashed: pid {pid}, then {beat.pid})"
                pid = beat.pid
                connected_once = connected_once or beat.connected
                if beat.connected and beat.state in ("ready", "degraded"):
                    good_since = now if good_since is None else good_since
                    if now - good_since >= update.health_s:
                        return None
                else:
                    good_since = None
                    why = (f"not healthy: {beat.state}" if beat.connected
                           else "not connected to the broker" if connected_once
                           else "never connected to the broker")
            elif _kiosk_failed():
                return ("kiosk.service failed: systemd stopped restarting it (it crashed at "
                        "every start)")
            elif pid is not None:
                good_since = None
                why = f"stopped while on trial (no heartbeat for {STALE_S:g} s)"
            elif now - start >= update.start_s:
                break
            time.sleep(POLL_S)
        return f"{why} (within {update.start_s:g} + {update.health_s:g} s)"

    def _prune(self) -> None:
        """Keep the committed release and the newest other complete one; remove the rest."""
        layout = self.layout
        keep = {layout.linked(layout.committed), layout.linked(layout.current)} - {None}
        others = sorted((f for f in layout.releases.iterdir()
                         if f.name not in keep and (f / COMPLETE).exists() and _is_version(f.name)),
                        key=lambda f: version_key(f.name), reverse=True)
        for folder in others[max(KEEP - len(keep), 0):]:
            shutil.rmtree(folder, ignore_errors=True)
        self._remove_incomplete()

    def _report(self, status: Status) -> None:
        write_json(self.layout.status_file, status.body())


def _copy_verified(source: Path, dest: Path, size: int, sha256: str) -> None:
    """Copy one fetched file, never through a symlink and never more than its size, and
    check its SHA-256 on the copy (the kiosk cannot change that one any more)."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise UpdateRefused(f"{source.name}: not fetched ({exc.strerror})") from None
    digest = hashlib.sha256()
    written = 0
    with os.fdopen(fd, "rb") as src, dest.open("wb") as out:
        while chunk := src.read(min(1 << 20, size + 1 - written)):
            written += len(chunk)
            if written > size:
                break
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    if written != size or digest.hexdigest() != sha256:
        raise UpdateRefused(f"{source.name}: size or SHA-256 differs from the signed manifest")


def _run(argv: list[str], what: str) -> None:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired:
        raise UpdateRefused(f"could not {what}: still running after 30 minutes") from None
    if result.returncode != 0:
        raise UpdateRefused(f"could not {what}: {(result.stderr or result.stdout).strip()[-300:]}")


def _restart_kiosk() -> None:
    # A release that failed to start 5 times in 5 minutes hit kiosk.service's start limit:
    # systemd refuses to start it again until the failure is reset.
    subprocess.run(["systemctl", "reset-failed", "kiosk.service"], capture_output=True,
                   timeout=120)
    result = subprocess.run(["systemctl", "restart", "--no-block", "kiosk.service"],
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        log.error("systemctl restart kiosk.service: %s", result.stderr.strip())


def _kiosk_failed() -> bool:
    """True once systemd gave up on kiosk.service (its start limit: 5 failures in 5 min): a
    release that cannot start is switched back then, not after ``start_s``."""
    return subprocess.run(["systemctl", "is-failed", "--quiet", "kiosk.service"],
                          capture_output=True, timeout=120).returncode == 0


def _free_bytes(path: Path) -> int:
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


def _is_version(name: str) -> bool:
    try:
        version_key(name)
    except ManifestError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``kiosk-updater``."""
    parser = argparse.ArgumentParser(prog="kiosk-updater", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("boot", "run"))
    parser.add_argument("--root", default="/", help="the tree to work on (tests: a scratch root)")
    parser.add_argument("--config", help="the kiosk's config file (default /etc/kiosk/kiosk.toml "
                                         "under the root)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    root = Path(args.root)
    try:
        config = load_config(Path(args.config) if args.config
                             else root / DEFAULT_PATH.lstrip("/"))
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    updater = Updater(config, Layout.of(config, root))
    if args.action == "boot":
        if updater.recover(restart=False):
            log.warning("switched back to %s", updater.layout.linked(updater.layout.current))
        return 0
    status = updater.run()
    log.info("running %s; last failure: %s", status.running, status.last_failure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
