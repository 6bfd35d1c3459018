"""What integrators import in their own tests: a private broker, the reference backend,
and a kiosk on simulated hardware (see :mod:`kiosk.testing.plugin` for the fixtures).

Production code never imports this package; what the demo shares with it lives in
:mod:`kiosk.sim` and is re-exported here under the names integrators already use."""

__all__ = ["broker", "cards", "daemon", "faultproxy", "fuzz", "harness", "plugin", "staff"]
