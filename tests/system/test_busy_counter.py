"""A busy counter with the display fitted: a rush of customers draws no screen nobody sees."""

from __future__ import annotations

import time

from kiosk.counter.events import CodeRead
from kiosk.counter.screens import UnknownCard
from kiosk.testing.harness import same_pixels, wait_for
from kiosk.ui.presenter import FRAME_S

RUSH = 300


def test_a_rush_draws_only_what_can_be_seen_committed_first_and_ends_on_the_last_scan(
        kiosk, monkeypatch):
    kiosk.wait_online()
    app = kiosk.app
    shown: list = []
    app.sim.display.listeners.append(shown.append)
    drawn: list[tuple[object, int, int]] = []  # (screen, check-ins made, check-ins committed)
    render = app.presenter.render

    def watched(screen, *args, **kwargs):  # on the controller thread, as the kiosk draws
        drawn.append((screen, app.controller.seq, app.checkins_recorded))
        return render(screen, *args, **kwargs)

    monkeypatch.setattr(app.presenter, "render", watched)
    codes = [f"LOY-RUSH{n:04d}" for n in range(RUSH - 1)] + ["https://example.com"]
    start = time.monotonic()
    for code in codes:
        while len(app.inbox) >= 48:  # a fast scanner, but never past the scan lane
            time.sleep(0.0002)
        app.inbox.put(CodeRead(code, "serial", time.time()))
    last = UnknownCard("Web address")
    wait_for(lambda: app.checkins_recorded == RUSH - 1 and app.screen == last, timeout=60,
             what="the rush recorded")
    elapsed = time.monotonic() - start
    wait_for(lambda: shown and same_pixels(shown[-1], render(last)), timeout=10,
             what="the last scan's screen on the OLED")
    during = [entry for entry in drawn if entry[0] != last]
    assert len(during) <= elapsed / FRAME_S + 2, \
        f"{len(during)} frames drawn in {elapsed:.2f} s: more than the panel can show"
    assert [screen for screen, _, _ in drawn].count(last) == 1
    assert all(made == committed for _, made, committed in drawn), \
        "a screen was drawn before its check-in was committed"
    assert app.scans_not_taken == 0
