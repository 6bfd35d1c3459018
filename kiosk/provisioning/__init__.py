"""The kiosk's side of staff: guard, commands, desired/reported config, enrollment."""

__all__ = ["commands", "desk", "enrollment", "guard", "overlay", "shadow"]
