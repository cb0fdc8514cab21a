"""bytes -> Request.

:func:`parse` returns a :class:`~responder.message.Request` (possibly carrying
a :class:`~responder.errors.Problem` to answer with) or raises
:class:`~responder.errors.Discard`; it raises nothing else, for any input.

What is lenient, on purpose (and recorded in the README):
* LF-only and mixed line ends are read like CRLF; leading CRLFs are skipped
  (RFC 3261 §7.5);
* runs of whitespace between request-line elements (RFC 4475 lwsstart, trws);
* a datagram whose headers are not closed by an empty line is read as headers
  with an empty body;
* a missing Max-Forwards (RFC 4475 inv2543); the Date header is not inspected.
"""

from __future__ import annotations

import re

from . import errors
from .errors import Discard, Problem
from .message import COMPACT, Header, Request, TopVia
from .uri import (
    SIP_SCHEMES,
    SUPPORTED_SCHEMES,
    TOKEN,
    name_addr,
    param,
    params_well_formed,
    split_commas,
    uri_parts,
)

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_WS_RUN = re.compile(r"[ \t]+")
_VERSION = re.compile(r"SIP/[0-9]+\.[0-9]+", re.IGNORECASE)
_CSEQ = re.compile(r"([0-9]+)[ \t]+(\S+)")
_DIGITS = re.compile(r"[0-9]+")
# sent-protocol "/" ... LWS sent-by [";" params]   (RFC 3261 §20.42, LWS allowed around "/")
_VIA = re.compile(
    r"([^\s/;]+)\s*/\s*([^\s/;]+)\s*/\s*([^\s/;]+)\s+"
    r"(\[[^\]\s]*\]|[^\s:;\[\]]+)(?:\s*:\s*([0-9]{1,5}))?\s*(;.*)?",
    re.DOTALL,
)
MAX_CSEQ = 2**32 - 1  # RFC 3261 §8.1.1.5


_KEYS: dict[str, str] = {}  # header name as written -> canonical key (bounded cache)


def _header_key(name: str) -> str | None:
    """Canonical key of a header name as written (``TO `` -> "to", ``v`` -> "via")."""
    stripped = name.rstrip(" \t")
    if not stripped or not TOKEN.fullmatch(stripped):
        return None
    key = stripped.lower()
    key = COMPACT.get(key, key)
    if len(_KEYS) >= 4096:
        _KEYS.clear()
    _KEYS[name] = key
    return key


