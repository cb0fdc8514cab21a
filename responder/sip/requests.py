"""Requests the responder sends itself, and the responses to them (SPEC §8.5).

The responder is a UAS; the one request it makes is the BYE of a call it hangs up
(``hangup:``). :func:`bye` builds it from the INVITE that made the dialog (RFC 3261 §12.1.1
and §15.1.1): Request-URI the caller's Contact, Route from the INVITE's Record-Route set,
From and To swapped with our tag, a new CSeq in our direction. :func:`read_response` reads
just enough of a response (status, top Via branch, CSeq method, Call-ID) to match it to
the request it answers.

The route set of a UAS is the Record-Route set *in the order of the request* (RFC 3261
§12.1.1: the proxy nearest to us is first), so the BYE's first Route is the proxy the
INVITE came through last. With a strict router first (no ``;lr``), RFC 3261 §12.2.1.1
puts it in the Request-URI and the caller's Contact last in Route.
"""

from __future__ import annotations

from typing import NamedTuple

from responder.sip.addr import Addr, hostport
from responder.sip.message import Request
from responder.sip.uri import name_addr, param, split_commas

MAX_ROUTES = 16  # Route values copied into a BYE (a longer Record-Route set: the first 16)
OUR_CSEQ = 1     # our first (and only) request in a dialog: its CSeq number
MAX_FORWARDS = 70


class Response(NamedTuple):
    status: int
    branch: str | None
    call_id: str | None
    cseq_method: str | None
    to_tag: str | None  # in a response to our BYE: the caller's tag (it names the dialog)


def branch_for(tag: str) -> str:
    """Our BYE's branch: fixed per dialog (a retransmission is the same transaction)."""
    return f"z9hG4bK-{tag}-bye"


def route_set(invite: Request) -> list[str]:
    """The INVITE's Record-Route values, in order, as URIs with their parameters."""
    out: list[str] = []
    for value in invite.header_values("record-route"):
        for one in split_commas(value):
            parsed = name_addr(one)
            if parsed is not None:
                out.append(parsed[0])
            if len(out) >= MAX_ROUTES:
                return out
    return out


def remote_target(invite: Request) -> str | None:
    """The caller's Contact URI (RFC 3261 §12.1.1), or None when it has none."""
    contact = invite.header("contact")
    if not contact:
        return None
    parsed = name_addr(split_commas(contact)[0])
    return parsed[0] if parsed is not None else None


def bye(invite: Request, tag: str, local: Addr, transport: str, server: str) -> bytes | None:
    """The BYE that ends the dialog ``invite`` made, our To tag ``tag``, sent from
    ``local`` over ``transport``; None when the INVITE gave no Contact to send it to."""
    target = remote_target(invite)
    if target is None or invite.from_ is None or invite.to is None:
        return None
    routes = route_set(invite)
    uri = target
    if routes and param(routes[0].partition(";")[2], "lr") is None:
        uri, routes = routes[0], [*routes[1:], target]  # a strict router (§12.2.1.1)
    to = invite.to if invite.to_tag is not None else f"{invite.to};tag={tag}"
    lines = [
        f"BYE {uri} SIP/2.0",
        f"Via: SIP/2.0/{transport.upper()} {hostport((local[0].partition('%')[0], local[1]))}"
        f";branch={branch_for(tag)};rport",
        f"Max-Forwards: {MAX_FORWARDS}",
        f"From: {to}",
        f"To: {invite.from_}",
        f"Call-ID: {invite.call_id}",
        f"CSeq: {OUR_CSEQ} BYE",
    ]
    lines.extend(f"Route: <{r}>" for r in routes)
    if server:
        lines.append(f"User-Agent: {server}")
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


def read_response(data: bytes) -> Response | None:
    """Status, top Via branch, Call-ID, CSeq method and To tag of a response; None when it
    is not a response we can match."""
    head = data.partition(b"\r\n\r\n")[0].decode("utf-8", "surrogateescape")
    lines = head.replace("\r\n", "\n").split("\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or status_line[0] != "SIP/2.0" or not status_line[1].isdigit() \
            or len(status_line[1]) != 3:
        return None
    branch = call_id = method = to_tag = None
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            continue
        key = name.strip().lower()
        value = value.strip()
        if key in ("via", "v") and branch is None:
            branch = param(split_commas(value)[0].partition(";")[2], "branch")
        elif key in ("call-id", "i"):
            call_id = value
        elif key == "cseq":
            method = value.split()[-1] if value.split() else None
        elif key in ("to", "t"):
            parsed = name_addr(value)
            to_tag = param(parsed[1], "tag") if parsed is not None else None
    return Response(int(status_line[1]), branch, call_id, method, to_tag)
