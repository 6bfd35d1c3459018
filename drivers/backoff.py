"""The growing pause between tries at a device that is not there or keeps failing."""

from __future__ import annotations


class Backoff:
    """A pause that doubles after each failure, up to a ceiling, and starts over on request.

    Devices that are unplugged are retried quickly at first (a cable being
    reseated) and then only now and then, so a missing scanner or a broken
    panel does not keep a Pi's CPU and log busy.
    """

    def __init__(self, first_s: float, max_s: float) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self._next_s = first_s

    def next(self) -> float:
        """The pause before the next try; the one after it is twice as long (up to the max)."""
        pause = self._next_s
        self._next_s = min(pause * 2, self.max_s)
        return pause

    def reset(self) -> None:
        """The device worked: the next trouble starts again from the first pause."""
        self._next_s = self.first_s
