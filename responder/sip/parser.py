"""bytes -> Request.

:func:`parse` returns a :class:`~responder.sip.message.Request` (possibly carrying
a :class:`~responder.sip.errors.Problem` to answer with) or raises
:class:`~responder.sip.errors.Discard`; it raises nothing else, for any input.

What is lenient, on purpose (and recorded in the README):
* LF-only and mixed line ends are read like CRLF; leading CRLFs are skipped
  (RFC 3261 §7.5);
* runs of whitespace between request-line elements (RFC 4475 lwsstart, trws);
* a datagram whose headers are not closed by an empty line is read as headers
  with an empty body;
* a missing Max-Forwards (RFC 4475 inv2543); the Date header is not inspected.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from types import ModuleType

from responder._accel import SPEEDUPS, adopt, assumptions, mismatch
from responder.sip import errors
from responder.sip.errors import Discard, Problem
from responder.sip.message import COMPACT, Header, Request, TopVia
from responder.sip.numbers import MAX_UINT32, number
from responder.sip.uri import (
    _HAS_SCHEME,
    SIP_SCHEMES,
    SUPPORTED_SCHEMES,
    TOKEN,
    address_and_tag,
    first_value,
    name_addr,
    params_well_formed,
    split_commas,
    uri_parts,
)

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_FOLD = re.compile(r"\n(?=[ \t])")  # a line break that continues the previous header
_WS_RUN = re.compile(r"[ \t]+")
_VERSION = re.compile(r"SIP/[0-9]+\.[0-9]+", re.IGNORECASE)
_CSEQ = re.compile(r"([0-9]+)[ \t]+([^ \t]+)")
_DIGITS = re.compile(r"[0-9]+")
# sent-protocol "/" ... LWS sent-by [";" params]   (RFC 3261 §20.42, LWS allowed around "/")
_VIA = re.compile(
    r"([^ \t/;]+)[ \t]*/[ \t]*([^ \t/;]+)[ \t]*/[ \t]*([^ \t/;]+)[ \t]+"
    r"(\[[^\] \t]*\]|[^ \t:;\[\]]+)(?:[ \t]*:[ \t]*([0-9]{1,5}))?[ \t]*(;.*)?",
    re.DOTALL,
)
# The same with any sent-by up to the parameters: an unbracketed IPv6 host (as SIPVicious
# writes with -6) is taken as written; the response goes to the packet's source anyway.
_VIA_LOOSE = re.compile(
    r"([^ \t/;]+)[ \t]*/[ \t]*([^ \t/;]+)[ \t]*/[ \t]*([^ \t/;]+)[ \t]+"
    r"([^ \t;]+)()[ \t]*(;.*)?",
    re.DOTALL,
)
MAX_CSEQ = MAX_UINT32  # RFC 3261 §8.1.1.5
# Per-message caps (SPEC §10, docs/limits.md): far above what any real peer sends (the RFC
# 4475 torture messages have at most 43 header lines and 34 Vias; Max-Forwards 70 bounds a
# real path to 71 Vias), low enough that no datagram costs more than a millisecond or so.
# Past one, the request is answered (513, or 400 naming the cap) without reading the rest.
MAX_HEADER_LINES = 256    # physical lines after the request line (folded ones count): 513
MAX_HEADER_NAMES = 128    # distinct header names (compact forms count as their long name)
MAX_VIA_VALUES = 128      # Via values: Via lines plus the commas in them
MAX_CONTACTS = 128        # Contact values of a REGISTER: Contact lines plus their commas
MAX_REQUIRE_TAGS = 64     # option tags in Require: Require lines plus their commas
TOO_MANY_LINES = Problem(513)
# Headers the parser reads, by slot in parse()'s ``found``; every other line is only kept.
_SLOTS = {"via": 1, "from": 2, "to": 3, "call-id": 4, "cseq": 5, "content-length": 6,
          "require": 7, "timestamp": 8}
# name as written -> (key, name, slot) (a bounded cache)
_KEYS: dict[str, tuple[str, str, int]] = {}


def _header_key(name: str) -> tuple[str, str, int] | None:
    """(canonical key, name, slot) of a name as written: ``TO `` -> ("to", "TO", 3)."""
    stripped = name.rstrip(" \t")
    if not stripped or not TOKEN.fullmatch(stripped):
        return None
    key = stripped.lower()
    key = COMPACT.get(key, key)
    if len(_KEYS) >= 4096:
        _KEYS.clear()
    known = _KEYS[name] = (key, stripped, _SLOTS.get(key, 0))
    return known


def parse(data: bytes) -> Request:
    """Parse one datagram. Raises only :class:`Discard`.

    The common well-formed request is read by the compiled fast path when it is built
    (:mod:`responder._accel._speedups`); it returns None for anything else, and for that, and
    without it, :func:`parse_python` reads the datagram. Both make the same Request.
    """
    if _fast_parse is not None:
        req = _fast_parse(data)
        # The Python parser owns every problem: a REGISTER whose Contacts are not
        # addresses (rare) is read again by it; the Request is never patched.
        if req is not None and (req.method != "REGISTER" or _contact_problem(
                req.header_values("contact")) is None):
            return req
    return parse_python(data)


def parse_python(data: bytes) -> Request:
    """The whole parser in Python: every input, every problem and discard."""
    if not data:
        raise Discard(errors.EMPTY)
    if data[:1] in b"\r\n":
        data = data.lstrip(b"\r\n")
        if not data.strip(b" \t\r\n"):
            raise Discard(errors.KEEPALIVE)
    elif not data.strip(b" \t\r\n"):
        raise Discard(errors.KEEPALIVE)
    end = data.find(b"\r\n\r\n")
    if end >= 0 and data.find(b"\n\n", 0, end) < 0 and data.find(b"\n\r\n", 0, end) < 0:
        head_b, body = data[:end], data[end + 4 :]  # the common case, without a regex
    elif (m := _HEAD_END.search(data)) is None:
        head_b, body = data, b""
    else:
        head_b, body = data[: m.start()], data[m.end() :]
    head = head_b.decode("utf-8", "surrogateescape")
    if "\r" in head:
        head = head.replace("\r\n", "\n")
    first, _, rest = head.partition("\n")

    # --- request line (RFC 3261 §7.1) ---------------------------------------------
    parts = first.split(" ")
    if len(parts) != 3 or parts[2] != "SIP/2.0" or not parts[1]:
        first = first.strip(" \t\r")
        if first[:4].upper() == "SIP/":
            raise Discard(errors.RESPONSE)
        parts = _WS_RUN.split(first)
        if len(parts) < 3 or not _VERSION.fullmatch(parts[-1]):
            raise Discard(errors.NOT_SIP)
    method, version = parts[0], parts[-1]
    if not TOKEN.fullmatch(method):
        raise Discard(errors.NOT_SIP)
    problem: Problem | None = None
    if len(parts) == 3:
        uri = parts[1]
    else:
        uri = " ".join(parts[1:-1])
        problem = Problem(400, "Malformed Request-URI")  # RFC 4475 §3.1.2.10 lwsruri

    # --- header lines, unfolded (RFC 3261 §7.3.1) ---------------------------------
    if rest[:1] in (" ", "\t"):
        problem = problem or Problem(400, "Bad Header Syntax")  # continues nothing
        rest = rest.lstrip(" \t")
    if rest.count("\n") >= MAX_HEADER_LINES:  # SPEC §10: the rest is not read
        problem = problem or TOO_MANY_LINES
        rest = rest[: _nth_line_end(rest, MAX_HEADER_LINES)]
    if "\n " in rest or "\n\t" in rest:
        rest = _FOLD.sub("", rest)
    lines: list[tuple[str, str, str]] = []
    # The values of the headers the parser reads, by slot (see _SLOTS); slot 0 collects
    # nothing (kept only in ``lines``).
    found: list[list[str]] = [[], [], [], [], [], [], [], [], []]
    keys = _KEYS
    for line in rest.split("\n") if rest else ():
        name, colon, value = line.partition(":")
        known = keys.get(name) if colon else None
        if known is None:
            known = _header_key(name) if colon else None
            if known is None:
                if line.strip(" \t\r") and problem is None:
                    problem = Problem(400, "Bad Header Syntax")
                continue
        key, written, slot = known
        value = value.strip(" \t\r")
        lines.append((key, written, value))
        if slot:
            found[slot].append(value)
    _, vias, froms, tos, call_ids, cseqs, lengths, requires, timestamps = found
    if len(lines) > MAX_HEADER_NAMES and len({h[0] for h in lines}) > MAX_HEADER_NAMES:
        problem = problem or Problem(400, "Too Many Header Names")
    if len(vias) + sum(v.count(",") for v in vias) > MAX_VIA_VALUES:
        problem = problem or Problem(400, "Too Many Via Values")
    if requires and len(requires) + sum(v.count(",") for v in requires) > MAX_REQUIRE_TAGS:
        problem = problem or Problem(400, "Too Many Require Tags")
        requires = []
    require = [t for v in requires for t in (x.strip(" \t") for x in v.split(",")) if t]
    timestamp = timestamps[0] if timestamps else None

    # --- the top Via: without a sent-by nobody can match a response ----------------
    if not vias:
        raise Discard(errors.NO_VIA)
    via0 = vias[0]
    raw_top = first_value(via0)
    top_value = raw_top.strip(" \t")
    # The rest of that line from the end of the first value: " , SIP/2.0/UDP ..." verbatim.
    via_rest = via0[len(top_value) :] if len(raw_top) < len(via0) else None
    vm = _VIA.fullmatch(top_value) or _VIA_LOOSE.fullmatch(top_value)
    if vm is None:
        raise Discard(errors.NO_VIA)
    via_params = vm.group(6)
    branch = rport = received = None
    if via_params:
        for p in via_params[1:].split(";"):
            name, _eq, value = p.partition("=")
            name = name.strip(" \t").lower()
            if name == "branch":
                branch = value.strip(" \t") if branch is None else branch
            elif name == "rport":
                rport = value.strip(" \t") if rport is None else rport
            elif name == "received":
                received = value
            elif not name and problem is None:
                problem = Problem(400, "Bad Via")  # empty parameter: RFC 4475 badinv01
    port_text = vm.group(5)
    port = int(port_text) if port_text else None
    if port is not None and port > 65535:
        problem = problem or Problem(400, "Bad Via")
    top_via = TopVia(top_value, vm.group(4), port, branch or None, rport is not None,
                     rport == "", received is not None)

    from_ = froms[0] if froms else None
    to = tos[0] if tos else None
    call_id = call_ids[0] if call_ids else None
    cseq = cseqs[0] if cseqs else None
    cseq_num = 0
    from_uri = from_tag = to_uri = to_tag = target_user = uri_host = None

    # --- the four headers every request has (RFC 3261 §8.1.1) ----------------------
    if not (froms and tos and call_ids and cseqs) and problem is None:
        missing = [n for n, v in (("Call-ID", call_ids), ("From", froms), ("To", tos),
                                  ("CSeq", cseqs)) if not v]
        problem = Problem(400, "Missing " + ", ".join(missing))
    if (len(froms) > 1 or len(tos) > 1 or len(call_ids) > 1 or len(cseqs) > 1) \
            and problem is None:
        dup = [n for n, v in (("Call-ID", call_ids), ("From", froms), ("To", tos),
                              ("CSeq", cseqs)) if len(v) > 1]
        problem = Problem(400, "Duplicate " + ", ".join(dup))  # RFC 4475 §3.1.2.17 multi01

    if call_id is not None and not call_id:
        problem = problem or Problem(400, "Bad Call-ID")  # callid = word ["@" word]
    if cseq is not None:
        cm = _CSEQ.fullmatch(cseq)
        num = number(cm.group(1), MAX_CSEQ) if cm else None
        if cm is None or num is None:
            problem = problem or Problem(400, "Bad CSeq")  # RFC 4475 §3.1.2.11 scalar02
        else:
            cseq_num = num
            if cm.group(2) != method:
                problem = problem or Problem(400, "CSeq Method Mismatch")
    if from_ is not None:
        fa = address_and_tag(from_)
        if fa is None:
            problem = problem or Problem(400, "Bad From")
        else:
            from_uri, from_tag = fa
    if to is not None:
        ta = address_and_tag(to)
        if ta is None:
            problem = problem or Problem(400, "Bad To")
        else:
            to_uri, to_tag = ta
            if method == "REGISTER" and ta[0].partition(":")[0].lower() not in SIP_SCHEMES:
                # RFC 3261 §10.2: the To of a REGISTER is a SIP or SIPS AOR (RFC 4475 unksm2)
                problem = problem or Problem(400, "To Is Not A SIP Address")

    # --- framing over UDP (RFC 3261 §18.3) ------------------------------------------
    if len(lengths) == 1 and lengths[0].isascii() and lengths[0].isdigit() \
            and len(lengths[0]) < 10:
        n = int(lengths[0])  # the common case
        if n > len(body):
            problem = problem or Problem(400, "Content-Length Larger Than Body")
        else:
            body = body[:n]
    elif lengths:
        numbers = {number(v, len(data)) if _DIGITS.fullmatch(v) else -1 for v in lengths}
        if -1 in numbers:
            problem = problem or Problem(400, "Bad Content-Length")
        elif len(numbers) > 1:
            problem = problem or Problem(400, "Conflicting Content-Length")
        else:
            length = numbers.pop()
            if length is None or length > len(body):
                problem = problem or Problem(400, "Content-Length Larger Than Body")
            else:
                body = body[:length]

    # --- Request-URI ----------------------------------------------------------------
    up = uri_parts(uri)
    if up is None or uri[0] == "<":
        problem = problem or Problem(400, "Malformed Request-URI")  # ltgtruri, ipv6-bad
    else:
        if up.has_headers:
            problem = problem or Problem(400, "Headers Not Allowed In Request-URI")  # escruri
        if up.user is not None:
            target_user = up.user
        elif to_uri is not None:  # SPEC §3.3: no user in the Request-URI: the To's
            to_parts = uri_parts(to_uri)
            target_user = to_parts.user if to_parts is not None else None
        uri_host = up.host
        if up.scheme not in SUPPORTED_SCHEMES and problem is None:
            problem = Problem(416)

    if method == "REGISTER" and problem is None:
        problem = _contact_problem([v for k, _, v in lines if k == "contact"])

    if version != "SIP/2.0" and version.upper() != "SIP/2.0":
        # RFC 3261 §8.2.2: nothing else about a message of another version can be trusted.
        problem = Problem(505)
    # Positional, in field order (frozen: built once, never patched).
    return Request(method, uri, version, lines, vias, top_via, via_rest, from_, to, call_id,
                   cseq, cseq_num, from_tag, to_tag, target_user, from_uri, to_uri,
                   tuple(require), timestamp, uri_host, body, problem)


def _nth_line_end(text: str, n: int) -> int:
    """Where the ``n``-th line of ``text`` ends (its ``n``-th newline; ``text`` has more)."""
    end = -1
    for _ in range(n):
        end = text.index("\n", end + 1)
    return end


def _contact_problem(contacts: list[str]) -> Problem | None:
    """A REGISTER's Contact values must be addresses (RFC 4475 §3.1.2.15 regbadct)."""
    if len(contacts) + sum(c.count(",") for c in contacts) > MAX_CONTACTS:
        return Problem(400, "Too Many Contacts")  # SPEC §10: not read any further
    for contact in contacts:
        if contact == "*":
            continue
        for c in split_commas(contact):
            ca = name_addr(c)
            if ca is None or not params_well_formed(ca[1]):
                return Problem(400, "Bad Contact")
    return None


