"""The rules file: strict, one-line errors; what a visit wins comes from it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from backend.rules import DEFAULT_RULES, RulesError, load_rules, parse_rules

ROOT = Path(__file__).resolve().parents[2]


def test_the_built_in_rules_tell_what_a_visit_won():
    tenth = DEFAULT_RULES.standing("Alice", 100, "Silver", earned=10, tier_changed=True,
                                   badge=DEFAULT_RULES.badge_at(10))
    assert tenth.points_earned == 10 and tenth.reward_unlocked == "Free coffee"
    assert tenth.tier == "Silver" and tenth.tier_changed and tenth.badge == "10 visits"
    assert tenth.next_reward == "Free coffee" and tenth.points_to_next == 50
    plain = DEFAULT_RULES.standing("Alice", 120, "Silver", earned=10)
    assert not plain.reward_unlocked and plain.points_to_next == 30 and plain.progress == 0.4
    assert DEFAULT_RULES.badge_at(1) == "First visit" and DEFAULT_RULES.badge_at(12) == ""
    assert [DEFAULT_RULES.tier_for(p) for p in (0, 99, 100, 299, 300)] == [
        "Bronze", "Bronze", "Silver", "Silver", "Gold"]


def test_the_shipped_rules_file_loads_and_the_next_reward_is_the_nearest():
    rules = load_rules(ROOT / "config" / "backend-rules.toml")
    assert rules.visit_limit_minutes == 60 and rules.welcome_bonus == 25
    assert rules.referral_bonus == 50
    assert [r.name for r in rules.rewards] == ["Free coffee", "Pastry"]
    near_pastry = rules.standing("Bob", 115, "Silver", earned=10)  # coffee at 150, pastry 120
    assert (near_pastry.next_reward, near_pastry.points_to_next) == ("Pastry", 5)
    both = rules.standing("Bob", 240, "Silver", earned=20)  # crossed 200 and 240
    assert both.reward_unlocked == "Pastry"


@pytest.mark.parametrize(("text", "message"), [
    ("[points]\nper_vist = 10", "points.per_vist: unknown key (known keys: expire_after_days, "
                                "hours, per_visit, site, timezone, welcome_bonus)"),
    ("[points]\nper_visit = '10'", "points.per_visit: expected an integer from 0 to"),
    ("[points]\nper_visit = true", "points.per_visit: expected an integer"),
    ("[visits]\nlimit_minutes = -1", "visits.limit_minutes: expected a number of at least 0"),
    ("[tiers]\nlevels = [{name='Silver', points=100}]", "tiers.levels[0].points: expected 0"),
    ("[tiers]\nlevels = [{name='A', points=0}, {name='B', points=0}]",
     "tiers.levels[1].points: expected more than the tier before (0)"),
    ("[tiers]\nlevels = [{name='A', points=0, colour='red'}]",
     "tiers.levels[0].colour: unknown key"),
    ("[[rewards]]\nname = 'Coffee'\ncost = 0", "rewards[0].cost: expected an integer from 1"),
    ("[[rewards]]\nname = 'C'\ncost = 5\n[[rewards]]\nname = 'C'\ncost = 6",
     "rewards: the name 'C' is used twice"),
    ("[[badges]]\nname = 'B'\nat_visit = 1\nevery_visits = 5",
     "badges[0]: expected exactly one of at_visit or every_visits"),
    ("[[badges]]\nname = ''\nat_visit = 1", "badges[0].name: expected a name of 1-32"),
    ("bonus = 5", "bonus: unknown key"),
    ("[referral]\nbonus = -5", "referral.bonus: expected an integer from 0 to"),
    ("[referral]\npoints = 5", "referral.points: unknown key (known keys: bonus)"),
    ("[points", "not valid TOML"),
])
def test_a_wrong_rules_file_stops_with_one_line_naming_file_and_key(tmp_path, text, message):
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_missing_rules_file_is_one_line_too(tmp_path):
    with pytest.raises(RulesError, match=r"cannot read the rules file"):
        load_rules(tmp_path / "nope.toml")


HOURS = """
[points]
per_visit = 10
timezone = "Europe/Paris"

[[points.site]]
site = "shop-12"
per_visit = 15

