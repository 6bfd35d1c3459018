"""The backend's books: an append-only ledger of entries, and each member's standing.

Every change to a member's points is an entry — a visit's credit, the welcome bonus, a
referral bonus (to the referrer, at the referred member's first visit), a badge, a tier
change, an expiry, a redemption, a staff adjustment, a merge — with its reason, its
origin (the check-in's ``event_id`` and kiosk, or the staff member who made it) and the
version of the rules it was made under. Entries are never updated nor deleted; the
member row (balance, visits, tier) is kept in step with them in the same transaction, so
it is a cache of the ledger that can always be checked against it.

A check-in is credited once per ``event_id`` (kiosks deliver at least once), in one
transaction with its entries: the visit row's unique ``event_id`` is the guard, and the
member's row is locked first, so two backend instances handed the same check-in
serialise on it and the second finds it recorded. Visits over the rules' visit limit
are recorded as ``limited`` and credit nothing. Check-ins that can never be credited
are kept too, with the reason, so a refusal is as durable as a credit (the kiosk
deletes its row on either). What a visit earns comes from :class:`~backend.rules.Rules`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from backend.errors import BackendError
from backend.rules import DAY_S, DEFAULT_RULES, Rules
from backend.store import Store, open_store
from kiosk.mqtt.protocol import MAX_MEMBER_ID, MAX_POINTS, CheckIn, MemberStatus

log = logging.getLogger(__name__)

T = TypeVar("T")
ENTRY_COLUMNS = ("member_id", "at", "kind", "points", "balance_after", "qualifying", "reason",
                 "event_id", "device_id", "staff", "rules")
ATTEMPTS = 5
MAX_REASON = 200


class LedgerError(BackendError, ValueError):
    """A staff request the ledger refuses (too few points, no reason...); one line."""


class NotAMember(LedgerError):
    """The member a staff request names was never seen nor enrolled."""


class Outcome(StrEnum):
    """What recording a check-in did."""

    CREDITED = "credited"
    DUPLICATE = "duplicate"
    """Recorded before: nothing changes."""
    LIMITED = "limited"
    """Recorded now, credited nothing: over the visit limit (counted, visible to staff)."""


@dataclass(frozen=True)
class Recorded:
    """A check-in as recorded, and the member's standing for the kiosk's screen."""

    status: MemberStatus
    outcome: Outcome


@dataclass(frozen=True)
class Refusal:
    """A check-in that will never be credited: kept with why, and what it said."""

    event_id: str
    device_id: str
    reason: str
    payload: bytes


Credited = tuple[MemberStatus, bool]
"""A member's standing after a visit, and whether the visit was credited now."""
Arrival = tuple[CheckIn, bool, str]
"""A check-in, whether it was replayed, and the site whose topic it came on."""


def display_name(member_id: str) -> str:
    """A friendly name from the id (``LOY-ALICE01`` -> ``Alice``) until staff set one."""
    letters = "".join(ch for ch in member_id.split("-")[-1] if ch.isalpha())
    return letters.capitalize()[:12]


class _Member:
    """A member row locked by the transaction in hand, with the entries it gains."""

    COLUMNS = ("member_id, display_name, balance, visits, tier, tier_until, last_visit_at, "
               "created_at, merged_into, referred_by")

    def __init__(self, row: Sequence[Any], qualifying: int) -> None:
        (self.member_id, self.display_name, self.balance, self.visits, self.tier,
         self.tier_until, self.last_visit_at, self.created_at, self.merged_into,
         self.referred_by) = row
        self.qualifying = qualifying
        self.changed = False
        self._name = ""

    @property
    def name(self) -> str:
        if not self._name:  # made once, not at every answer
            self._name = self.display_name or display_name(self.member_id)
        return self._name

    WRITTEN = ("display_name", "balance", "visits", "tier", "tier_until", "last_visit_at",
               "merged_into", "referred_by")
    """The columns :meth:`row` gives (then the ``member_id``)."""

    def row(self) -> tuple[Any, ...]:
        return (self.display_name, self.balance, self.visits, self.tier, self.tier_until,
                self.last_visit_at, self.merged_into, self.referred_by, self.member_id)

    def view(self, rules: Rules) -> dict[str, Any]:
        status = rules.standing(self.name, self.balance, self.tier)
        return {"member_id": self.member_id, "display_name": self.name,
                "balance": self.balance, "tier": self.tier, "tier_until": self.tier_until,
                "qualifying_points": self.qualifying, "visits": self.visits,
                "last_visit_at": self.last_visit_at, "created_at": self.created_at,
                "merged_into": self.merged_into, "referred_by": self.referred_by,
                "next_reward": status.next_reward,
                "points_to_next": status.points_to_next}