# --- the compiled fast path (responder/_accel/_speedups.c): checked, then configured -----

def speedups_layout() -> dict[str, object]:
    """What the compiled parser and response head rely on, as this side has it, in the
    terms of the extension's ``ASSUMES["parser"]`` (compared before either is used)."""
    chars = [chr(c) for c in range(256)]
    return {
        # parse() fills every slot of a Request without calling __init__
        "Request fields": tuple(f.name for f in dataclasses.fields(Request)),
        "Request has __post_init__": hasattr(Request, "__post_init__"),
        "TopVia fields": TopVia._fields,
        "header line fields": Header._fields,  # the positions of a header_lines entry
        "header slots": dict(_SLOTS),
        # the entries of _KEYS: (key, name as written, slot)
        "header key of 'Via '": _header_key("Via "),
        "header key of 'no name'": _header_key("no name"),
        "token characters": "".join(c for c in chars if TOKEN.fullmatch(c)),
        "scheme first characters": "".join(c for c in chars if _HAS_SCHEME.match(c + ":")),
        "scheme characters": "".join(c for c in chars if _HAS_SCHEME.match(f"a{c}:")),
        # the C code reads CSeq numbers of up to 9 digits, all of them within MAX_CSEQ
        "largest CSeq read": number("9" * 9, MAX_CSEQ),
        "REGISTER To schemes": tuple(sorted(SIP_SCHEMES)),
        # the C code reads no more header lines than both caps allow, and no more Via
        # values than their cap: what it reads needs neither checked
        "most header lines read": min(MAX_HEADER_LINES, MAX_HEADER_NAMES),
        "most Via values read": MAX_VIA_VALUES,
    }


