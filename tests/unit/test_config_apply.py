"""The one map from settings to the parts a new config restarts (kiosk.daemon.build.PARTS)."""

from __future__ import annotations

from dataclasses import asdict, replace

import pytest

from kiosk.config import Config
from kiosk.daemon.build import PARTS, Running
from kiosk.provisioning.shadow import Took

BASE = Config()


def test_every_setting_the_map_names_is_a_real_one():
    table = asdict(BASE)
    for part in PARTS:
        for setting in part.settings:
            section, _, key = setting.partition(".")
            assert section in table and (not key or key in table[section]), (part.name, setting)


@pytest.mark.parametrize(("section", "values", "parts", "took"), [
    ("ui", {"store_name": "Corner Shop"}, ["screen"], Took.LIVE),
    ("display", {"contrast": 90}, ["screen"], Took.LIVE),
    ("counter", {"result_screen_s": 3.0}, ["screen", "counter"], Took.LIVE),
    ("counter", {"cooldown_s": 1.0}, ["counter", "delivery"], Took.LIVE),
    ("outbox", {"max_rows": 5, "publish_window": 5}, ["delivery"], Took.LIVE),
    ("mqtt", {"host": "broker-b"}, ["link"], Took.RECONNECT),
    ("telemetry", {"interval_s": 30.0}, ["reports"], Took.LIVE),  # discovery off: no news
    ("mqtt", {"topic_prefix": "other"}, None, Took.RESTART),
    ("camera", {"fps": 10.0}, None, Took.RESTART),
])
def test_a_change_touches_only_the_parts_made_with_it(section, values, parts, took):
    new = replace(BASE, **{section: replace(getattr(BASE, section), **values)})
    found = Running.parts(BASE, new)
    assert (None if found is None else [part.name for part in found]) == parts
    assert Running(lambda: None).plan(BASE, new) is took  # type: ignore[arg-type, return-value]


def test_the_health_interval_reconnects_only_where_home_assistant_discovery_names_it():
    on = replace(BASE, homeassistant=replace(BASE.homeassistant, discovery=True))
    new = replace(on, telemetry=replace(on.telemetry, interval_s=30.0))
    assert [part.name for part in Running.parts(on, new) or []] == ["reports", "link"]
    assert Running(lambda: None).plan(on, new) is Took.RECONNECT  # type: ignore[arg-type, return-value]


def test_an_equal_config_touches_nothing():
    assert Running.parts(BASE, replace(BASE)) == []
