"""the pure counter core."""
