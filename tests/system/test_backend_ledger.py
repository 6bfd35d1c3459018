"""The backend's ledger, the same behaviour on both stores (SQLite and a private PostgreSQL):
exactly once per event_id, an append-only ledger that the balance follows, and the rules."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace

import pytest

from backend.ledger import Ledger, LedgerError, Outcome, Refusal
from backend.rules import DAY_S, DEFAULT_RULES, Reward, Rules, Tier, load_rules, parse_rules
from backend.store import SCHEMA_VERSION
from kiosk.counter.checkin import CheckIn

RULES = Rules(points_per_visit=10, welcome_bonus=25, expire_after_days=30,
              visit_limit_minutes=60, qualification_days=90,
              tiers=(Tier("Bronze", 0), Tier("Silver", 100)),
              rewards=(Reward("Free coffee", 50), Reward("Pastry", 120)))


class Clock:
    """The ledger's time, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def days(self, days: float) -> None:
        self.now += days * DAY_S


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(ledger_where: str, clock: Clock) -> Iterator[Ledger]:
    book = Ledger(ledger_where, RULES, clock=clock)
    yield book
    book.close()


_seq = iter(range(1, 10**6))


def visit(member: str = "LOY-ALICE01", device: str = "k1") -> CheckIn:
    n = next(_seq)
    return CheckIn(f"e-{n:06d}", device, "boot", n, 1.0, member, "camera")


def at(ledger: Ledger, checkin: CheckIn, site: str = "shop") -> Outcome:
    return ledger.record_outcomes([(checkin, False, site)], [])[0].outcome


def _sum_of_entries(ledger: Ledger, member: str) -> int:
    return sum(e["points"] for e in ledger.entries(member, limit=10_000))


def test_a_check_in_is_credited_once_whatever_the_delivery_does(ledger, clock):
    first = visit()
    again = [(first, False, "shop"), (first, True, "shop")]
    assert [r.outcome for r in ledger.record_outcomes(again, [])] == [
        Outcome.CREDITED, Outcome.DUPLICATE]
    assert at(ledger, first) is Outcome.DUPLICATE
    assert ledger.balance("LOY-ALICE01") == 35  # 10 for the visit, 25 welcome
    assert len(ledger.visits("k1")) == 1 and ledger.counts()["credited"] == 1


def test_every_change_is_an_entry_with_its_reason_and_origin(ledger, clock):
    checkin = visit()
    status = ledger.record_outcomes([(checkin, False, "shop")], [])[0].status
    assert (status.balance, status.points_earned, status.badge) == (35, 35, "First visit")
    ledger.adjust("LOY-ALICE01", 20, "coffee machine broke", staff="dana")
    ledger.redeem("LOY-ALICE01", "Free coffee", staff="dana")
    entries = list(reversed(ledger.entries("LOY-ALICE01")))
    assert [(e["kind"], e["points"], e["balance_after"]) for e in entries] == [
        ("visit", 10, 10), ("welcome", 25, 35), ("badge", 0, 35),
        ("adjustment", 20, 55), ("redemption", -50, 5)]
    assert entries[0]["event_id"] == checkin.event_id and entries[0]["device_id"] == "k1"
    assert entries[3]["staff"] == entries[4]["staff"] == "dana"
    assert entries[3]["reason"] == "coffee machine broke"
    assert _sum_of_entries(ledger, "LOY-ALICE01") == ledger.balance("LOY-ALICE01") == 5


def test_staff_changes_need_a_reason_and_enough_points(ledger):
    at(ledger, visit())
    with pytest.raises(LedgerError, match="reason: required"):
        ledger.adjust("LOY-ALICE01", 5, "  ", staff="dana")
    with pytest.raises(LedgerError, match="has 35 points, 120 are needed"):
        ledger.redeem("LOY-ALICE01", "Pastry", staff="dana")
    with pytest.raises(LedgerError, match="not in the catalogue"):
        ledger.redeem("LOY-ALICE01", "Car", staff="dana")
    with pytest.raises(LedgerError, match="is not a member"):
        ledger.adjust("LOY-NOBODY1", 5, "why not", staff="dana")
    assert ledger.balance("LOY-ALICE01") == 35 and len(ledger.entries("LOY-ALICE01")) == 3


