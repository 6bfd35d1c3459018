"""The running kiosk: ``build`` wires the parts, ``App`` runs the loop; health, staff adapter."""

__all__ = ["actions", "app", "build", "health", "inbox", "problems", "staffparts", "telemetry"]
