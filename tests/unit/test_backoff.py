"""The pause between tries at a failing device: doubles up to a ceiling, starts over after
the device worked (``drivers.backoff``, shared by device reopening and the display thread)."""

from __future__ import annotations

from drivers.backoff import Backoff


def test_the_pause_doubles_up_to_the_ceiling():
    backoff = Backoff(0.5, 30.0)
    assert [backoff.next() for _ in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_after_a_reset_it_starts_again_from_the_first_pause():
    backoff = Backoff(0.2, 10.0)
    for _ in range(5):
        backoff.next()
    backoff.reset()
    assert [backoff.next() for _ in range(3)] == [0.2, 0.4, 0.8]
