"""The wire to the broker: every topic and payload (bounded), the session, delivery policy."""

__all__ = ["delivery", "envelope", "link", "protocol", "publisher", "wire"]
