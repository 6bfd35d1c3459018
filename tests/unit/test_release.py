"""Release manifests (kiosk/trust/release.py), the rules every install obeys
(kiosk/provisioning/releases.py) and ``kioskctl release`` (kiosk/staff/release.py)."""

from __future__ import annotations

import json
import platform
import sys
from dataclasses import replace

import pytest

from kiosk.mqtt.envelope import Order, seal
from kiosk.provisioning.releases import UpdateRefused, check_release
from kiosk.staff import kioskctl
from kiosk.staff.release import ReleaseError, machine_of, platform_tags
from kiosk.trust.release import (
    ManifestError,
    Release,
    ReleaseFile,
    parse_manifest,
    sign,
    signed_bytes,
    version_key,
)
from kiosk.trust.signing import Signer, Verifier, public_key_text
from tests import ROOT

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
WHEEL = ReleaseFile("loyalty_kiosk-2.0-py3-none-any.whl", 10, "a" * 64, "any")
RELEASE = Release("2.0", "1.0", PYTHON, (platform.machine(),), WHEEL.name,
                  "https://updates.example/2.0/", (WHEEL,))


def _verifier(*signers: Signer) -> Verifier:
    return Verifier.from_texts([public_key_text(s.public) for s in signers])


def test_a_manifest_signed_by_a_release_key_verifies_and_nothing_else_does():
    release_key, command_key = Signer.generate(), Signer.generate()
    manifest = parse_manifest(json.loads(json.dumps(sign(RELEASE, release_key).to_json())))
    assert manifest.verify(_verifier(release_key)) == RELEASE
    # A kiosk that trusts only the command key trusts no release.
    with pytest.raises(ManifestError, match="unknown key id"):
        sign(RELEASE, command_key).verify(_verifier(release_key))
    # A changed byte anywhere in the release breaks the signature.
    for changed in (replace(RELEASE, url="https://evil.example/"),
                    replace(RELEASE, files=(replace(WHEEL, sha256="b" * 64),)),
                    replace(RELEASE, min_previous="0")):
        forged = sign(RELEASE, release_key).to_json()
        forged["release"] = changed.body()
        with pytest.raises(ManifestError, match="bad signature"):
            parse_manifest(json.loads(json.dumps(forged))).verify(_verifier(release_key))


def test_a_staff_order_signature_cannot_stand_for_a_release():
    # One key in both roles (a mistake staff might make) still cannot turn a signed command
    # into a release: the signed bytes start with different domains.
    key = Signer.generate()
    order = Order("cmd", "update", "_all/_all", "c1", 1, 0.0, {"release": RELEASE.body()})
    envelope = json.loads(seal(order, key))
    forged = {"v": 1, "release": RELEASE.body(), "kid": envelope["kid"], "sig": envelope["sig"]}
    with pytest.raises(ManifestError, match="bad signature"):
        parse_manifest(forged).verify(_verifier(key))
    assert signed_bytes(RELEASE).startswith(b"loyalty-kiosk/release/v1\x00")


