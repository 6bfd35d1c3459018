"""``kioskctl``: staff manage kiosks over MQTT — list, configure, roll out, command, audit.

Exit codes scripts can rely on:

0  done (every kiosk answered ok / applied)
1  could not do it here (broker unreachable, bad staff config, key missing)
2  usage error (argparse)
3  a kiosk refused (an error result, a refused or rolled-back config, a wrong pairing code)
4  a kiosk did not answer in time
5  no kiosk of that name (or at that site) has been heard of on the broker
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import time
import tomllib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from kiosk import KioskError, __version__
from kiosk.config import ConfigError
from kiosk.mqtt import protocol
from kiosk.staff import asking, audit, fleet, release, view
from kiosk.staff.client import StaffClient
from kiosk.staff.fleet import UnknownKiosk
from kiosk.staff.keyring import Keyring
from kiosk.staff.rollout import ABORTED, NOT_SENT, RULE, Record, Rollouts, Rule
from kiosk.staff.settings import StaffSettings, load_settings, settings_path
from kiosk.staff.summary import Site, summarise

OK, FAILED, USAGE, REFUSED, NO_ANSWER, UNKNOWN = 0, 1, 2, 3, 4, 5


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``kioskctl`` console script."""
    args = _parser().parse_args(_keys_may_start_with_a_dash(sys.argv[1:] if argv is None
                                                            else argv))
    try:
        settings = _settings(args)
        return int(args.run(args, settings))
    except UnknownKiosk as exc:
        print(f"kioskctl: {exc}", file=sys.stderr)
        return UNKNOWN
    except (KioskError, OSError) as exc:  # ConfigError, broker or key problems
        print(f"kioskctl: {exc}", file=sys.stderr)
        return FAILED


