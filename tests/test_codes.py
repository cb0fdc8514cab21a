"""The response-code registry (SPEC §6): shape of every entry, IANA phrases, lookups."""

from __future__ import annotations

import re
import string
from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from responder.sip import codes
from responder.sip.codes import (
    CODES,
    CONTACT_CODES,
    GENERIC_REASONS,
    Code,
    format_table,
    is_valid_code,
    reason_for,
    required_headers,
)

PRINTABLE = frozenset(string.printable) - frozenset("\t\n\r\x0b\x0c")

# Registered codes and their IANA phrases, written out independently of the module.
IANA_PHRASES = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",  # IANA marks the row "(Deprecated)"; see test_202_is_accepted
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    424: "Bad Location Information",
    425: "Bad Alert Message",
    428: "Use Identity Header",
    429: "Provide Referrer Identity",
    430: "Flow Failed",
    433: "Anonymity Disallowed",
    436: "Bad Identity Info",
    437: "Unsupported Credential",
    438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded",
    469: "Bad Info Package",
    470: "Consent Needed",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
    607: "Unwanted",
    608: "Rejected",
}

REQUIRED = {
    401: ("WWW-Authenticate",),
    405: ("Allow",),
    407: ("Proxy-Authenticate",),
    415: ("Accept",),
    420: ("Unsupported",),
    421: ("Require",),
    422: ("Min-SE",),
    423: ("Min-Expires",),
    489: ("Allow-Events",),
    494: ("Security-Server",),
    501: ("Allow",),
}

UNREGISTERED = [
    (299, "Successful"),
    (478, "Request Failure"),
    (650, "Global Failure"),
    (150, "Provisional"),
    (399, "Redirection"),
    (599, "Server Failure"),
]


@pytest.mark.parametrize("entry", list(CODES.values()), ids=lambda e: str(e.code))
def test_entry_is_well_formed(entry: Code) -> None:
    assert entry.reason, "empty reason phrase"
    assert entry.reason == entry.reason.strip()
    assert set(entry.reason) <= PRINTABLE, f"non-printable or non-ASCII: {entry.reason!r}"
    assert "  " not in entry.reason
    assert entry.klass == entry.code // 100
    assert 1 <= entry.klass <= 6
    assert re.fullmatch(r"RFC \d+", entry.rfc), entry.rfc
    assert is_valid_code(entry.code)
    assert reason_for(entry.code) == entry.reason
    for name in entry.required:
        assert re.fullmatch(r"[A-Za-z]+(-[A-Za-z]+)*", name), name


def test_registry_is_complete_and_exact() -> None:
    assert dict((c, e.reason) for c, e in CODES.items()) == IANA_PHRASES
    assert len(CODES) == 75


@pytest.mark.parametrize(("code", "phrase"), sorted(IANA_PHRASES.items()), ids=str)
def test_registered_phrase(code: int, phrase: str) -> None:
    assert CODES[code].code == code
    assert reason_for(code) == phrase


def test_202_is_accepted() -> None:
    # IANA marks the row "(Deprecated)"; the phrase sent is "Accepted".
    assert reason_for(202) == "Accepted"
    assert CODES[202].rfc == "RFC 6665"


def test_rfc_3261_has_its_fifty() -> None:
    own = {c for c, e in CODES.items() if e.rfc == "RFC 3261"}
    assert len(own) == 50
    assert {100, 200, 400, 481, 487, 500, 505, 513, 600, 606} <= own
    assert CODES[199].rfc == "RFC 6228"
    assert CODES[608].rfc == "RFC 8688"


def test_ordered_and_read_only() -> None:
    keys = list(CODES)
    assert keys == sorted(keys)
    assert isinstance(CODES, MappingProxyType)
    assert isinstance(GENERIC_REASONS, MappingProxyType)
    with pytest.raises(TypeError):
        CODES[999] = Code(999, "X", "RFC 1")  # type: ignore[index]  # on purpose: read-only


