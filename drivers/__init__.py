"""Hardware abstraction for the loyalty kiosk.

Everything here knows about cameras, serial readers, displays and GPIO, and
nothing about loyalty: this package never imports ``kiosk``. Hardware
libraries are imported inside the backend that needs them, so
``import drivers`` works on any laptop.
"""


class DriverError(Exception):
    """Root of every error raised by a driver."""


class DriverUnavailable(DriverError, ImportError):
    """The library or device a real backend needs is not present on this machine."""
