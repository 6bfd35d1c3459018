"""The ``update`` command on a running kiosk, against a real mosquitto and a real web server:
the release signature is checked before anything, the files are fetched into the state
directory, the updater is asked, and ``state.release`` says what runs, what is on trial and
what failed last (the contract with fleet rollouts)."""

from __future__ import annotations

import functools
import http.server
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from kiosk import __version__
from kiosk.config import Config, UpdateSection
from kiosk.mqtt import protocol
from kiosk.provisioning.releases import read_heartbeat, write_json
from kiosk.staff import kioskctl
from kiosk.staff.client import StaffClient
from kiosk.staff.issuer import Issuer
from kiosk.testing.harness import RunningKiosk
from kiosk.testing.staff import target_of, trusting, wait_listening
from kiosk.trust.release import Manifest
from kiosk.trust.signing import Signer, public_key_text
from tests.releases import toy_release


@pytest.fixture
def release_key() -> Signer:
    return Signer.generate()


@pytest.fixture
def web(tmp_path) -> Iterator[tuple[str, Path]]:
    """A web server for the shop's releases."""
    folder = tmp_path / "www"
    folder.mkdir()
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", folder
    server.shutdown()
    server.server_close()


@pytest.fixture
def kiosk_config(kiosk_config: Config, staff_key: Signer, release_key: Signer,
                 tmp_path: Path) -> Config:
    (tmp_path / "run/kiosk").mkdir(parents=True)  # what kiosk.service's RuntimeDirectory makes
    return replace(trusting(kiosk_config, staff_key), update=UpdateSection(
        release_keys=(public_key_text(release_key.public),),
        status_file=str(tmp_path / "opt/kiosk/release.json"),
        health_file=str(tmp_path / "run/kiosk/release-health.json")))


def publish(web: tuple[str, Path], signer: Signer, version: str) -> Manifest:
    url, folder = web
    return toy_release(folder / version, signer, version, url=f"{url}{version}/")


def update(staff: StaffClient, kiosk: RunningKiosk, issuer: Issuer, manifest: Manifest,
           **args: object) -> dict:
    order, payload = issuer.command(target_of(kiosk), "update",
                                    {"manifest": manifest.to_json(), **args})
    staff.send(kiosk.app.topics.command("update"), payload)
    results = staff.wait(lambda: staff.results_for(order.cmd_id), 15)
    assert results, "no result for the update"
    return results[0][1]


def release_state(staff: StaffClient, kiosk: RunningKiosk, condition, timeout: float = 15.0):
    def now() -> dict | None:
        payload = staff.latest.get(kiosk.app.topics.state)
        release = protocol.decode_release(payload) if payload else None
        return release if release is not None and condition(release) else None
    found = staff.wait(now, timeout)
    assert found, staff.latest.get(kiosk.app.topics.state)
    return found


