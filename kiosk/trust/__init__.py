"""Keys and signatures, the lowest layer: Ed25519 signing, certificates, private-key files."""

__all__ = ["keys", "pki", "signing"]
