"""The reference loyalty backend: a ledger behind the kiosks' MQTT protocol; no kiosk loads it.

``ledger`` keeps the books (an append-only ledger, exactly once per check-in), ``store``
the database under it (SQLite or PostgreSQL, with migrations), ``rules`` the programme
from a TOML file, ``service`` the MQTT side, ``admin`` the staff HTTP API and
``admin_client`` its command line (``loyalty-admin``), ``cli`` the ``kiosk backend`` flags.
"""

from backend.ledger import Ledger
from backend.service import LoyaltyBackend

__all__ = ["Ledger", "LoyaltyBackend"]
