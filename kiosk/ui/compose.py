"""What each screen says, as a page: the words (from the catalogue), their order and weight.

Pure: a screen, a language and an animation frame in; a :class:`~kiosk.ui.page.Page`
out. The ``drop`` numbers say what a small display leaves out first.
"""

from __future__ import annotations

import math

from kiosk.counter.members import MemberStatus
from kiosk.counter.screens import (
    BadgeEarned,
    Idle,
    NotRecorded,
    OutOfService,
    Pairing,
    PointsEarned,
    RewardUnlocked,
    Screen,
    StaffInfo,
    Sync,
    TierUpgrade,
    UnknownCard,
    Welcome,
)
from kiosk.ui.catalogue import Messages
from kiosk.ui.page import Bar, Block, Page, Pulse, Row, Text

TIERS = ("bronze", "silver", "gold", "platinum")
COUNT_UP_FRAMES = 4
"""Frames the "+10" takes to count up to the points earned."""


def tier_badge(tier: str) -> str:
    """The tier with its icon: one star per rank (Bronze ★ ... Platinum ★★★★)."""
    name = tier.strip().lower().rstrip("+")
    rank = TIERS.index(name) + 1 if name in TIERS else 1
    return "★" * rank + " " + tier


def compose(screen: Screen, t: Messages, store: str = "", frame: int = 0) -> Page:
    """The page for ``screen`` in the language of ``t`` at animation ``frame``."""
    match screen:
        case Idle(online=online):
            return Page([Text(store, "small", "dim", drop=2), Text(t("scan"), "big"),
                         Pulse(frame, drop=1)],
                        banner=None if online else Text(t("offline"), "small"), frame=frame)
        case Welcome(status=status, sync=sync):
            return _welcome(status, sync, t)
        case UnknownCard(reason=reason):
            return Page([Text(t("unknown_title"), "title", "bad"),
                         Text(t("unknown_hint"), "small", drop=1)],
                        banner=Text(reason, "small", "dim") if reason else None)
        case NotRecorded(reason=reason):
            return Page([Text(t("sorry"), "title", "bad", drop=2),
                         Text(t("not_recorded"), "body", "bad"),
                         Text(t("ask_staff"), "small", drop=1)],
                        banner=Text(reason, "small", "dim"))
        case OutOfService(fault=fault, detail=detail):
            return Page([Text(t("out_of_service"), "title", "bad"),
                         Text(t(fault.value), "body", drop=1),
                         Text(t("ask_staff"), "small", drop=2)],
                        banner=Text(detail, "small", "dim") if detail else None)
        case StaffInfo():
            return _staff(screen, t, frame)
        case Pairing(device_id=device_id, code=code):
            return Page([Text(t("pair_title"), "small"),
                         Text(code, "big", "accent", wrap=False),
                         Text(t("staff_device", value=device_id), "small", drop=1)])
        case PointsEarned(status=status):
            shown = math.ceil(status.points_earned * min(frame + 1, COUNT_UP_FRAMES)
                              / COUNT_UP_FRAMES)
            return Page([Text(t("earned", points=shown), "huge", "accent", wrap=False),
                         Text(t("earned_label"), "small", drop=1)], frame=frame)
        case RewardUnlocked(status=status):
            return Page([Text(t("reward_title"), "title", "accent"),
                         Text(status.reward_unlocked, "big")],
                        effect="marquee", frame=frame)
        case TierUpgrade(status=status):
            return Page([Text(t("tier_title"), "title", "accent"),
                         Text(tier_badge(status.tier), "big")],
                        effect="marquee", frame=frame)
        case BadgeEarned(status=status, badge=badge):
            return Page([Text(t("badge_title"), "title", "accent"),
                         Text("★ " + badge, "big")],
                        effect="marquee", frame=frame)
    raise TypeError(f"no page for screen {screen!r}")


def _welcome(status: MemberStatus | None, sync: Sync, t: Messages) -> Page:
    if sync is Sync.ALREADY:
        blocks: list[Block] = [Text(t("already_title"), "title")]
        if status is not None:
            blocks.append(Text(t("points", points=status.balance), "body", drop=2))
        return Page([*blocks, Text(t("already_hint"), "small", drop=1)])
    if status is None:
        blocks = [Text(t("welcome"), "title"), Text(t("thanks"), "big", drop=1)]
        if sync is Sync.PENDING:
            return Page([blocks[0], Text(t("pending"), "small")])
        return Page(blocks, banner=Text(t(sync.value), "small"))
    name = status.display_name.strip()
    hello = t("hello", name=name) if name else t("welcome")
    if sync is Sync.PENDING:
        return Page([Text(hello, "body", drop=2),
                     Text(t("pending"), "small"),
                     Text(t("last_known", points=status.balance), "small", "dim", drop=1)])
    to_next = t("to_reward", points=status.points_to_next, reward=status.next_reward) \
        if status.next_reward else t("to_next_reward", points=status.points_to_next)
    return Page([Row(Text(hello, "small"), Text(tier_badge(status.tier), "small", "accent"),
                     drop=3),
                 Text(t("points", points=status.balance), "big", "accent", wrap=False),
                 Bar(status.progress, drop=2),
                 Text(to_next, "small", drop=1)],
                banner=Text(t(sync.value), "small", "good" if sync is Sync.SYNCED else "fg"))


def _staff(info: StaffInfo, t: Messages, frame: int) -> Page:
    broker = t("connected") if info.broker == "connected" else t("disconnected")
    lines: list[Block] = [Text(t("staff_device", value=info.device_id), "small", align="left"),
             Text(t("staff_ip", value=info.ip_address or "-"), "small", align="left", drop=1),
             Text(t("staff_broker", value=broker), "small", align="left", drop=2),
             Text(t("staff_config", value=info.config_version), "small", align="left", drop=3)]
    if info.identify:
        return Page(lines, banner=Text(t("identify"), "small", "accent"), effect="flash",
                    frame=frame)
    return Page(lines)
