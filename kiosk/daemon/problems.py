"""What is wrong with the kiosk right now; its retained ``state`` follows this list.

Problems come and go (a full outbox drains, a disk gets space back, a camera
is reopened): each has a key, is set while it lasts and cleared when it ends,
and every change is reported at once, so monitoring sees ``degraded`` with
the reason and sees it clear.
"""

from __future__ import annotations

from collections.abc import Callable


class Problems:
    """Current problems by key; ``on_change(state, reason)`` runs when the reason changes."""

    def __init__(self, on_change: Callable[[str, str], None] | None = None) -> None:
        self._texts: dict[str, str] = {}
        self._on_change = on_change

    def set(self, key: str, text: str) -> None:
        """Report ``key`` as ``text`` (replacing what it said before)."""
        if self._texts.get(key) != text:
            self._texts[key] = text
            self._changed()

    def clear(self, key: str) -> None:
        """``key`` is fixed."""
        if self._texts.pop(key, None) is not None:
            self._changed()

    def reporter(self, key: str) -> Callable[[str | None], None]:
        """A callback for one part: its text sets ``key``, ``None`` clears it."""
        return lambda text: self.set(key, text) if text else self.clear(key)

    def __contains__(self, key: str) -> bool:
        return key in self._texts

    @property
    def active(self) -> bool:
        """True while anything is wrong."""
        return bool(self._texts)

    @property
    def state(self) -> str:
        """``degraded`` while anything is wrong, else ``ready``."""
        return "degraded" if self._texts else "ready"

    @property
    def reason(self) -> str:
        """Every problem, in the order they began, as one line."""
        return "; ".join(self._texts.values())

    def text(self, key: str) -> str:
        """What ``key`` says now ("" when it is not a problem)."""
        return self._texts.get(key, "")

    def texts(self) -> list[str]:
        """Every problem, in the order they began."""
        return list(self._texts.values())

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.state, self.reason)
