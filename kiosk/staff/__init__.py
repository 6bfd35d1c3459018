"""What staff run and share with the kiosk: the signed envelope, signing keys, ``kioskctl``."""
