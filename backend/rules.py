"""The loyalty programme's rules, from a TOML file: what a visit earns and what it unlocks.

A shop's programme changes more often than its code, so points per visit, the welcome
and referral bonuses, tiers and their qualification period, the rewards catalogue,
badges, expiry and the visit limit live in a rules file. It is checked as strictly as
the kiosk's config: an unknown key, a wrong type or an impossible value stops the
backend at start with one line naming the file, the key and what was expected. Without a
file the backend runs :data:`DEFAULT_RULES` (the demo's programme: 10 points a visit,
Bronze / Silver 100 / Gold 300, a free coffee every 50 points, no visit limit).

Everything here is pure: the ledger decides *when* (it holds the member's history);
these rules decide *what*.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from backend.errors import BackendError
from kiosk.mqtt.protocol import MAX_LABEL, MAX_POINTS, MemberStatus

DAY_S = 86400.0


class RulesError(BackendError, ValueError):
    """The rules file cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class Tier:
    """A tier reached with ``points`` qualifying points within the qualification period."""

    name: str
    points: int


@dataclass(frozen=True)
class Reward:
    """A catalogue reward: it costs ``cost`` points when redeemed."""

    name: str
    cost: int


@dataclass(frozen=True)
class Badge:
    """A badge for the ``at_visit``-th credited visit, or for every ``every_visits``-th one;
    ``{visits}`` in the name is replaced by the visit count (``"{visits} visits"``)."""

    name: str
    at_visit: int = 0
    every_visits: int = 0

    def won_at(self, visits: int) -> str:
        """The badge's name if the ``visits``-th visit wins it, else ""."""
        if visits == self.at_visit or (self.every_visits and visits % self.every_visits == 0):
            return self.name.replace("{visits}", str(visits))
        return ""


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class SitePoints:
    """What a visit at ``site`` earns (unless an hours rule matches)."""

    site: str
    per_visit: int


@dataclass(frozen=True)
class HoursPoints:
    """What a visit earns from ``start`` to ``end`` (minutes after local midnight, ``end``
    excluded) on ``days`` (0 Monday ... 6 Sunday)."""

    start: int
    end: int
    per_visit: int
    days: tuple[int, ...] = tuple(range(7))

    def matches(self, day: int, minute: int) -> bool:
        return day in self.days and self.start <= minute < self.end