def parse(data: bytes) -> Request:
    """Parse one datagram. Raises only :class:`Discard`."""
    if not data:
        raise Discard(errors.EMPTY)
    data = data.lstrip(b"\r\n")
    if not data.strip(b" \t\r\n"):
        raise Discard(errors.KEEPALIVE)
    m = _HEAD_END.search(data)
    if m is None:
        head_b, body = data, b""
    else:
        head_b, body = data[: m.start()], data[m.end() :]
    head = head_b.decode("utf-8", "surrogateescape")
    lines = head.split("\n")

    # --- request line (RFC 3261 §7.1) ---------------------------------------------
    first = lines[0].rstrip("\r").strip(" \t")
    if first[:4].upper() == "SIP/":
        raise Discard(errors.RESPONSE)
    parts = _WS_RUN.split(first)
    if len(parts) < 3 or not TOKEN.fullmatch(parts[0]) or not _VERSION.fullmatch(parts[-1]):
        raise Discard(errors.NOT_SIP)
    method, version = parts[0], parts[-1]
    uri = " ".join(parts[1:-1])
    problem: Problem | None = None
    if len(parts) > 3:
        problem = Problem(400, "Malformed Request-URI")  # RFC 4475 §3.1.2.10 lwsruri

    # --- header lines, unfolded (RFC 3261 §7.3.1) ---------------------------------
    raw: list[list[str]] = []  # [name, key, value]
    for line in lines[1:]:
        if line.endswith("\r"):
            line = line[:-1]
        if not line:
            continue
        if line[0] in " \t":
            if raw:
                raw[-1][2] += line
            elif problem is None:
                problem = Problem(400, "Bad Header Syntax")
            continue
        colon = line.find(":")
        name = line[:colon] if colon > 0 else ""
        key = _KEYS.get(name)
        if key is None:
            key = _header_key(name)
            if key is None:
                if problem is None:
                    problem = Problem(400, "Bad Header Syntax")
                continue
        raw.append([name.rstrip(" \t"), key, line[colon + 1 :]])

    headers: list[Header] = []
    vias: list[str] = []
    froms: list[str] = []
    tos: list[str] = []
    call_ids: list[str] = []
    cseqs: list[str] = []
    lengths: list[str] = []
    require: list[str] = []
    timestamp: str | None = None
    for name, key, value in raw:
        value = value.strip(" \t")
        headers.append(Header(key, name, value))
        if key == "via":
            vias.append(value)
        elif key == "from":
            froms.append(value)
        elif key == "to":
            tos.append(value)
        elif key == "call-id":
            call_ids.append(value)
        elif key == "cseq":
            cseqs.append(value)
        elif key == "content-length":
            lengths.append(value)
        elif key == "require":
            require.extend(t for t in (s.strip(" \t") for s in value.split(",")) if t)
        elif key == "timestamp" and timestamp is None:
            timestamp = value

    # --- the top Via: without a sent-by nobody can match a response ----------------
    if not vias:
        raise Discard(errors.NO_VIA)
    raw_top = split_commas(vias[0])[0]
    top_value = raw_top.strip(" \t")
    # The rest of that line from the end of the first value: " , SIP/2.0/UDP ..." verbatim.
    via_rest = vias[0][len(top_value) :] if len(raw_top) < len(vias[0]) else None
    vm = _VIA.fullmatch(top_value)
    if vm is None:
        raise Discard(errors.NO_VIA)
    via_params = vm.group(6) or ""
    branch = rport = received = None
    if via_params:
        if not params_well_formed(via_params) and problem is None:
            problem = Problem(400, "Bad Via")  # RFC 4475 §3.1.2.1 badinv01
        branch = param(via_params, "branch")
        rport = param(via_params, "rport")
        received = param(via_params, "received")
    top_via = TopVia(
        value=top_value,
        host=vm.group(4),
        port=int(vm.group(5)) if vm.group(5) else None,
        branch=branch or None,
        rport=rport is not None,
        rport_empty=rport == "",
        received=received is not None,
    )

    req = Request(
        method=method,
        uri=uri,
        version=version,
        headers=headers,
        vias=vias,
        top_via=top_via,
        via_rest=via_rest,
        from_=froms[0] if froms else None,
        to=tos[0] if tos else None,
        call_id=call_ids[0] if call_ids else None,
        cseq=cseqs[0] if cseqs else None,
        require=tuple(require),
        timestamp=timestamp,
    )

    # --- the four headers every request has (RFC 3261 §8.1.1) ----------------------
    missing = [n for n, v in (("Call-ID", call_ids), ("From", froms), ("To", tos),
                              ("CSeq", cseqs)) if not v]
    if missing and problem is None:
        problem = Problem(400, "Missing " + ", ".join(missing))
    dup = [n for n, v in (("Call-ID", call_ids), ("From", froms), ("To", tos), ("CSeq", cseqs))
           if len(v) > 1]
    if dup and problem is None:
        problem = Problem(400, "Duplicate " + ", ".join(dup))  # RFC 4475 §3.1.2.17 multi01

    if req.cseq is not None:
        cm = _CSEQ.fullmatch(req.cseq)
        if cm is None or int(cm.group(1)) > MAX_CSEQ:
            problem = problem or Problem(400, "Bad CSeq")  # RFC 4475 §3.1.2.? scalar02
        else:
            req.cseq_num = int(cm.group(1))
            if cm.group(2) != method:
                problem = problem or Problem(400, "CSeq Method Mismatch")
    if req.from_ is not None:
        fa = name_addr(req.from_)
        if fa is None:
            problem = problem or Problem(400, "Bad From")
        else:
            req.from_tag = param(fa[1], "tag") or None
            req.from_uri = fa[0]
    if req.to is not None:
        ta = name_addr(req.to)
        if ta is None:
            problem = problem or Problem(400, "Bad To")
        else:
            req.to_tag = param(ta[1], "tag") or None
            req.to_uri = ta[0]
            if method == "REGISTER" and ta[0].partition(":")[0].lower() not in SIP_SCHEMES:
                # RFC 3261 §10.2: the To of a REGISTER is a SIP or SIPS AOR (RFC 4475 unksm2)
                problem = problem or Problem(400, "To Is Not A SIP Address")

    # --- framing over UDP (RFC 3261 §18.3) ------------------------------------------
    if lengths:
        if len(set(lengths)) > 1:
            problem = problem or Problem(400, "Conflicting Content-Length")
        elif not _DIGITS.fullmatch(lengths[0]):
            problem = problem or Problem(400, "Bad Content-Length")
        else:
            n = int(lengths[0])
            if n > len(body):
                problem = problem or Problem(400, "Content-Length Larger Than Body")
            else:
                body = body[:n]
    req.body = body

    # --- Request-URI ----------------------------------------------------------------
    if uri.startswith("<"):
        problem = problem or Problem(400, "Malformed Request-URI")  # ltgtruri
    up = uri_parts(uri)
    if up is None:
        problem = problem or Problem(400, "Malformed Request-URI")
    else:
        if up.has_headers:
            problem = problem or Problem(400, "Headers Not Allowed In Request-URI")  # escruri
        req.target_user = up.user if up.user is not None else req.to_user  # SPEC §3.3
        req.uri_host = up.host
        if up.scheme not in SUPPORTED_SCHEMES and problem is None:
            problem = Problem(416)

    if method == "REGISTER" and problem is None:
        for contact in req.header_values("contact"):
            if contact.strip(" \t") == "*":
                continue
            for c in split_commas(contact):
                ca = name_addr(c)
                if ca is None or not params_well_formed(ca[1]):
                    problem = Problem(400, "Bad Contact")  # RFC 4475 §3.1.2.15 regbadct
                    break

    if version.upper() != "SIP/2.0":
        # RFC 3261 §8.2.2: nothing else about a message of another version can be trusted.
        problem = Problem(505)
    req.problem = problem
    return req