def test_a_signed_release_is_fetched_and_the_updater_asked(kiosk, staff, issuer, release_key,
                                                           web, tmp_path, capsys):
    wait_listening(staff, kiosk)
    assert release_state(staff, kiosk, lambda r: True) == {
        "running": __version__, "trying": None, "last_failure": None}
    manifest = publish(web, release_key, "9.0")
    spool = Path(kiosk.config.kiosk.state_dir) / "update"
    (spool / "files/8.0").mkdir(parents=True)  # an earlier release's files
    body = update(staff, kiosk, issuer, manifest)
    assert body["status"] == "ok" and body["data"] == {"accepted": "9.0"}, body
    assert staff.wait(lambda: (spool / "request.json").exists(), 15)
    request = json.loads((spool / "request.json").read_text())
    assert request == {"manifest": manifest.to_json(), "downgrade": False}
    for file in manifest.release.files:
        assert (spool / "files/9.0" / file.name).stat().st_size == file.size
    assert not (spool / "files/8.0").exists()  # the state directory holds one release at most
    # A second order while one waits for the updater is refused.
    busy = update(staff, kiosk, issuer, publish(web, release_key, "9.1"))
    assert busy["status"] == "error" and "already" in busy["error"], busy
    # And while the updater, having taken the request, still copies or installs it.
    (spool / "request.json").unlink()
    write_json(tmp_path / "opt/kiosk/work.json", request)
    busy = update(staff, kiosk, issuer, publish(web, release_key, "9.1"))
    assert busy["status"] == "error" and "installing" in busy["error"], busy
    assert (spool / "files/9.0").exists()  # the files it reads were left alone
    (tmp_path / "opt/kiosk/work.json").unlink()
    # The heartbeat the updater commits on: this version, connected.
    beat = read_heartbeat(tmp_path / "run/kiosk/release-health.json")
    assert beat is not None and beat.version == __version__ and beat.connected
    # The updater's report reaches staff as state.release.
    write_json(tmp_path / "opt/kiosk/release.json",
               {"running": __version__, "trying": "9.0", "last_failure": None})
    assert release_state(staff, kiosk, lambda r: r["trying"] == "9.0")["running"] == __version__
    # kioskctl list and show tell staff the same.
    write_json(tmp_path / "opt/kiosk/release.json", {
        "running": __version__, "trying": None,
        "last_failure": {"version": "9.0", "reason": "never connected to the broker"}})
    release_state(staff, kiosk, lambda r: r["last_failure"] is not None)
    ctl = tmp_path / "kioskctl.toml"
    ctl.write_text(f'[mqtt]\nhost = "127.0.0.1"\nport = {kiosk.config.mqtt.port}\n')
    capsys.readouterr()
    assert kioskctl.main(["--config", str(ctl), "--json", "list"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["release"]["last_failure"]["version"] == "9.0"
    assert kioskctl.main(["--config", str(ctl), "show", kiosk.app.device_id]) == 0
    shown = capsys.readouterr().out
    assert re.search(rf"^release: +{re.escape(__version__)} \(9\.0 failed\)$", shown, re.M)
    assert re.search(r"^last failure: +9\.0: never connected to the broker$", shown, re.M)


def test_an_update_that_cannot_be_verified_or_may_not_run_is_refused(
        kiosk, staff, issuer, staff_key, release_key, web):
    wait_listening(staff, kiosk)
    for signer, version, args, reason in [
        (staff_key, "9.0", {}, "release signature: unknown key id"),  # a command key
        (release_key, "0.0.1", {}, f"older than {__version__}"),
        (release_key, "0.0.1", {"downgrade": "yes"}, "expected true or false"),
    ]:
        body = update(staff, kiosk, issuer, publish(web, signer, version), **args)
        assert body["status"] == "error" and reason in body["error"], body
    assert not (Path(kiosk.config.kiosk.state_dir) / "update").exists()  # nothing fetched


def test_a_release_that_cannot_be_fetched_is_reported_as_the_last_failure(
        kiosk, staff, staff_key, release_key, web, tmp_path, capsys):
    wait_listening(staff, kiosk)
    manifest = publish(web, release_key, "9.0")
    _url, folder = web
    (folder / "9.0" / manifest.release.kiosk).write_bytes(b"not the signed wheel")
    # Sent as docs/updates.md shows for one kiosk: kioskctl cmd, the manifest its argument.
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "office.key").write_text(staff_key.text() + "\n")
    (keys / "office.pub").write_text(public_key_text(staff_key.public) + "\n")
    ctl = tmp_path / "kioskctl.toml"
    ctl.write_text(f'[mqtt]\nhost = "127.0.0.1"\nport = {kiosk.config.mqtt.port}\n'
                   f'[keys]\ndir = "{keys}"\n')
    capsys.readouterr()
    argument = "manifest=" + json.dumps(manifest.to_json())
    assert kioskctl.main(["--config", str(ctl), "--json", "cmd", kiosk.app.device_id, "update",
                          argument]) == 0
    answers = json.loads(capsys.readouterr().out)
    # Accepted: the fetch fails later, on its own thread.
    assert answers[kiosk.app.device_id]["data"] == {"accepted": "9.0"}
    failure = release_state(staff, kiosk, lambda r: r["last_failure"] is not None)["last_failure"]
    assert failure["version"] == "9.0" and "not the file the release signed" in failure["reason"]
    assert not (Path(kiosk.config.kiosk.state_dir) / "update/request.json").exists()


def test_a_kiosk_without_release_keys_refuses_every_update(kiosk_config, staff, issuer,
                                                           release_key, web):
    config = replace(kiosk_config, update=replace(kiosk_config.update, release_keys=()))
    kiosk = RunningKiosk(config).start()
    try:
        wait_listening(staff, kiosk)
        body = update(staff, kiosk, issuer, publish(web, release_key, "9.0"))
    finally:
        kiosk.stop()
    assert body["status"] == "error" and "no release key is trusted" in body["error"], body