# A request the fast path must read, and read as parse_python does, once at load.
_PROBE = (b"INVITE sip:probe@192.0.2.1:5060 SIP/2.0\r\n"
          b"Via: SIP/2.0/UDP 192.0.2.2:5062;branch=z9hG4bK-probe;rport\r\n"
          b"v: SIP/2.0/TCP proxy.example;branch=z9hG4bK-p2;received=192.0.2.9\r\n"
          b"Max-Forwards: 70\r\n"
          b'From: "Probe" <sip:from@192.0.2.2>;tag=f1\r\n'
          b"t: <sip:probe@192.0.2.1>\r\n"
          b"Call-ID: probe@192.0.2.2\r\n"
          b"CSeq: 7 INVITE\r\n"
          b"Content-Length: 4\r\n\r\nbody")


def check_speedups(ext: ModuleType, layout: Mapping[str, object] | None = None) -> str | None:
    """Why the extension's parse/respond cannot be used here, or None (then it is configured).

    Its assumptions are compared with ``layout`` (this module's :func:`speedups_layout`
    unless given); only if all hold is it configured with these classes, and then it must
    read :data:`_PROBE` into the Request the Python parser makes of it.
    """
    why = mismatch(assumptions(ext, "parser"), speedups_layout() if layout is None else layout)
    if why is not None:
        return why
    try:
        ext.configure(Request, TopVia, _KEYS, _header_key)
        got, want = ext.parse(_PROBE), parse_python(_PROBE)
        if got is None:
            return "the probe request: the extension does not read it"
        if got != want:
            name = next((f.name for f in dataclasses.fields(want)
                         if getattr(got, f.name, None) != getattr(want, f.name)), "type")
            return (f"the probe request: its {name} is {getattr(got, name, type(got))!r} "
                    f"read by the extension, {getattr(want, name, type(want))!r} by Python")
    except (AttributeError, TypeError, ValueError) as exc:  # a layout it cannot use
        return f"the probe request: {type(exc).__name__}: {exc}"
    return None


def use_speedups(ext: ModuleType | None, layout: Mapping[str, object] | None = None,
                 ) -> tuple[ModuleType | None, str | None]:
    """(the extension, configured, or None; why not, when it is built but not used)."""
    return adopt(ext, "parser and response head", lambda e: check_speedups(e, layout))


COMPILED, SPEEDUPS_DISABLED_BECAUSE = use_speedups(SPEEDUPS)
"""The extension, checked and configured for this module's Request (its ``parse`` and
``respond`` may be used), or None; and why it is not, when it is built."""
_fast_parse: Callable[[bytes], Request | None] | None = COMPILED.parse if COMPILED else None
