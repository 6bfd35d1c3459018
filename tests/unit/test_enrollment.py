"""Enrollment on the kiosk, directly: the pairing code, its rate limit, proof of the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk.config import Config, KioskSection
from kiosk.mqtt import protocol
from kiosk.mqtt.envelope import Rejected, seal, target_for, unseal
from kiosk.provisioning import overlay
from kiosk.provisioning.enrollment import ALPHABET, CODE_LENGTH, Enrollment, new_code, shown
from kiosk.provisioning.guard import SequenceBook
from kiosk.provisioning.shadow import Shadow
from kiosk.staff.issuer import Issuer
from kiosk.store.db import open_db
from kiosk.trust.signing import Signer, public_key_text

TOPICS = protocol.Topics("loyalty", "shop", "k1")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def desk(tmp_path: Path):
    base = Config(kiosk=KioskSection(device_id="k1", site="shop", state_dir=str(tmp_path)))
    restarts: list[str] = []
    shadow = Shadow(base, overlay.startup(base), TOPICS, lambda *_: None, restarts.append)
    clock = Clock()
    enrollment = Enrollment(True, TOPICS, shadow, SequenceBook(open_db(tmp_path / "k.db")[0]),
                            lambda: True, lambda *_: None, clock=clock)
    return enrollment, clock, restarts, tmp_path


def attempt(enrollment: Enrollment, code: str, signer: Signer | None = None,
            key: str | None = None, target: str = target_for("shop", "k1")) -> None:
    signer = signer or Signer.generate()
    key = key or public_key_text(signer.public)
    order, _ = Issuer(signer).order("enroll", "enroll", target, {
        "key": key, "version": 1, "config": {"staff": {"trusted_keys": [key]}}}, 300)
    enrollment.handle(unseal(seal(order, signer, code)))


def code_of(error: pytest.ExceptionInfo[Rejected]) -> str:
    return error.value.code


def test_codes_are_random_readable_and_shown_in_halves():
    codes = {new_code() for _ in range(50)}
    assert len(codes) == 50
    assert all(len(code) == CODE_LENGTH and set(code) <= set(ALPHABET) for code in codes)
    assert shown("ABCDEFGH") == "ABCD-EFGH"


def test_the_right_code_applies_the_first_config(desk):
    enrollment, _clock, restarts, folder = desk
    attempt(enrollment, enrollment.code)
    assert restarts == ["config version 1"]
    trial = overlay.read(folder / "config" / "trial.json")
    assert trial is not None and trial.config["staff"]["trusted_keys"]


def test_wrong_codes_are_refused_and_then_rate_limited(desk):
    enrollment, clock, restarts, _ = desk
    for _ in range(3):
        with pytest.raises(Rejected) as error:
            attempt(enrollment, "AAAAAAAA")
        assert code_of(error) == "wrong-code"
    with pytest.raises(Rejected) as error:
        attempt(enrollment, enrollment.code)  # even the right one, while locked
    assert code_of(error) == "rate-limited"
    clock.now += 5.1
    with pytest.raises(Rejected) as error:
        attempt(enrollment, "AAAAAAAA")
    assert code_of(error) == "wrong-code"
    clock.now += 5.1  # the lock doubled to 10 s
    with pytest.raises(Rejected) as error:
        attempt(enrollment, enrollment.code)
    assert code_of(error) == "rate-limited"
    clock.now += 5.0
    attempt(enrollment, enrollment.code)
    assert restarts


def test_the_sender_must_hold_the_key_it_enrolls(desk):
    enrollment, _clock, restarts, _ = desk
    someone_else = public_key_text(Signer.generate().public)
    with pytest.raises(Rejected) as error:
        attempt(enrollment, enrollment.code, key=someone_else)
    assert code_of(error) == "unknown-key" and not restarts


def test_an_enrollment_for_another_kiosk_is_refused(desk):
    enrollment, _clock, restarts, _ = desk
    with pytest.raises(Rejected) as error:
        attempt(enrollment, enrollment.code, target=target_for("shop"))
    assert code_of(error) == "wrong-target" and not restarts
