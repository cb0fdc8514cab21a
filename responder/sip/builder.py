"""Request + step -> response bytes (RFC 3261 §8.2.6, §18.2.2; RFC 3581).

Header values the request carries are copied as written; the only edit is the
received/rport parameters of the top Via. Headers a code requires come from
:mod:`responder.sip.codes` and get the defaults below unless the step gives them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from responder.sip import codes
from responder.sip.addr import Addr as Addr
from responder.sip.auth import AuthConfig, challenge, new_nonce
from responder.sip.message import Request
from responder.sip.numbers import MAX_UINT32, number
from responder.sip.seeded import Seeded
from responder.sip.uri import name_addr, param, split_commas

# The methods we can serve: Allow (405/501, 200 to OPTIONS) lists them, minus those the
# rules refuse (Identity.allow).
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, PRACK, UPDATE, MESSAGE, " \
        "NOTIFY, SUBSCRIBE, PUBLISH, REFER"
ACCEPT = "application/sdp"
DEFAULT_EXPIRES = 3600   # RFC 3261 §10.2.1.1: a REGISTER without expiry asks for 3600 s
MIN_EXPIRES = "3600"     # 423 default
MIN_SE = "90"            # 422 default: RFC 4028 §4's minimum
# Dialog-creating methods: their 101-299 responses carry Contact and copy Record-Route
# (RFC 3261 §12.1.1, RFC 6665 §4.1.3, RFC 3515).
DIALOG_METHODS = frozenset({"INVITE", "SUBSCRIBE", "REFER"})


@dataclass(frozen=True, slots=True)
class Identity:
    """What the responder says about itself: the Server header and the option tags it
    supports (Supported in 200 to OPTIONS; Require tags it accepts)."""

    server: str = "sip-responder"
    supported: tuple[str, ...] = ()
    # Allow in 405, 501 and the 200 to OPTIONS: ALLOW minus the methods the rules refuse
    # (filled by RuleSet: responder/rules/allow.py).
    allow: str = ALLOW


class Context(NamedTuple):
    """What a response depends on besides the request and the step."""

    identity: Identity
    seeded: Seeded
    now: float
    source: Addr
    local: Addr | None = None
    auth: AuthConfig | None = None
    transport: str = "udp"    # what the request came over (udp, tcp, tls, ws, wss)
    conn: int | None = None   # ... and its stream connection (None: a datagram)


_NO_AUTH = AuthConfig()


def _challenge(req: Request, ctx: Context) -> str:
    """A rule that answers 401/407 without ``auth: digest`` still sends a valid challenge."""
    cfg = ctx.auth or _NO_AUTH
    return challenge(cfg, new_nonce(cfg, ctx.seeded, ctx.now, ctx.source[0]))


def _unsupported(req: Request, ctx: Context) -> str:
    return ", ".join(t for t in req.require if t not in ctx.identity.supported)


# Defaults for the headers a code requires (codes.Code.required), keyed by lower-case name.
_DEFAULTS: dict[str, Callable[[Request, Context], str]] = {
    "www-authenticate": _challenge,
    "proxy-authenticate": _challenge,
    "allow": lambda req, ctx: ctx.identity.allow,
    "unsupported": _unsupported,
    "require": lambda req, ctx: ctx.identity.supported[0] if ctx.identity.supported
    else "100rel",
    "min-expires": lambda req, ctx: MIN_EXPIRES,
    "min-se": lambda req, ctx: MIN_SE,
    "accept": lambda req, ctx: ACCEPT,
    "allow-events": lambda req, ctx: "presence",
    "security-server": lambda req, ctx: "digest",
}


@lru_cache(maxsize=4096)
def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None


def same_host(sent_by_host: str, source_host: str) -> bool:
    """Does the Via sent-by name the packet's source address? (RFC 3261 §18.2.1)

    Compared as addresses where both parse, else as text: RFC 5118 hosts such as
    ``[2001:db8:::192.0.2.1]`` do not parse and simply differ.
    """
    if sent_by_host == source_host:
        return True
    host = sent_by_host[1:-1] if sent_by_host.startswith("[") else sent_by_host
    a = _ip(host)
    return a is not None and a == _ip(source_host)


def top_via(req: Request, source: Addr) -> str:
    """The top Via value with received= and rport= as RFC 3261 §18.2.1 / RFC 3581 §4 say."""
    via = req.top_via
    need_received = via.rport or not same_host(via.host, source[0])
    if not need_received:
        return via.value
    value = via.value
    ip = source[0].partition("%")[0]
    if not via.received:  # the common cases, without taking the parameters apart
        if not via.rport:
            return f"{value};received={ip}"
        if via.rport_empty and value.count(";rport") == 1:
            if value.endswith(";rport"):
                return f"{value}={source[1]};received={ip}"
            i = value.find(";rport;")
            if i >= 0:
                return f"{value[:i]};rport={source[1]}{value[i + 6:]};received={ip}"
    sent, _, params = value.partition(";")
    out = [sent.rstrip(" \t")]
    if params:
        for p in params.split(";"):
            key, _eq, value = p.partition("=")
            key_l = key.strip(" \t").lower()
            if key_l == "received":
                continue  # replaced by ours below
            if key_l == "rport" and not value.strip(" \t"):
                out.append(f"rport={source[1]}")
            else:
                out.append(p)
    out.append("received=" + ip)
    return ";".join(out)


def _register_contacts(req: Request) -> list[str]:
    """200 to REGISTER: the request's bindings with their expiry (RFC 3261 §10.3 step 8)."""
    # RFC 3261 §20.19: 0 to 2**32-1 seconds, in ASCII digits; "Malformed values SHOULD be
    # treated as equivalent to 3600" (so are values beyond 2**32-1: ``Expires: ²`` too).
    expires_header = req.header("expires")
    default = DEFAULT_EXPIRES
    if expires_header is not None:
        n = number(expires_header, MAX_UINT32)
        default = n if n is not None else DEFAULT_EXPIRES
    out = []
    for value in req.header_values("contact"):
        if value.strip(" \t") == "*":
            continue
        for c in split_commas(value):
            parsed = name_addr(c)
            if parsed is None:
                continue
            given = param(parsed[1], "expires")
            if given is not None:
                if number(given, MAX_UINT32) != 0:  # 0 (or 00): removed; else as written
                    out.append(c.strip(" \t"))
            elif default:
                out.append(c.strip(" \t") + f";expires={default}")
    return out


