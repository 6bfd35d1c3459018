"""Running a kiosk in a shop: doctor, status, selftest, logs, watchdog, systemd, member cards."""

__all__ = ["cards", "doctor", "identity", "logs", "selftest", "status", "systemd", "watchdog"]