@pytest.mark.parametrize("change, message", [
    ({"version": "2.0-beta"}, "expected numbers and dots"),
    ({"version": "2.0\n"}, "expected numbers and dots"),  # `$` alone let a newline through
    ({"python": "3.11\n"}, "expected 3.N"),
    ({"python": "3"}, "expected 3.N"),
    ({"machines": ["sparc"]}, "release.machines"),
    ({"url": "file:///etc/"}, "http(s) URL"),
    ({"files": []}, "expected 1 to 200 files"),
    ({"files": [{**WHEEL.__dict__, "name": "../../etc/cron.d/x.whl"}]}, "not a wheel's file"),
    ({"files": [{**WHEEL.__dict__, "size": -1}]}, "bad size"),
    ({"files": [{**WHEEL.__dict__, "sha256": "xyz"}]}, "64 hex digits"),
    ({"files": [{**WHEEL.__dict__, "sha256": "a" * 64 + "\n"}]}, "64 hex digits"),
    ({"files": [WHEEL.__dict__, WHEEL.__dict__]}, "listed twice"),
    ({"kiosk": "other.whl"}, "not one of the files"),
    ({"extra": 1}, "expected the fields"),
])
def test_a_malformed_manifest_is_refused_with_the_reason(change, message):
    body = {**RELEASE.body(), **change}
    data = {"v": 1, "release": body, "kid": "0" * 16, "sig": "A" * 86}
    with pytest.raises(ManifestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_manifest(data)


def test_an_unsigned_manifest_is_refused():
    with pytest.raises(ManifestError, match="is it signed"):
        parse_manifest({"v": 1, "release": RELEASE.body()})


def test_versions_compare_as_numbers():
    assert version_key("1.10") > version_key("1.9") > version_key("1.2.3") > version_key("1")
    assert version_key("1") == version_key("1.0.0")


@pytest.mark.parametrize("running, downgrade, refusal", [
    ("1.5", False, None),
    (None, False, None),  # a kiosk that never had a release (the first one)
    ("2.0", False, "already running"),
    ("3.0", False, "older than 3.0"),
    ("3.0", True, None),
    ("0.9", False, "needs 1.0 or newer first"),
])
def test_versions_only_go_up_unless_a_downgrade_is_ordered(running, downgrade, refusal):
    if refusal is None:
        check_release(RELEASE, running, downgrade)
    else:
        with pytest.raises(UpdateRefused, match=refusal):
            check_release(RELEASE, running, downgrade)


def test_a_release_for_another_machine_or_python_is_refused():
    with pytest.raises(UpdateRefused, match="not sparc"):
        check_release(RELEASE, "1.0", False, machine="sparc")
    with pytest.raises(UpdateRefused, match=r"Python 3\.99"):
        check_release(replace(RELEASE, python="3.99"), "1.0", False)


def test_wheels_are_sorted_by_machine_and_pi_tags_stop_at_bookworms_glibc():
    assert machine_of("numpy-2.2.0-cp311-cp311-manylinux_2_17_aarch64.whl") == "aarch64"
    assert machine_of("numpy-2.2.0-cp311-cp311-linux_armv7l.whl") == "armv7l"
    assert machine_of("qrcode-8.0-py3-none-any.whl") == "any"
    with pytest.raises(ReleaseError):
        machine_of("pyobjc-10-cp311-cp311-macosx_11_0_arm64.whl")
    tags = platform_tags("aarch64")
    assert tags[0] == "manylinux_2_36_aarch64" and "manylinux2014_aarch64" in tags
    assert "manylinux_2_38_aarch64" not in tags


def test_kioskctl_builds_signs_and_publishes_a_release(tmp_path, capsys):
    """From a checkout: the kiosk's wheel alone (offline), signed by a release key, copied
    to the served folder; what is signed is what is there."""
    key, out, served = tmp_path / "release.key", tmp_path / "out", tmp_path / "www"
    env = ["--config", str(tmp_path / "none.toml")]
    assert kioskctl.main([*env, "--json", "release", "key", str(key)]) == 0
    public = json.loads(capsys.readouterr().out)["public"]
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert kioskctl.main([*env, "release", "build", "--checkout", str(ROOT), "--out", str(out),
                          "--no-deps", "--no-build-isolation", "--machine",
                          platform.machine(), "--min-previous", "0.0.1"]) == 0
    built = json.loads((out / "manifest.json").read_text())
    assert "kid" not in built and built["release"]["min_previous"] == "0.0.1"
    (wheel,) = built["release"]["files"]
    assert wheel["name"].startswith("loyalty_kiosk-") and wheel["machine"] == "any"
    assert kioskctl.main([*env, "release", "publish", str(out), "--to", str(served)]) == 1
    assert "is it signed" in capsys.readouterr().err  # an unsigned release is never served
    assert kioskctl.main([*env, "release", "sign", str(out), "--key", str(key), "--url",
                          "https://updates.example/r"]) == 0
    manifest = parse_manifest(json.loads((out / "manifest.json").read_text()))
    release = manifest.verify(Verifier.from_texts([public]))
    assert release.url == "https://updates.example/r/"
    assert kioskctl.main([*env, "release", "publish", str(out), "--to", str(served)]) == 0
    published = served / release.version
    assert sorted(p.name for p in published.iterdir()) == sorted(["manifest.json", wheel["name"]])
    assert kioskctl.main([*env, "release", "publish", str(out), "--to", str(served)]) == 1
    assert "never changed" in capsys.readouterr().err
    # A wheel changed after the build is not signed.
    (out / wheel["name"]).write_bytes(b"changed")
    assert kioskctl.main([*env, "release", "sign", str(out), "--key", str(key), "--url",
                          "https://updates.example/r"]) == 1
    assert "changed since the build" in capsys.readouterr().err
