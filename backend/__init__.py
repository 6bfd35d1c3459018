"""The reference loyalty backend: a ledger behind the kiosks' MQTT protocol; no kiosk loads it."""

from backend.service import Ledger, LoyaltyBackend, TlsFiles

__all__ = ["Ledger", "LoyaltyBackend", "TlsFiles"]
