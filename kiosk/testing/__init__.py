"""What integrators import in their own tests: a private broker, the reference backend,
a kiosk on simulated hardware (see :mod:`kiosk.testing.plugin` for the fixtures), and a
fleet of virtual kiosks for staff tooling (:mod:`kiosk.testing.fleet`).

Production code never imports this package; what the demo shares with it lives in
:mod:`kiosk.sim` and is re-exported here under the names integrators already use."""

__all__ = ["broker", "cards", "daemon", "faultproxy", "fleet", "fuzz", "harness", "plugin", "staff"]
