"""The backend's exception root: every error it explains to a person in one line."""

from kiosk import KioskError


class BackendError(KioskError):
    """Something the backend cannot do; the message is one line for the user."""