def test_one_credited_visit_per_member_per_site_within_the_limit(ledger, clock):
    flood = [(visit(), False, "shop") for _ in range(200)]  # a copied kiosk certificate
    outcomes = [r.outcome for r in ledger.record_outcomes(flood, [])]
    assert outcomes.count(Outcome.CREDITED) == 1 and outcomes.count(Outcome.LIMITED) == 199
    assert ledger.balance("LOY-ALICE01") == 35 and len(ledger.visits("k1")) == 200
    assert ledger.counts()["limited"] == 199
    assert at(ledger, visit(device="k9"), site="other-shop") is Outcome.CREDITED
    clock.days(59 / 1440)
    assert at(ledger, visit()) is Outcome.LIMITED
    clock.days(2 / 1440)
    assert at(ledger, visit()) is Outcome.CREDITED


def test_redeeming_never_costs_a_tier_and_it_lapses_after_its_period(ledger, clock):
    at(ledger, visit())  # 35
    ledger.adjust("LOY-ALICE01", 55, "birthday", staff="dana")  # 90: adjustments do not qualify
    assert ledger.member("LOY-ALICE01")["tier"] == "Bronze"
    for _ in range(7):  # 7 visits: 70 more qualifying points, 105 in all
        clock.days(1)
        status = ledger.record_outcomes([(visit(), False, "shop")], [])[0].status
    assert status.tier == "Silver" and status.tier_changed
    ledger.redeem("LOY-ALICE01", "Pastry", staff="dana")
    assert ledger.member("LOY-ALICE01")["tier"] == "Silver"
    clock.days(89)  # the first visits leave the window, the tier is held for its period
    assert at(ledger, visit()) is Outcome.CREDITED
    assert ledger.member("LOY-ALICE01")["tier"] == "Silver"
    clock.days(91)
    status = ledger.record_outcomes([(visit(), False, "shop")], [])[0].status
    assert (status.tier, status.tier_changed) == ("Bronze", True)
    kinds = [e["kind"] for e in ledger.entries("LOY-ALICE01")]
    assert kinds.count("tier") == 2


def test_a_dormant_balance_expires(ledger, clock):
    at(ledger, visit())
    at(ledger, visit("LOY-BOB0002"))
    clock.days(31)
    status = ledger.record_outcomes([(visit(), False, "shop")], [])[0].status
    assert status.balance == 10  # 35 expired, then this visit's 10 (no second welcome)
    assert ledger.expire_due() == 1 and ledger.balance("LOY-BOB0002") == 0
    bob = ledger.entries("LOY-BOB0002")[0]
    assert (bob["kind"], bob["points"], bob["staff"]) == ("expiry", -35, "expiry")


def test_a_second_card_merges_into_the_first(ledger, clock):
    at(ledger, visit("LOY-ALICE01"))
    clock.days(1)
    at(ledger, visit("LOY-ALICE02"))
    merged = ledger.merge("LOY-ALICE02", "LOY-ALICE01", "lost her first card", staff="dana")
    assert merged["balance"] == 70 and merged["visits"] == 2
    assert ledger.balance("LOY-ALICE02") == 0
    clock.days(1)
    assert at(ledger, visit("LOY-ALICE02")) is Outcome.CREDITED
    assert ledger.balance("LOY-ALICE01") == 80
    with pytest.raises(LedgerError, match="already merged"):
        ledger.merge("LOY-ALICE02", "LOY-ALICE01", "again", staff="dana")
    for member in ("LOY-ALICE01", "LOY-ALICE02"):
        assert _sum_of_entries(ledger, member) == ledger.balance(member)


