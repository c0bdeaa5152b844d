"""The arena's web server (FastAPI): one page that shows a rater a prompt and two methods' completions, blind and in
random left/right order, and a small JSON API behind it.

    GET  /                       the page (its script and stylesheet are separate files under /static/)
    GET  /api/next?rater=NAME    the rater's open presentation, else a new one: {presentation, prompt_index, prompt,
                                 left, right, dwell_ms, voted, remaining}, or {done: true, ...} once NAME has voted on
                                 every prompt of every pair (asking again while one is open returns it: no new row)
    POST /api/vote               {presentation, rater, choice: "left" | "right" | "tie", visible_ms?}
                                 -> {recorded: true}

What is shown and what counts is harness.arena.schedule's (and its rules, harness.arena.rules): identical completions
are never shown; a vote before its pair has been on screen for `dwell_ms` (by the server's clock since it first served
the presentation, and by the page's `visible_ms` where it reports one) is refused with 425 and writes nothing; a
share of each rater's votes goes to items other raters judged. Blind: no method name leaves the server, before or
after a vote; a presentation is a random id whose methods and sides only the database knows, so the server maps the
rater's "left" to a method. Every refusal is a 4xx with one line, {"error": "..."}, and writes nothing.

Raters on other machines need the token (header `Authorization: Bearer T`, `?token=T` or the cookie that a page
opened with `?token=T` sets); loopback clients do not, unless the server requires the token from everyone
(`require_token`, for use behind a reverse proxy or tunnel on the same machine, whose requests all come from
loopback). Loopback is decided by the connection's peer address, not by any header (uvicorn's proxy-header
handling is off), so no request can claim to come from localhost. A loopback client without a token must name this
machine in its Host header (an address, localhost or the hostname): a page of another site in the rater's browser
that re-points its domain at 127.0.0.1 (DNS rebinding) cannot use the arena. A request body is limited to BODY_MAX
bytes however it arrives (harness.arena.limits: a chunked body too).
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles

from harness.arena.limits import BodyLimit
from harness.arena.schedule import Arena
from harness.arena.store import Rejected

STATIC = Path(__file__).parent / "static"
BODY_MAX = 16_384  # bytes in a request body: a vote is about 100
TOKEN_COOKIE = "arena_token"
# No inline script or style, nothing from elsewhere: a completion that smuggled markup into the page still could not
# run it (the page renders completions as text anyway).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the page's URL may carry the token
    "Cache-Control": "no-store",
}


# -- the web app ----------------------------------------------------------------------------------------------------
class VoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    presentation: str
    rater: str
    choice: Literal["left", "right", "tie"]
    visible_ms: int | None = Field(default=None, ge=0, le=10**9)  # how long the page had the pair visible


def error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(reason.split())}, status_code=status)  # one line, whatever came in


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def offered_token(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE)


def names_this_machine(host_header: str) -> bool:
    """Whether a Host header names this machine directly: an IP address, localhost, or the machine's hostname. Any
    other name reaching a loopback client is a page of another site that re-pointed its domain here (DNS rebinding)
    to use the arena with a loopback client's rights."""
    name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    name = name.strip("[]").lower()
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return name in ("localhost", socket.gethostname().lower()) or name.endswith(".localhost")


def too_large(request: Request) -> bool:
    length = request.headers.get("content-length", "0")
    return not length.isdigit() or int(length) > BODY_MAX


FIELDS = "presentation, rater, choice and optionally visible_ms"


def validation_reason(exc: RequestValidationError) -> str:
    """The first problem of a request FastAPI could not validate, as one line."""
    problems = exc.errors()
    first = problems[0] if problems else {}
    kind, location = first.get("type", ""), [str(part) for part in first.get("loc", ())]
    where, field = (location[0] if location else "request"), ".".join(location[1:])
    if kind == "json_invalid":
        reason = f"malformed JSON body: {first.get('ctx', {}).get('error', first.get('msg', ''))}"
    elif kind == "missing" and not field:
        reason = f"missing request body (expected JSON {{{FIELDS}}})"
    elif kind == "missing":
        reason = f"missing {'field' if where == 'body' else where + ' parameter'} {field!r}"
    elif kind == "model_attributes_type":
        reason = f"expected a JSON object {{{FIELDS}}} (got {repr(first.get('input'))[:80]})"
    elif kind == "extra_forbidden":
        reason = f"unexpected field {field!r} (expected {FIELDS})"
    else:
        shown = repr(first.get("input"))[:80]
        reason = f"{field or where}: {first.get('msg', 'invalid')} (got {shown})"
    return reason + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else "")


