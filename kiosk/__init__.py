"""The loyalty kiosk application: check-ins from member codes, kept durably, sent over MQTT.

Nothing in this package imports a hardware library; devices come from ``drivers``.
"""

__version__ = "0.1.0"


class KioskError(Exception):
    """Root of every error the application raises on purpose."""
