"""What staff run on their laptops: ``kioskctl``, its MQTT client, keys, fleet, certificates."""

__all__ = ["certs", "client", "enroll", "fleet", "issuer", "keyring", "kioskctl", "settings"]
