"""The reference loyalty backend: a ledger behind the kiosks' MQTT protocol; no kiosk loads it."""

from backend.ledger import Ledger
from backend.service import LoyaltyBackend

__all__ = ["Ledger", "LoyaltyBackend"]
