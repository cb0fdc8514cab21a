"""The parsed request.

A :class:`Request` keeps the header lines it was given, in order, with their
values as written (folding removed), and parses only the essentials a UAS needs
to answer (RFC 3261 §8.2.6): the Via list, From, To, Call-ID, CSeq, plus the
few fields the rules and the builder read. Nothing in it is re-serialised: the
builder copies the strings it holds.

Treat a Request as immutable once the parser returns it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from responder.sip.errors import Problem
from responder.sip.uri import uri_parts

# Compact forms (RFC 3261 §7.3.3 and the IANA header-field registry) -> long names, lower case.
COMPACT = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "e": "content-encoding",
    "k": "supported",
    "s": "subject",
    "o": "event",
    "r": "refer-to",
    "b": "referred-by",
    "u": "allow-events",
    "x": "session-expires",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
    "y": "identity",
    "n": "identity-info",
}


class TopVia(NamedTuple):
    """The first Via value, split so the builder can append received/rport."""

    value: str          # the first Via value as written (whitespace-trimmed)
    host: str           # sent-by host as written ("[2001:db8::1]" keeps its brackets)
    port: int | None    # sent-by port, if given
    branch: str | None
    rport: bool         # an rport parameter is present
    rport_empty: bool   # ... and it has no value (RFC 3581 §4: we fill it in)
    received: bool      # a received parameter is already present


class Header(NamedTuple):
    key: str    # canonical key: long form, lower case ("via", "call-id", "user-agent")
    name: str   # the name as written
    value: str  # the value as written, folding removed, outer whitespace trimmed


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    uri: str
    version: str
    header_lines: list[tuple[str, str, str]]  # (key, name, value) per line, in order
    vias: list[str]              # every Via header field line's value, in order
    top_via: TopVia
    via_rest: str | None         # the first Via line after its first value (", SIP/2.0/...")
    from_: str | None = None
    to: str | None = None
    call_id: str | None = None
    cseq: str | None = None
    cseq_num: int = 0
    from_tag: str | None = None
    to_tag: str | None = None
    target_user: str | None = None
    from_uri: str | None = None  # the URI inside From, as written
    to_uri: str | None = None    # the URI inside To, as written
    require: tuple[str, ...] = ()
    timestamp: str | None = None
    uri_host: str | None = None  # host of the Request-URI as written (sip/sips)
    body: bytes = b""
    problem: Problem | None = None

    @property
    def from_user(self) -> str | None:
        """User part of the From URI, %-decoded (read only when a rule asks)."""
        return _user(self.from_uri)

    @property
    def to_user(self) -> str | None:
        """User part of the To URI, %-decoded (read only when a rule asks)."""
        return _user(self.to_uri)

    @property
    def headers(self) -> list[Header]:
        """Every header line, in order, as :class:`Header` values."""
        return [Header(*h) for h in self.header_lines]

    def header(self, key: str) -> str | None:
        """The first value of header ``key`` (long form, lower case), or None."""
        for k, _, value in self.header_lines:
            if k == key:
                return value
        return None

    def header_values(self, key: str) -> list[str]:
        """Every value of header ``key``, in order (each line as one value)."""
        return [value for k, _, value in self.header_lines if k == key]

    @property
    def transaction_key(self) -> str:
        """The transaction's identity for seeded draws (SPEC §3.4)."""
        return f"{self.call_id}\x00{self.top_via.branch}\x00{self.cseq_num} {self.method}"


def _user(uri: str | None) -> str | None:
    parts = uri_parts(uri) if uri is not None else None
    return parts.user if parts is not None else None
