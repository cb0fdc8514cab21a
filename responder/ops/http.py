"""The HTTP side: aiohttp's server on the event loop, and what it serves.

* :class:`MetricsApp` (``--metrics``): ``GET /metrics`` (Prometheus) and ``GET /healthz``.
* :class:`AdminApp` (``--admin``): ``GET``/``PUT /rules``, ``GET``/``DELETE /journal``,
  optionally behind ``Authorization: Bearer TOKEN``.

Both run on the loop that drives the engine, so a handler reads and swaps engine state
without locks, between two datagram batches. The protocol is aiohttp's (``aiohttp.web``):
parsing, keep-alive, chunked bodies, limits and timeouts. What is ours is one catch-all
route per server that hands an :class:`HttpRequest` to the app: :meth:`App.check` first,
before the body is read (also before ``100 Continue``, through aiohttp's ``expect_handler``
hook), then :meth:`App.handle` with the whole body. See docs/operations.md.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol
from urllib.parse import parse_qs

from responder.core.engine import Engine
from responder.core.journal import Journal, JournalEntry
from responder.core.media import Media
from responder.ops.metrics import Exposition
from responder.ops.reload import Reloads, swap_rules
from responder.rules.loader import dump, load_rules_text
from responder.rules.model import RuleError, RuleSet
from responder.rules.oneline import glob
from responder.sip.addr import Addr, hostport

if TYPE_CHECKING:
    from aiohttp import web


# Bounds, each handed to aiohttp (its name there in brackets) unless marked "ours".
MAX_LINE = 8 * 1024         # bytes: the request line (max_line_size); longer gets 400
MAX_FIELD = 4 * 1024        # bytes: one header value (max_field_size); longer gets 400. Under
                            # Python's 4,300-digit int() limit: no Content-Length is too long
                            # to convert, even for aiohttp's pure-Python parser
MAX_HEADERS = 100           # header lines in one request (max_headers); more gets 400
MAX_BODY = 1024 * 1024      # bytes: a PUT /rules body (client_max_size); ours: a larger
                            # Content-Length gets 413 before the body is read
IDLE_TIMEOUT = 30.0         # seconds a connection may go without one whole request head, from
                            # when it opens or its last answer (keepalive_timeout); then it is
                            # closed: covers idle clients and clients trickling a request head
BODY_TIMEOUT = 10.0         # seconds, ours: to receive a body once its head is in; then 408
LINGER_TIME = 5.0           # seconds aiohttp keeps reading and dropping a body that was
                            # answered unread (401, 413 ...) before it closes (lingering_time)
SHUTDOWN_TIMEOUT = 2.0      # seconds close() waits for requests in progress (shutdown_timeout)
ADMIN_NAME = "<admin>"      # the "file name" in errors about a PUT /rules body
JOURNAL_LIMIT = 100         # entries GET /journal returns without ?limit=
JOURNAL_TEXT = 16 << 20     # bytes of message text (datagrams, responses) one GET /journal
                            # carries at most: older entries past it are left out
LIMIT_DIGITS = 9            # ?limit= takes at most this many digits (more gets 400)
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
YAML = "application/yaml; charset=utf-8"
SERVER = "sip-responder"    # the Server header of every answer of ours

Routes = Mapping[str, tuple[str, ...]]  # path -> the methods it takes
METRICS_ROUTES: Routes = {"/metrics": ("GET", "HEAD"), "/healthz": ("GET", "HEAD")}
ADMIN_ROUTES: Routes = {"/rules": ("GET", "HEAD", "PUT"), "/journal": ("GET", "HEAD", "DELETE")}
JOURNAL_QUERY = ("method", "user", "call_id", "limit")

# aiohttp logs a handler's exception, a malformed request and every request (access log):
# this logger is nobody's and drops all, so nothing reaches stderr but the server's own lines.
QUIET = logging.Logger("sip-responder.http", logging.CRITICAL + 1)
QUIET.addHandler(logging.NullHandler())
QUIET.disabled = True


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes = b""
    content_type: str = TEXT
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False  # close the connection after this response


def text(status: int, message: str, **kw: Any) -> HttpResponse:
    return HttpResponse(status, (message + "\n").encode(), TEXT, **kw)


def json_response(status: int, value: object) -> HttpResponse:
    # backslashreplace: a lone surrogate (a byte that was not UTF-8) never fails the answer
    body = (json.dumps(value, ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace")
    return HttpResponse(status, body, JSON)


def shown(value: str | None) -> str | None:
    """Text from a message as JSON can carry it: bytes that were not UTF-8 (kept as
    surrogate escapes by the parser) are written ``\\xNN``, like the text log does."""
    if value is None or value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class App(Protocol):
    def check(self, req: HttpRequest) -> HttpResponse | None:
        """Before the body is read: an answer now (401, 404, 405 ...) or None to go on."""

    def handle(self, req: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        """The answer to a whole request (body read), or an awaitable of it."""


def _allowed(req: HttpRequest, routes: Routes) -> HttpResponse | None:
    """404 for an unknown path, 405 (with Allow) for a method the path does not take."""
    methods = routes.get(req.path)
    if methods is None:
        return text(404, f"no such resource: {req.path} (known: {', '.join(routes)})")
    if req.method not in methods:
        return text(405, f"{req.path} takes {', '.join(methods)}",
                    headers=(("Allow", ", ".join(methods)),))
    return None


# --------------------------------------------------------------------------- the server
# aiohttp is imported when a server starts, not with this module: a run without --metrics
# or --admin (and --check, --codes ...) does not pay for it.


def _request(r: web.BaseRequest, body: bytes = b"") -> HttpRequest:
    url = r.rel_url
    return HttpRequest(r.method, url.raw_path,
                       parse_qs(url.raw_query_string, keep_blank_values=True),
                       {k.lower(): v for k, v in r.headers.items()}, body)


def _response(resp: HttpResponse, close: bool = False) -> web.Response:
    """aiohttp's response for ours (aiohttp leaves the body out for HEAD). ``close``: say
    ``Connection: close`` and close once it is sent."""
    from aiohttp import web

    out = web.Response(status=resp.status, body=resp.body,
                       headers={"Content-Type": resp.content_type, "Server": SERVER,
                                **dict(resp.headers)})
    if close or resp.close:
        out.force_close()
    return out


def _crash(exc: Exception) -> HttpResponse:
    return text(500, f"internal error: {type(exc).__name__}: {exc}", close=True)


class HttpServer:
    """Serves one :class:`App` on one TCP address with aiohttp, on the running loop.

    One catch-all route (any method, any path) takes every request to :meth:`App.check`,
    then :meth:`App.handle`: the app does its own routing (404, 405).
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> Addr:
        from aiohttp import web

        application = web.Application(client_max_size=MAX_BODY)
        application.router.add_route("*", "/{path:.*}", self._serve,
                                     expect_handler=self._expect)
        self._runner = web.AppRunner(
            application, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT,
            access_log=None, logger=QUIET, keepalive_timeout=IDLE_TIMEOUT,
            lingering_time=LINGER_TIME, max_line_size=MAX_LINE, max_field_size=MAX_FIELD,
            max_headers=MAX_HEADERS)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound: Addr = self._runner.addresses[0][:2]
        return bound

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def _early(self, request: web.BaseRequest) -> web.Response | None:
        """The answer before the body is read, if any (505, 401, 404, 405, 413 ...)."""
        if request.version not in ((1, 0), (1, 1)):  # aiohttp's parser lets HTTP/2.0 in
            return _response(text(505, "HTTP/1.1 only"), close=True)
        try:
            early = self.app.check(_request(request))
            length = request.content_length
            if early is None and length is not None and length > MAX_BODY:
                early = text(413, f"the body is larger than {MAX_BODY} bytes")
        except Exception as exc:  # a bug in a handler must not take the server down
            early = _crash(exc)
        # A body left unread: aiohttp drops it (LINGER_TIME), then the connection closes.
        return None if early is None else _response(early, close=request.body_exists)

    async def _expect(self, request: web.Request) -> web.Response | None:
        """aiohttp's hook for a request with ``Expect``: our checks, then ``100 Continue``
        (a custom expect handler writes it itself, as aiohttp documents)."""
        early = self._early(request)
        if early is not None:
            return early
        if request.version == (1, 1):
            if request.headers.get("Expect", "").lower() != "100-continue":
                return _response(text(417, "only Expect: 100-continue is known"), close=True)
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the interim answer is no part of the response
        return None

    async def _serve(self, request: web.Request) -> web.Response:
        from aiohttp import web

        early = self._early(request)
        if early is not None:
            return early
        try:
            async with asyncio.timeout(BODY_TIMEOUT):
                body = await request.read() if request.body_exists else b""
        except web.HTTPRequestEntityTooLarge:  # a chunked body over client_max_size
            return _response(text(413, f"the body is larger than {MAX_BODY} bytes"), True)
        except TimeoutError:
            return _response(text(408, f"the body took over {BODY_TIMEOUT:g} s"), True)
        except web.RequestPayloadError as exc:  # e.g. a body that does not decompress
            reason = " ".join(str(exc).split()).removeprefix("400, message: ")
            return _response(text(400, f"the body cannot be read: {reason}"), True)
        try:
            answer = self.app.handle(_request(request, body))
            resp = await answer if inspect.isawaitable(answer) else answer
        except Exception as exc:  # a bug in a handler must not take the server down
            resp = _crash(exc)
        return _response(resp)


