"""The kiosk's one SQLite database: outbox, member cache, recent scans, state lock, salvage."""

__all__ = ["cache", "db", "dbview", "outbox", "salvage", "statedir"]
