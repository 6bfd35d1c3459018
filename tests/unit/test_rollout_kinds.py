"""How a kiosk's answers map to a rollout outcome, per kind (the fleet/update contract)."""

from __future__ import annotations

from typing import Any

import pytest

from kiosk.staff.kinds import (
    COMMAND,
    UPDATE,
    KindError,
    Seen,
    Timing,
    command_outcome,
    order_id,
    update_target,
)
from kiosk.testing.fleet import release_manifest

NOW = 1_000_000.0


def _seen(release: dict[str, Any] | None = None, result: dict[str, Any] | None = None,
          online: bool = True, sent_at: float | None = NOW - 1) -> Seen:
    state = {"release": release} if release is not None else {}
    return Seen(online, True, sent_at, {}, state, result)


def _update(seen: Seen) -> tuple[str, str]:
    return command_outcome(UPDATE, "2.0", seen, Timing(NOW, answer_s=30, ttl_s=3600))


def test_an_update_is_applied_only_when_the_target_runs_and_nothing_is_on_trial():
    assert _update(_seen({"running": "2.0", "trying": None, "last_failure": None}))[0] == \
        "applied"
    assert _update(_seen({"running": "1.0", "trying": "2.0", "last_failure": None},
                         {"status": "ok", "accepted": "2.0"}))[0] == "waiting"
    assert _update(_seen({"running": "1.0", "trying": None, "last_failure": {
        "version": "2.0", "reason": "not healthy"}})) == ("rolled back", "not healthy")
    assert _update(_seen({"running": "1.0", "trying": None, "last_failure": None},
                         {"status": "error", "error": "bad release signature"})) == (
        "refused", "bad release signature")


def test_a_silent_kiosk_is_pending_offline_and_no_answer_online_after_its_time():
    release = {"running": "1.0", "trying": None, "last_failure": None}
    assert _update(_seen(release, online=False, sent_at=NOW - 100))[0] == "pending"
    assert _update(_seen(release, online=False, sent_at=NOW - 4000)) == (
        "no answer", "offline until its order expired")
    assert _update(_seen(release, sent_at=NOW - 100))[0] == "no answer"
    trying = {"running": "1.0", "trying": "2.0", "last_failure": None}
    assert _update(_seen(trying, sent_at=NOW - 100)) == ("no answer", "still trying 2.0")


def test_a_command_is_applied_by_an_ok_result_and_not_sent_before_its_phase():
    timing = Timing(NOW, answer_s=30)
    assert command_outcome(COMMAND, "", _seen(result={"status": "ok"}), timing)[0] == "applied"
    later = Seen(True, False, None, {}, {}, None)
    assert command_outcome(COMMAND, "", later, timing)[0] == "not sent"


def test_an_update_names_its_version_and_orders_have_stable_ids():
    assert update_target({"manifest": release_manifest("2.0")}) == "2.0"
    for unfit in ({"version": "2.0"}, {}, None):  # not what `kioskctl release sign` writes
        with pytest.raises(KindError, match="signed manifest"):
            update_target({"manifest": unfit})
    assert order_id("r1", "shop", "k1") == order_id("r1", "shop", "k1") != order_id(
        "r1", "shop", "k2")
    assert len(order_id("x" * 50, "shop", "k1")) <= 64
