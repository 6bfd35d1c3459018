"""What the customer sees over time: the story of a reply, animation, burn-in protection,
and the reply fields that feed them (from the reference backend, through the protocol)."""

from __future__ import annotations

import pytest

from kiosk.counter.members import MemberStatus
from kiosk.counter.screens import (
    BadgeEarned,
    Idle,
    PointsEarned,
    RewardUnlocked,
    Sync,
    TierUpgrade,
    UnknownCard,
    Welcome,
)
from kiosk.mqtt import protocol
from kiosk.mqtt.wire import ProtocolError
from kiosk.ui.presenter import FRAME_S, Presenter
from kiosk.ui.settings import UiSection


class Panel:
    """Stands in for the display worker: keeps what it was handed."""

    size = (128, 64)

    def __init__(self) -> None:
        self.frames: list = []
        self.contrast: list[int] = []

    def show(self, image) -> None:
        self.frames.append(image)

    def set_contrast(self, level: int) -> None:
        self.contrast.append(level)


NEWS = MemberStatus("Alice", 100, "Silver", 50, 0.0, reward_unlocked="Free coffee",
                    next_reward="Free coffee", points_earned=10, tier_changed=True,
                    badge="10 visits")


def _show(presenter: Presenter, screen, now: float) -> None:
    """What the controller loop does: the screen asked for, then drawn at the turn's end."""
    presenter.show(screen, now)
    presenter.paint(now)


def _tick(presenter: Presenter, now: float) -> None:
    presenter.tick(now)
    presenter.paint(now)


def _moments(presenter: Presenter, until: float, step: float = 0.2) -> list:
    seen = [presenter.moment]
    now = 0.0
    while now < until:
        now += step
        presenter.tick(now)
        if presenter.moment != seen[-1]:
            seen.append(presenter.moment)
    return seen


def test_a_fresh_reply_tells_points_reward_tier_badge_then_the_balance():
    presenter = Presenter(Panel(), UiSection(), "mono")
    presenter.show(Welcome(NEWS, Sync.SYNCED), 0.0)
    assert _moments(presenter, 10) == [PointsEarned(NEWS), RewardUnlocked(NEWS),
                                       TierUpgrade(NEWS), BadgeEarned(NEWS, "10 visits"),
                                       Welcome(NEWS, Sync.SYNCED)]


@pytest.mark.parametrize("screen", [Welcome(NEWS, Sync.PENDING), Welcome(NEWS, Sync.WAITING),
                                    UnknownCard()])
def test_other_screens_are_shown_as_they_are(screen):
    presenter = Presenter(Panel(), UiSection(), "mono")
    presenter.show(screen, 0.0)
    assert _moments(presenter, 5) == [screen]


def test_the_plus_points_counts_up_then_holds_still():
    panel = Panel()
    presenter = Presenter(panel, UiSection(), "mono")
    _show(presenter, Welcome(NEWS, Sync.SYNCED), 0.0)
    for tick in range(1, 7):
        _tick(presenter, tick * 0.15)
    frames = [frame.tobytes() for frame in panel.frames]
    assert len(set(frames[:4])) == 4  # "+3", "+5", "+8", "+10"


def test_a_still_screen_is_rendered_once():
    panel = Panel()
    presenter = Presenter(panel, UiSection(), "mono")
    _show(presenter, UnknownCard(), 0.0)
    for tick in range(1, 30):
        _tick(presenter, tick * 0.2)
    assert len(panel.frames) == 1


def test_the_idle_screen_shifts_and_dims_then_wakes_up_for_a_customer():
    panel = Panel()
    presenter = Presenter(panel, UiSection(dim_after_s=30, dim_contrast=20, pixel_shift_s=10),
                          "mono", contrast=200)
    _show(presenter, Idle(online=True), 0.0)
    shown = {panel.frames[-1].tobytes()}
    for second in range(1, 41):
        _tick(presenter, float(second))
        shown.add(panel.frames[-1].tobytes())
    assert panel.contrast == [20]
    assert len(shown) >= 4 * 1  # four pixel-shift positions (each with its animation frames)
    _show(presenter, UnknownCard(), 41.0)
    assert panel.contrast == [20, 200]


def test_a_rush_handled_in_one_turn_draws_only_the_last_customer():
    panel = Panel()
    presenter = Presenter(panel, UiSection(), "mono")
    last = Welcome(NEWS, Sync.WAITING)
    for screen in [UnknownCard(), Welcome(None, Sync.WAITING), last]:
        presenter.show(screen, 1.0)
    presenter.paint(1.0)
    assert presenter.frames == 1
    assert [frame.tobytes() for frame in panel.frames] == [presenter.render(last).tobytes()]


def test_no_frame_is_drawn_sooner_than_the_panel_could_show_it():
    panel = Panel()
    presenter = Presenter(panel, UiSection(), "mono")
    _show(presenter, UnknownCard(), 1.0)
    presenter.show(Welcome(None, Sync.WAITING), 1.0 + FRAME_S / 5)
    due = presenter.paint(1.0 + FRAME_S / 5)
    assert due == pytest.approx(FRAME_S * 4 / 5) and len(panel.frames) == 1
    presenter.show(Welcome(NEWS, Sync.WAITING), 1.0 + FRAME_S / 2)  # supersedes it unseen
    assert presenter.paint(1.0 + FRAME_S) is None
    assert [frame.tobytes() for frame in panel.frames[1:]] == [
        presenter.render(Welcome(NEWS, Sync.WAITING)).tobytes()]
    assert presenter.paint(2.0) is None and len(panel.frames) == 2  # nothing new: no frame
def test_visit_news_travels_in_the_reply_and_is_optional():
    payload = protocol.encode_reply("e1", "LOY-ALICE01", NEWS, protocol.Ack.CREDITED)
    assert protocol.decode_reply(payload) == protocol.Answer("e1", "LOY-ALICE01", NEWS,
                                                            protocol.Ack.CREDITED)
    old = b'{"v":1,"event_id":"e1","member_id":"m","display_name":"A","balance":1,' \
          b'"tier":"B","points_to_next":2,"progress":0.5}'
    assert protocol.decode_reply(old).status.points_earned == 0


@pytest.mark.parametrize("field", ['"points_earned":-1', '"points_earned":1e12',
                                   '"tier_changed":"yes"', '"badge":"' + "x" * 33 + '"',
                                   '"next_reward":7'])
def test_visit_news_out_of_bounds_is_refused(field):
    payload = ('{"v":1,"event_id":"e1","member_id":"m","display_name":"A","balance":1,'
               '"tier":"B","points_to_next":2,"progress":0.5,' + field + '}').encode()
    with pytest.raises(ProtocolError):
        protocol.decode_reply(payload)


def test_the_member_cache_keeps_the_standing_not_the_news():
    assert NEWS.standing() == MemberStatus("Alice", 100, "Silver", 50, 0.0,
                                           next_reward="Free coffee")


def test_a_short_result_time_plays_the_story_faster_and_still_shows_the_balance():
    presenter = Presenter(Panel(), UiSection(), "mono", result_s=2.0)
    presenter.show(Welcome(NEWS, Sync.SYNCED), 0.0)
    for tick in range(1, 6):
        presenter.tick(tick * 0.2)
    assert presenter.moment == Welcome(NEWS, Sync.SYNCED)  # after 1 s: half of 2 s