def test_members_are_enrolled_by_staff_with_a_name(ledger):
    made = ledger.create_member("LOY-CAROL03", "Carol B.", staff="dana")
    assert (made["display_name"], made["balance"], made["tier"]) == ("Carol B.", 0, "Bronze")
    with pytest.raises(LedgerError, match="already a member"):
        ledger.create_member("LOY-CAROL03", "Carol", staff="dana")
    status = ledger.record_outcomes([(visit("LOY-CAROL03"), False, "s")], [])[0].status
    assert status.display_name == "Carol B." and status.points_earned == 35
    assert ledger.member("LOY-NOBODY1") is None


def test_refusals_are_kept_with_their_reason(ledger):
    ledger.record([], [Refusal("e-bad", "k1", "device_id is not the kiosk", b'{"x":1}')])
    ledger.record([], [Refusal("e-bad", "k1", "again", b"{}")])
    assert ledger.refusals() == [Refusal("e-bad", "k1", "device_id is not the kiosk",
                                         b'{"x":1}')]
    assert ledger.counts()["refused"] == 1


def test_a_demo_ledger_of_schema_1_is_carried_forward(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE accounts (member_id TEXT PRIMARY KEY, balance INTEGER, visits INTEGER);
        CREATE TABLE visits (event_id TEXT PRIMARY KEY, member_id TEXT, device_id TEXT,
            boot_id TEXT, seq INTEGER, captured_at REAL, received_at REAL, replayed INTEGER);
        CREATE TABLE refusals (event_id TEXT PRIMARY KEY, device_id TEXT, reason TEXT,
            payload BLOB, received_at REAL);
        INSERT INTO accounts VALUES ('LOY-ALICE01', 30, 3);
        INSERT INTO visits VALUES ('e-old', 'LOY-ALICE01', 'k1', 'b', 1, 1.0, 2.0, 0);
    """)
    old.close()
    book = Ledger(path, DEFAULT_RULES)
    try:
        assert book.balance("LOY-ALICE01") == 30 and book.visits("k1")[0][0] == "e-old"
        assert book.credit(CheckIn("e-old", "k1", "b", 1, 1.0, "LOY-ALICE01", "camera"),
                           True)[1] is False  # still deduplicated
        assert book.entries("LOY-ALICE01")[0]["kind"] == "opening"
        assert book.store.version() == SCHEMA_VERSION
    finally:
        book.close()


def test_entries_name_the_rules_version_they_were_made_under(ledger, clock, tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text("[points]\nper_visit = 7\n")
    seven = load_rules(path)
    at(ledger, visit())
    ledger.use_rules(seven)  # from the next transaction on
    at(ledger, visit("LOY-BOB0002"))
    ledger.adjust("LOY-BOB0002", 3, "goodwill", staff="dana")
    alice, bob = ledger.entries("LOY-ALICE01"), ledger.entries("LOY-BOB0002")
    assert {e["rules"] for e in alice} == {"built-in"}
    assert len(seven.version) == 12 and {e["rules"] for e in bob} == {seven.version}
    assert [e["points"] for e in bob if e["kind"] == "visit"] == [7]


def test_a_referrer_earns_the_bonus_once_at_the_referred_members_first_visit(ledger_where,
                                                                            clock):
    book = Ledger(ledger_where, replace(RULES, referral_bonus=40), clock=clock)
    try:
        at(book, visit("LOY-ALICE01"))  # 35
        bob = book.create_member("LOY-BOB0002", "Bob", staff="dana",
                                 referred_by="LOY-ALICE01")
        assert bob["referred_by"] == "LOY-ALICE01" and book.balance("LOY-ALICE01") == 35
        first = visit("LOY-BOB0002")
        twice = [(first, False, "shop"), (first, True, "shop")]
        assert [r.outcome for r in book.record_outcomes(twice, [])] == [
            Outcome.CREDITED, Outcome.DUPLICATE]
        assert book.balance("LOY-ALICE01") == 75 and book.balance("LOY-BOB0002") == 35
        bonus = book.entries("LOY-ALICE01")[0]
        assert (bonus["kind"], bonus["points"], bonus["event_id"], bonus["rules"]) == (
            "referral", 40, first.event_id, "built-in")
        assert "LOY-BOB0002" in bonus["reason"]
        clock.days(1)
        assert at(book, visit("LOY-BOB0002")) is Outcome.CREDITED
        assert book.balance("LOY-ALICE01") == 75  # once, whatever Bob does next
        kinds = [e["kind"] for e in book.entries("LOY-ALICE01")]
        assert kinds.count("referral") == 1
        assert _sum_of_entries(book, "LOY-ALICE01") == 75
    finally:
        book.close()


def test_a_referral_names_another_member_and_never_goes_in_a_circle(ledger):
    with pytest.raises(LedgerError, match=r"^referred_by: LOY-NOBODY1 is not a member$"):
        ledger.create_member("LOY-BOB0002", "Bob", staff="dana", referred_by="LOY-NOBODY1")
    with pytest.raises(LedgerError, match=r"^referred_by: a member cannot refer themselves$"):
        ledger.create_member("LOY-BOB0002", "Bob", staff="dana", referred_by="LOY-BOB0002")
    assert ledger.member("LOY-BOB0002") is None  # refused: nothing was enrolled
    ledger.create_member("LOY-ANN0001", "Ann", staff="dana")
    ledger.create_member("LOY-BOB0002", "Bob", staff="dana", referred_by="LOY-ANN0001")
    ledger.create_member("LOY-CAT0003", "Cat", staff="dana", referred_by="LOY-BOB0002")
    with pytest.raises(LedgerError, match=r"^referred_by: a cycle: LOY-ANN0001 <- LOY-CAT0003 "
                                          r"<- LOY-BOB0002 <- LOY-ANN0001$"):
        ledger.refer("LOY-ANN0001", "LOY-CAT0003", staff="dana")
    with pytest.raises(LedgerError, match="already referred by LOY-ANN0001"):
        ledger.refer("LOY-BOB0002", "LOY-CAT0003", staff="dana")
    at(ledger, visit("LOY-DAN0004"))
    with pytest.raises(LedgerError, match="LOY-DAN0004 has had a credited visit"):
        ledger.refer("LOY-DAN0004", "LOY-ANN0001", staff="dana")
    late = ledger.refer("LOY-ANN0001", "LOY-DAN0004", staff="dana")
    assert late["referred_by"] == "LOY-DAN0004"
    entry = ledger.entries("LOY-ANN0001")[0]
    assert (entry["kind"], entry["staff"], entry["reason"]) == (
        "referred", "dana", "referred by LOY-DAN0004")


def test_a_visit_earns_what_its_site_and_hour_gave_even_delivered_later(ledger_where, clock):
    hours = parse_rules({"points": {
        "per_visit": 10, "timezone": "Europe/Paris",
        "site": [{"site": "shop-12", "per_visit": 15}],
        "hours": [{"from": "07:00", "to": "10:00", "per_visit": 20}]},
        "rewards": [{"name": "Free coffee", "cost": 50}]})
    book = Ledger(ledger_where, hours, clock=clock)
    try:
        morning = 1799046000.0  # 2027-01-04 08:00 in Paris
        clock.now = morning + 6 * 3600  # delivered at 14:00, from a kiosk's backlog
        early = CheckIn("e-early", "k1", "boot", 1, morning, "LOY-ALICE01", "camera")
        status = book.record_outcomes([(early, False, "shop-1")], [])[0].status
        assert (status.points_earned, status.balance) == (20, 20)
        now = CheckIn("e-now", "k1", "boot", 2, clock.now, "LOY-BOB0002", "camera")
        status = book.record_outcomes([(now, False, "shop-12")], [])[0].status
        assert (status.points_earned, status.next_reward, status.points_to_next) == (
            15, "Free coffee", 35)
        assert [e["points"] for e in book.entries("LOY-BOB0002") if e["kind"] == "visit"] == [15]
    finally:
        book.close()