# --------------------------------------------------------------------------- /metrics


class MetricsApp:
    """``GET /metrics`` (Prometheus text, or OpenMetrics when asked) and ``GET /healthz``."""

    def __init__(self, exposition: Exposition) -> None:
        self.exposition = exposition

    def check(self, req: HttpRequest) -> HttpResponse | None:
        return _allowed(req, METRICS_ROUTES)

    def handle(self, req: HttpRequest) -> HttpResponse:
        if req.path == "/healthz":
            return text(200, "ok")
        body, content_type = self.exposition.render(req.headers.get("accept"))
        return HttpResponse(200, body, content_type)


# --------------------------------------------------------------------------- admin


class AdminOptions(NamedTuple):
    """``--admin``: where, the bearer token (None: none required) and the ``--rules`` file
    that one-line rules sent with ``PUT /rules`` go in front of (None: the built-ins)."""

    addr: Addr
    token: str | None = None
    rules_file: str | None = None


@dataclass
class AdminApp:
    """The admin API on the engine's loop. ``clock``: the loop's clock (the journal's)."""

    engine: Engine
    reloads: Reloads
    options: AdminOptions
    clock: Callable[[], float]
    note: Callable[[str], None] = field(default=lambda _message: None)
    journal: Journal | None = None  # GET/DELETE /journal (None: 404)
    # One PUT /rules at a time: rule sets are installed in the order they were sent.
    _putting: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    def check(self, req: HttpRequest) -> HttpResponse | None:
        token = self.options.token
        if token is not None:
            scheme, _, given = req.headers.get("authorization", "").partition(" ")
            # Bytes compared as bytes: a header or token that is not UTF-8 (surrogate
            # escapes) is a wrong token, not an encoding error.
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                    given.strip().encode("utf-8", "surrogateescape"),
                    token.encode("utf-8", "surrogateescape")):
                return text(401, "this admin API needs Authorization: Bearer TOKEN",
                            headers=(("WWW-Authenticate", 'Bearer realm="sip-responder"'),))
        return _allowed(req, ADMIN_ROUTES)

    def handle(self, req: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if req.path == "/rules":
            return self.put_rules(req) if req.method == "PUT" else self.get_rules()
        if req.method == "DELETE":
            return self.delete_journal()
        return self.get_journal(req)

    # --- /rules -----------------------------------------------------------------
    def get_rules(self) -> HttpResponse:
        return HttpResponse(200, dump(self.engine.ruleset).encode(), YAML)

    async def put_rules(self, req: HttpRequest) -> HttpResponse:
        """Read and build the rules in a worker thread (up to MAX_BODY of text, MAX_RULES
        rules: about a second), so the loop goes on answering SIP; install them on the loop."""
        content_type = req.headers.get("content-type", "")

        def build() -> RuleSet | RuleError:
            try:
                body = req.body.decode("utf-8")
            except UnicodeDecodeError as exc:
                return RuleError(f"{ADMIN_NAME}:1:1: the body is not UTF-8: {exc}")
            try:
                return load_rules_text(body, ADMIN_NAME, self.options.rules_file,
                                       content_type)
            except RuleError as exc:
                return exc

        def built() -> RuleSet:
            if isinstance(outcome, RuleError):
                raise outcome
            return outcome

        async with self._putting:
            outcome = await asyncio.to_thread(build)
            try:
                ruleset = swap_rules(self.engine, self.reloads, built, "admin")
            except RuleError as exc:
                self.note(f"PUT /rules refused, the old rules stay in force: {exc}")
                return text(400, str(exc))
        self.note(f"rules replaced by PUT /rules (version {self.reloads.version})")
        return json_response(200, {"version": self.reloads.version, "rules": len(ruleset.rules),
                                   "warnings": list(ruleset.warnings)})

    # --- /journal ---------------------------------------------------------------
    def get_journal(self, req: HttpRequest) -> HttpResponse:
        journal = self.journal
        if journal is None:
            return text(404, "no journal (start with --admin)")
        unknown = sorted(set(req.query) - set(JOURNAL_QUERY))
        if unknown:
            return text(400, f"unknown query parameter(s) {', '.join(unknown)} "
                             f"(known: {', '.join(JOURNAL_QUERY)})")
        methods = {m for value in req.query.get("method", []) for m in value.split(",") if m}
        call_ids = set(req.query.get("call_id", []))
        try:
            users = [glob(u) for u in req.query.get("user", [])]
        except ValueError as exc:
            return text(400, f"user: {exc}")
        limit_text = req.query.get("limit", [str(JOURNAL_LIMIT)])[-1]
        digits = limit_text.lstrip("0")
        if not (limit_text.isascii() and limit_text.isdigit() and digits
                and len(digits) <= LIMIT_DIGITS):
            shown = limit_text if len(limit_text) <= 20 else limit_text[:20] + "..."
            return text(400, f"limit must be a whole number from 1 to {10**LIMIT_DIGITS - 1}, "
                             f"not {shown!r}")
        limit = int(digits)

        def wanted(e: JournalEntry) -> bool:
            r = e.request
            if r is None:
                return not (methods or call_ids or users)
            return ((not methods or r.method in methods)
                    and (not call_ids or r.call_id in call_ids)
                    and (not users or any(u.matches(r.target_user) for u in users)))

        picked: list[JournalEntry] = []
        carried = 0  # bytes of message text picked (bounded: JOURNAL_TEXT)
        cut = False
        for entry in reversed(journal):
            if len(picked) >= limit:
                break
            if wanted(entry):
                carried += 2 * len(entry.data) + sum(map(len, entry.responses))
                if carried > JOURNAL_TEXT and picked:
                    cut = True
                    break
                picked.append(entry)
        offset = time.time() - self.clock()  # the journal's clock is the loop's
        media = self.engine.media
        entries = [_entry_json(e, offset, media) for e in reversed(picked)]
        return json_response(200, {"journal_size": journal.size, "entries": entries,
                                   "truncated": cut})

    def delete_journal(self) -> HttpResponse:
        journal = self.journal
        if journal is None:
            return text(404, "no journal (start with --admin)")
        cleared = len(journal)
        journal.clear()
        return json_response(200, {"cleared": cleared})


def _entry_json(e: JournalEntry, offset: float, media: Media | None = None
                ) -> dict[str, object]:
    r = e.request
    facts = None
    if media is not None and r is not None and r.method == "INVITE" and r.to_tag is None:
        call = media.facts(r.call_id or "")
        if call is not None:  # SPEC §8.3: the call's media, on its INVITE's entry
            facts = call.facts()
            for key in ("first", "last"):
                when = facts[key]
                if isinstance(when, float):
                    facts[key] = round(when + offset, 3)
    return {
        "time": round(e.time + offset, 3),
        "source": hostport(e.source),
        "method": shown(r.method) if r else None,
        "uri": shown(r.uri) if r else None,
        "call_id": shown(r.call_id) if r else None,
        "user": shown(r.target_user) if r else None,
        "rule": e.rule,
        "statuses": e.statuses,
        "discard": e.discard,
        "media": facts,
        "transport": e.transport,
        "size": e.size,
        "message": message_text(e.data),
        "headers": [[shown(n), shown(v)] for n, v in e.headers] if r else None,
        "body": message_text(e.body) if r else None,
        "responses": [message_text(data) for data in e.responses],
    }


def message_text(data: bytes) -> str:
    """A message's bytes as JSON text: UTF-8, each byte that is not UTF-8 as ``\\xNN``
    (the way :func:`shown` writes them)."""
    return data.decode("utf-8", "backslashreplace")
