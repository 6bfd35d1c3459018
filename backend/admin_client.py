"""``loyalty-admin``: the common staff tasks over the backend's admin API, from a shell.

    loyalty-admin member LOY-ALICE01
    loyalty-admin adjust LOY-ALICE01 20 --reason "coffee machine broke"
    loyalty-admin redeem LOY-ALICE01 "Free coffee"
    loyalty-admin reload-rules

The API's address comes from ``--url`` or ``$LOYALTY_ADMIN_URL``, the token from
``--token-file`` or ``$LOYALTY_ADMIN_TOKEN`` (never from the command line, where other
users' ``ps`` would see it). Answers are printed as JSON; an error is one line and a
non-zero exit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8470"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``loyalty-admin`` console script."""
    args = _parser().parse_args(argv)
    try:
        token = _token(args.token_file)
        method, path, body = _request(args)
        print(json.dumps(call(args.url, token, method, path, body), indent=2))
    except AdminError as exc:
        print(f"loyalty-admin: {exc}", file=sys.stderr)
        return 1
    return 0


class AdminError(Exception):
    """The request failed; one line."""


def call(url: str, token: str, method: str, path: str,
         body: dict[str, Any] | None = None) -> Any:
    """One API request; the decoded answer, or :class:`AdminError` with the API's reason."""
    request = urllib.request.Request(
        url.rstrip("/") + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("detail", exc.reason)
        except ValueError:
            detail = exc.reason
        raise AdminError(f"{exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise AdminError(f"cannot reach the admin API at {url}: "
                         f"{getattr(exc, 'reason', exc)}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loyalty-admin",
                                     description="Staff tasks over the loyalty backend's API")
    parser.add_argument("--url", default=os.environ.get("LOYALTY_ADMIN_URL", DEFAULT_URL))
    parser.add_argument("--token-file", help="file holding your token (default: "
                                             "$LOYALTY_ADMIN_TOKEN)")
    tasks = parser.add_subparsers(dest="task", required=True)
    tasks.add_parser("health", help="is the backend up")
    tasks.add_parser("rules", help="the rules in force")
    tasks.add_parser("reload-rules", help="re-read the rules file (an invalid one is refused "
                                          "and the rules in force stay)")
    tasks.add_parser("counts", help="visits credited, over the limit, refused; members")
    tasks.add_parser("member", help="a member's balance and tier").add_argument("member_id")
    ledger = tasks.add_parser("ledger", help="a member's ledger, newest first")
    ledger.add_argument("member_id")
    ledger.add_argument("--limit", type=int, default=20)
    enrol = tasks.add_parser("enrol", help="enrol a member before a first visit")
    enrol.add_argument("member_id")
    enrol.add_argument("name")
    enrol.add_argument("--referred-by", help="the member who referred this one")
    refer = tasks.add_parser("refer", help="record who referred a member (before their "
                                           "first visit)")
    refer.add_argument("member_id")
    refer.add_argument("referred_by")
    adjust = tasks.add_parser("adjust", help="correct a balance (a reason is required)")
    adjust.add_argument("member_id")
    adjust.add_argument("points", type=int, help="to add; negative to take away")
    adjust.add_argument("--reason", required=True)
    redeem = tasks.add_parser("redeem", help="redeem a catalogue reward")
    redeem.add_argument("member_id")
    redeem.add_argument("reward")
    merge = tasks.add_parser("merge", help="merge a second card into a member's first")
    merge.add_argument("member_id", help="the card that goes")
    merge.add_argument("into", help="the member who keeps the points")
    merge.add_argument("--reason", required=True)
    return parser


def _request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None]:
    member = urllib.parse.quote(getattr(args, "member_id", ""), safe="")
    match args.task:
        case "health" | "rules" | "counts":
            return "GET", f"/{args.task}", None
        case "reload-rules":
            return "POST", "/rules/reload", None
        case "member":
            return "GET", f"/members/{member}", None
        case "ledger":
            return "GET", f"/members/{member}/ledger?limit={args.limit}", None
        case "enrol":
            return "POST", "/members", {"member_id": args.member_id, "display_name": args.name,
                                        "referred_by": args.referred_by}
        case "refer":
            return "POST", f"/members/{member}/referral", {"referred_by": args.referred_by}
        case "adjust":
            return "POST", f"/members/{member}/adjustments", {"points": args.points,
                                                              "reason": args.reason}
        case "redeem":
            return "POST", f"/members/{member}/redemptions", {"reward": args.reward}
        case "merge":
            return "POST", f"/members/{member}/merge", {"into": args.into,
                                                        "reason": args.reason}
    raise AdminError(f"unknown task {args.task}")


def _token(path: str | None) -> str:
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise AdminError(f"cannot read the token file {path}: {exc.strerror}") from None
    token = os.environ.get("LOYALTY_ADMIN_TOKEN", "")
    if not token:
        raise AdminError("no token: give --token-file or set LOYALTY_ADMIN_TOKEN")
    return token


if __name__ == "__main__":
    sys.exit(main())