def _keys_may_start_with_a_dash(argv: list[str]) -> list[str]:
    """``keys add NAME KEY``: a base64url public key starts with ``-`` one time in 64, which
    argparse would take for an option; everything after the name is positional then."""
    if "add" not in argv or "keys" not in argv[:argv.index("add")]:
        return argv
    at = argv.index("add") + 2  # after the name
    rest = argv[at:]
    keys = [word for word in rest if not word.startswith("-") or word not in ("-h", "--help",
                                                                              "--json")]
    options = [word for word in rest if word not in keys]
    return [*argv[:at], *options, "--", *keys] if keys else argv


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kioskctl", description=__doc__.split("\n")[0],
                                     epilog=__doc__.split("\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"kioskctl {__version__}")
    parser.add_argument("--config", help="staff config file (default: $KIOSKCTL_CONFIG or "
                                         "~/.config/kioskctl.toml)")
    parser.add_argument("--host", help="broker host (overrides the config file)")
    parser.add_argument("--port", type=int, help="broker port")
    parser.add_argument("--prefix", help="topic prefix")
    parser.add_argument("--ca-file", help="CA certificate: TLS on")
    parser.add_argument("--cert-file", help="staff client certificate")
    parser.add_argument("--key-file", help="staff client certificate's key")
    parser.add_argument("--keys", help="signing key folder (overrides keys.dir)")
    parser.add_argument("--key", help="signing key name (overrides keys.sign_with)")
    anywhere = argparse.ArgumentParser(add_help=False)  # options verbs take too
    for where, default in ((parser, False), (anywhere, argparse.SUPPRESS)):
        where.add_argument("--json", action="store_true", default=default,
                           help="machine-readable output (anywhere on the line)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for kiosks to answer (default 30)")
    verbs = _Verbs(parser.add_subparsers(dest="verb", required=True), anywhere)

    verb = verbs.add_parser("list", help="every kiosk the broker knows, as a table")
    verb.set_defaults(run=_list)
    verb = verbs.add_parser("summary", help="the fleet at a glance, one line per site")
    verb.set_defaults(run=_summary)
    verb = verbs.add_parser("show", help="everything retained about one kiosk")
    verb.add_argument("device")
    verb.set_defaults(run=_show)
    verb = verbs.add_parser("audit", help="who ordered what, and what each kiosk said "
                                          "(from the fleet service)")
    verb.add_argument("--kiosk", metavar="DEVICE", help="only orders that reached this kiosk")
    verb.add_argument("--since", metavar="WHEN", help="30m, 2h, 7d ago, or a date "
                                                      "(2026-12-01T10:00)")
    verb.set_defaults(run=_audit)

    config = _Verbs(verbs.add_parser("config", help="desired / reported config").add_subparsers(
        dest="config_verb", required=True), anywhere)
    verb = config.add_parser("get", help="the config in force on a kiosk (secrets removed)")
    verb.add_argument("device")
    verb.set_defaults(run=_config_get)
    verb = config.add_parser("apply", help="push a TOML file of sections/keys to change")
    verb.add_argument("file")
    _add_targets(verb)
    verb.set_defaults(run=_config_apply)

    rollout = _Verbs(verbs.add_parser("rollout", help="staged rollouts of a config or a command")
                     .add_subparsers(dest="rollout_verb", required=True), anywhere)
    verb = rollout.add_parser("start", help="roll a TOML change, a command or a software "
                                            "update out in phases")
    verb.add_argument("file", nargs="?", help="the TOML change (not with --command/--update)")
    _add_targets(verb)
    order = verb.add_mutually_exclusive_group()
    order.add_argument("--command", metavar="NAME", help="roll out this signed command instead")
    order.add_argument("--update", metavar="MANIFEST", help="roll out the software release "
                                                            "this signed manifest.json names")
    verb.add_argument("--args", default="{}", metavar="JSON",
                      help="the command's arguments as a JSON object (default {})")
    verb.add_argument("--downgrade", action="store_true",
                      help="with --update: install it even where a newer release runs")
    verb.add_argument("--canary", type=int, default=1, help="kiosks in the first phase "
                                                            "(default 1)")
    verb.add_argument("--phases", default="10,50,100",
                      help="then these percentages of the kiosks (default 10,50,100)")
    verb.add_argument("--max-bad", type=float, default=10.0, metavar="PCT",
                      help="stop when more than PCT %% refused, rolled back or did not "
                           "answer (default 10)")
    verb.add_argument("--min-seen", type=int, default=1, metavar="N",
                      help="... of at least N kiosks (default 1)")
    verb.add_argument("--answer-s", type=float, default=60.0, metavar="T",
                      help="a kiosk silent this long after its order did not answer "
                           "(default 60)")
    verb.add_argument("--id", default="", help="name the rollout (default: made up)")
    verb.set_defaults(run=_rollout_start)
    verb = rollout.add_parser("status", help="every rollout, or one kiosk by kiosk")
    verb.add_argument("id", nargs="?")
    verb.set_defaults(run=_rollout_status)
    for event, text in (("pause", "stop after the phase under way"),
                        ("resume", "go on with the next phase"),
                        ("abort", "stop for good"),
                        ("revert", "send the values from before to every kiosk it reached")):
        verb = rollout.add_parser(event, help=text)
        verb.add_argument("id")
        verb.set_defaults(run=_rollout_steer, event=event)

    verb = verbs.add_parser("cmd", help="run a command and wait for its result")
    _add_targets(verb, single=True)
    verb.add_argument("name", help="identify, restart, display-test, ping, status, "
                                   "flush-cache or set-brightness")
    verb.add_argument("args", nargs="*", help="KEY=VALUE arguments, e.g. level=80")
    verb.set_defaults(run=_cmd)

    verb = verbs.add_parser("watch", help="live health reports (Ctrl-C ends)")
    verb.add_argument("device", nargs="?", help="only this kiosk")
    verb.add_argument("--count", type=int, default=0, help="stop after this many reports")
    verb.set_defaults(run=_watch)

    keys = _Verbs(verbs.add_parser("keys", help="staff signing keys").add_subparsers(
        dest="keys_verb", required=True), anywhere)
    verb = keys.add_parser("gen", help="make a new signing key")
    verb.add_argument("name")
    verb.set_defaults(run=_keys_gen)
    verb = keys.add_parser("add", help="record a colleague's public key")
    verb.add_argument("name")
    verb.add_argument("public_key")
    verb.set_defaults(run=_keys_add)
    verb = keys.add_parser("list", help="the keys in the key folder")
    verb.set_defaults(run=_keys_list)

    _release_verbs(_Verbs(verbs.add_parser(
        "release", help="software releases: key, build, sign, publish (docs/updates.md)"
    ).add_subparsers(dest="release_verb", required=True), anywhere))

    verb = verbs.add_parser("enroll", help="approve a kiosk showing a pairing code")
    verb.add_argument("device")
    verb.add_argument("code", help="the pairing code on the kiosk's screen")
    verb.add_argument("--apply", metavar="FILE", help="a first config to send with it (TOML)")
    verb.set_defaults(run=_enroll)
    return parser


def _release_verbs(release: _Verbs) -> None:
    verb = release.add_parser("key", help="make a release key (keep it apart from command keys)")
    verb.add_argument("path", help="where to write the private key (its .pub beside it)")
    verb.set_defaults(run=_release_key)
    verb = release.add_parser("build", help="the kiosk's wheel and its dependencies' wheels")
    verb.add_argument("--checkout", default=".", help="the source tree (default .)")
    verb.add_argument("--out", required=True, help="an empty folder for the release")
    verb.add_argument("--machine", action="append", dest="machines",
                      help="target machine, repeatable (default: aarch64 and armv7l)")
    verb.add_argument("--min-previous", default="", help="oldest version it may replace "
                                                         "(default: its own version)")
    verb.add_argument("--no-deps", action="store_true",
                      help="the kiosk's wheel alone: tries the build and the signature; "
                           "kiosks cannot install it (they install offline from the release)")
    verb.add_argument("--no-build-isolation", action="store_true",
                      help="build with this environment's setuptools (offline)")
    verb.set_defaults(run=_release_build)
    verb = release.add_parser("sign", help="sign a built release's manifest")
    verb.add_argument("folder")
    verb.add_argument("--key", required=True, help="the release key file")
    verb.add_argument("--url", required=True, help="where kiosks will fetch the files from")
    verb.set_defaults(run=_release_sign)
    verb = release.add_parser("publish", help="copy a signed release to the served folder")
    verb.add_argument("folder")
    verb.add_argument("--to", required=True, help="the web server's folder of releases")
    verb.set_defaults(run=_release_publish)


class _Verbs:
    """Subcommands that all take the ``anywhere`` options, so they may also come after the
    verb (``kioskctl list --json``); their default is SUPPRESS, so they never undo the same
    option given before the verb."""

    def __init__(self, actions: Any, anywhere: argparse.ArgumentParser) -> None:
        self._actions = actions
        self._anywhere = anywhere

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self._actions.add_parser(
            name, parents=[self._anywhere], **kwargs)
        return parser


def _add_targets(verb: argparse.ArgumentParser, single: bool = False) -> None:
    verb.add_argument("devices", nargs="?" if single else "*", metavar="DEVICE",
                      help="kiosk id" if single else "kiosk ids")
    group = verb.add_mutually_exclusive_group()
    group.add_argument("--site", help="every kiosk of this site")
    group.add_argument("--all", action="store_true", help="every kiosk")


def _settings(args: argparse.Namespace) -> StaffSettings:
    settings = load_settings(settings_path(args.config))
    changes = {name: value for name, value in (
        ("host", args.host), ("port", args.port), ("topic_prefix", args.prefix),
        ("ca_file", args.ca_file), ("cert_file", args.cert_file), ("key_file", args.key_file),
    ) if value is not None}
    if args.ca_file:
        changes["tls"] = True
    keys = {name: value for name, value in (("dir", args.keys), ("sign_with", args.key))
            if value is not None}
    try:
        return replace(settings, mqtt=replace(settings.mqtt, **changes),
                       keys=replace(settings.keys, **keys))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


@contextmanager
def _connected(settings: StaffSettings, view: list[str] | None = None,
               settle: bool = True) -> Iterator[StaffClient]:
    """A staff connection hearing ``view`` (default: everything staff follow), once the
    retained messages have arrived (``settle``)."""
    client = StaffClient(settings.mqtt, view).connect()
    try:
        if settle and not client.settle():
            print("kioskctl: retained messages still arriving after 60 s: what follows may "
                  "miss part of the fleet", file=sys.stderr)
        yield client
    finally:
        client.close()


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else text)