@dataclass(frozen=True)
class Rules:
    """One programme. Tiers are sorted by threshold, the first at 0 points."""

    points_per_visit: int = 10
    sites: tuple[SitePoints, ...] = ()
    hours: tuple[HoursPoints, ...] = ()
    """Hours rules never overlap on a day (the file is refused), so at most one matches."""
    timezone: str = ""
    """The zone the hours are read in ("": the backend's local zone)."""
    welcome_bonus: int = 0
    """Points on a member's first credited visit, besides the visit's own."""
    referral_bonus: int = 0
    """Points for the member who referred another, at the referred member's first
    credited visit (once; 0: no referral programme)."""
    expire_after_days: float = 0
    """A balance expires after this many days without a credited visit (0: never)."""
    visit_limit_minutes: float = 0
    """One credited visit per member per site within this many minutes (0: no limit):
    what stops a copied kiosk certificate from minting points."""
    qualification_days: float = 365
    """Qualifying points are those earned in this rolling window; a tier reached is kept
    at least this long, so redeeming points never costs a tier."""
    tiers: tuple[Tier, ...] = (Tier("Bronze", 0), Tier("Silver", 100), Tier("Gold", 300))
    rewards: tuple[Reward, ...] = (Reward("Free coffee", 50),)
    badges: tuple[Badge, ...] = (Badge("First visit", at_visit=1),
                                 Badge("{visits} visits", every_visits=10))
    source: str = field(default="built-in rules", compare=False)
    version: str = field(default="built-in", compare=False)
    """What every ledger entry records of the rules it was made under: the first 12 hex
    digits of the file's SHA-256 (the same file, the same version, on every instance)."""

    def points_for(self, site: str, at: float) -> int:
        """What a visit at ``site`` scanned at ``at`` (the check-in's own time, so a backlog
        delivered later earns what the visit earned) is worth: the hours rule matching its
        local day and time, else its site's rule, else :attr:`points_per_visit`."""
        if self.hours:
            local = datetime.fromtimestamp(at, ZoneInfo(self.timezone) if self.timezone
                                           else None)
            minute = local.hour * 60 + local.minute
            for rule in self.hours:
                if rule.matches(local.weekday(), minute):
                    return rule.per_visit
        return next((s.per_visit for s in self.sites if s.site == site), self.points_per_visit)

    def tier_for(self, qualifying: int) -> str:
        """The tier ``qualifying`` points reach."""
        return next(t.name for t in reversed(self.tiers) if qualifying >= t.points)

    def rank(self, tier: str) -> int:
        """The tier's place (0 the lowest; -1 for a tier these rules no longer have)."""
        return self._ranks.get(tier, -1)

    @cached_property
    def _ranks(self) -> dict[str, int]:
        """Asked two or three times a visit: a lookup, not a walk of the tiers."""
        return {t.name: i for i, t in enumerate(self.tiers)}

    def reward(self, name: str) -> Reward | None:
        """The catalogue reward called ``name``."""
        return next((r for r in self.rewards if r.name == name), None)

    def badge_at(self, visits: int) -> str:
        """The badge the ``visits``-th credited visit wins ("" for none; the first listed)."""
        return next((won for b in self.badges if (won := b.won_at(visits))), "")

    def standing(self, display_name: str, balance: int, tier: str, *, earned: int = 0,
                 tier_changed: bool = False, badge: str = "") -> MemberStatus:
        """What the kiosk shows: the balance, the tier, and progress to the next reward —
        the reward whose next one is fewest points away (one more of it becomes
        affordable at each multiple of its cost). A visit that ``earned`` points and
        crossed such a multiple unlocked that reward (the costliest one crossed)."""
        next_reward, to_next, progress, unlocked = "", 0, 0.0, ""
        if self.rewards:
            nearest = min(self.rewards, key=lambda r: r.cost - balance % r.cost)
            next_reward = nearest.name
            to_next = nearest.cost - balance % nearest.cost
            progress = (balance % nearest.cost) / nearest.cost
            crossed = [r for r in self.rewards
                       if earned > 0 and (balance - earned) // r.cost < balance // r.cost]
            unlocked = max(crossed, key=lambda r: r.cost).name if crossed else ""
        return MemberStatus(
            display_name=display_name, balance=balance, tier=tier, points_to_next=to_next,
            progress=progress, reward_unlocked=unlocked, next_reward=next_reward,
            points_earned=earned, tier_changed=tier_changed, badge=badge)

    def describe(self) -> dict[str, Any]:
        """The rules in force as plain data (the admin API shows them)."""
        return {
            "source": self.source, "version": self.version,
            "points_per_visit": self.points_per_visit, "timezone": self.timezone,
            "sites": [{"site": s.site, "per_visit": s.per_visit} for s in self.sites],
            "hours": [{"from": _clock(h.start), "to": _clock(h.end), "per_visit": h.per_visit,
                       "days": [DAYS[d] for d in h.days]} for h in self.hours],
            "welcome_bonus": self.welcome_bonus, "referral_bonus": self.referral_bonus,
            "expire_after_days": self.expire_after_days,
            "visit_limit_minutes": self.visit_limit_minutes,
            "qualification_days": self.qualification_days,
            "tiers": [{"name": t.name, "points": t.points} for t in self.tiers],
            "rewards": [{"name": r.name, "cost": r.cost} for r in self.rewards],
            "badges": [{"name": b.name, "at_visit": b.at_visit, "every_visits": b.every_visits}
                       for b in self.badges],
        }


DEFAULT_RULES = Rules()


def load_rules(path: Path | str | None) -> Rules:
    """The rules in ``path`` (``None``: :data:`DEFAULT_RULES`); :class:`RulesError` with
    one line naming the file and the key when they cannot be used."""
    if path is None:
        return DEFAULT_RULES
    path = Path(path)
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise RulesError(f"{path}: cannot read the rules file ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RulesError(f"{path}: not valid TOML ({exc})") from None
    try:
        rules = parse_rules(data, str(path))
    except RulesError as exc:
        raise RulesError(f"{path}: {exc}") from None
    return replace(rules, version=hashlib.sha256(raw).hexdigest()[:12])


def parse_rules(data: dict[str, Any], source: str = "rules") -> Rules:
    """Rules from parsed TOML; :class:`RulesError` names the first key that is wrong."""
    top = _Table(data, "")
    points = top.table("points")
    visits = top.table("visits")
    referral = top.table("referral")
    tiers = top.table("tiers")
    rules = Rules(
        points_per_visit=points.integer("per_visit", 10),
        sites=tuple(_site(t) for t in points.array("site")),
        hours=tuple(_hours(t) for t in points.array("hours")),
        timezone=_zone(points),
        welcome_bonus=points.integer("welcome_bonus", 0),
        referral_bonus=referral.integer("bonus", 0),
        expire_after_days=points.number("expire_after_days", 0),
        visit_limit_minutes=visits.number("limit_minutes", 0),
        qualification_days=tiers.number("qualification_days", 365, low=1),
        tiers=tuple(_tier(t) for t in tiers.array("levels")) or DEFAULT_RULES.tiers,
        rewards=tuple(_reward(r) for r in top.array("rewards")),
        badges=tuple(_badge(b) for b in top.array("badges")),
        source=source,
    )
    for table in (top, points, visits, referral, tiers):
        table.done()
    _check_tiers(rules.tiers)
    _check_hours(rules.hours)
    _unique("points.site", [s.site for s in rules.sites])
    _unique("rewards", [r.name for r in rules.rewards])
    return rules


def _site(table: _Table) -> SitePoints:
    site = SitePoints(table.label("site"), table.integer("per_visit"))
    table.done()
    return site


def _hours(table: _Table) -> HoursPoints:
    start = _minutes(table, "from", 23 * 60 + 59)
    end = _minutes(table, "to", 24 * 60)
    if end <= start:
        raise RulesError(f"{table.where}.to: expected a time after from ({_clock(start)}), at "
                         f'most "24:00" (split a range over midnight in two)')
    days = table.strings("days", DAYS, f"a list of {', '.join(DAYS)}")
    hours = HoursPoints(start, end, table.integer("per_visit"),
                        tuple(sorted(DAYS.index(d) for d in days)) if days else tuple(range(7)))
    table.done()
    return hours


def _minutes(table: _Table, key: str, most: int) -> int:
    """``"HH:MM"`` as minutes after midnight, at most ``most``."""
    value = table.text(key)
    hours, _, minutes = value.partition(":")
    if not (len(hours) == len(minutes) == 2 and hours.isdigit() and minutes.isdigit()
            and int(minutes) < 60 and int(hours) * 60 + int(minutes) <= most):
        raise RulesError(f'{table.where}.{key}: expected a time "HH:MM" from "00:00" to '
                         f'"{_clock(most)}"')
    return int(hours) * 60 + int(minutes)


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _zone(points: _Table) -> str:
    name = points.text("timezone", "")
    if name:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise RulesError(f"points.timezone: unknown time zone {name!r} (an IANA name "
                             f"such as 'Europe/Paris'; leave it out for the backend's "
                             f"local zone)") from None
    return name


def _check_hours(hours: tuple[HoursPoints, ...]) -> None:
    """Two hours rules may not both match a moment: no rule has to win over another."""
    for i, rule in enumerate(hours):
        for j, other in enumerate(hours[:i]):
            common = [d for d in rule.days if d in other.days]
            if common and rule.start < other.end and other.start < rule.end:
                raise RulesError(f"points.hours[{i}]: overlaps points.hours[{j}] on "
                                 f"{DAYS[common[0]]} ({_clock(other.start)}-"
                                 f"{_clock(other.end)}): which would win?")


def _tier(table: _Table) -> Tier:
    tier = Tier(table.label("name"), table.integer("points"))
    table.done()
    return tier


def _reward(table: _Table) -> Reward:
    reward = Reward(table.label("name"), table.integer("cost", low=1))
    table.done()
    return reward


def _badge(table: _Table) -> Badge:
    badge = Badge(table.label("name"), table.integer("at_visit", 0),
                  table.integer("every_visits", 0))
    if bool(badge.at_visit) == bool(badge.every_visits):
        raise RulesError(f"{table.where}: expected exactly one of at_visit or every_visits")
    if len(badge.name.replace("{visits}", "9" * 10)) > MAX_LABEL:
        raise RulesError(f"{table.where}.name: too long once {{visits}} is filled in "
                         f"(at most {MAX_LABEL} characters)")
    table.done()
    return badge


def _check_tiers(tiers: tuple[Tier, ...]) -> None:
    if tiers[0].points != 0:
        raise RulesError("tiers.levels[0].points: expected 0 (every member has a tier)")
    for i in range(1, len(tiers)):
        if tiers[i].points <= tiers[i - 1].points:
            raise RulesError(f"tiers.levels[{i}].points: expected more than the tier before "
                             f"({tiers[i - 1].points})")
    _unique("tiers.levels", [t.name for t in tiers])


def _unique(where: str, names: list[str]) -> None:
    seen = {name for name in names if names.count(name) > 1}
    if seen:
        raise RulesError(f"{where}: the name {sorted(seen)[0]!r} is used twice")


class _Table:
    """One TOML table being read: every key taken is remembered, and :meth:`done` refuses
    the keys nobody took (a typo must not be a silently ignored rule)."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise RulesError(f"{where}: expected a table")
        self.data, self.where, self._taken = data, where, set[str]()

    def _key(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def _get(self, key: str) -> Any:
        self._taken.add(key)
        return self.data.get(key)

    def table(self, key: str) -> _Table:
        value = self._get(key)
        return _Table({} if value is None else value, self._key(key))

    def array(self, key: str) -> list[_Table]:
        value = self._get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise RulesError(f"{self._key(key)}: expected an array of tables")
        return [_Table(item, f"{self._key(key)}[{i}]") for i, item in enumerate(value)]

    def integer(self, key: str, default: int | None = None, low: int = 0) -> int:
        value = self._get(key)
        if value is None and default is not None:
            return default
        if not isinstance(value, int) or isinstance(value, bool) or not (
                low <= value <= MAX_POINTS):
            raise RulesError(f"{self._key(key)}: expected an integer from {low} to {MAX_POINTS}")
        return value

    def number(self, key: str, default: float, low: float = 0) -> float:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, int | float) or isinstance(value, bool) or not (
                low <= value <= 100 * 365 * 24 * 60):
            raise RulesError(f"{self._key(key)}: expected a number of at least {low}")
        return float(value)

    def text(self, key: str, default: str | None = None) -> str:
        value = self._get(key)
        if value is None and default is not None:
            return default
        if not isinstance(value, str):
            raise RulesError(f"{self._key(key)}: expected a string")
        return value

    def strings(self, key: str, allowed: tuple[str, ...], expected: str) -> list[str]:
        """A non-empty list of distinct ``allowed`` strings ([] when the key is absent)."""
        value = self._get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not value or len(set(map(str, value))) < len(
                value) or any(v not in allowed for v in value):
            raise RulesError(f"{self._key(key)}: expected {expected}")
        return value

    def label(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_LABEL or any(
                ch < " " for ch in value):
            raise RulesError(f"{self._key(key)}: expected a name of 1-{MAX_LABEL} printable "
                             f"characters")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.data) - self._taken)
        if unknown:
            known = ", ".join(sorted(self._taken))
            raise RulesError(f"{self._key(unknown[0])}: unknown key (known keys: {known})")
