"""A whole shop counter on one machine: a private mosquitto, a simulated kiosk, the demo."""

__all__ = ["broker", "demo", "kiosk", "termview"]
