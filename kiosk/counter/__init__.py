"""The counter's pure core: member codes in, check-ins, screens and light cues out; no I/O."""

__all__ = ["checkin", "controller", "events", "members", "screens"]
