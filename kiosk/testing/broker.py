"""A private mosquitto for tests (it lives in :mod:`kiosk.sim.broker`, which the demo uses too)."""

from kiosk.sim.broker import BrokerError, Mosquitto, find_mosquitto, free_port, secure_drop_in

__all__ = ["BrokerError", "Mosquitto", "find_mosquitto", "free_port", "secure_drop_in"]