def test_entries_are_frozen() -> None:
    entry = CODES[486]
    with pytest.raises(AttributeError):
        entry.reason = "Busy"  # type: ignore[misc]  # on purpose: frozen
    assert entry == Code(486, "Busy Here", "RFC 3261")


def test_generic_reasons() -> None:
    assert dict(GENERIC_REASONS) == {
        1: "Provisional",
        2: "Successful",
        3: "Redirection",
        4: "Request Failure",
        5: "Server Failure",
        6: "Global Failure",
    }


@pytest.mark.parametrize(("code", "phrase"), UNREGISTERED, ids=lambda v: str(v))
def test_unregistered_gets_generic_phrase(code: int, phrase: str) -> None:
    assert code not in CODES
    assert is_valid_code(code)
    assert reason_for(code) == phrase
    assert required_headers(code) == ()


@pytest.mark.parametrize("code", [99, 700, 0, -100, 1000])
def test_out_of_range(code: int) -> None:
    assert not is_valid_code(code)
    with pytest.raises(ValueError, match=str(code)):
        reason_for(code)


@pytest.mark.parametrize("code", [100, 699])
def test_bounds_are_valid(code: int) -> None:
    assert is_valid_code(code)
    assert reason_for(code) in {"Trying", "Global Failure"}


@given(st.integers(min_value=100, max_value=699))
def test_every_valid_code_has_a_phrase(code: int) -> None:
    phrase = reason_for(code)
    assert phrase
    assert phrase == (CODES[code].reason if code in CODES else GENERIC_REASONS[code // 100])


@pytest.mark.parametrize(("code", "headers"), sorted(REQUIRED.items()), ids=str)
def test_required_headers(code: int, headers: tuple[str, ...]) -> None:
    assert required_headers(code) == headers
    assert CODES[code].required == headers


def test_no_other_code_requires_headers() -> None:
    assert {c: e.required for c, e in CODES.items() if e.required} == REQUIRED


def test_contact_codes() -> None:
    assert frozenset({300, 301, 302, 305, 380}) == CONTACT_CODES
    for code in CONTACT_CODES:
        assert CODES[code].klass == 3
        assert required_headers(code) == ()


def test_format_table() -> None:
    table = format_table()
    assert table.endswith("\n")
    assert not table.endswith("\n\n")
    lines = table.splitlines()
    assert len(lines) == len(CODES) + 1
    assert lines[0].split() == ["CODE", "REASON", "CLASS", "RFC", "REQUIRED-HEADERS"]
    for line, entry in zip(lines[1:], CODES.values(), strict=True):
        assert line.startswith(f"{entry.code} ")
        assert entry.reason in line
        assert entry.rfc in line
        assert f"{entry.klass}xx" in line
        for name in entry.required:
            assert name in line
        assert line == line.rstrip()


def test_format_table_columns_align() -> None:
    lines = format_table().splitlines()
    header = lines[0]
    starts = [header.index(h) for h in ("REASON", "CLASS", "RFC", "REQUIRED-HEADERS")]
    for line, entry in zip(lines[1:], CODES.values(), strict=True):
        assert line[starts[0] :].startswith(entry.reason)
        assert line[starts[1] :].startswith(f"{entry.klass}xx")
        assert line[starts[2] :].startswith(entry.rfc)
        assert line[starts[3] - 2 : starts[3]] == "  "


def test_format_table_shows_required_and_contact() -> None:
    lines = {int(line.split()[0]): line for line in format_table().splitlines()[1:]}
    assert lines[401].endswith("WWW-Authenticate")
    assert lines[302].endswith("(Contact, where configured)")
    assert lines[486].endswith("-")


def test_core_imports_stay_out() -> None:
    source = Path(codes.__file__).read_text(encoding="utf-8")
    imported = set(re.findall(r"^\s*(?:from|import)\s+([\w.]+)", source, re.MULTILINE))
    assert imported
    assert not imported & {"asyncio", "socket", "yaml", "signal"}