class _Books:
    """One transaction's work: members locked, entries to append, rows to write back."""

    def __init__(self, ledger: Ledger, now: float) -> None:
        self.store, self.rules, self.now = ledger.store, ledger.rules, now
        self.members: dict[str, _Member] = {}
        self.entries: list[tuple[Any, ...]] = []

    def lock(self, member_ids: Iterable[str], create: bool = True) -> None:
        """Lock (creating them when ``create``) the members, in a fixed order so that two
        instances never wait on each other's locks in a circle; then those they were
        merged into."""
        store = self.store
        wanted = sorted(set(member_ids) - set(self.members))
        while wanted:
            if create:
                store.insert("members", ("member_id", *_Member.WRITTEN, "created_at"),
                             [(m, "", 0, 0, "", 0.0, 0.0, None, None, self.now) for m in wanted],
                             "ON CONFLICT (member_id) DO NOTHING")
            rows = store.execute(
                f"SELECT {_Member.COLUMNS} FROM members WHERE {store.any_of('member_id')} "
                f"ORDER BY member_id{store.for_update}", (store.listed(wanted),)).fetchall()
            sums = dict(store.execute(
                f"SELECT member_id, SUM(qualifying) FROM entries WHERE "
                f"{store.any_of('member_id')} AND at >= ? GROUP BY member_id",
                (store.listed(wanted), self.now - self.rules.qualification_days * DAY_S)
            ).fetchall())
            for row in rows:
                self.members[row[0]] = _Member(row, int(sums.get(row[0]) or 0))
            wanted = sorted({m.merged_into for m in self.members.values() if m.merged_into}
                            - set(self.members))
            create = False

    def holder(self, member_id: str) -> _Member:
        """The member whose points a card's visits go to (a merged card's: its target's)."""
        member = self.members[member_id]
        while member.merged_into and member.merged_into in self.members:
            member = self.members[member.merged_into]
        return member

    def entry(self, member: _Member, kind: str, points: int, reason: str, *,
              qualifying: int = 0, event_id: str | None = None, device_id: str | None = None,
              staff: str | None = None) -> None:
        """Append an entry and keep the member's balance in step with it."""
        if member.balance + points < 0:
            raise LedgerError(f"{member.member_id} has {member.balance} points, "
                              f"{-points} are needed")
        member.balance += points
        member.qualifying += qualifying
        member.changed = True
        self.entries.append((member.member_id, self.now, kind, points, member.balance,
                             qualifying, reason, event_id, device_id, staff,
                             self.rules.version))

    def credit_visit(self, member: _Member, checkin: CheckIn, site: str) -> MemberStatus:
        """A new visit's entries: expiry of a dormant balance, the visit's points, the
        welcome bonus, a badge, a tier change; the standing the kiosk shows."""
        rules = self.rules
        origin: dict[str, Any] = {"event_id": checkin.event_id, "device_id": checkin.device_id}
        self.expire(member, **origin)
        first = member.visits == 0
        member.visits += 1
        member.last_visit_at = self.now
        where = f"{site}/{checkin.device_id}" if site else checkin.device_id
        earned = rules.points_for(site, checkin.captured_at)
        self.entry(member, "visit", earned, f"visit at {where}", qualifying=earned, **origin)
        if first and rules.welcome_bonus:
            self.entry(member, "welcome", rules.welcome_bonus, "welcome bonus, first visit",
                       qualifying=rules.welcome_bonus, **origin)
            earned += rules.welcome_bonus
        if first and rules.referral_bonus and member.referred_by in self.members:
            referrer = self.holder(member.referred_by)
            self.entry(referrer, "referral", rules.referral_bonus,
                       f"referral of {member.member_id}, first visit",
                       qualifying=rules.referral_bonus, **origin)
            self.retier(referrer, **origin)
        badge = rules.badge_at(member.visits)
        if badge:
            self.entry(member, "badge", 0, badge, **origin)
        changed = self.retier(member, **origin)
        return rules.standing(member.name, member.balance, member.tier, earned=earned,
                              tier_changed=changed, badge=badge)

    def expire(self, member: _Member, **origin: Any) -> None:
        """A balance left without a visit for longer than the rules allow expires."""
        days = self.rules.expire_after_days
        if days and member.balance > 0 and member.last_visit_at and (
                self.now - member.last_visit_at > days * DAY_S):
            self.entry(member, "expiry", -member.balance,
                       f"no visit for more than {days:g} days", **origin)

    def retier(self, member: _Member, **origin: Any) -> bool:
        """Move the member to the tier their qualifying points reach: up at once, down only
        once the tier they hold has run its qualification period. True when it changed."""
        reached, period = self.rules.tier_for(member.qualifying), \
            self.rules.qualification_days * DAY_S
        held = self.rules.rank(member.tier)
        if held < 0:  # a new member, or a tier the rules no longer have
            changed = bool(member.tier) and member.tier != reached
        else:
            up = self.rules.rank(reached) >= held
            if not up and self.now < member.tier_until:
                return False
            changed = reached != member.tier
        if changed:
            self.entry(member, "tier", 0, f"{member.tier} -> {reached}", **origin)
        if member.tier != reached or self.rules.rank(reached) >= held:
            member.tier_until = self.now + period  # qualified (again) for a full period
        member.tier = reached
        member.changed = True
        return changed

    def write(self) -> None:
        """Append the entries and write the changed members back."""
        self.store.insert("entries", ENTRY_COLUMNS, self.entries)
        self.store.update("members", "member_id", _Member.WRITTEN,
                          [m.row() for m in self.members.values() if m.changed])


