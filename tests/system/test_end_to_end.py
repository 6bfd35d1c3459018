"""Scans at the counter reach the backend's ledger, and the customer sees the answer."""

from __future__ import annotations

import logging
from dataclasses import replace

from kiosk.config import MembersSection
from kiosk.counter.members import sign_card
from kiosk.counter.screens import Sync, UnknownCard, Welcome
from kiosk.testing.harness import RunningKiosk, same_pixels, wait_for
from kiosk.trust.signing import Signer, public_key_text


def _synced_welcome(kiosk, name):
    screen = kiosk.app.screen
    if isinstance(screen, Welcome) and screen.sync is Sync.SYNCED \
            and screen.status.display_name == name:
        return screen
    return None


def _oled_showed(frames, kiosk, screen) -> bool:
    """The simulated OLED showed exactly the pixels of ``screen`` (after the reply's story)."""
    expected = kiosk.app.presenter.render(screen)
    return any(same_pixels(frame, expected) for frame in list(frames))


def test_scans_reach_the_ledger_and_the_display_shows_the_balance(kiosk, backend, ledger):
    frames: list = []
    kiosk.app.sim.display.listeners.append(frames.append)
    kiosk.wait_online()
    for member, name in [("LOY-ALICE01", "Alice"), ("LOY-BOB0002", "Bob"),
                         ("LOY-CAROL03", "Carol")]:
        kiosk.show_card(member)
        screen = wait_for(lambda n=name: _synced_welcome(kiosk, n), what=f"{name}'s balance")
        assert screen.status.balance == ledger.balance(member) == 10
        wait_for(lambda s=screen: _oled_showed(frames, kiosk, s), what="the balance on the OLED")
    kiosk.wait_drained()
    assert len(ledger.visits(kiosk.app.device_id)) == 3


def test_the_kiosk_also_speaks_mqtt_3_1_1(kiosk_config, backend, ledger):
    config = replace(kiosk_config, mqtt=replace(kiosk_config.mqtt, protocol="3.1.1"))
    kiosk = RunningKiosk(config).start()
    try:
        kiosk.wait_online()
        kiosk.show_card("LOY-DAVE004")
        wait_for(lambda: _synced_welcome(kiosk, "Dave"), what="Dave's balance")
        kiosk.wait_drained()
    finally:
        kiosk.stop()
    assert ledger.balance("LOY-DAVE004") == 10


def test_the_same_card_held_up_checks_in_once_but_two_customers_both_check_in(kiosk, backend,
                                                                            ledger):
    kiosk.wait_online()
    kiosk.show_card("LOY-ALICE01")
    kiosk.show_card("LOY-ALICE01")  # still within the 5 s cooldown
    kiosk.show_card("LOY-BOB0002")
    wait_for(lambda: ledger.balance("LOY-BOB0002") == 10, what="Bob credited")
    kiosk.wait_drained()
    assert ledger.balance("LOY-ALICE01") == 10
    assert len(ledger.visits(kiosk.app.device_id)) == 2


ISSUER = Signer.generate()


OTHER_ISSUER = Signer.generate()


CARD = sign_card(ISSUER, "M-1234567")


def test_a_signed_card_checks_in_and_refusals_show_why_without_the_code_in_the_log(
        kiosk_config, mosquitto, backend, ledger, caplog):
    config = replace(kiosk_config, members=MembersSection(
        card_keys=f"{public_key_text(OTHER_ISSUER.public)}, {public_key_text(ISSUER.public)}"))
    kiosk = RunningKiosk(config).start()
    try:
        kiosk.wait_online()
        with caplog.at_level(logging.INFO, logger="kiosk.counter.controller"):
            kiosk.show_card("WIFI:T:WPA;S:shop-guest;P:hunter22;;")
            wait_for(lambda: kiosk.app.screen == UnknownCard("Wi-Fi settings"), what="refused")
            kiosk.type_code(CARD.replace("M-1234567", "M-1234568"))  # an edited card
            wait_for(lambda: kiosk.app.screen == UnknownCard("Card not valid"), what="refused")
        assert "hunter22" not in caplog.text and "M-1234568" not in caplog.text
        assert "Wi-Fi settings (m:" in caplog.text
        kiosk.show_card(CARD)
        wait_for(lambda: ledger.balance("M-1234567") == 10, what="the signed card's check-in")
        assert kiosk.app.checkins_recorded == 1
    finally:
        kiosk.stop()
