"""Staff's way in: an HTTP API to look members up and correct them (FastAPI, OpenAPI).

Every request but ``/health`` carries a bearer token; each token belongs to one staff
member (a tokens file, ``name:token`` a line), and every change it makes is a ledger
entry naming them. The API serves plain HTTP on the address given — loopback by
default; across a network, give it a certificate (``--admin-cert``/``--admin-key``) or
put it behind a TLS-terminating proxy (docs/backend.md). It is served by uvicorn on a
thread of the backend process, beside the MQTT side, over the same ledger.
"""

import hmac
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from backend.errors import BackendError
from backend.ledger import Ledger, LedgerError, NotAMember
from backend.store import SCHEMA_VERSION

MIN_TOKEN = 16


class TokensError(BackendError, ValueError):
    """The tokens file cannot be used; one line."""


def load_tokens(path: Path) -> dict[str, str]:
    """``token -> staff name`` from a file of ``name:token`` lines (``#`` comments)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise TokensError(f"{path}: cannot read the tokens file ({exc.strerror})") from None
    tokens: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, token = line.partition(":")
        if not name.strip() or len(token.strip()) < MIN_TOKEN:
            raise TokensError(f"{path}:{number}: expected 'name:token' with a token of at "
                              f"least {MIN_TOKEN} characters")
        tokens[token.strip()] = name.strip()
    if not tokens:
        raise TokensError(f"{path}: no tokens: nobody could use the admin API")
    return tokens


class NewMember(BaseModel):
    member_id: str = Field(min_length=1, max_length=128)
    display_name: str = Field(min_length=1, max_length=40)
    referred_by: str | None = Field(default=None, min_length=1, max_length=128,
                                    description="the member who referred this one (earns "
                                                "the referral bonus at their first visit)")


class Referral(BaseModel):
    referred_by: str = Field(min_length=1, max_length=128,
                             description="the member who referred this one")


class Adjustment(BaseModel):
    points: int = Field(description="points to add (negative: to take away)")
    reason: str = Field(min_length=1, max_length=200, description="why; kept in the ledger")


class Redemption(BaseModel):
    reward: str = Field(min_length=1, max_length=32, description="a reward of the catalogue")


class Merge(BaseModel):
    into: str = Field(min_length=1, max_length=128, description="the member who keeps")
    reason: str = Field(min_length=1, max_length=200)


def make_app(ledger: Ledger, tokens: dict[str, str],
             health: Callable[[], dict[str, Any]] = dict,
             reload: Callable[[], str] | None = None) -> FastAPI:
    """The API over ``ledger``; ``health`` adds what the running service knows, ``reload``
    re-reads the rules file (returning "" or why the rules in force stay)."""
    app = FastAPI(title="Loyalty backend admin API", version=str(SCHEMA_VERSION),
                  description="Look members up and correct them. Every change is a ledger "
                              "entry naming the staff member whose token made it.")
    bearer = HTTPBearer(auto_error=False)

    def staff(credentials: Annotated[HTTPAuthorizationCredentials | None,
                                     Depends(bearer)]) -> str:
        if credentials is not None:
            for token, name in tokens.items():
                if hmac.compare_digest(token.encode(), credentials.credentials.encode()):
                    return name
        raise HTTPException(401, "a valid bearer token is needed",
                            headers={"WWW-Authenticate": "Bearer"})

    Staff = Annotated[str, Depends(staff)]

    def answer(work: Callable[[], Any]) -> Any:
        try:
            return work()
        except NotAMember as exc:
            raise HTTPException(404, str(exc)) from None
        except LedgerError as exc:
            raise HTTPException(409, str(exc)) from None

    @app.get("/health", summary="Is the backend up (no token needed)")
    def get_health() -> dict[str, Any]:
        return {"status": "ok", "store": ledger.store.name, "schema": SCHEMA_VERSION,
                **health()}

    @app.get("/rules", summary="The programme's rules in force")
    def get_rules(_who: Staff) -> dict[str, Any]:
        return ledger.rules.describe()

    @app.post("/rules/reload", summary="Re-read the rules file; an invalid one is refused "
                                       "(422) and the rules in force stay")
    def reload_rules(_who: Staff) -> dict[str, Any]:
        error = reload() if reload is not None else "this backend cannot reload its rules"
        if error:
            raise HTTPException(422, error)
        return ledger.rules.describe()

    @app.get("/counts", summary="Visits credited and over the limit, refusals, members")
    def get_counts(_who: Staff) -> dict[str, int]:
        return ledger.counts()

    @app.get("/members/{member_id}", summary="A member's balance, tier and progress")
    def get_member(member_id: str, _who: Staff) -> dict[str, Any]:
        found = ledger.member(member_id)
        if found is None:
            raise HTTPException(404, f"{member_id} is not a member")
        return found

    @app.post("/members", status_code=201, summary="Enrol a member before a first visit")
    def create_member(body: NewMember, who: Staff) -> dict[str, Any]:
        return answer(lambda: ledger.create_member(body.member_id, body.display_name, who,
                                                   body.referred_by))

    @app.post("/members/{member_id}/referral",
              summary="Record who referred a member (before their first visit)")
    def refer(member_id: str, body: Referral, who: Staff) -> dict[str, Any]:
        return answer(lambda: ledger.refer(member_id, body.referred_by, who))

    @app.get("/members/{member_id}/ledger", summary="A member's ledger, newest first")
    def get_ledger(member_id: str, _who: Staff,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
        return ledger.entries(member_id, limit)

    @app.post("/members/{member_id}/adjustments", summary="Correct a balance, with a reason")
    def adjust(member_id: str, body: Adjustment, who: Staff) -> dict[str, Any]:
        return answer(lambda: ledger.adjust(member_id, body.points, body.reason, who))

    @app.post("/members/{member_id}/redemptions", summary="Redeem a catalogue reward")
    def redeem(member_id: str, body: Redemption, who: Staff) -> dict[str, Any]:
        return answer(lambda: ledger.redeem(member_id, body.reward, who))

    @app.post("/members/{member_id}/merge", summary="Merge this member's card into another")
    def merge(member_id: str, body: Merge, who: Staff) -> dict[str, Any]:
        return answer(lambda: ledger.merge(member_id, body.into, body.reason, who))

    return app


class AdminServer:
    """The API served by uvicorn on a thread of its own; :meth:`stop` ends it."""

    def __init__(self, app: FastAPI, host: str, port: int, cert_file: str = "",
                 key_file: str = "") -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                                access_log=False, ssl_certfile=cert_file or None,
                                ssl_keyfile=key_file or None)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="backend-admin",
                                        daemon=True)

    @property
    def started(self) -> bool:
        return bool(self._server.started)

    def start(self) -> "AdminServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