def needs_token(request: Request, token: str | None, require_token: bool = False) -> bool:
    """Whether `request` must present the arena's token: it has one, and the request comes from another machine (or
    from any client, with `require_token`)."""
    client = request.client.host if request.client else None
    return token is not None and (require_token or not is_loopback(client))


def refusal(request: Request, token: str | None, require_token: bool = False) -> JSONResponse | None:
    """The answer to a request the arena turns away before handling it, or None to handle it: without the token where
    it needs one; from this machine without one under a Host that is not this machine's; a POST that is not JSON; a
    body whose Content-Length is over BODY_MAX (a chunked one is counted as it is read: BodyLimit)."""
    if needs_token(request, token, require_token):
        offered = offered_token(request)
        if offered is None or not secrets.compare_digest(offered.encode(), str(token).encode()):
            who = "every client" if require_token else "other machines"
            return error(403, f"this arena needs its token from {who}: open the URL the server printed")
    elif not names_this_machine(request.headers.get("host", "")):
        return error(403, f"Host {request.headers.get('host', '')[:80]!r} is not an address of this machine")
    if request.method == "POST" and request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        # also what keeps other sites' pages from posting votes: a JSON request needs a CORS preflight
        return error(415, "expected Content-Type: application/json")
    if too_large(request):
        return error(413, f"request body over {BODY_MAX} bytes")
    return None


def answer_errors_in_one_line(app: FastAPI) -> None:
    """Every error the app answers, as `{"error": "<one line>"}` with its status: a malformed request, a missing page,
    a vote the arena rejects, a failure of its own."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(400 if exc.errors() and exc.errors()[0].get("type") == "json_invalid" else 422,
                     validation_reason(exc))  # fmt: skip

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        reasons = {404: f"no such page: {request.url.path}", 405: f"{request.method} is not allowed here"}
        return error(exc.status_code, reasons.get(exc.status_code, str(exc.detail)))

    @app.exception_handler(Rejected)
    async def rejected(_request: Request, exc: Rejected) -> JSONResponse:
        return error(exc.status, exc.reason)

    @app.exception_handler(Exception)
    async def failed(_request: Request, exc: Exception) -> JSONResponse:
        # a vote is acknowledged only after its commit, so a failure before the answer is not an acknowledgement
        detail = str(getattr(exc, "orig", None) or exc)  # a database error's own message, without its SQL
        return error(500, f"the arena failed: {type(exc).__name__}: {detail[:200]}")


def create_app(arena: Arena, token: str | None = None, require_token: bool = False) -> FastAPI:
    """The arena's app. `token`: what raters on other machines must present (None: nobody needs one, which is only
    safe while the server listens on loopback); `require_token`: every client must, loopback included (behind a
    proxy). `app.state.body_limit` is the body limit's middleware once the app has served a request."""
    if require_token and token is None:
        raise ValueError("require_token needs a token")
    app = FastAPI(title="harness arena", docs_url=None, redoc_url=None, openapi_url=None)
    # inside the guard (added first, so it runs after it): a request turned away there has none of its body read
    app.add_middleware(_CountedBodyLimit, limit=BODY_MAX, state=app.state)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        response = refusal(request, token, require_token)
        if response is None:
            response = await call_next(request)
            needed = needs_token(request, token, require_token)
            if needed and request.query_params.get("token") and response.status_code == 200:
                # the page was opened from the printed URL: its script's requests carry the token as a cookie
                response.set_cookie(TOKEN_COOKIE, str(token), httponly=True, samesite="strict")
        response.headers.update(SECURITY_HEADERS)
        return response

    answer_errors_in_one_line(app)

    @app.get("/")
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    @app.get("/api/next")
    def next_pair(rater: str) -> dict[str, Any]:
        return arena.next(rater)

    @app.post("/api/vote")
    def vote(request: VoteRequest) -> dict[str, Any]:
        return arena.vote(request.presentation, request.rater, request.choice, request.visible_ms)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


class _CountedBodyLimit(BodyLimit):
    """BodyLimit, reachable from the app it guards (`app.state.body_limit`): tests read what it read of a refused
    body."""

    def __init__(self, app: Any, limit: int, state: Any) -> None:
        super().__init__(app, limit)
        state.body_limit = self