def session_timer(req: Request) -> tuple[int, str | None] | None:
    """The INVITE's ``Session-Expires`` (RFC 4028 §4): (delta-seconds, refresher or None);
    None when it has none or it cannot be read (then it is ignored)."""
    value = req.header("session-expires")
    if value is None:
        return None
    delta, _, params = value.partition(";")
    seconds = number(delta.strip(" \t"), MAX_UINT32)
    if seconds is None:
        return None
    refresher = param(";" + params, "refresher") if params else None
    return seconds, (refresher.lower() if refresher in ("uac", "uas", "UAC", "UAS") else None)


def supports(req: Request, tag: str) -> bool:
    """Whether the request's Supported (or Require) names option tag ``tag``."""
    return tag in req.require or any(
        tag == t.strip(" \t") for v in req.header_values("supported") for t in v.split(","))


def _timer_lines(req: Request) -> list[str]:
    """A 2xx to an INVITE that asked for a session timer (RFC 4028 §9): the interval as
    asked, the refresher as asked (``uac`` when none), and ``Require: timer`` when the caller
    supports timers."""
    timer = session_timer(req)
    if timer is None:
        return []
    seconds, refresher = timer
    lines = [f"Session-Expires: {seconds};refresher={refresher or 'uac'}"]
    if supports(req, "timer"):
        lines.append("Require: timer")
    return lines


def our_contact(req: Request, ctx: Context) -> str:
    """Our own Contact for a dialog-creating response (RFC 3261 §12.1.1)."""
    host, port = ctx.local if ctx.local else (req.uri_host or "127.0.0.1", 5060)
    if host in ("0.0.0.0", "::") and req.uri_host:
        host = req.uri_host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    if ctx.transport == "udp":
        return f"<sip:{host}:{port}>"
    # SPEC §9: a stream's in-dialog requests (ACK, BYE) must come back over a stream, so
    # the Contact names it (RFC 3261 §19.1.1; RFC 7118 §5.2: ws for wss too).
    return f"<sip:{host}:{port};transport={'ws' if ctx.transport == 'wss' else ctx.transport}>"


