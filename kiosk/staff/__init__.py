"""What staff run: ``kioskctl``, its MQTT client, keys, rollouts, fleet views, certificates,
and the always-on fleet service (``kiosk-fleet``: fleet state, audit log)."""

__all__ = ["asking", "audit", "certs", "client", "enroll", "fleet", "fleetd", "fleetdb",
           "issuer", "keyring", "kinds", "kioskctl", "rollout", "settings", "summary", "view"]
