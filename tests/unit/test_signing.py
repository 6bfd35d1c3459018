"""Ed25519 keys and signatures shared by staff messages and member cards."""

from __future__ import annotations

import pytest

from kiosk.trust.signing import SignatureError, Signer, Verifier, b64decode, public_key_text


def test_a_signature_verifies_only_for_its_message_and_key():
    signer, other = Signer.generate(), Signer.generate()
    verifier = Verifier.from_texts([public_key_text(signer.public)])
    signature = signer.sign(b"check in")
    verifier.verify(signer.key_id, signature, b"check in")
    with pytest.raises(SignatureError, match="bad signature"):
        verifier.verify(signer.key_id, signature, b"check in!")
    with pytest.raises(SignatureError, match="unknown key id"):
        verifier.verify(other.key_id, other.sign(b"check in"), b"check in")
    with pytest.raises(SignatureError, match="length"):
        verifier.verify(signer.key_id, signature[:-1], b"check in")


def test_keys_round_trip_as_text():
    signer = Signer.generate()
    again = Signer.from_text(signer.text())
    assert again.key_id == signer.key_id
    Verifier.from_texts([public_key_text(again.public)]).verify(
        signer.key_id, again.sign(b"x"), b"x")


@pytest.mark.parametrize("text", ["", "!!!", "é", "A" * 5000, "AAAA"])
def test_bad_key_text_is_refused(text):
    with pytest.raises(SignatureError):
        b64decode(text, 32)
