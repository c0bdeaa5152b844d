"""The arena's web server (FastAPI): one page that shows a rater a prompt and two methods' completions, blind and in
random left/right order, and a small JSON API behind it.

    GET  /                       the page (its script and stylesheet are separate files under /static/)
    GET  /api/next?rater=NAME    a presentation: {presentation, prompt_index, prompt, left, right, voted, remaining}
                                 or {done: true, ...} once NAME has voted on every prompt of every pair
    POST /api/vote               {presentation, rater, choice: "left" | "right" | "tie"} -> {recorded: true}

Blind: no method name leaves the server, before or after a vote; a presentation is a random id whose methods and
sides only the database knows, so the server maps the rater's "left" to a method. Even coverage: each presentation
is of the method pair with the fewest votes (among those this rater still has prompts for), on a random prompt the
rater has not voted on for that pair. Every refusal is a 4xx with one line, {"error": "..."}, and writes nothing.

Raters on other machines need the token (header `Authorization: Bearer T`, `?token=T` or the cookie that a page
opened with `?token=T` sets); loopback clients never do. Loopback is decided by the connection's peer address, not
by any header (uvicorn's proxy-header handling is off), so no request can claim to come from localhost. A loopback
client without a token must name this machine in its Host header (an address, localhost or the hostname): a page of
another site in the rater's browser that re-points its domain at 127.0.0.1 (DNS rebinding) cannot use the arena.
"""

from __future__ import annotations

import ipaddress
import itertools
import random
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles

from harness.arena.store import Presentation, Rejected, Store
from harness.errors import HarnessError
from harness.results import SAMPLES_FILE

STATIC = Path(__file__).parent / "static"
RATER_MAX = 64  # characters in a rater's name
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


# -- the sweep's samples ------------------------------------------------------------------------------------------
@dataclass
class Method:
    """One comparison group of the sweep (a method), with each complete seed's samples."""

    label: str  # the report's group label
    samples: dict[int, list[dict[str, Any]]]  # seed -> rows of that job's samples.jsonl


def load_methods(sweep_dir: Path) -> dict[str, Method]:
    """Every group of the sweep with at least one complete job that wrote samples, by its report label."""
    from harness.report.aggregate import load_sweep
    from harness.report.samples import job_samples, prompt_text

    methods: dict[str, Method] = {}
    for job in job_samples(load_sweep(sweep_dir).groups)[0]:
        method = methods.setdefault(job.method, Method(job.method, {}))
        # a seed that is not a number (hand-made folders) is numbered in order of appearance
        seed = int(job.seed) if job.seed.lstrip("-").isdigit() else len(method.samples)
        method.samples[seed] = [
            {"prompt": prompt_text(row.get("prompt")), "completion": prompt_text(row.get("completion"))}
            for row in job.rows
        ]
    return methods


def shared_prompts(methods: dict[str, Method]) -> dict[int, str]:
    """The prompt indices at which every job shows the same prompt (a sweep's jobs share their eval prompts; an index
    where they do not cannot be compared)."""
    jobs = [rows for method in methods.values() for rows in method.samples.values()]
    length = min(len(rows) for rows in jobs)
    return {
        index: jobs[0][index]["prompt"]
        for index in range(length)
        if all(rows[index]["prompt"] == jobs[0][index]["prompt"] for rows in jobs)
    }


