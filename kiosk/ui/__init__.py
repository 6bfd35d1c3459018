"""How the kiosk looks and sounds: screens per layout, fonts, message catalogue, light patterns."""
