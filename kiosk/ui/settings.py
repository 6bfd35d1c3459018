"""The ``[ui]`` section of the config: language, the shop's name, burn-in protection."""

from __future__ import annotations

from dataclasses import dataclass

from kiosk.ui.catalogue import LOCALES


@dataclass(frozen=True)
class UiSection:
    """How the screens speak and how the idle screen protects the OLED."""

    locale: str = "en"
    store_name: str = ""
    dim_after_s: float = 300.0
    dim_contrast: int = 32
    pixel_shift_s: float = 60.0

    def __post_init__(self) -> None:
        if self.locale not in LOCALES:
            raise ValueError(f"locale: expected one of {', '.join(LOCALES)}, got {self.locale!r}")
        if len(self.store_name) > 40:
            raise ValueError("store_name: expected at most 40 characters")
        if self.dim_after_s < 0:
            raise ValueError("dim_after_s: expected 0 s (never dim) or more")
        if not 0 <= self.dim_contrast <= 255:
            raise ValueError("dim_contrast: expected 0 to 255")
        if self.pixel_shift_s < 0:
            raise ValueError("pixel_shift_s: expected 0 s (never shift) or more")
