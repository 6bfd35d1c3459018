"""Running a kiosk in a shop: doctor, status, selftest, logs, watchdog, systemd, member cards,
memory."""

__all__ = ["cards", "doctor", "identity", "logs", "memory", "selftest", "status", "systemd",
           "watchdog"]
