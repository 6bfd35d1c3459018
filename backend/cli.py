"""``kiosk backend``: the reference backend's command line (the flags, then the run).

The kiosk's own command line builds its parser with :func:`add_arguments`, so this module
imports nothing heavy until :func:`run`."""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import threading
from pathlib import Path

from backend.errors import BackendError

log = logging.getLogger("backend")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``kiosk backend`` flags."""
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--db", default="ledger.db",
                        help="ledger: a SQLite file, or a postgresql:// URL (a chain)")
    parser.add_argument("--rules", help="the programme's rules file (TOML; default: built-in "
                                        "demo rules)")
    parser.add_argument("--prefix", default="loyalty", help="topic prefix")
    parser.add_argument("--share-group", default="",
                        help="share check-ins with the other instances of this group "
                             "(MQTT shared subscription); each needs its own --client-id")
    parser.add_argument("--client-id", default="",
                        help="MQTT client id (default: loyalty-backend, or with "
                             "--share-group loyalty-backend-<host>); keep it across restarts")
    parser.add_argument("--retire", action="store_true",
                        help="end this --client-id's session at the broker and exit (an "
                             "instance leaving its share group for good)")
    parser.add_argument("--ca-file", help="connect with TLS, checking the broker against "
                                          "this CA (and its host name)")
    parser.add_argument("--cert-file", default="", help="client certificate (with --ca-file)")
    parser.add_argument("--key-file", default="", help="its private key")
    parser.add_argument("--admin-listen", default="",
                        help="serve the admin HTTP API on HOST:PORT (e.g. 127.0.0.1:8470)")
    parser.add_argument("--admin-tokens", help="staff tokens file, 'name:token' a line "
                                               "(needed with --admin-listen)")
    parser.add_argument("--admin-cert", default="", help="serve the admin API over TLS: "
                                                         "certificate file")
    parser.add_argument("--admin-key", default="", help="its private key")


def run(args: argparse.Namespace, stop: threading.Event) -> int:
    """Run the backend until ``stop`` is set; :class:`BackendError` for a bad setting."""
    from backend.ledger import Ledger
    from backend.rules import load_rules
    from backend.service import LoyaltyBackend

    rules = load_rules(args.rules)
    client_id = args.client_id or ("loyalty-backend" if not args.share_group
                                   else f"loyalty-backend-{socket.gethostname()}")
    admin_address = _address(args.admin_listen) if args.admin_listen else None
    if admin_address and not args.admin_tokens:
        raise BackendError("--admin-listen needs --admin-tokens (who may use the API)")
    ledger = Ledger(args.db, rules)
    admin = None
    try:
        service = LoyaltyBackend(args.host, args.port, ledger, prefix=args.prefix,
                                 client_id=client_id, share_group=args.share_group,
                                 ca_file=args.ca_file or "", cert_file=args.cert_file,
                                 key_file=args.key_file,
                                 rules_file=Path(args.rules) if args.rules else None)
        if args.retire:
            retired = service.retire()
            ledger.close()
            if not retired:
                raise BackendError(f"the broker did not accept {client_id}'s clean session")
            log.info("retired %s: its session and shared subscription are gone", client_id)
            return 0
        if admin_address:
            from backend.admin import AdminServer, load_tokens, make_app

            app = make_app(ledger, load_tokens(Path(args.admin_tokens)), service.health,
                           service.reload_rules)
            admin = AdminServer(app, *admin_address, args.admin_cert, args.admin_key).start()
    except ValueError as exc:  # the broker settings the flags make: one line
        ledger.close()
        raise BackendError(str(exc)) from None
    if threading.current_thread() is threading.main_thread():  # SIGHUP: re-read the rules
        signal.signal(signal.SIGHUP, lambda *_: service.request_reload())
    service.start()
    log.info("reference backend %s on %s:%d%s, ledger %s, %s (version %s)", client_id,
             args.host, args.port, f" (group {args.share_group})" if args.share_group else "",
             ledger.store, rules.source, rules.version)
    if admin_address:
        log.info("admin API on http%s://%s:%d", "s" if args.admin_cert else "", *admin_address)
    stop.wait()
    if admin is not None:
        admin.stop()
    service.stop()
    ledger.close()
    log.info("stopped: %d check-ins received, %d duplicates, %d over the visit limit, "
             "%d rejected; %d statements to the %s ledger", service.received,
             service.duplicates, service.limited, service.rejected, ledger.store.round_trips,
             ledger.store.name)
    return 0


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BackendError(f"--admin-listen: expected HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)
