"""The SIP response-code registry, as data.

Source: the IANA registry "Session Initiation Protocol (SIP) Parameters", sub-registry
"Response Codes" (https://www.iana.org/assignments/sip-parameters). Every code registered
there is listed below with IANA's reason phrase and IANA's reference; where the registry
leaves the reference blank the code is RFC 3261's own. Phrases are IANA's, not ours: do
not "improve" them here, a rule can override the phrase it sends.

This table is the single source for the builder (status line, headers a code must carry),
the rule validator, ``sip-responder --codes`` and the tests (SPEC §6). A code that is not
registered is still usable in a rule (100-699); it gets the rule's phrase or its class's
generic phrase from :func:`reason_for`.

Pure data and lookups: standard library only, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "CODES",
    "CONTACT_CODES",
    "GENERIC_REASONS",
    "Code",
    "format_table",
    "is_valid_code",
    "reason_for",
    "required_headers",
]

MIN_CODE = 100
MAX_CODE = 699


@dataclass(frozen=True, slots=True)
class Code:
    """One registered response code.

    ``required`` lists, in canonical spelling, the header fields the builder adds (with a
    default value a rule may override) whenever it sends this code.
    """

    code: int
    reason: str
    rfc: str
    required: tuple[str, ...] = ()

    @property
    def klass(self) -> int:
        """The response class, 1..6 (the first digit)."""
        return self.code // 100


_3261 = "RFC 3261"

# Ordered by code. Comments give the rule a required header obeys (paraphrased, with the
# section), or why an entry reads the way it does.
_ENTRIES: tuple[Code, ...] = (
    # 1xx: Provisional
    Code(100, "Trying", _3261),
    Code(180, "Ringing", _3261),
    Code(181, "Call Is Being Forwarded", _3261),
    Code(182, "Queued", _3261),
    Code(183, "Session Progress", _3261),
    Code(199, "Early Dialog Terminated", "RFC 6228"),
    # 2xx: Successful
    Code(200, "OK", _3261),
    # IANA's row reads "Accepted (Deprecated)": the parenthesis is the registry's status
    # mark (RFC 6665 deprecates 202 for SUBSCRIBE/NOTIFY), the same way the header-field
    # registry marks "Encryption (Deprecated)". The phrase itself is "Accepted".
    Code(202, "Accepted", "RFC 6665"),
    Code(204, "No Notification", "RFC 5839"),
    # 3xx: Redirection. Contact is added only where a rule configures it: CONTACT_CODES.
    Code(300, "Multiple Choices", _3261),
    Code(301, "Moved Permanently", _3261),
    Code(302, "Moved Temporarily", _3261),
    Code(305, "Use Proxy", _3261),
    Code(380, "Alternative Service", _3261),
    # 4xx: Request Failure
    Code(400, "Bad Request", _3261),
    # RFC 3261 §21.4.2: a 401 carries a WWW-Authenticate challenge.
    Code(401, "Unauthorized", _3261, ("WWW-Authenticate",)),
    Code(402, "Payment Required", _3261),
    Code(403, "Forbidden", _3261),
    Code(404, "Not Found", _3261),
    # RFC 3261 §21.4.6 (and §8.2.1): a 405 lists the methods the server does allow.
    Code(405, "Method Not Allowed", _3261, ("Allow",)),
    Code(406, "Not Acceptable", _3261),
    # RFC 3261 §21.4.8: a 407 carries a Proxy-Authenticate challenge.
    Code(407, "Proxy Authentication Required", _3261, ("Proxy-Authenticate",)),
    Code(408, "Request Timeout", _3261),
    Code(410, "Gone", _3261),
    Code(412, "Conditional Request Failed", "RFC 3903"),
    Code(413, "Request Entity Too Large", _3261),
    Code(414, "Request-URI Too Long", _3261),
    # RFC 3261 §21.4.13: a 415 names what is acceptable with Accept, Accept-Encoding or
    # Accept-Language, whichever fits the problem. We always send Accept (media types).
    Code(415, "Unsupported Media Type", _3261, ("Accept",)),
    Code(416, "Unsupported URI Scheme", _3261),
    Code(417, "Unknown Resource-Priority", "RFC 4412"),
    # RFC 3261 §21.4.15: a 420 lists the extensions it did not support in Unsupported.
    Code(420, "Bad Extension", _3261, ("Unsupported",)),
    # RFC 3261 §21.4.16: a 421 lists the extensions it needs in Require.
    Code(421, "Extension Required", _3261, ("Require",)),
    # RFC 4028 §6: a 422 carries the smallest session interval accepted, in Min-SE.
    Code(422, "Session Interval Too Small", "RFC 4028", ("Min-SE",)),
    # RFC 3261 §21.4.17 and §10.3: a 423 carries the shortest expiry accepted, Min-Expires.
    Code(423, "Interval Too Brief", _3261, ("Min-Expires",)),
    Code(424, "Bad Location Information", "RFC 6442"),
    Code(425, "Bad Alert Message", "RFC 8876"),
    # 428, 436, 437, 438 were first registered by RFC 4474; RFC 8224 replaced it and is
    # IANA's reference now, with 436 and 437 renamed (formerly "Bad Identity-Info" and
    # "Unsupported Certificate").
    Code(428, "Use Identity Header", "RFC 8224"),
    Code(429, "Provide Referrer Identity", "RFC 3892"),
    Code(430, "Flow Failed", "RFC 5626"),
    Code(433, "Anonymity Disallowed", "RFC 5079"),
    Code(436, "Bad Identity Info", "RFC 8224"),
    Code(437, "Unsupported Credential", "RFC 8224"),
    Code(438, "Invalid Identity Header", "RFC 8224"),
    Code(439, "First Hop Lacks Outbound Support", "RFC 5626"),
    Code(440, "Max-Breadth Exceeded", "RFC 5393"),
    Code(469, "Bad Info Package", "RFC 6086"),
    Code(470, "Consent Needed", "RFC 5360"),
    Code(480, "Temporarily Unavailable", _3261),
    Code(481, "Call/Transaction Does Not Exist", _3261),
    Code(482, "Loop Detected", _3261),
    Code(483, "Too Many Hops", _3261),
    Code(484, "Address Incomplete", _3261),
    Code(485, "Ambiguous", _3261),
    Code(486, "Busy Here", _3261),
    Code(487, "Request Terminated", _3261),
    Code(488, "Not Acceptable Here", _3261),
    # RFC 6665 (first RFC 3265): a 489 tells which event packages are understood, in
    # Allow-Events.
    Code(489, "Bad Event", "RFC 6665", ("Allow-Events",)),
    Code(491, "Request Pending", _3261),
    Code(493, "Undecipherable", _3261),
    # RFC 3329: a 494 offers the server's security mechanisms in Security-Server.
    Code(494, "Security Agreement Required", "RFC 3329", ("Security-Server",)),
    # 5xx: Server Failure
    Code(500, "Server Internal Error", _3261),
    # Allow on a 501 is our recommendation, not an RFC 3261 requirement: §21.5.2 only says
    # 501 is the answer to a method the server does not recognise (and 405 the answer to
    # one it recognises but refuses). Listing the methods it does implement tells the
    # client what it can send instead, as 405 must (§21.4.6).
    Code(501, "Not Implemented", _3261, ("Allow",)),
    Code(502, "Bad Gateway", _3261),
    Code(503, "Service Unavailable", _3261),
    Code(504, "Server Time-out", _3261),
    Code(505, "Version Not Supported", _3261),
    Code(513, "Message Too Large", _3261),
    Code(555, "Push Notification Service Not Supported", "RFC 8599"),
    Code(580, "Precondition Failure", "RFC 3312"),
    # 6xx: Global Failure
    Code(600, "Busy Everywhere", _3261),
    Code(603, "Decline", _3261),
    Code(604, "Does Not Exist Anywhere", _3261),
    Code(606, "Not Acceptable", _3261),
    Code(607, "Unwanted", "RFC 8197"),
    Code(608, "Rejected", "RFC 8688"),
)

#: Every registered code, read-only, in ascending order.
CODES: Mapping[int, Code] = MappingProxyType(
    {c.code: c for c in sorted(_ENTRIES, key=lambda c: c.code)}
)

#: 3xx whose Contact is added where configured: a rule that answers one of these may give
#: the Contact target(s); RFC 3261 §21.3 has the client retry at the Contact address(es).
#: Without configuration the response carries no Contact, so ``required`` stays empty.
CONTACT_CODES: frozenset[int] = frozenset({300, 301, 302, 305, 380})

#: Class digit -> the generic phrase for an unregistered code of that class (the headings
#: of RFC 3261 §21 and of the IANA registry's groups).
GENERIC_REASONS: Mapping[int, str] = MappingProxyType(
    {
        1: "Provisional",
        2: "Successful",
        3: "Redirection",
        4: "Request Failure",
        5: "Server Failure",
        6: "Global Failure",
    }
)


def is_valid_code(code: int) -> bool:
    """Whether ``code`` is a SIP status code (100-699), registered or not."""
    return MIN_CODE <= code <= MAX_CODE


def reason_for(code: int) -> str:
    """The registered phrase for ``code``, else its class's generic phrase.

    Raises ValueError for a code outside 100-699.
    """
    if not is_valid_code(code):
        raise ValueError(f"not a SIP status code (100-699): {code}")
    entry = CODES.get(code)
    return entry.reason if entry is not None else GENERIC_REASONS[code // 100]


def required_headers(code: int) -> tuple[str, ...]:
    """Header fields a response with ``code`` must carry; () for an unregistered code."""
    entry = CODES.get(code)
    return entry.required if entry is not None else ()


_HEADINGS = ("CODE", "REASON", "CLASS", "RFC", "REQUIRED-HEADERS")


def _row(entry: Code) -> tuple[str, str, str, str, str]:
    if entry.required:
        headers = ", ".join(entry.required)
    elif entry.code in CONTACT_CODES:
        headers = "(Contact, where configured)"
    else:
        headers = "-"
    return (str(entry.code), entry.reason, f"{entry.klass}xx", entry.rfc, headers)


def format_table() -> str:
    """The table ``sip-responder --codes`` prints: a header line, then one line per code."""
    rows = [_HEADINGS, *(_row(entry) for entry in CODES.values())]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADINGS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines) + "\n"
