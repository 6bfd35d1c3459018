"""The ``kiosk`` command: ``run`` the daemon, ``demo`` it, or run the reference ``backend``."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from drivers import DriverError
from kiosk import KioskError, __version__
from kiosk.config import ConfigError, MembersSection, config_path, load_config
from kiosk.provisioning.overlay import in_force, load_in_force

log = logging.getLogger("kiosk")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kiosk`` console script."""
    parser, card = _parser()
    args = parser.parse_args(argv)
    del parser  # ``run`` stays in _dispatch for months: the whole CLI need not stay with it
    return _dispatch(args, card)


def _parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The command line, and the ``card`` command's own parser (it reports card usage)."""
    parser = argparse.ArgumentParser(prog="kiosk", description="Loyalty check-in kiosk")
    parser.add_argument("--version", action="version", version=f"kiosk {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the kiosk daemon")
    run.add_argument("--config", help="config file (default: $KIOSK_CONFIG or "
                                      "/etc/kiosk/kiosk.toml)")

    check = commands.add_parser("check-config", help="load a config file and report problems")
    check.add_argument("--config", help="config file (default: as for run)")

    selftest = commands.add_parser("selftest", help="show every screen and play every light "
                                                    "pattern on the configured hardware")
    selftest.add_argument("--config", help="config file (default: as for run)")
    selftest.add_argument("--screen-s", type=float, default=1.5, help="seconds per screen")
    selftest.add_argument("--pattern-s", type=float, default=2.5, help="seconds per pattern")

    demo = commands.add_parser("demo", help="a simulated kiosk, broker and backend in a terminal")
    demo.add_argument("--scans", type=int, default=0,
                      help="exit after this many customers (default: run until Ctrl-C)")
    demo.add_argument("--quiet", action="store_true", help="print no display frames")

    commands.add_parser("doctor", help="check everything the kiosk needs; a fix for each "
                                       "problem").add_argument("--config", help="as for run")
    status = commands.add_parser("status", help="online or not, outbox, last check-in, problems")
    status.add_argument("--config", help="as for run")
    status.add_argument("--cert-file", help="a certificate that may read the kiosk's retained "
                                            "status (a TLS kiosk's broker; not the kiosk's own)")
    status.add_argument("--key-file", help="its private key")

    card = commands.add_parser("card", help="make a QR member card (signed with --key), a "
                                           "printable sheet of them, or show one to a "
                                           "simulated kiosk's camera")
    card.add_argument("text", nargs="?", help="the member id (or, unsigned, any text)")
    card.add_argument("--key", help="card-issuer private key file (kiosk card-key): sign")
    card.add_argument("--sheet", help="file of member ids, one a line: a sheet to print")
    where = card.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="write the PNG here (a sheet: .pdf or .png)")
    where.add_argument("--spool", help="hold it in front of a simulated camera: its spool_dir")

    card_key = commands.add_parser("card-key", help="make a card-issuer key (private key to "
                                                    "a file; prints the public key)")
    card_key.add_argument("--out", required=True, help="private key file (created, mode 600)")

    from backend.cli import add_arguments

    add_arguments(commands.add_parser("backend", help="run the reference loyalty backend"))
    return parser, card


def _dispatch(args: argparse.Namespace, card: argparse.ArgumentParser) -> int:
    """Run the chosen command."""
    try:
        match args.command:
            case "run":
                return _run(args.config)
            case "check-config":
                return _check_config(config_path(args.config))
            case "selftest":
                from kiosk.ops.selftest import run_selftest

                _logging("WARNING")
                return run_selftest(load_in_force(config_path(args.config)).config, sys.stdout,
                                    args.screen_s, args.pattern_s)
            case "demo":
                from kiosk.sim.demo import run_demo

                _logging("WARNING")
                return run_demo(args.scans, quiet=args.quiet)
            case "doctor":
                from kiosk.ops import doctor

                return doctor.main(args.config)
            case "status":
                if bool(args.cert_file) != bool(args.key_file):
                    print("kiosk: status needs --cert-file and --key-file together",
                          file=sys.stderr)
                    return 2
                from kiosk.ops import status as kiosk_status

                reader = (args.cert_file, args.key_file) if args.cert_file else None
                return kiosk_status.main(args.config, reader=reader)
            case "card":
                return _card(args, card)
            case "card-key":
                from kiosk.ops.cards import new_issuer_key

                public = new_issuer_key(Path(args.out))
                print(f"card-issuer key written to {args.out} (keep it secret)\n"
                      f"public key for [members] card_keys: {public}")
                return 0
            case "backend":
                return _backend(args)
    except ConfigError as exc:
        print(f"kiosk: config error: {exc}", file=sys.stderr)
        return 2
    except (KioskError, DriverError, OSError) as exc:  # e.g. state_dir not writable
        print(f"kiosk: cannot start: {exc}", file=sys.stderr)
        return 1
    return 2


def _logging(level: str, member_pattern: str = MembersSection.pattern,
             key: bytes | None = None) -> None:
    from kiosk.ops import logs

    logs.setup(level, member_pattern, key=key)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def _check_config(path: Path) -> int:
    """The file's verdict first (``PATH: ok``), then every value staff set over it."""
    layers = load_in_force(path)
    print(f"{path}: ok")
    for line in layers.staff_values():
        print(line)
    if layers.problem:
        print(f"kiosk: warning: {layers.problem}", file=sys.stderr)
    return 0


def _run(path_arg: str | None) -> int:
    from kiosk.daemon.app import App
    from kiosk.daemon.build import serve
    from kiosk.ops.memory import limit_malloc_arenas
    from kiosk.store.statedir import log_key

    limit_malloc_arenas()  # before any thread starts
    base = load_config(config_path(path_arg))
    # The daemon lays staff's config over the file itself at every (re)start, a trial
    # included (overlay.startup); logging is set up once, from the config in force.
    config = in_force(base).config
    os.umask(0o027)  # kiosk.db and everything else the daemon writes: not world-readable
    faulthandler.enable()  # a watchdog abort (SIGABRT) prints where every thread was
    unsaved: list[str] = []
    _logging(config.kiosk.log_level, config.members.pattern,
             log_key(Path(config.kiosk.state_dir), on_unsaved=unsaved.append))
    for why in unsaved:  # e.g. a full disk: this run's member hashes use a key of its own
        log.warning("log key not saved (%s); member hashes in this run's log differ", why)
    stop = _stop_on_signals()

    def started(app: App) -> None:
        log.info("kiosk %s starting as %s", __version__, app.device_id)

    serve(base, stop, started)
    return 0


def _card(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from kiosk.ops import cards

    if bool(args.text) == bool(args.sheet):
        parser.error("give a member id or --sheet FILE")
    issuer = cards.load_issuer_key(Path(args.key)) if args.key else None
    if args.sheet:
        if not args.out:
            parser.error("a sheet is written with --out sheet.pdf (or .png)")
        pages = cards.write_sheet(cards.read_member_ids(Path(args.sheet)), issuer, Path(args.out))
        print(f"{args.out}: {pages} page(s)")
        return 0
    image = cards.qr_card(cards.card_code(args.text, issuer))
    if args.spool:
        folder = Path(args.spool)
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{os.getpid()}.png"  # the camera never reads a half-written file
        image.save(partial)
        partial.rename(folder / f"card-{time.time_ns()}.png")
    else:
        image.save(args.out)
    return 0


def _backend(args: argparse.Namespace) -> int:
    from backend.cli import run

    _logging("INFO")
    return run(args, _stop_on_signals())


if __name__ == "__main__":
    sys.exit(main())