class Ledger:
    """Members, their entries and every visit, in SQLite or PostgreSQL. Thread-safe.

    ``where`` is a SQLite file path or a ``postgresql://`` URL; ``clock`` gives the time
    (tests move it to try expiry, limits and qualification periods)."""

    def __init__(self, where: str | Path, rules: Rules = DEFAULT_RULES,
                 clock: Callable[[], float] = time.time) -> None:
        self.store: Store = open_store(where)
        self.rules = rules
        self._clock = clock
        self._lock = threading.Lock()

    def use_rules(self, rules: Rules) -> None:
        """Put ``rules`` in force from the next transaction on (never within one: each
        transaction reads the rules once, so a visit is credited under one version)."""
        with self._lock:
            self.rules = rules

    # --- check-ins ------------------------------------------------------------

    def credit(self, checkin: CheckIn, replayed: bool) -> Credited:
        """Record a visit once; returns the member's standing and whether it was credited."""
        return self.record([(checkin, replayed)], [])[0]

    def record(self, visits: Sequence[tuple[CheckIn, bool]],
               refusals: Sequence[Refusal]) -> list[Credited]:
        """:meth:`record_outcomes` for visits of no particular site."""
        done = self.record_outcomes([(c, replayed, "") for c, replayed in visits], refusals)
        return [(r.status, r.outcome is Outcome.CREDITED) for r in done]

    def record_outcomes(self, arrivals: Sequence[Arrival],
                        refusals: Sequence[Refusal]) -> list[Recorded]:
        """Record visits (each once) and refusals in one transaction: one disk sync for a
        batch, which is what lets a backend keep up with a fleet draining its backlogs.
        Returns each visit's outcome and the member's standing, in order."""
        return self._transaction(lambda now: self._record(arrivals, refusals, now))

    def _record(self, arrivals: Sequence[Arrival], refusals: Sequence[Refusal],
                now: float) -> list[Recorded]:
        books = _Books(self, now)  # its rules, one version, for the whole transaction
        books.lock(checkin.member_id for checkin, _, _ in arrivals)
        if books.rules.referral_bonus:  # who may earn a bonus in this transaction
            books.lock((m.referred_by for m in map(books.holder, list(books.members))
                        if m.visits == 0 and m.referred_by), create=False)
        new = self._claim(arrivals, now)
        limit_s = books.rules.visit_limit_minutes * 60
        last = self._last_credited(books, arrivals, new) if limit_s else {}
        results, limited = [], []
        for checkin, _, site in arrivals:
            member = books.holder(checkin.member_id)
            key = (member.member_id, site)
            if checkin.event_id not in new:
                outcome = Outcome.DUPLICATE
            elif key in last and now - last[key] < limit_s:
                outcome = Outcome.LIMITED
                limited.append(checkin.event_id)
            else:
                outcome = Outcome.CREDITED
                last[key] = now
            new.discard(checkin.event_id)  # the same check-in twice in a batch: once
            status = (books.credit_visit(member, checkin, site) if outcome is Outcome.CREDITED
                      else books.rules.standing(member.name, member.balance, member.tier))
            results.append(Recorded(status, outcome))
        books.write()
        store = self.store
        if limited:
            store.execute(f"UPDATE visits SET outcome = 'limited' WHERE "
                          f"{store.any_of('event_id')}", (store.listed(limited),))
        if limit_s:
            store.insert("visit_limits", ("member_id", "site", "last_credited_at"),
                         [(*key, at) for key, at in last.items() if at == now],
                         "ON CONFLICT (member_id, site) "
                         "DO UPDATE SET last_credited_at = excluded.last_credited_at")
        store.insert("refusals", ("event_id", "device_id", "reason", "payload", "received_at"),
                     [(r.event_id, r.device_id, r.reason, r.payload, now) for r in refusals],
                     "ON CONFLICT (event_id) DO NOTHING")
        return results

    def _claim(self, arrivals: Sequence[Arrival], now: float) -> set[str]:
        """Insert the visits not recorded before; the ``event_id`` of each one inserted."""
        seen: set[str] = set()
        rows = []
        for c, replayed, site in arrivals:
            if c.event_id not in seen:
                seen.add(c.event_id)
                rows.append((c.event_id, c.member_id, c.device_id, site, c.boot_id, c.seq,
                             c.captured_at, now, int(replayed), "credited"))
        return {row[0] for row in self.store.insert(
            "visits", ("event_id", "member_id", "device_id", "site", "boot_id", "seq",
                       "captured_at", "received_at", "replayed", "outcome"), rows,
            "ON CONFLICT (event_id) DO NOTHING RETURNING event_id")}

    def _last_credited(self, books: _Books, arrivals: Sequence[Arrival],
                       new: set[str]) -> dict[tuple[str, str], float]:
        """When each member with a new visit was last credited at each site."""
        keys = {(books.holder(c.member_id).member_id, site)
                for c, _, site in arrivals if c.event_id in new}
        store = self.store
        rows = store.execute(
            f"SELECT member_id, site, last_credited_at FROM visit_limits WHERE "
            f"{store.any_of('member_id')}", (store.listed(sorted({m for m, _ in keys})),))
        return {(m, site): at for m, site, at in rows.fetchall() if (m, site) in keys}

    def expire_due(self) -> int:
        """Expire every balance left without a visit longer than the rules allow (run from
        time to time: a member who never comes back still loses them). Returns how many."""
        days = self.rules.expire_after_days
        if not days:
            return 0

        def sweep(now: float) -> int:
            due = [row[0] for row in self.store.execute(
                "SELECT member_id FROM members WHERE balance > 0 AND last_visit_at > 0 AND "
                "last_visit_at < ?", (now - days * DAY_S,)).fetchall()]
            books = _Books(self, now)
            books.lock(due, create=False)
            for member_id in due:
                books.expire(books.members[member_id], staff="expiry")
            books.write()
            return len(due)

        return self._transaction(sweep)

    # --- staff ----------------------------------------------------------------

    def member(self, member_id: str) -> dict[str, Any] | None:
        """A member's standing (None when never seen)."""
        def look(now: float) -> dict[str, Any] | None:
            books = _Books(self, now)
            books.lock([member_id], create=False)
            found = books.members.get(member_id)
            return found.view(self.rules) if found else None

        return self._transaction(look)

    def create_member(self, member_id: str, name: str, staff: str,
                      referred_by: str | None = None) -> dict[str, Any]:
        """Enrol a member before their first visit (a name for the kiosk's greeting), and
        who referred them (who earns the referral bonus at their first visit)."""
        _check_member_id(member_id)
        if not 1 <= len(name) <= 40 or any(ch < " " for ch in name):
            raise LedgerError("name: expected 1-40 printable characters")

        def enrol(now: float) -> dict[str, Any]:
            books = _Books(self, now)
            if self.store.execute("SELECT 1 FROM members WHERE member_id = ?",
                                  (member_id,)).fetchone():
                raise LedgerError(f"{member_id} is already a member")
            if referred_by is not None:
                self._check_referral(member_id, referred_by)
            books.lock([member_id])
            member = books.members[member_id]
            member.display_name, member.referred_by = name, referred_by
            books.entry(member, "enrolment", 0, f"enrolled as {name}" + (
                f", referred by {referred_by}" if referred_by else ""), staff=staff)
            books.retier(member, staff=staff)
            books.write()
            return member.view(self.rules)

        return self._transaction(enrol)

    def refer(self, member_id: str, referred_by: str, staff: str) -> dict[str, Any]:
        """Record who referred a member who has not had a credited visit yet (the bonus is
        earned at that first visit, so a referral after it would earn nothing)."""
        def note(now: float) -> dict[str, Any]:
            books = _Books(self, now)
            books.lock([member_id], create=False)
            member = books.members.get(member_id)
            if member is None:
                raise NotAMember(f"{member_id} is not a member")
            if member.referred_by:
                raise LedgerError(f"{member_id} was already referred by {member.referred_by}")
            if member.visits:
                raise LedgerError(f"{member_id} has had a credited visit: a referral counts "
                                  f"only before the first one")
            self._check_referral(member_id, referred_by)
            member.referred_by = referred_by
            books.entry(member, "referred", 0, f"referred by {referred_by}", staff=staff)
            books.write()
            return member.view(self.rules)

        return self._transaction(note)

    def _check_referral(self, member_id: str, referred_by: str) -> None:
        """Refuse a referrer who is not a member, the member themselves, or one whose own
        chain of referrers leads back to the member (a cycle would let two cards pay
        each other bonuses)."""
        if referred_by == member_id:
            raise LedgerError("referred_by: a member cannot refer themselves")
        chain, at = [member_id], referred_by
        while at is not None:
            row = self.store.execute("SELECT referred_by FROM members WHERE member_id = ?",
                                     (at,)).fetchone()
            if row is None:
                raise LedgerError(f"referred_by: {at} is not a member")
            if at in chain:  # only ever member_id: cycles never get in
                chain.append(at)
                raise LedgerError(f"referred_by: a cycle: {' <- '.join(chain)}")
            chain.append(at)
            at = row[0]

    def adjust(self, member_id: str, points: int, reason: str, staff: str) -> dict[str, Any]:
        """A staff correction of ``points`` (negative to take away), with its reason."""
        if not (-MAX_POINTS <= points <= MAX_POINTS) or points == 0:
            raise LedgerError(f"points: expected a non-zero integer within ±{MAX_POINTS}")
        reason = _check_reason(reason)
        return self._change(member_id, staff, lambda books, member: books.entry(
            member, "adjustment", points, reason, staff=staff))

    def redeem(self, member_id: str, reward: str, staff: str,
               device_id: str | None = None) -> dict[str, Any]:
        """Spend a catalogue reward's cost (the tier stays: it counts qualifying points)."""
        found = self.rules.reward(reward)
        if found is None:
            known = ", ".join(r.name for r in self.rules.rewards) or "none"
            raise LedgerError(f"reward: {reward!r} is not in the catalogue ({known})")
        return self._change(member_id, staff, lambda books, member: books.entry(
            member, "redemption", -found.cost, f"redeemed {found.name}", staff=staff,
            device_id=device_id))

    def merge(self, source: str, target: str, reason: str, staff: str) -> dict[str, Any]:
        """Merge a member's second card into the first: the balance, visits and qualifying
        points move over, and the source's future visits are credited to the target."""
        reason = _check_reason(reason)
        if source == target:
            raise LedgerError("merge: a member cannot be merged into itself")

        def move(now: float) -> dict[str, Any]:
            books = _Books(self, now)
            books.lock([source, target], create=False)
            for who in (source, target):
                if who not in books.members:
                    raise NotAMember(f"{who} is not a member")
            old, new = books.members[source], books.members[target]
            if old.merged_into:
                raise LedgerError(f"{source} is already merged into {old.merged_into}")
            if new.merged_into:
                raise LedgerError(f"{target} is merged into {new.merged_into}: merge into that")
            moved, qualifying = old.balance, old.qualifying
            books.entry(old, "merge", -moved, f"merged into {target}: {reason}",
                        qualifying=-qualifying, staff=staff)
            books.entry(new, "merge", moved, f"merged from {source}: {reason}",
                        qualifying=qualifying, staff=staff)
            new.visits += old.visits
            old.merged_into = target
            books.retier(new, staff=staff)
            books.write()
            return new.view(self.rules)

        return self._transaction(move)

    def _change(self, member_id: str, staff: str,
                change: Callable[[_Books, _Member], None]) -> dict[str, Any]:
        def apply(now: float) -> dict[str, Any]:
            books = _Books(self, now)
            books.lock([member_id], create=False)
            if member_id not in books.members:
                raise NotAMember(f"{member_id} is not a member")
            member = books.holder(member_id)
            change(books, member)
            books.retier(member, staff=staff)
            books.write()
            return member.view(self.rules)

        return self._transaction(apply)

    def entries(self, member_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """A member's ledger, newest first."""
        keys = ("entry_id", "at", "kind", "points", "balance_after", "qualifying", "reason",
                "event_id", "device_id", "staff", "rules")
        rows = self._transaction(lambda _now: self.store.execute(
            f"SELECT {', '.join(keys)} FROM entries WHERE member_id = ? "
            "ORDER BY entry_id DESC LIMIT ?", (member_id, limit)).fetchall())
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def counts(self) -> dict[str, int]:
        """Visits by outcome, refusals and members: what health reports."""
        def count(_now: float) -> dict[str, int]:
            found = dict(self.store.execute(
                "SELECT outcome, COUNT(*) FROM visits GROUP BY outcome").fetchall())
            return {"credited": int(found.get("credited", 0)),
                    "limited": int(found.get("limited", 0)),
                    "refused": int(self.store.execute(
                        "SELECT COUNT(*) FROM refusals").fetchone()[0]),
                    "members": int(self.store.execute(
                        "SELECT COUNT(*) FROM members").fetchone()[0])}

        return self._transaction(count)

    # --- what tests and the demo read ------------------------------------------

    def refusals(self) -> list[Refusal]:
        """Every check-in refused for good, oldest first (for staff to look at)."""
        rows = self._transaction(lambda _now: self.store.execute(
            "SELECT event_id, device_id, reason, payload FROM refusals "
            "ORDER BY received_at").fetchall())
        return [Refusal(e, d, r, bytes(p)) for e, d, r, p in rows]

    def visits(self, device_id: str) -> list[tuple[str, int, str, bool]]:
        """``(event_id, seq, member_id, replayed)`` of a kiosk's visits (credited or over
        the limit), in arrival order."""
        rows = self._transaction(lambda _now: self.store.execute(
            "SELECT event_id, seq, member_id, replayed FROM visits WHERE device_id = ? "
            "ORDER BY arrival", (device_id,)).fetchall())
        return [(event_id, seq, member, bool(replayed)) for event_id, seq, member, replayed in rows]

    def balance(self, member_id: str) -> int:
        """Current points of ``member_id`` (0 when never seen)."""
        row = self._transaction(lambda _now: self.store.execute(
            "SELECT balance FROM members WHERE member_id = ?", (member_id,)).fetchone())
        return int(row[0]) if row else 0

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self.store.close()

    def _transaction(self, work: Callable[[float], T]) -> T:
        """``work(now)`` in one transaction; tried again after a deadlock with another
        instance (PostgreSQL rolled it back whole, so nothing of it happened)."""
        for attempt in range(1, ATTEMPTS + 1):
            with self._lock:
                try:
                    with self.store.transaction():
                        return work(self._clock())
                except self.store.retryable as exc:
                    if attempt == ATTEMPTS:
                        raise
                    log.warning("transaction tried again (%s)", type(exc).__name__)
        raise AssertionError("unreachable")



def _check_member_id(member_id: str) -> None:
    if not 1 <= len(member_id) <= MAX_MEMBER_ID or not member_id.isprintable() or (
            member_id.strip() != member_id):
        raise LedgerError(f"member_id: expected 1-{MAX_MEMBER_ID} printable characters")


def _check_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON or not reason.isprintable():
        raise LedgerError(f"reason: required, 1-{MAX_REASON} printable characters")
    return reason
