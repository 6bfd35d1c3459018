"""Certificates for the broker wall: the CA, the broker's and every client's.

The broker decides who may write where by the client certificate: mosquitto's
``use_identity_as_username`` makes the certificate's common name (CN) the
username, and ``use_username_as_clientid`` the client id, so a client can be
nobody but its certificate. The CN also says the role:

- a kiosk's CN is its ``device_id`` (letters, digits, ``_ . -``; never ``_all``);
- staff are ``staff:<name>``, backends ``backend:<name>`` and Home Assistant
  ``hass:<name>``: the ``:`` can never appear in a device id, so no such
  certificate can pass for a kiosk, and none can be issued for a kiosk by mistake.

Kiosks get ``pattern`` ACL lines (``%u`` = their CN, so each writes only under
its own root); staff and backends get a ``user`` block each (the ACL is written
by :mod:`kiosk.mqtt.acl`; ``tools/make-certs`` is :mod:`kiosk.staff.certs`).
Keys are EC P-256 (quick to make on a Pi, supported by mosquitto and paho alike).
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kiosk import KioskError
from kiosk.trust.keys import write_private_key

STAFF, BACKEND = "staff:", "backend:"
HOME_ASSISTANT = "hass:"
"""Home Assistant's role: it reads what kiosks tell about themselves, and nothing else."""
FLEET_SERVICE = "fleet:"
"""The fleet service's role: it reads what kiosks say and what staff order, and answers."""
DEVICE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
"""As ``kiosk.device_id`` in the config: one topic level, no wildcard, no ``:``."""
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,48}$")
DEFAULT_DAYS = 5 * 365


class CertError(KioskError, ValueError):
    """A certificate cannot be made as asked; the message says why."""


@dataclass(frozen=True)
class Issued:
    """A key and its certificate, as written to ``<stem>.key`` / ``<stem>.crt``."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


RESERVED_DEVICE_IDS = ("_all", "rollout", "service")
"""Names a kiosk may not have: ``_all`` addresses every kiosk of a site, and the broker's ACL
lets a kiosk write ``<prefix>/+/<its id>/...``, which for ``rollout`` and ``service`` would
reach staff's own records (``<prefix>/_fleet/rollout/...``, ``<prefix>/_fleet/service/...``)."""


def kiosk_identity(device_id: str) -> str:
    """The CN of a kiosk's certificate: its device id, checked."""
    if not DEVICE_ID.match(device_id) or device_id in RESERVED_DEVICE_IDS:
        raise CertError(f"kiosk {device_id!r}: expected a device id of 1-64 letters, digits, "
                        f"'_', '-' or '.' (and not {', '.join(RESERVED_DEVICE_IDS)})")
    return device_id


def role_identity(role: str, name: str) -> str:
    """``staff:<name>``, ``backend:<name>``, ``hass:<name>`` or ``fleet:<name>``."""
    if not NAME.match(name):
        raise CertError(f"{role}{name!r}: expected 1-48 letters, digits, '_', '-' or '.'")
    return f"{role}{name}"


def file_stem(identity: str) -> str:
    """File name of an identity's key and certificate (``staff:ann`` -> ``staff-ann``)."""
    return identity.replace(":", "-")


def make_ca(common_name: str, days: int = 10 * 365) -> Issued:
    """A self-signed CA that signs only end certificates (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (_validity(x509.CertificateBuilder(), days)
               .subject_name(name).issuer_name(name).public_key(key.public_key())
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(_usage(cert_sign=True), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False))
    return Issued(key, builder.sign(key, hashes.SHA256()))


def issue(ca: Issued, common_name: str, *, server_names: Iterable[str] = (),
          days: int = DEFAULT_DAYS) -> Issued:
    """A client certificate for ``common_name``, or a server one when ``server_names`` are given.

    ``server_names`` (host names and IP addresses) go into the subject alternative
    names that clients check the broker's host name against.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    names = list(server_names)
    purpose = ExtendedKeyUsageOID.SERVER_AUTH if names else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (_validity(x509.CertificateBuilder(), days)
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
               .issuer_name(ca.cert.subject).public_key(key.public_key())
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(_usage(cert_sign=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca.key.public_key()), critical=False))
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(name) for name in names]), critical=False)
    return Issued(key, builder.sign(ca.key, hashes.SHA256()))


def write_pair(directory: Path, stem: str, issued: Issued) -> None:
    """``stem.key`` (mode 0600, written first) and ``stem.crt`` in PEM."""
    write_private_key(directory / f"{stem}.key",
                      issued.key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()),
                      replace=True)
    (directory / f"{stem}.crt").write_bytes(issued.cert.public_bytes(serialization.Encoding.PEM))


def load_pair(directory: Path, stem: str) -> Issued:
    """Read back what :func:`write_pair` wrote."""
    key = serialization.load_pem_private_key((directory / f"{stem}.key").read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{directory / stem}.key: not an EC key")
    return Issued(key, x509.load_pem_x509_certificate((directory / f"{stem}.crt").read_bytes()))


def _validity(builder: x509.CertificateBuilder, days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    # An hour of slack for a clock that is a little behind the one that made the certificate.
    return (builder.serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=days)))


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=not cert_sign, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=cert_sign, crl_sign=cert_sign, encipher_only=False,
                         decipher_only=False)


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)