def _progress(total: int) -> fleet.Progress:
    """A one-line progress bar on stderr for fleet operations: only on a terminal (never
    into a pipe or a log), and not for one kiosk."""
    terminal = sys.stderr.isatty()

    def show(done: int, all_: int) -> None:
        if terminal and all_ > 1:
            bar = "#" * (20 * done // all_)
            print(f"\r[{bar:<20}] {done}/{all_}", end="\n" if done == all_ else "",
                  file=sys.stderr, flush=True)
    show(0, total)
    return show


# --- verbs ----------------------------------------------------------------------


def _from_service(settings: StaffSettings, name: str, arguments: dict[str, Any]) -> Any:
    """The fleet service's answer to a question, or None when no service answers (then the
    caller reads the kiosks' retained messages itself). Says on stderr which it was."""
    with _connected(settings, view=[], settle=False) as client:
        try:
            answer = asking.ask(client, name, arguments)
        except asking.NoService as exc:
            print(f"kioskctl: {exc}: reading the kiosks' retained messages", file=sys.stderr)
            return None
    print("kioskctl: from the fleet service", file=sys.stderr)
    return answer


def _survey(settings: StaffSettings) -> list[fleet.Kiosk]:
    """Every kiosk, from the fleet service, else from the small retained messages a list or
    summary needs (not the reported configs): saying what it has not heard from."""
    answer = _from_service(settings, "list", {})
    if answer is not None:
        return [fleet.Kiosk(**kiosk) for kiosk in answer["kiosks"]]
    kiosks = _survey_retained(settings)
    unheard = [k.device_id for k in kiosks if not k.state and k.config_version is None]
    if unheard:
        print(f"kioskctl: {len(unheard)} kiosk(s) have said nothing but their status: "
              f"{view.printable(', '.join(unheard), 200)}", file=sys.stderr)
    return kiosks


def _list(args: argparse.Namespace, settings: StaffSettings) -> int:
    kiosks = _survey(settings)
    rows = [["DEVICE", "SITE", "STATUS", "STATE", "FIRMWARE", "CONFIG", "OUTBOX", "AWAIT",
             "SEEN"]]
    for kiosk in kiosks:
        rows.append([kiosk.device_id, kiosk.site,
                     "enroll?" if kiosk.waiting_to_enroll else kiosk.status, kiosk.state or "-",
                     view.release_text(kiosk.release) if kiosk.release else kiosk.firmware or "-",
                     _dash(kiosk.config_version),
                     _dash(kiosk.outbox_depth), _awaiting(kiosk), view.ago(kiosk.last_seen)])
    _emit(args, [asdict(kiosk) for kiosk in kiosks], view.table(rows))
    return OK


def _summary(args: argparse.Namespace, settings: StaffSettings) -> int:
    answer = _from_service(settings, "summary", {})
    sites = ([Site(**site) for site in answer["sites"]] if answer is not None
             else summarise(_survey_retained(settings)))
    rows = [["SITE", "KIOSKS", "ONLINE", "OFFLINE", "DEGRADED", "UNHEARD", "DRIFT",
             "OLDEST WAIT", "FIRMWARE"]]
    for site in sites:
        rows.append([site.site, str(site.kiosks), str(site.online), str(site.offline),
                     str(site.degraded), str(site.unheard), str(site.drift),
                     view.span(site.oldest_waiting_s) if site.oldest_waiting_s else "-",
                     " ".join(f"{name}:{count}" for name, count in sorted(site.firmware.items()))])
    _emit(args, [asdict(site) for site in sites], view.table(rows))
    return OK


def _survey_retained(settings: StaffSettings) -> list[fleet.Kiosk]:
    with _connected(settings, protocol.summary_view(settings.mqtt.topic_prefix)) as client:
        return fleet.survey(client)


@contextmanager
def _rollouts(client: StaffClient, settings: StaffSettings, sign: bool) -> Iterator[Rollouts]:
    """Rollouts over ``client``, signing with the staff key when ``sign`` (its count kept)."""
    keyring = Keyring(Path(settings.keys.dir))
    issuer, key_name = keyring.issuer(settings.keys.sign_with) if sign else (None, "")
    by = key_name or settings.keys.sign_with or "staff"
    try:
        yield Rollouts(client, issuer, by, _progress(0), asking.ServiceResults(client))
    finally:
        if issuer is not None:
            keyring.save_seq(key_name, issuer)


def _rollout_start(args: argparse.Namespace, settings: StaffSettings) -> int:
    table, command = _rollout_order(args)
    selector: dict[str, Any] = ({"all": True} if args.all else {"site": args.site} if args.site
                                else {"devices": args.devices})
    if not (args.all or args.site or args.devices):
        raise UnknownKiosk("name kiosks, --site SITE or --all")
    try:
        percents = [float(p) for p in args.phases.split(",") if p.strip()]
    except ValueError:
        raise ConfigError(f"--phases {args.phases!r}: expected percentages, e.g. 10,50,100") \
            from None
    rule = Rule(args.max_bad, args.min_seen, args.answer_s)
    with _connected(settings) as client, _rollouts(client, settings, True) as rollouts:
        record = rollouts.start(table, selector, args.canary, percents, rule, args.id, command)
        return _rollout_report(args, rollouts, record)


def _rollout_order(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The config change, or the command (``{"name", "args"}``), a rollout sends; an update
    is the command ``update`` with the release's signed manifest as its argument."""
    if not (args.command or args.update):
        if not args.file:
            raise ConfigError("rollout start: name a TOML change, --command NAME or "
                              "--update MANIFEST")
        return _toml(args.file), None
    if args.file:  # with an order, the first positional word is a kiosk, not a file
        args.devices = [args.file, *args.devices]
    if args.update:  # checked for shape here; its signature is each kiosk's to check
        manifest = release.load_signed(Path(args.update)).to_json()
        return {}, {"name": "update", "args": {"manifest": manifest,
                                               "downgrade": args.downgrade}}
    try:
        arguments = json.loads(args.args)
    except ValueError as exc:
        raise ConfigError(f"--args: not JSON: {exc}") from None
    if not isinstance(arguments, dict):
        raise ConfigError("--args: expected a JSON object, e.g. '{\"level\": 80}'")
    return {}, {"name": args.command, "args": arguments}


def _rollout_status(args: argparse.Namespace, settings: StaffSettings) -> int:
    with _connected(settings) as client, _rollouts(client, settings, False) as rollouts:
        if args.id:
            return _rollout_report(args, rollouts, rollouts.get(args.id))
        records = rollouts.records()
    rows = [["ROLLOUT", "STATE", "PHASE", "BY", "STARTED", "WHY"]]
    rows += [[r.id, r.state, str(r.phase), r.by, view.ago(r.created_at), r.reason or "-"]
             for r in records]
    _emit(args, [asdict(r) for r in records], view.table(rows))
    return OK


def _rollout_steer(args: argparse.Namespace, settings: StaffSettings) -> int:
    sign = args.event in ("resume", "revert")
    with _connected(settings) as client, _rollouts(client, settings, sign) as rollouts:
        return _rollout_report(args, rollouts, rollouts.steer(args.id, args.event))


def _rollout_report(args: argparse.Namespace, rollouts: Rollouts, record: Record) -> int:
    """The rollout's state and every kiosk's outcome; exit 3 when its rule stopped it."""
    outcomes = rollouts.outcomes(record)
    counts = Counter(outcome for _site, outcome, _reason in outcomes.values())
    rows = [["DEVICE", "SITE", "OUTCOME", "REASON"]]
    rows += [[device, site, outcome, reason or ""]
             for device, (site, outcome, reason) in sorted(outcomes.items())
             if outcome != NOT_SENT]
    head = [f"rollout {record.id}: {record.state}, {record.phase} phase(s) done"
            f"{'; ' + record.reason if record.reason else ''}",
            ", ".join(f"{count} {name}" for name, count in sorted(counts.items()))]
    _emit(args, {**asdict(record), "outcomes": {d: {"site": s, "outcome": o, "reason": r}
                                                 for d, (s, o, r) in outcomes.items()}},
          "\n".join([*(view.printable(line, 400) for line in head), view.table(rows)]))
    return REFUSED if record.state == ABORTED and record.reason.startswith(RULE) else OK


def _show(args: argparse.Namespace, settings: StaffSettings) -> int:
    answer = _from_service(settings, "show", {"device": args.device})
    if answer is not None:
        shown = answer["kiosk"]
        if shown is None:
            raise UnknownKiosk(f"no kiosk heard of named {args.device}")
    else:
        if not protocol.TOPIC_WORD.match(args.device):
            raise UnknownKiosk(f"no kiosk heard of named {view.printable(args.device)}")
        with _connected(settings, protocol.one_kiosk_view(settings.mqtt.topic_prefix,
                                                          args.device)) as client:
            (kiosk,) = fleet.choose(fleet.survey(client), [args.device])
            shown = fleet.details(client, kiosk)
    _emit(args, shown, view.summary(shown))
    return OK


def _audit(args: argparse.Namespace, settings: StaffSettings) -> int:
    since = _since(args.since) if args.since else 0.0
    question = {"device": args.kiosk or "", "since": since}
    answer = _from_service(settings, "audit", question)
    if answer is not None:
        orders = answer["orders"]
    else:
        print("kioskctl: without the fleet service only the desired config each kiosk keeps "
              "retained is known (no commands, no earlier orders)", file=sys.stderr)
        keys = Keyring(Path(settings.keys.dir)).list()
        with _connected(settings) as client:
            orders = audit.retained_orders(client.latest, settings.mqtt.topic_prefix, keys,
                                           args.kiosk or "", since)
    rows = [["WHEN", "BY", "ORDER", "TARGET", "OUTCOME"]]
    for order in orders:
        said = Counter(o["outcome"] for o in order["outcomes"])
        rows.append([time.strftime("%m-%d %H:%M:%S", time.localtime(order["heard_at"])),
                     order["signer"] or order["key_id"] if order["verified"] else "UNVERIFIED",
                     f"{order['kind']} {order['name']}".strip(), order["target"] or "-",
                     (order["outcomes"][-1]["outcome"] + ": " + order["outcomes"][-1]["reason"]
                      if args.kiosk and order["outcomes"] else
                      ", ".join(f"{n} {word}" for word, n in sorted(said.items())) or "-")])
    _emit(args, orders, view.table(rows))
    return OK


def _since(text: str) -> float:
    """``--since``: ``90s``, ``30m``, ``2h``, ``7d`` ago, or a date ``2026-12-01[T10:00]``."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
            return time.time() - float(text[:-1]) * units[text[-1]]
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ConfigError(f"--since {text!r}: expected e.g. 30m, 2h, 7d or 2026-12-01T10:00") \
            from None


def _config_get(args: argparse.Namespace, settings: StaffSettings) -> int:
    with _connected(settings) as client:
        (kiosk,) = fleet.choose(fleet.survey(client), [args.device])
        reported = fleet.details(client, kiosk).get(protocol.Leaf.CONFIG_REPORTED)
    if not isinstance(reported, dict):
        print(f"kioskctl: {args.device} has not reported a config yet", file=sys.stderr)
        return NO_ANSWER
    _emit(args, reported, json.dumps(reported, indent=2, sort_keys=True))
    return OK


def _config_apply(args: argparse.Namespace, settings: StaffSettings) -> int:
    table = _toml(args.file)
    keyring = Keyring(Path(settings.keys.dir))
    issuer, key_name = keyring.issuer(settings.keys.sign_with)
    with _connected(settings) as client:
        kiosks = fleet.choose(fleet.survey(client), args.devices, args.site, args.all)
        if not kiosks:
            raise UnknownKiosk("name kiosks, --site SITE or --all")
        try:
            outcomes = fleet.apply_config(client, issuer, kiosks, table, args.timeout,
                                          _progress(len(kiosks)))
        finally:
            keyring.save_seq(key_name, issuer)
    rows = [["DEVICE", "VERSION", "OUTCOME", "REASON"]]
    rows += [[device, str(o["version"]), o["outcome"], o["reason"]]
             for device, o in sorted(outcomes.items())]
    _emit(args, outcomes, view.table(rows))
    return _worst(o["outcome"] for o in outcomes.values())


def _cmd(args: argparse.Namespace, settings: StaffSettings) -> int:
    if bool(args.devices) == bool(args.site or args.all):
        print("kioskctl: name one DEVICE, or --site SITE, or --all", file=sys.stderr)
        return USAGE
    keyring = Keyring(Path(settings.keys.dir))
    issuer, key_name = keyring.issuer(settings.keys.sign_with)
    with _connected(settings) as client:
        known = fleet.survey(client)
        if args.devices:
            kiosks, group = fleet.choose(known, [args.devices]), None
        else:
            chosen = fleet.choose(known, [], args.site, args.all)
            kiosks = [kiosk for kiosk in chosen if kiosk.status == "online"]
            group = args.site or protocol.ALL
        try:
            answers = fleet.run_command(client, issuer, kiosks, group, args.name,
                                        _arguments(args.args), args.timeout,
                                        _progress(len(kiosks)))
        finally:
            keyring.save_seq(key_name, issuer)
    rows = [["DEVICE", "STATUS", "ERROR / DATA"]]
    for device, body in sorted(answers.items()):
        if body is None:
            rows.append([device, "no answer", ""])
        else:
            rows.append([device, body["status"],
                         body["error"] or json.dumps(body["data"], sort_keys=True)])
    _emit(args, answers, view.table(rows))
    return _worst("no answer" if body is None else "applied" if body["status"] == "ok"
                  else "refused" for body in answers.values())


def _watch(args: argparse.Namespace, settings: StaffSettings) -> int:
    reports: queue.Queue[tuple[str, bytes]] = queue.Queue()
    seen = 0
    with _connected(settings) as client:  # retained (old) reports have arrived by now
        client.on_message = lambda topic, payload: (
            reports.put((topic, payload)) if protocol.leaf_of(topic) == protocol.Leaf.HEALTH
            else None)
        try:
            while not args.count or seen < args.count:
                try:
                    topic, payload = reports.get(timeout=1.0)
                except queue.Empty:
                    continue
                where = protocol.kiosk_of(topic)
                if where is None or (args.device and where[1] != args.device):
                    continue
                seen += 1
                report = fleet.health_of(payload)
                _emit(args, {"site": where[0], "device_id": where[1], **report},
                      f"{time.strftime('%H:%M:%S')} {view.printable(where[1], 20):<20} "
                      + " ".join(f"{key}={view.printable(report.get(key, '-'), 20)}"
                                 for key in fleet.WATCHED))
                sys.stdout.flush()
        except KeyboardInterrupt:
            pass
    return OK


def _keys_gen(args: argparse.Namespace, settings: StaffSettings) -> int:
    info = Keyring(Path(settings.keys.dir)).generate(args.name)
    _emit(args, asdict(info), f"key {info.name}: id {info.key_id}\npublic key (for a kiosk's "
          f"staff.trusted_keys):\n{info.public}")
    return OK


def _keys_add(args: argparse.Namespace, settings: StaffSettings) -> int:
    info = Keyring(Path(settings.keys.dir)).add(args.name, args.public_key)
    _emit(args, asdict(info), f"key {info.name}: id {info.key_id}")
    return OK


def _keys_list(args: argparse.Namespace, settings: StaffSettings) -> int:
    keys = Keyring(Path(settings.keys.dir)).list()
    rows = [["NAME", "KEY ID", "PRIVATE", "PUBLIC KEY"]]
    rows += [[k.name, k.key_id, "yes" if k.private else "no", k.public] for k in keys]
    _emit(args, [asdict(key) for key in keys], view.table(rows))
    return OK


def _release_key(args: argparse.Namespace, _settings: StaffSettings) -> int:
    public = release.new_key(Path(args.path))
    _emit(args, {"public": public}, f"release key {args.path}\npublic key (for a kiosk's "
          f"update.release_keys, in its local config file):\n{public}")
    return OK


def _release_build(args: argparse.Namespace, _settings: StaffSettings) -> int:
    built = release.build(Path(args.checkout), Path(args.out),
                          args.machines or ["aarch64", "armv7l"],
                          min_previous=args.min_previous, with_deps=not args.no_deps,
                          isolated=not args.no_build_isolation)
    _emit(args, built.body(), f"release {built.version} for {', '.join(built.machines)}: "
          f"{len(built.files)} files, {sum(f.size for f in built.files) // 1024} KiB in "
          f"{args.out}\nnext: kioskctl release sign {args.out} --key KEY --url URL")
    return OK


def _release_sign(args: argparse.Namespace, _settings: StaffSettings) -> int:
    signed = release.sign_release(Path(args.folder), Path(args.key), args.url)
    _emit(args, signed.to_json(), f"release {signed.release.version} signed by "
          f"{signed.kid} for {signed.release.url}")
    return OK


def _release_publish(args: argparse.Namespace, _settings: StaffSettings) -> int:
    target = release.publish(Path(args.folder), Path(args.to))
    _emit(args, {"published": str(target)}, f"published {target}")
    return OK


def _enroll(args: argparse.Namespace, settings: StaffSettings) -> int:
    from kiosk.staff.enroll import enroll

    keyring = Keyring(Path(settings.keys.dir))
    issuer, key_name = keyring.issuer(settings.keys.sign_with)
    table = _toml(args.apply) if args.apply else {}
    with _connected(settings) as client:
        (kiosk,) = fleet.choose(fleet.survey(client), [args.device])
        try:
            body = enroll(client, issuer, kiosk, args.code, table,
                          [key.public for key in keyring.list()], args.timeout)
        finally:
            keyring.save_seq(key_name, issuer)
    if body is None:
        print(f"kioskctl: {args.device} did not answer", file=sys.stderr)
        return NO_ANSWER
    _emit(args, body, "enrolled" if body["status"] == "ok"
          else f"refused: {view.printable(body['error'])}")
    return OK if body["status"] == "ok" else REFUSED


# --- helpers ----------------------------------------------------------------------


def _worst(outcomes: Any) -> int:
    found = set(outcomes)
    if "refused" in found:
        return REFUSED
    if "no answer" in found:
        return NO_ANSWER
    return OK


def _arguments(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; a VALUE that reads as JSON (80, 1.5, true) is that, else text."""
    arguments: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"argument {pair!r}: expected KEY=VALUE")
        try:
            arguments[key] = json.loads(value)
        except ValueError:
            arguments[key] = value
    return arguments


def _toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def _awaiting(kiosk: fleet.Kiosk) -> str:
    """Check-ins the backend has not acknowledged, and the oldest one's age: ``3 (5m)``."""
    if not kiosk.awaiting_backend:
        return _dash(kiosk.awaiting_backend)
    return f"{kiosk.awaiting_backend} ({view.span(kiosk.awaiting_oldest_s or 0.0)})"



if __name__ == "__main__":
    sys.exit(main())
