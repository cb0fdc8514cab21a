"""The HTTP side: a minimal HTTP/1.1 server on the event loop, and what it serves.

* :class:`MetricsApp` (``--metrics``): ``GET /metrics`` (Prometheus) and ``GET /healthz``.
* :class:`AdminApp` (``--admin``): ``GET``/``PUT /rules``, ``GET``/``DELETE /journal``,
  optionally behind ``Authorization: Bearer TOKEN``.

Both run on the loop that drives the engine, so a handler reads and swaps engine state
without locks, between two datagram batches. The server is deliberately small: persistent
HTTP/1.1 connections, ``Content-Length`` bodies only (no chunked uploads), ``Expect:
100-continue`` honoured after the checks that need no body, and every input bounded
(:data:`MAX_HEAD`, :data:`MAX_BODY`, :data:`READ_TIMEOUT`, :data:`IDLE_TIMEOUT`,
:data:`MAX_CONNECTIONS`). See docs/operations.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, NamedTuple, Protocol
from urllib.parse import parse_qs, urlsplit

from .engine import Engine, JournalEntry
from .metrics import Exposition, ServerStats
from .rules.loader import build_ruleset, dump, load_text
from .rules.model import RuleError, RuleSet
from .rules.oneline import glob, parse_rule

Addr = tuple[str, int]

MAX_HEAD = 16 * 1024        # bytes: request line and headers
MAX_HEADERS = 100           # header lines in one request
MAX_BODY = 1024 * 1024      # bytes: a PUT /rules body
READ_TIMEOUT = 10.0         # seconds to receive one whole request once it has begun
IDLE_TIMEOUT = 60.0         # seconds a kept-alive connection may wait for its next request
MAX_CONNECTIONS = 32        # open connections per server; more get 503 and are closed
ADMIN_NAME = "<admin>"      # the "file name" in errors about a PUT /rules body
JOURNAL_LIMIT = 100         # entries GET /journal returns without ?limit=
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
YAML = "application/yaml; charset=utf-8"

Routes = Mapping[str, tuple[str, ...]]  # path -> the methods it takes
METRICS_ROUTES: Routes = {"/metrics": ("GET", "HEAD"), "/healthz": ("GET", "HEAD")}
ADMIN_ROUTES: Routes = {"/rules": ("GET", "HEAD", "PUT"), "/journal": ("GET", "HEAD", "DELETE")}
JOURNAL_QUERY = ("method", "user", "call_id", "limit")


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
    return HttpResponse(status, (json.dumps(value, ensure_ascii=False) + "\n").encode(), JSON)


class App(Protocol):
    def check(self, req: HttpRequest) -> HttpResponse | None:
        """Before the body is read: an answer now (401, 404, 405 ...) or None to go on."""

    def handle(self, req: HttpRequest) -> HttpResponse:
        """The answer to a whole request (body read)."""


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


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class HttpServer:
    """Serves one :class:`App` on one TCP address, on the running loop."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> Addr:
        self._server = await asyncio.start_server(self._connection, host, port,
                                                  limit=MAX_HEAD)
        sock = self._server.sockets[0]
        bound: Addr = sock.getsockname()[:2]
        return bound

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if len(self._tasks) > MAX_CONNECTIONS:
                self._write(writer, "GET", text(503, "too many connections", close=True))
                await writer.drain()
                return
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection is to be closed."""
        try:
            first = b"\r\n"
            for _ in range(4):  # RFC 9112 §2.2: ignore a few empty lines before a request
                first = await asyncio.wait_for(reader.readuntil(b"\r\n"), IDLE_TIMEOUT)
                if first != b"\r\n":
                    break
        except asyncio.IncompleteReadError:
            return False  # the client closed between requests
        except asyncio.LimitOverrunError:
            self._write(writer, "GET", text(431, "request line too long", close=True))
            return False
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                req, keep = await self._read(first, reader, writer)
        except _BadRequest as exc:
            self._write(writer, "GET", text(exc.status, str(exc), close=True))
            await writer.drain()
            return False
        if req is None:
            return keep  # answered early (see _read)
        try:
            resp = self.app.handle(req)
        except Exception as exc:  # a bug in a handler must not take the server down
            resp = text(500, f"internal error: {type(exc).__name__}: {exc}", close=True)
        self._write(writer, req.method, resp, keep)
        await writer.drain()
        return keep and not resp.close

    async def _read(self, first: bytes, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> tuple[HttpRequest | None, bool]:
        lines = [first.decode("latin-1").rstrip("\r\n")]
        size = len(first)
        while True:
            try:
                raw = await reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError:
                raise _BadRequest(431, "request headers too large") from None
            size += len(raw)
            if size > MAX_HEAD or len(lines) > MAX_HEADERS:
                raise _BadRequest(431, "request headers too large")
            if raw == b"\r\n":
                break
            lines.append(raw.decode("latin-1").rstrip("\r\n"))
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[0] or not parts[1].startswith("/"):
            raise _BadRequest(400, "bad request line")
        method, target, version = parts
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            raise _BadRequest(505, "HTTP/1.1 only")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise _BadRequest(400, f"bad header line {line[:40]!r}")
            headers[name.lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        keep = version == "HTTP/1.1" and "close" not in connection
        if "transfer-encoding" in headers:
            raise _BadRequest(411, "send the body with a Content-Length")
        length_text = headers.get("content-length", "0")
        if not length_text.isdigit():
            raise _BadRequest(400, "bad Content-Length")
        length = int(length_text)
        url = urlsplit(target)
        req = HttpRequest(method, url.path, parse_qs(url.query, keep_blank_values=True), headers)
        early = self.app.check(req)
        if early is None and length > MAX_BODY:
            early = text(413, f"the body is larger than {MAX_BODY} bytes")
        if early is not None:
            # The body was not read: the connection cannot carry another request.
            closing = HttpResponse(early.status, early.body, early.content_type,
                                   early.headers, close=early.close or length > 0)
            self._write(writer, method, closing, keep)
            await writer.drain()
            return None, keep and not closing.close
        if length:
            if headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = await reader.readexactly(length)
            req = HttpRequest(method, req.path, req.query, headers, body)
        return req, keep

    @staticmethod
    def _write(writer: asyncio.StreamWriter, method: str, resp: HttpResponse,
               keep: bool = False) -> None:
        try:
            phrase = HTTPStatus(resp.status).phrase
        except ValueError:
            phrase = "Unknown"
        close = resp.close or not keep
        head = [f"HTTP/1.1 {resp.status} {phrase}", f"Content-Type: {resp.content_type}",
                f"Content-Length: {len(resp.body)}", "Server: sip-responder",
                *(f"{k}: {v}" for k, v in resp.headers),
                *(["Connection: close"] if close else [])]
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        writer.write(data if method == "HEAD" else data + resp.body)


def format_http(addr: Addr) -> str:
    host, port = addr
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


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


def looks_like_oneline(body: str, content_type: str) -> bool:
    """A ``PUT /rules`` body is one-line rules (not YAML) when its Content-Type is
    ``text/plain`` and every line that is not blank or a ``#`` comment holds ``->``
    (at least one such line). A YAML rules file always has a key line without ``->``."""
    if content_type.split(";")[0].strip().lower() != "text/plain":
        return False
    lines = [s for line in body.splitlines() if (s := line.strip()) and not s.startswith("#")]
    return bool(lines) and all("->" in line for line in lines)


def parse_oneline_body(body: str, rules_file: str | None) -> RuleSet:
    """One-line rules, one per line, in front of ``rules_file`` (or the built-in rules):
    what ``sip-responder [--rules FILE] --rule LINE1 --rule LINE2 ...`` would load."""
    specs = []
    for number, line in enumerate(body.splitlines(), 1):
        spec = line.strip()
        if not spec or spec.startswith("#"):
            continue
        try:
            parse_rule(spec)
        except RuleError as exc:
            message = str(exc).removeprefix("--rule ")
            column = len(line) - len(line.lstrip()) + 1
            raise RuleError(f"{ADMIN_NAME}:{number}:{column}: {message}") from None
        specs.append(spec)
    return build_ruleset(rules_file, specs)


@dataclass
class AdminApp:
    """The admin API on the engine's loop. ``clock``: the loop's clock (the journal's)."""

    engine: Engine
    stats: ServerStats
    options: AdminOptions
    clock: Callable[[], float]
    note: Callable[[str], None] = field(default=lambda _message: None)

    def check(self, req: HttpRequest) -> HttpResponse | None:
        token = self.options.token
        if token is not None:
            scheme, _, given = req.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                    given.strip().encode(), token.encode()):
                return text(401, "this admin API needs Authorization: Bearer TOKEN",
                            headers=(("WWW-Authenticate", 'Bearer realm="sip-responder"'),))
        return _allowed(req, ADMIN_ROUTES)

    def handle(self, req: HttpRequest) -> HttpResponse:
        if req.path == "/rules":
            return self.put_rules(req) if req.method == "PUT" else self.get_rules()
        if req.method == "DELETE":
            return self.delete_journal()
        return self.get_journal(req)

    # --- /rules -----------------------------------------------------------------
    def get_rules(self) -> HttpResponse:
        return HttpResponse(200, dump(self.engine.ruleset).encode(), YAML)

    def put_rules(self, req: HttpRequest) -> HttpResponse:
        try:
            body = req.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return text(400, f"{ADMIN_NAME}:1:1: the body is not UTF-8: {exc}")
        content_type = req.headers.get("content-type", "")
        if looks_like_oneline(body, content_type):
            def build() -> RuleSet:
                return parse_oneline_body(body, self.options.rules_file)
        else:
            def build() -> RuleSet:
                return load_text(body, ADMIN_NAME)
        try:
            ruleset = self.stats.swap(self.engine, build, "admin")
        except RuleError as exc:
            self.note(f"PUT /rules refused, the old rules stay in force: {exc}")
            return text(400, str(exc))
        self.note(f"rules replaced by PUT /rules (version {self.stats.version})")
        return json_response(200, {"version": self.stats.version, "rules": len(ruleset.rules),
                                   "warnings": list(ruleset.warnings)})

    # --- /journal ---------------------------------------------------------------
    def get_journal(self, req: HttpRequest) -> HttpResponse:
        journal = self.engine.journal
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
        if not limit_text.isdigit() or int(limit_text) < 1:
            return text(400, f"limit must be a whole number of at least 1, not {limit_text!r}")
        limit = int(limit_text)

        def wanted(e: JournalEntry) -> bool:
            r = e.request
            if r is None:
                return not (methods or call_ids or users)
            return ((not methods or r.method in methods)
                    and (not call_ids or r.call_id in call_ids)
                    and (not users or any(u.matches(r.target_user) for u in users)))

        picked: list[JournalEntry] = []
        for entry in reversed(journal):
            if len(picked) >= limit:
                break
            if wanted(entry):
                picked.append(entry)
        offset = time.time() - self.clock()  # the journal's clock is the loop's
        entries = [_entry_json(e, offset) for e in reversed(picked)]
        return json_response(200, {"journal_size": journal.maxlen, "entries": entries})

    def delete_journal(self) -> HttpResponse:
        journal = self.engine.journal
        if journal is None:
            return text(404, "no journal (start with --admin)")
        cleared = len(journal)
        journal.clear()
        return json_response(200, {"cleared": cleared})


def _entry_json(e: JournalEntry, offset: float) -> dict[str, object]:
    host, port = e.source
    r = e.request
    return {
        "time": round(e.time + offset, 3),
        "source": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "method": r.method if r else None,
        "uri": r.uri if r else None,
        "call_id": r.call_id if r else None,
        "user": r.target_user if r else None,
        "rule": e.rule,
        "statuses": e.statuses,
        "discard": e.discard,
    }
