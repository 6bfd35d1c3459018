"""Every word the customer reads, in each language the kiosk speaks.

Screens name a message by key; :class:`Messages` fills in numbers and names.
Numbers are grouped the way each language writes them (1,230 / 1.230). A
test keeps the languages' keys and placeholders equal, so no screen can
exist in one language only.
"""

from __future__ import annotations

from string import Formatter

CATALOGUE: dict[str, dict[str, str]] = {
    "en": {
        "scan": "Scan your card",
        "offline": "Offline: visits are saved",
        "hello": "Hi {name}!",
        "welcome": "Welcome!",
        "thanks": "Thank you",
        "points": "{points} pts",
        "to_reward": "{points} pts to {reward}",
        "to_next_reward": "{points} pts to next reward",
        "waiting": "Checking in...",
        "synced": "Visit recorded ✓",
        "pending": "Checked in ✓ — points will appear soon",
        "last_known": "Last balance {points} pts",
        "earned": "+{points}",
        "earned_label": "points this visit",
        "reward_title": "Reward unlocked!",
        "tier_title": "New tier!",
        "badge_title": "Badge earned!",
        "unknown_title": "Unknown card",
        "unknown_hint": "Please show your member QR code",
        "already_title": "Already checked in",
        "already_hint": "See you next time!",
        "sorry": "Sorry!",
        "not_recorded": "Visit NOT recorded",
        "ask_staff": "Please ask staff",
        "out_of_service": "Out of service",
        "outbox_full": "Storage full",
        "hardware": "Hardware fault",
        "staff_device": "Device {value}",
        "staff_ip": "IP {value}",
        "staff_broker": "Broker {value}",
        "staff_config": "Config v{value}",
        "connected": "connected",
        "disconnected": "offline",
        "identify": "IDENTIFY",
        "pair_title": "Pairing code",
    },
    "tr": {
        "scan": "Kartınızı okutun",
        "offline": "Çevrimdışı: ziyaretler saklanıyor",
        "hello": "Merhaba {name}!",
        "welcome": "Hoş geldiniz!",
        "thanks": "Teşekkürler",
        "points": "{points} puan",
        "to_reward": "{reward} için {points} puan",
        "to_next_reward": "Sonraki ödüle {points} puan",
        "waiting": "Giriş yapılıyor...",
        "synced": "Ziyaret kaydedildi ✓",
        "pending": "Giriş yapıldı ✓ — puanlar birazdan görünecek",
        "last_known": "Son bakiye {points} puan",
        "earned": "+{points}",
        "earned_label": "bu ziyaretin puanı",
        "reward_title": "Ödül kazandınız!",
        "tier_title": "Yeni seviye!",
        "badge_title": "Rozet kazandınız!",
        "unknown_title": "Tanınmayan kart",
        "unknown_hint": "Lütfen üye QR kodunuzu gösterin",
        "already_title": "Giriş zaten yapıldı",
        "already_hint": "Bir dahaki sefere görüşmek üzere!",
        "sorry": "Üzgünüz!",
        "not_recorded": "Ziyaret KAYDEDİLMEDİ",
        "ask_staff": "Lütfen görevliye danışın",
        "out_of_service": "Hizmet dışı",
        "outbox_full": "Depolama dolu",
        "hardware": "Donanım arızası",
        "staff_device": "Cihaz {value}",
        "staff_ip": "IP {value}",
        "staff_broker": "Sunucu {value}",
        "staff_config": "Yapılandırma v{value}",
        "connected": "bağlı",
        "disconnected": "bağlı değil",
        "identify": "TANIMLA",
        "pair_title": "Eşleştirme kodu",
    },
}

LOCALES = tuple(CATALOGUE)
_GROUPING = {"en": ",", "tr": "."}


def placeholders(text: str) -> set[str]:
    """The ``{names}`` a message fills in."""
    return {name for _, name, _, _ in Formatter().parse(text) if name}


class Messages:
    """The catalogue of one language."""

    def __init__(self, locale: str) -> None:
        if locale not in CATALOGUE:
            raise ValueError(f"locale: expected one of {', '.join(LOCALES)}, got {locale!r}")
        self.locale = locale
        self._texts = CATALOGUE[locale]

    def __call__(self, key: str, **values: str | int) -> str:
        """Message ``key`` with ``values`` filled in; integers are grouped by thousands."""
        return self._texts[key].format(**{
            name: self.number(value) if isinstance(value, int) else value
            for name, value in values.items()})

    def number(self, value: int) -> str:
        """``value`` with this language's thousands separator."""
        return f"{value:,}".replace(",", _GROUPING[self.locale])
