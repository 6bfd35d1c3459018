"""What integrators import in their own tests: a private broker, the reference backend,
and a kiosk on simulated hardware (see :mod:`kiosk.testing.plugin` for the fixtures)."""