# -- picking pairs and recording votes ----------------------------------------------------------------------------
class Arena:
    """The sweep's methods and prompts, the store, and the rules for what to show next and what a vote means."""

    def __init__(self, sweep_dir: Path, store: Store) -> None:
        self.methods = load_methods(sweep_dir)
        if len(self.methods) < 2:
            found = ", ".join(self.methods) or "none"
            raise HarnessError(
                f"harness-arena: {sweep_dir} has {len(self.methods)} method(s) with samples ({found}); "
                f"expected two or more complete jobs with {SAMPLES_FILE}"
            )
        self.prompts = shared_prompts(self.methods)
        if not self.prompts:
            raise HarnessError(f"harness-arena: the jobs under {sweep_dir} share no prompt in their {SAMPLES_FILE}")
        self.pairs = list(itertools.combinations(sorted(self.methods), 2))
        self.store = store
        self.random = random.SystemRandom()  # the side a method appears on must not be predictable

    def next(self, rater: str) -> dict[str, Any]:
        """A new presentation for `rater` (recorded before it is shown), or `done` when nothing is left."""
        rater = check_rater(rater)
        voted = self.store.voted(rater)
        counts = self.store.pair_counts()
        open_prompts = {pair: [index for index in self.prompts if (index, *pair) not in voted] for pair in self.pairs}
        open_prompts = {pair: indices for pair, indices in open_prompts.items() if indices}
        progress = {"voted": len(voted), "remaining": sum(map(len, open_prompts.values()))}
        if not open_prompts:
            return {"done": True, **progress}
        fewest = min(counts[pair] for pair in open_prompts)
        method_a, method_b = self.random.choice([pair for pair in open_prompts if counts[pair] == fewest])
        prompt_index = self.random.choice(open_prompts[(method_a, method_b)])
        seed_a, seed_b = self._seeds(method_a, method_b)
        presentation = Presentation(
            id=secrets.token_urlsafe(18),
            rater=rater,
            prompt_index=prompt_index,
            method_a=method_a,
            method_b=method_b,
            seed_a=seed_a,
            seed_b=seed_b,
            shown_left=self.random.choice("ab"),
            created_at=time.time(),
        )
        self.store.add_presentation(presentation)
        completion_a, completion_b = self._completions(presentation)
        left, right = (completion_a, completion_b) if presentation.shown_left == "a" else (completion_b, completion_a)
        return {
            "presentation": presentation.id,
            "prompt_index": prompt_index,
            "prompt": self.prompts[prompt_index],
            "left": left,
            "right": right,
            **progress,
        }

    def _seeds(self, method_a: str, method_b: str) -> tuple[int, int]:
        """One seed for both where they share one (their samples then come from policies trained on the same data
        order); otherwise one of each."""
        seeds_a, seeds_b = sorted(self.methods[method_a].samples), sorted(self.methods[method_b].samples)
        common = sorted(set(seeds_a) & set(seeds_b))
        if common:
            seed = self.random.choice(common)
            return seed, seed
        return self.random.choice(seeds_a), self.random.choice(seeds_b)

    def _completions(self, presentation: Presentation) -> tuple[str, str]:
        rows_a = self.methods[presentation.method_a].samples[presentation.seed_a]
        rows_b = self.methods[presentation.method_b].samples[presentation.seed_b]
        return rows_a[presentation.prompt_index]["completion"], rows_b[presentation.prompt_index]["completion"]

    def vote(self, presentation_id: str, rater: str, choice: str) -> dict[str, Any]:
        """Record `rater`'s choice on a presentation the server issued; `Rejected` with the reason otherwise."""
        rater = check_rater(rater)
        presentation = self.store.presentation(presentation_id)
        if presentation is None:
            raise Rejected(404, f"unknown presentation {presentation_id[:80]!r}: ask /api/next for one")
        if not self._still_shown(presentation):
            raise Rejected(410, f"presentation {presentation_id} shows samples this sweep no longer has")
        other = "b" if presentation.shown_left == "a" else "a"
        outcome = {"left": presentation.shown_left, "right": other, "tie": "tie"}[choice]
        completion_a, completion_b = self._completions(presentation)
        prompt = self.prompts[presentation.prompt_index]
        self.store.record_vote(presentation, rater, outcome, prompt, completion_a, completion_b)
        return {"recorded": True}

    def _still_shown(self, presentation: Presentation) -> bool:
        """Whether the sweep (as loaded now) still has what the presentation showed (the database may be older)."""
        shown = [(presentation.method_a, presentation.seed_a), (presentation.method_b, presentation.seed_b)]
        known = all(method in self.methods and seed in self.methods[method].samples for method, seed in shown)
        return known and presentation.prompt_index in self.prompts


def check_rater(rater: str) -> str:
    name = rater.strip()
    if not name or len(name) > RATER_MAX or not name.isprintable():
        raise Rejected(422, f"rater {rater[:80]!r}: expected a name of 1 to {RATER_MAX} printable characters")
    return name


# -- the web app ----------------------------------------------------------------------------------------------------
class VoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    presentation: str
    rater: str
    choice: Literal["left", "right", "tie"]


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


def validation_reason(exc: RequestValidationError) -> str:
    """The first problem of a request FastAPI could not validate, as one line."""
    problems = exc.errors()
    first = problems[0] if problems else {}
    kind, location = first.get("type", ""), [str(part) for part in first.get("loc", ())]
    where, field = (location[0] if location else "request"), ".".join(location[1:])
    if kind == "json_invalid":
        reason = f"malformed JSON body: {first.get('ctx', {}).get('error', first.get('msg', ''))}"
    elif kind == "missing" and not field:
        reason = "missing request body (expected JSON {presentation, rater, choice})"
    elif kind == "missing":
        reason = f"missing {'field' if where == 'body' else where + ' parameter'} {field!r}"
    elif kind == "model_attributes_type":
        reason = f"expected a JSON object {{presentation, rater, choice}} (got {repr(first.get('input'))[:80]})"
    elif kind == "extra_forbidden":
        reason = f"unexpected field {field!r} (expected presentation, rater, choice)"
    else:
        shown = repr(first.get("input"))[:80]
        reason = f"{field or where}: {first.get('msg', 'invalid')} (got {shown})"
    return reason + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else "")


def needs_token(request: Request, token: str | None) -> bool:
    """Whether `request` must present the arena's token: it has one, and the request comes from another machine."""
    client = request.client.host if request.client else None
    return token is not None and not is_loopback(client)


def refusal(request: Request, token: str | None) -> JSONResponse | None:
    """The answer to a request the arena turns away before handling it, or None to handle it: from another machine
    without the token; from this one under a Host that is not this machine's; a POST that is not JSON; a body over
    BODY_MAX."""
    if needs_token(request, token):
        offered = offered_token(request)
        if offered is None or not secrets.compare_digest(offered.encode(), str(token).encode()):
            return error(403, "this arena needs its token from other machines: open the URL the server printed")
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


def create_app(arena: Arena, token: str | None = None) -> FastAPI:
    """The arena's app. `token`: what raters on other machines must present (None: nobody needs one, which is only
    safe while the server listens on loopback)."""
    app = FastAPI(title="harness arena", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        response = refusal(request, token)
        if response is None:
            response = await call_next(request)
            if needs_token(request, token) and request.query_params.get("token") and response.status_code == 200:
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
        return arena.vote(request.presentation, request.rater, request.choice)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
