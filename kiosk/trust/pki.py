"""Certificates and the ACL for the broker wall (``tools/make-certs``).

The broker decides who may write where by the client certificate: mosquitto's
``use_identity_as_username`` makes the certificate's common name (CN) the
username, and ``use_username_as_clientid`` the client id, so a client can be
nobody but its certificate. The CN also says the role:

- a kiosk's CN is its ``device_id`` (letters, digits, ``_ . -``; never ``_all``);
- staff are ``staff:<name>`` and backends ``backend:<name>``: the ``:`` can
  never appear in a device id, so no staff or backend certificate can pass for
  a kiosk, and none can be issued for a kiosk by mistake.

Kiosks get ``pattern`` ACL lines (``%u`` = their CN, so each writes only under
its own root); staff and backends get a ``user`` block each, written here from
the certificates in the directory. Keys are EC P-256 (quick to make on a Pi,
supported by mosquitto and paho alike).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import re
import sys
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
DEVICE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
"""As ``kiosk.device_id`` in the config: one topic level, no wildcard, no ``:``."""
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,48}$")
DEFAULT_DAYS = 5 * 365
BROKER_NAMES = ("localhost", "127.0.0.1")


class CertError(KioskError, ValueError):
    """A certificate cannot be made as asked; the message says why."""


@dataclass(frozen=True)
class Issued:
    """A key and its certificate, as written to ``<stem>.key`` / ``<stem>.crt``."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def kiosk_identity(device_id: str) -> str:
    """The CN of a kiosk's certificate: its device id, checked."""
    if not DEVICE_ID.match(device_id) or device_id == "_all":
        raise CertError(f"kiosk {device_id!r}: expected a device id of 1-64 letters, digits, "
                        "'_', '-' or '.' (and not _all)")
    return device_id


def role_identity(role: str, name: str) -> str:
    """``staff:<name>`` or ``backend:<name>``."""
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


def acl_text(prefix: str, staff: Iterable[str], backends: Iterable[str]) -> str:
    """The mosquitto ACL file: kiosk patterns, then one ``user`` block per staff/backend CN.

    mosquitto checks a client's ``user`` lines first (``deny`` before the rest),
    then the patterns, which apply to every client. The ``deny`` line in each
    block takes away what the patterns would give that CN under its own name.
    """
    lines = [
        "# Loyalty kiosks: who may write and read where (mosquitto 2.0 acl_file).",
        "# Written by tools/make-certs; the username is the client certificate's CN.",
        "#",
        "# Kiosks (CN = device id): write only under their own root, read only their own",
        "# replies, desired config and commands, plus group commands of a site or the fleet.",
        *(f"pattern write {prefix}/+/%u/{leaf}" for leaf in (
            "status", "state", "evt/checkin", "tele/health", "config/reported",
            "cmd/+/result", "enroll")),
        *(f"pattern read {prefix}/+/%u/{leaf}" for leaf in ("reply", "config/desired", "cmd/+")),
        "# Group commands (no %u: mosquitto warns at start that the pattern has none).",
        f"pattern read {prefix}/+/_all/cmd/+",
    ]
    for identity in sorted(staff):
        lines += ["", "# Staff: read everything; write desired config and commands.",
                  f"user {identity}", f"topic deny {prefix}/+/{identity}/#", "topic read #",
                  f"topic write {prefix}/+/+/config/desired", f"topic write {prefix}/+/+/cmd/+"]
    for identity in sorted(backends):
        lines += ["", "# Loyalty backend: read every check-in, answer on the kiosk's reply topic.",
                  f"user {identity}", f"topic deny {prefix}/+/{identity}/#",
                  f"topic read {prefix}/+/+/evt/checkin", f"topic write {prefix}/+/+/reply"]
    return "\n".join(lines) + "\n"


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


def make_certs(directory: Path, *, kiosks: Iterable[str] = (), staff: Iterable[str] = (),
               backends: Iterable[str] = (), broker_names: Iterable[str] = (),
               prefix: str = "loyalty", days: int = DEFAULT_DAYS) -> list[str]:
    """Create (or add to) a certificate directory; returns the files written.

    The CA and the broker certificate are made once and reused on later runs
    (``broker_names`` replaces the broker certificate). The ACL is rewritten
    from every client certificate in the directory.
    """
    directory.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    if (directory / "ca.crt").exists():
        ca = load_pair(directory, "ca")
    else:
        ca = make_ca(f"{prefix} kiosks CA")
        write_pair(directory, "ca", ca)
        written.append("ca.crt")
    names = list(broker_names)
    if names or not (directory / "broker.crt").exists():
        write_pair(directory, "broker", issue(ca, "broker", server_names=names or BROKER_NAMES,
                                               days=days))
        written.append("broker.crt")
    identities = ([kiosk_identity(device) for device in kiosks]
                  + [role_identity(STAFF, name) for name in staff]
                  + [role_identity(BACKEND, name) for name in backends])
    for identity in identities:
        write_pair(directory, file_stem(identity), issue(ca, identity, days=days))
        written.append(f"{file_stem(identity)}.crt")
    clients = _client_identities(directory)
    (directory / f"{prefix}.acl").write_text(acl_text(
        prefix, [cn for cn in clients if cn.startswith(STAFF)],
        [cn for cn in clients if cn.startswith(BACKEND)]))
    written.append(f"{prefix}.acl")
    return written


def _client_identities(directory: Path) -> list[str]:
    found = []
    for path in sorted(directory.glob("*.crt")):
        if path.stem in ("ca", "broker"):
            continue
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        found.append(str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value))
    return found


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


def main(argv: list[str] | None = None) -> int:
    """``tools/make-certs``: the command line over :func:`make_certs`."""
    parser = argparse.ArgumentParser(
        prog="make-certs", description="Make a CA and TLS client certificates for the kiosks' "
        "broker, and the mosquitto ACL that goes with them. Run again to add certificates.")
    parser.add_argument("directory", type=Path, help="where the files go (created if missing)")
    parser.add_argument("--kiosk", action="append", default=[], metavar="DEVICE_ID",
                        help="a kiosk certificate (CN = device id); repeat for more")
    parser.add_argument("--staff", action="append", default=[], metavar="NAME",
                        help="a staff certificate (CN staff:NAME); repeat for more")
    parser.add_argument("--backend", action="append", default=[], metavar="NAME",
                        help="a loyalty backend certificate (CN backend:NAME)")
    parser.add_argument("--broker-name", action="append", default=[], metavar="HOST",
                        help="host name or IP address clients use for the broker; repeat for "
                        f"more (default on first run: {', '.join(BROKER_NAMES)})")
    parser.add_argument("--prefix", default="loyalty", help="topic prefix (default: loyalty)")
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS,
                        help=f"validity of new certificates (default: {DEFAULT_DAYS})")
    args = parser.parse_args(argv)
    try:
        written = make_certs(args.directory, kiosks=args.kiosk, staff=args.staff,
                             backends=args.backend, broker_names=args.broker_name,
                             prefix=args.prefix, days=args.days)
    except (CertError, OSError) as exc:
        print(f"make-certs: {exc}", file=sys.stderr)
        return 1
    for name in written:
        print(args.directory / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
