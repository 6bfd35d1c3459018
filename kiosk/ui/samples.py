"""One example of every screen, with worst cases: for reference images, the README, selftest
and the render benchmark (one list, so none of them can miss a screen)."""

from __future__ import annotations

from kiosk.counter.members import MemberStatus
from kiosk.counter.screens import (
    BadgeEarned,
    Fault,
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
from kiosk.ui.layouts import Layout, layout_for

ALICE = MemberStatus("Alice", 1230, "Gold", 20, 0.6, reward_unlocked="Free coffee",
                     next_reward="Free coffee", points_earned=10, tier_changed=True,
                     badge="Early bird")
WORST = MemberStatus("Maximiliana-Josephine Özdemir-Çağlayan von Habsburg", 999_999_999,
                     "Platinum+", 123_456_789, 0.999,
                     reward_unlocked="Large oat-milk cappuccino with an extra shot",
                     next_reward="Large oat-milk cappuccino with an extra shot",
                     points_earned=123_456, tier_changed=True,
                     badge="Twelve visits in twelve consecutive days")
STORE = "Kahve Dükkanı İstanbul"

SCREENS: dict[str, Screen] = {
    "idle": Idle(online=True),
    "idle-offline": Idle(online=False),
    "welcome-waiting": Welcome(ALICE, Sync.WAITING),
    "welcome": Welcome(ALICE, Sync.SYNCED),
    "welcome-worst": Welcome(WORST, Sync.SYNCED),
    "pending": Welcome(ALICE, Sync.PENDING),
    "pending-unknown-member": Welcome(None, Sync.PENDING),
    "points-earned": PointsEarned(ALICE),
    "reward-unlocked": RewardUnlocked(ALICE),
    "reward-unlocked-worst": RewardUnlocked(WORST),
    "tier-upgrade": TierUpgrade(ALICE),
    "badge-earned": BadgeEarned(ALICE, "Early bird"),
    "unknown-card": UnknownCard(),
    "already-checked-in": Welcome(ALICE, Sync.ALREADY),
    "not-recorded": NotRecorded("outbox full"),
    "out-of-service-full": OutOfService(Fault.OUTBOX_FULL, "5000 visits waiting"),
    "out-of-service-hardware": OutOfService(Fault.HARDWARE, "camera: not found"),
    "staff": StaffInfo("pi-a1b2c3d4", "192.168.1.23", "connected", 7),
    "staff-identify": StaffInfo("pi-a1b2c3d4", "192.168.1.23", "offline", 7, identify=True),
    "pairing": Pairing("pi-a1b2c3d4", "K7QM-X3PA"),
}

LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (
    layout_for((128, 64), "mono"),
    layout_for((128, 32), "mono"),
    layout_for((256, 64), "greyscale"),
    layout_for((128, 128), "colour"),
    layout_for((64, 128), "mono"),       # a 128x64 panel turned a quarter (rotate = 1 or 3)
    layout_for((64, 256), "greyscale"),  # a 256x64 panel turned a quarter
)}
SETTLED_FRAME = 3
"""The animation frame the reference images show (the "+10" has counted up by then)."""