def build(
    req: Request,
    ctx: Context,
    code: int,
    reason: str,
    tag: str | None,
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> bytes:
    """One response to ``req``. ``tag`` is added to To when the request's To has none."""
    rest, _ = tail(req, ctx, code, headers, body, content_type)
    return head(req, ctx, code, reason, tag).encode("utf-8", "surrogateescape") + rest


def head(req: Request, ctx: Context, code: int, reason: str, tag: str | None) -> str:
    """Status line to CSeq (and Timestamp, Record-Route): what is copied from the request."""
    via = top_via(req, ctx.source)
    if req.via_rest is not None:
        via += req.via_rest
    vias = req.vias
    more = "".join(f"Via: {v}\r\n" for v in vias[1:]) if len(vias) > 1 else ""
    from_, to, call_id, cseq = req.from_, req.to, req.call_id, req.cseq
    if to is not None and code != 100 and req.to_tag is None and tag:
        to = f"{to};tag={tag}"  # 100 Trying never carries a tag (RFC 3261 §8.2.6.1)
    if from_ is not None and to is not None and call_id is not None and cseq is not None:
        head = (f"SIP/2.0 {code} {reason}\r\nVia: {via}\r\n{more}From: {from_}\r\n"
                f"To: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\n")
    else:  # a request with a Problem may lack any of them
        head = f"SIP/2.0 {code} {reason}\r\nVia: {via}\r\n{more}" + "".join(
            f"{name}: {value}\r\n" for name, value in (
                ("From", from_), ("To", to), ("Call-ID", call_id), ("CSeq", cseq))
            if value is not None)
    if code == 100 and req.timestamp is not None:
        head += f"Timestamp: {req.timestamp}\r\n"
    if 100 < code < 300 and req.method in DIALOG_METHODS:
        head += "".join(f"Record-Route: {v}\r\n" for v in req.header_values("record-route"))
    return head


# Required headers whose default depends on the request or the time, not only the code.
_DYNAMIC = frozenset({"www-authenticate", "proxy-authenticate", "unsupported"})


def tail(
    req: Request,
    ctx: Context,
    code: int,
    headers: tuple[tuple[str, str], ...],
    body: bytes,
    content_type: str | None,
) -> tuple[bytes, bool]:
    """Contact to the body; and whether it depends only on the code, the step's overrides,
    the method, the identity and (for dialog-creating responses) our Contact."""
    lines = []
    given = {name.lower() for name, _ in headers} if headers else set()
    method = req.method
    static = True
    if 100 < code < 300 and method in DIALOG_METHODS and "contact" not in given:
        lines.append(f"Contact: {our_contact(req, ctx)}")
    if 200 <= code < 300:
        if method == "OPTIONS":
            for name, value in (("Allow", ctx.identity.allow), ("Accept", ACCEPT),
                                ("Supported", ", ".join(ctx.identity.supported))):
                if name.lower() not in given:
                    lines.append(f"{name}: {value}" if value else f"{name}:")
        elif method == "REGISTER" and "contact" not in given:
            lines.extend(f"Contact: {c}" for c in _register_contacts(req))
            static = False
        elif (method == "INVITE" and "timer" in ctx.identity.supported
              and "session-expires" not in given and req.header("session-expires")):
            lines.extend(_timer_lines(req))  # RFC 4028: per request, never cached
            static = False
    for name in codes.required_headers(code):
        key = name.lower()
        if key not in given:
            lines.append(f"{name}: {_DEFAULTS[key](req, ctx)}")
            static = static and key not in _DYNAMIC
    lines.extend(f"{name}: {value}" for name, value in headers)
    if ctx.identity.server and "server" not in given:
        lines.append(f"Server: {ctx.identity.server}")
    if body and content_type:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    lines.append("")
    lines.append("")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape") + body, static


def malform(data: bytes, fault: str, noise: Callable[[int], bytes]) -> bytes:
    """A response made wrong on purpose (``fault:``, docs/faults.md).

    ``data`` is what :func:`build` made (``no-to-tag`` is ``build`` without a tag);
    ``noise(n)`` gives n seeded bytes for ``garbage``.
    """
    if fault == "garbage":
        return noise(len(data))
    head, sep, body = data.partition(b"\r\n\r\n")
    if fault == "truncated":
        return head[: len(head) // 2]  # no empty line, no body: an incomplete message
    lines = head.split(b"\r\n")
    if fault == "no-via":
        lines = [line for line in lines if not line.startswith(b"Via: ")]
    elif fault == "wrong-content-length":
        lines = [b"Content-Length: %d" % (len(body) + 10)
                 if line.startswith(b"Content-Length: ") else line for line in lines]
    return b"\r\n".join(lines) + sep + body