[[points.hours]]
from = "07:00"
to = "10:00"
days = ["mon", "tue", "wed", "thu", "fri"]
per_visit = 20

[[points.hours]]
from = "22:00"
to = "24:00"
per_visit = 5
"""
MONDAY_8_PARIS = 1799046000.0  # 2027-01-04 08:00 in Paris, 07:00 UTC
HOUR = 3600.0


def test_points_per_site_and_hour_of_the_visit_in_the_rules_time_zone(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(HOURS)
    rules = load_rules(path)
    assert rules.points_for("shop-1", MONDAY_8_PARIS) == 20  # hours win over the site
    assert rules.points_for("shop-12", MONDAY_8_PARIS) == 20
    assert rules.points_for("shop-12", MONDAY_8_PARIS + 2 * HOUR) == 15  # 10:00: to excluded
    assert rules.points_for("shop-1", MONDAY_8_PARIS + 2 * HOUR) == 10
    assert rules.points_for("shop-1", MONDAY_8_PARIS - HOUR - 1) == 10  # 06:59:59
    assert rules.points_for("shop-1", MONDAY_8_PARIS + 5 * 24 * HOUR) == 10  # Saturday 08:00
    assert rules.points_for("shop-12", MONDAY_8_PARIS + 14 * HOUR) == 5  # 22:00, every day
    assert rules.points_for("shop-12", MONDAY_8_PARIS + 16 * HOUR) == 15  # 00:00 Tuesday
    shown = rules.describe()
    assert shown["timezone"] == "Europe/Paris" and shown["sites"] == [
        {"site": "shop-12", "per_visit": 15}]
    assert shown["hours"][0] == {"from": "07:00", "to": "10:00", "per_visit": 20,
                                 "days": ["mon", "tue", "wed", "thu", "fri"]}


def test_without_a_time_zone_the_hours_are_the_backends_local_time():
    rules = parse_rules({"points": {"hours": [{"from": "07:00", "to": "10:00",
                                               "per_visit": 20}]}})
    eight = time.mktime((2027, 1, 4, 8, 0, 0, 0, 0, -1))  # 08:00 here, whatever zone that is
    assert rules.timezone == "" and rules.points_for("s", eight) == 20
    assert rules.points_for("s", eight + 2 * HOUR) == 10


@pytest.mark.parametrize(("text", "message"), [
    ("[points]\ntimezone = 'Mars/Olympus'", "points.timezone: unknown time zone 'Mars/Olympus'"),
    ("[[points.site]]\nsite = 'a'\nper_visit = 1\n[[points.site]]\nsite = 'a'\nper_visit = 2",
     "points.site: the name 'a' is used twice"),
    ("[[points.site]]\nper_visit = 1", "points.site[0].site: expected a name"),
    ("[[points.hours]]\nfrom = '7:00'\nto = '10:00'\nper_visit = 1",
     "points.hours[0].from: expected a time \"HH:MM\" from \"00:00\" to \"23:59\""),
    ("[[points.hours]]\nfrom = '10:00'\nto = '07:00'\nper_visit = 1",
     "points.hours[0].to: expected a time after from (10:00), at most \"24:00\" (split a "
     "range over midnight in two)"),
    ("[[points.hours]]\nfrom = '07:00'\nto = '10:00'\nper_visit = 1\ndays = ['monday']",
     "points.hours[0].days: expected a list of mon, tue, wed, thu, fri, sat, sun"),
    ("[[points.hours]]\nfrom = '07:00'\nto = '10:00'\nper_visit = 1\ndays = []",
     "points.hours[0].days: expected a list of mon"),
    ("[[points.hours]]\nfrom = '07:00'\nto = '10:00'\nper_visit = 1\n"
     "[[points.hours]]\nfrom = '09:00'\nto = '11:00'\nper_visit = 2\ndays = ['sun']",
     "points.hours[1]: overlaps points.hours[0] on sun (07:00-10:00): which would win?"),
    ("[[points.hours]]\nfrom = '07:00'\nto = '10:00'", "points.hours[0].per_visit: expected"),
])
def test_a_wrong_site_or_hours_rule_is_one_line(tmp_path, text, message):
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)
