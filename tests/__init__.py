"""The kiosk's own tests: ``unit/`` (fast, one module at a time) and ``system/`` (real
broker, running kiosk or daemon, subprocesses). See README.md here for where a test goes."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The checkout: shipped files (config/, systemd/, tools/) are read from here."""
UNIT = ROOT / "systemd" / "kiosk.service"
"""The systemd unit as shipped."""
