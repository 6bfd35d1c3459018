"""A kiosk on simulated hardware in this process (it lives in :mod:`kiosk.sim.kiosk`, which the
demo uses too)."""

from kiosk.sim.kiosk import RunningKiosk, same_pixels, sim_config, wait_for

__all__ = ["RunningKiosk", "same_pixels", "sim_config", "wait_for"]
