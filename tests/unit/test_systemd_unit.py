"""The hardened systemd unit, read as a file: it still reaches every kind of kiosk hardware."""

from __future__ import annotations

from kiosk.config import KioskSection


def test_the_unit_still_reaches_every_kind_of_kiosk_hardware(unit_settings):
    settings = unit_settings
    assert "PrivateDevices" not in settings  # it would hide /dev/gpiochip*, cameras, readers
    assert settings["DevicePolicy"] == ["closed"]
    allowed = {value.split()[0] for value in settings["DeviceAllow"]}
    assert allowed >= {"char-gpiochip", "char-video4linux", "char-media", "char-dma_heap",
                       "char-ttyUSB", "char-ttyACM", "char-ttyAMA", "char-i2c", "char-spi",
                       "char-input"}
    groups = set(settings["SupplementaryGroups"][0].split())
    assert groups >= {"gpio", "video", "dialout", "i2c", "spi", "input"}


def test_lgpio_can_create_its_notification_pipe_in_the_working_directory(unit_settings):
    # lgpio's Python module opens a notification FIFO ".lgd-nfy<n>" in the current
    # directory when it is imported (lg: PY_LGPIO/lgpio_extra.py, _callback_thread;
    # lgNotify.c). Under ProtectSystem=strict only the state directory is writable.
    settings = unit_settings
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["StateDirectory"] == ["kiosk"]
    assert settings["WorkingDirectory"] == ["/var/lib/kiosk"] == [KioskSection().state_dir]
