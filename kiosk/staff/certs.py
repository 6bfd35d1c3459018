"""``tools/make-certs``: a certificate directory for the broker wall, and its ACL.

Staff run it once per shop (and again to add kiosks, staff or backends). It keeps
the CA and the broker's certificate it made before, issues the client certificates
asked for (:mod:`kiosk.trust.pki` makes them), and rewrites the mosquitto ACL
(:mod:`kiosk.mqtt.acl`) for every client certificate in the directory.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from kiosk.mqtt.acl import acl_text
from kiosk.trust.pki import (
    BACKEND,
    DEFAULT_DAYS,
    FLEET_SERVICE,
    HOME_ASSISTANT,
    STAFF,
    CertError,
    file_stem,
    issue,
    kiosk_identity,
    load_pair,
    make_ca,
    role_identity,
    write_pair,
)

BROKER_NAMES = ("localhost", "127.0.0.1")


def make_certs(directory: Path, *, kiosks: Iterable[str] = (), staff: Iterable[str] = (),
               backends: Iterable[str] = (), home_assistants: Iterable[str] = (),
               fleet_services: Iterable[str] = (), broker_names: Iterable[str] = (),
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
                  + [role_identity(BACKEND, name) for name in backends]
                  + [role_identity(HOME_ASSISTANT, name) for name in home_assistants]
                  + [role_identity(FLEET_SERVICE, name) for name in fleet_services])
    for identity in identities:
        write_pair(directory, file_stem(identity), issue(ca, identity, days=days))
        written.append(f"{file_stem(identity)}.crt")
    clients = _client_identities(directory)
    (directory / f"{prefix}.acl").write_text(acl_text(
        prefix, [cn for cn in clients if cn.startswith(STAFF)],
        [cn for cn in clients if cn.startswith(BACKEND)],
        [cn for cn in clients if cn.startswith(HOME_ASSISTANT)],
        fleet_services=[cn for cn in clients if cn.startswith(FLEET_SERVICE)]))
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
    parser.add_argument("--home-assistant", action="append", default=[], metavar="NAME",
                        help="a Home Assistant certificate (CN hass:NAME): reads kiosks' "
                        "discovery, status, state and health")
    parser.add_argument("--fleet-service", action="append", default=[], metavar="NAME",
                        help="a fleet service certificate (CN fleet:NAME): reads kiosks' "
                        "messages and staff orders, answers staff's questions")
    parser.add_argument("--broker-name", action="append", default=[], metavar="HOST",
                        help="host name or IP address clients use for the broker; repeat for "
                        f"more (default on first run: {', '.join(BROKER_NAMES)})")
    parser.add_argument("--prefix", default="loyalty", help="topic prefix (default: loyalty)")
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS,
                        help=f"validity of new certificates (default: {DEFAULT_DAYS})")
    args = parser.parse_args(argv)
    try:
        written = make_certs(args.directory, kiosks=args.kiosk, staff=args.staff,
                             backends=args.backend, home_assistants=args.home_assistant,
                             fleet_services=args.fleet_service,
                             broker_names=args.broker_name,
                             prefix=args.prefix, days=args.days)
    except (CertError, OSError) as exc:
        print(f"make-certs: {exc}", file=sys.stderr)
        return 1
    for name in written:
        print(args.directory / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
