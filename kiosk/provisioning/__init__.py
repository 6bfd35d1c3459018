"""The kiosk's side of staff management: signed commands, desired/reported config, enrollment."""
