"""The wire to the broker: every topic and payload (bounded), the session, delivery policy."""

__all__ = [
    "acl", "client", "delivery", "envelope", "link", "protocol", "publisher", "settings", "wire",
]
