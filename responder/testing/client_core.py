"""The sans-I/O half of the test clients (:mod:`responder.testing.clients` holds the drivers).

:class:`Core` writes requests, files responses under their client transaction (top Via
branch + CSeq method, RFC 3261 §17.1.3) and writes the ACKs. The client flows (register
with digest, cancel, ...) are generators that yield :class:`Send` and :class:`Wait`
operations, so the blocking and the asyncio client run the very same flows; a driver only
sends messages (datagrams, or on TCP, TLS and WebSocket messages of one connection) and
waits. No client retransmits (loopback UDP loses nothing): every request in the responder's
journal was sent once. ``transport`` names what the Via (``SIP/2.0/TCP``, ``SIP/2.0/WSS``)
and the Contact (``;transport=tcp``; ``ws`` for wss too) say.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from responder.sip.addr import Addr, hostport
from responder.sip.auth import ALGORITHMS, AuthConfig, expected_response, parse_credentials
from responder.sip.message import COMPACT

DEFAULT_TIMEOUT = 2.0
Until = Literal["final", "provisional", "sent"]
Headers = Mapping[str, str] | Sequence[tuple[str, str]]
T = TypeVar("T")

_STATUS = re.compile(r"SIP/2\.0[ \t]+([1-6][0-9][0-9])[ \t]*(.*)")


def _key(name: str) -> str:
    """Header name -> canonical key: lower case, long form (``v`` -> ``via``)."""
    n = name.strip().lower()
    return COMPACT.get(n, n)


class SipTimeout(TimeoutError):
    """No (final) response in time; the message lists what did arrive."""


@dataclass(frozen=True, slots=True)
class SipResponse:
    """A parsed SIP response. ``headers`` keeps the lines in order, names as written."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""
    raw: bytes = field(default=b"", repr=False)

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case; compact forms too), or None."""
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        key = _key(name)
        return [v for n, v in self.headers if _key(n) == key]

    @property
    def final(self) -> bool:
        return self.status >= 200

    @property
    def to_tag(self) -> str | None:
        m = re.search(r";\s*tag=([^;>\s]+)", self.header("to") or "")
        return m.group(1) if m else None

    def __str__(self) -> str:
        return f"{self.status} {self.reason}"


def parse_response(data: bytes) -> SipResponse | None:
    """A forgiving response parser (folding undone, LF or CRLF); None if not a response."""
    sep = data.find(b"\r\n\r\n")
    head, body = (data[:sep], data[sep + 4:]) if sep >= 0 else data.partition(b"\n\n")[::2]
    lines = head.decode("utf-8", "surrogateescape").splitlines()
    m = _STATUS.fullmatch(lines[0].strip()) if lines else None
    if m is None:
        return None
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
        elif ":" in line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    resp = SipResponse(int(m.group(1)), m.group(2).strip(), tuple(headers), body, data)
    length = resp.header("content-length")
    if length is not None and length.isdigit():
        resp = SipResponse(resp.status, resp.reason, resp.headers, body[:int(length)], data)
    return resp


def _txn_key(resp: SipResponse) -> tuple[str | None, str]:
    via = (resp.header("via") or "").split(",")[0]
    m = re.search(r";\s*branch=([^;,\s]+)", via)
    cseq = (resp.header("cseq") or "").split()
    return (m.group(1) if m else None, cseq[-1] if cseq else "")


class Responses(list[SipResponse]):
    """The responses of one transaction, in arrival order."""

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self]

    @property
    def final(self) -> SipResponse:
        """The final response; LookupError when there is none (yet)."""
        for r in self:
            if r.final:
                return r
        raise LookupError(f"no final response among {self.statuses}")

    @property
    def provisional(self) -> list[SipResponse]:
        return [r for r in self if not r.final]


@dataclass(slots=True)
class Txn:
    method: str
    uri: str
    via: str
    branch: str
    call_id: str
    cseq: int
    from_: str
    to: str
    data: bytes = b""
    responses: Responses = field(default_factory=Responses)

    def done(self, until: Until) -> bool:
        if until == "sent":
            return True
        if until == "provisional":
            return bool(self.responses)
        return any(r.final for r in self.responses)


@dataclass(slots=True)
class Send:
    data: bytes


@dataclass(slots=True)
class Wait:
    txn: Txn
    until: Until
    timeout: float


Op = Send | Wait
Flow = Generator[Op, None, T]


class Core:
    """Sans-I/O: writes requests, files responses by transaction, writes ACKs."""

    def __init__(self, local: Addr, remote: Addr, user_agent: str, timeout: float,
                 transport: str = "udp") -> None:
        self.local, self.remote, self.timeout = local, remote, timeout
        self.transport = transport
        # RFC 7118 §5: a WebSocket client cannot be reached at an address of its own, and
        # names a random host under .invalid in its Via and Contact, as browsers do
        self.sent_by = f"{secrets.token_hex(6)}.invalid" if transport in ("ws", "wss") \
            else hostport(local)
        self._via = f"SIP/2.0/{transport.upper()} {self.sent_by}"
        # our Contact names the transport (RFC 3263 §4.1; ws for wss too, RFC 7118 §5.2)
        self._param = "" if transport == "udp" else \
            f";transport={'ws' if transport == 'wss' else transport}"
        self.user_agent = user_agent
        self.txns: dict[tuple[str | None, str], Txn] = {}
        self.strays: list[bytes] = []  # datagrams that answer no transaction of ours
        self.last_invite: Txn | None = None
        self.last: Txn | None = None

    def target(self, uri: str | None) -> str:
        """``None`` -> ``sip:HOST:PORT`` of the server; ``"1000"`` -> ``sip:1000@HOST:PORT``."""
        if uri is None:
            return f"sip:{hostport(self.remote)}"
        return uri if ":" in uri else f"sip:{uri}@{hostport(self.remote)}"

    def new(self, method: str, uri: str | None, headers: Headers | None = None,
            body: bytes | str = b"", content_type: str | None = None,
            from_user: str | None = None, to: str | None = None, call_id: str | None = None,
            cseq: int | None = None, from_tag: str | None = None) -> Txn:
        target = self.target(uri)
        me = f"sip:{from_user or 'client'}@{self.sent_by}"
        branch = "z9hG4bK" + secrets.token_hex(8)
        txn = Txn(method, target, f"{self._via};branch={branch};rport",
                  branch, call_id or f"{secrets.token_hex(8)}@{self.local[0]}",
                  cseq if cseq is not None else 1,
                  f"<{me}>;tag={from_tag or secrets.token_hex(4)}", to or f"<{target}>")
        std: list[tuple[str, str]] = [
            ("Via", txn.via), ("Max-Forwards", "70"), ("From", txn.from_), ("To", txn.to),
            ("Call-ID", txn.call_id), ("CSeq", f"{txn.cseq} {method}")]
        if method not in ("ACK", "CANCEL", "BYE"):
            std.append(("Contact", f"<{me}{self._param}>"))
        std.append(("User-Agent", self.user_agent))
        extra = list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())
        given = {_key(n) for n, _ in extra}
        lines = [(n, v) for n, v in std if _key(n) not in given] + extra
        payload = body.encode() if isinstance(body, str) else body
        if payload and "content-type" not in given:
            lines.append(("Content-Type", content_type or "application/sdp"))
        txn.data = _encode(f"{method} {target} SIP/2.0", lines, payload)
        self.txns[(branch, method)] = txn
        self.last = txn
        return txn

    def derive(self, txn: Txn, method: str, to: str | None = None, uri: str | None = None,
               new_branch: bool = False) -> Txn:
        """CANCEL (RFC 3261 §9.1) or ACK (§17.1.1.3; for a 2xx, §13.2.2.4 a new branch and
        the remote target as Request-URI): same Call-ID, From and CSeq number."""
        branch = "z9hG4bK" + secrets.token_hex(8) if new_branch else txn.branch
        via = f"{self._via};branch={branch};rport"
        out = Txn(method, uri or txn.uri, via, branch, txn.call_id, txn.cseq, txn.from_,
                  to or txn.to)
        out.data = _encode(f"{method} {out.uri} SIP/2.0", [
            ("Via", via), ("Max-Forwards", "70"), ("From", txn.from_), ("To", out.to),
            ("Call-ID", txn.call_id), ("CSeq", f"{txn.cseq} {method}"),
            ("User-Agent", self.user_agent)], b"")
        if method != "ACK":
            self.txns[(branch, method)] = out
        return out

    def feed(self, data: bytes) -> list[bytes]:
        """One message in; the ACKs to send out (for a final response to an INVITE)."""
        resp = parse_response(data)
        txn = self.txns.get(_txn_key(resp)) if resp is not None else None
        if resp is None or txn is None:
            self.strays.append(data)
            return []
        txn.responses.append(resp)
        if txn.method != "INVITE" or not resp.final or not txn.via:
            return []  # (no via: a request sent raw, whose ACK is the test's business)
        to = resp.header("to") or txn.to
        if resp.status >= 300:  # RFC 3261 §17.1.1.3: part of the INVITE transaction
            return [self.derive(txn, "ACK", to).data]
        # RFC 3261 §13.2.2.4: the ACK to a 2xx is a new transaction, to the remote target
        contact = re.search(r"<([^>]*)>", resp.header("contact") or "")
        return [self.derive(txn, "ACK", to, contact.group(1) if contact else None, True).data]

    def timeout_error(self, op: Wait) -> SipTimeout:
        txn = op.txn
        got = ", ".join(str(r) for r in txn.responses) or "nothing"
        what = "response" if op.until == "provisional" else "final response"
        strays = f"; {len(self.strays)} other message(s) arrived" if self.strays else ""
        return SipTimeout(f"no {what} to {txn.method} {txn.uri} (Call-ID {txn.call_id}) from "
                          f"{hostport(self.remote)} within {op.timeout:g}s; it received: "
                          f"{got}{strays}")


def _encode(start: str, lines: Iterable[tuple[str, str]], body: bytes) -> bytes:
    head = "".join(f"{n}: {v}\r\n" for n, v in lines if _key(n) != "content-length")
    return f"{start}\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


def _digest(creds_for: SipResponse, txn: Txn, user: str, password: str) -> str | None:
    """The Authorization value answering the challenge in ``creds_for`` (RFC 2617 / 7616)."""
    name = "WWW-Authenticate" if creds_for.status == 401 else "Proxy-Authenticate"
    chal = parse_credentials(creds_for.header(name) or "")
    if chal is None or "nonce" not in chal:
        return None
    algorithm = chal.get("algorithm", "MD5").upper()
    if algorithm not in ALGORITHMS:
        return None
    qop = "auth" in [q.strip() for q in chal.get("qop", "").split(",")]
    cfg = AuthConfig(realm=chal.get("realm", ""), algorithm=algorithm, qop=qop)
    creds = {"username": user, "uri": txn.uri, "nonce": chal["nonce"],
             "nc": "00000001", "cnonce": secrets.token_hex(8)}
    response = expected_response(cfg, txn.method, password, creds)
    value = (f'Digest username="{user}", realm="{cfg.realm}", nonce="{chal["nonce"]}", '
             f'uri="{txn.uri}", response="{response}", algorithm={algorithm}')
    if qop:
        value += f', qop=auth, nc=00000001, cnonce="{creds["cnonce"]}"'
    if "opaque" in chal:
        value += f', opaque="{chal["opaque"]}"'
    return value


# --------------------------------------------------------------------------- flows


def _exchange(txn: Txn, until: Until, timeout: float) -> Flow[Responses]:
    yield Send(txn.data)
    if until != "sent":
        yield Wait(txn, until, timeout)
    return txn.responses


def register_flow(core: Core, uri: str | None, user: str, password: str | None,
                  expires: int, headers: Headers | None, timeout: float) -> Flow[SipResponse]:
    target = core.target(uri)
    host = target.partition("@")[2] or target.partition(":")[2]
    to = f"<sip:{user}@{host}>"
    extra = [("Expires", str(expires)), *_items(headers)]
    txn = core.new("REGISTER", target, extra, from_user=user, to=to)
    final = (yield from _exchange(txn, "final", timeout)).final
    if final.status not in (401, 407) or password is None:
        return final
    value = _digest(final, txn, user, password)
    if value is None:
        return final
    name = "Authorization" if final.status == 401 else "Proxy-Authorization"
    again = core.new("REGISTER", target, [*extra, (name, value)], from_user=user, to=to,
                     call_id=txn.call_id, cseq=txn.cseq + 1,
                     from_tag=txn.from_.rpartition("tag=")[2])
    return (yield from _exchange(again, "final", timeout)).final


def cancel_flow(core: Core, timeout: float) -> Flow[tuple[SipResponse, SipResponse]]:
    invite = core.last_invite
    if invite is None:
        raise RuntimeError("cancel(): no INVITE was sent by this client")
    cancel = core.derive(invite, "CANCEL")
    ok = (yield from _exchange(cancel, "final", timeout)).final
    yield Wait(invite, "final", timeout)
    return ok, invite.responses.final


def _items(headers: Headers | None) -> list[tuple[str, str]]:
    return list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())


def _raw_txn(core: Core, data: bytes) -> Txn | None:
    """Track a hand-written request by its top Via branch and CSeq method, when it has them."""
    text = data.decode("utf-8", "surrogateescape")
    branch = re.search(r"(?im)^(?:via|v)[ \t]*:[^\r\n,]*;[ \t]*branch=([^;,\s]+)", text)
    cseq = re.search(r"(?im)^cseq[ \t]*:[ \t]*(\d+)[ \t]+(\S+)", text)
    if branch is None or cseq is None:
        return None
    first = text.split(None, 2)
    txn = Txn(cseq.group(2), first[1] if len(first) > 1 else "", "", branch.group(1), "",
              int(cseq.group(1)), "", "", data)
    core.txns[(txn.branch, txn.method)] = txn
    return txn


def request_flow(core: Core, method: str, uri: str | None, headers: Headers | None,
                 body: bytes | str, content_type: str | None, from_user: str | None,
                 until: Until, timeout: float | None) -> Flow[Responses]:
    txn = core.new(method, uri, headers, body, content_type, from_user)
    if method == "INVITE":
        core.last_invite = txn
    return _exchange(txn, "sent" if method == "ACK" else until, timeout or core.timeout)


def wait_flow(core: Core, timeout: float | None) -> Flow[Responses]:
    txn = core.last_invite or core.last
    if txn is None:
        raise RuntimeError("wait_final(): nothing was sent by this client")
    yield Wait(txn, "final", timeout or core.timeout)
    return txn.responses


def raw_flow(core: Core, data: bytes, wait: bool, timeout: float | None) -> Flow[Responses]:
    txn = _raw_txn(core, data) if wait else None
    yield Send(data)
    if txn is None:
        return Responses()
    yield Wait(txn, "final", timeout or core.timeout)
    return txn.responses
