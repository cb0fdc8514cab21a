"""Digest authentication, pure: challenge values and credential checks.

RFC 3261 §22.4 with RFC 2617 / RFC 7616 (MD5 and SHA-256, ``qop=auth``).
Stateless: a nonce is a time stamp and a keyed MAC of it and the source host
(:meth:`responder.sip.seeded.Seeded.nonce`), so it is checked on return without a
table, works from any source port, and turns stale after its lifetime.

The verifier computes the response the way *our* challenge asked: with
``qop=auth`` (``H(HA1:nonce:nc:cnonce:qop:HA2)``) or, when we offered no qop,
the RFC 2069 form ``H(HA1:nonce:HA2)``, whatever the client claims.
SIPVicious's svcrack, for one, says ``qop=auth`` but computes the RFC 2069 form
when the challenge offered none.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from responder.sip.message import Request
from responder.sip.seeded import Seeded

ALGORITHMS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,"]*)\s*(?:,|$)')


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """The rules file's ``auth:`` block."""

    realm: str = "sip-responder"
    users: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    algorithm: str = "MD5"       # MD5 or SHA-256
    qop: bool = True             # offer qop="auth"; False: RFC 2069 digest
    nonce_lifetime: float = 300.0


def nonce_window(lifetime: float) -> int:
    """Seconds a nonce's time stamp is rounded down to: one stamp per window, so that the
    retransmissions of a request inside it get byte-identical challenges (SPEC §3.4). At
    most a quarter of the lifetime (at least 1 s, at most 30 s): a nonce is then valid for
    ``lifetime`` from when it was issued, and a stale challenge's nonce is a new one."""
    return max(1, min(30, int(lifetime // 4)))


def new_nonce(cfg: AuthConfig, seeded: Seeded, now: float, source_host: str) -> str:
    """The nonce of a challenge issued at ``now`` to ``source_host``."""
    return seeded.nonce(now, source_host, nonce_window(cfg.nonce_lifetime))


class Verdict(enum.Enum):
    OK = "ok"
    MISSING = "missing"   # no credentials for our realm
    WRONG = "wrong"       # unknown user, wrong password, bad or forged nonce
    STALE = "stale"       # right password, nonce past its lifetime: challenge with stale=true


def challenge(cfg: AuthConfig, nonce: str, stale: bool = False) -> str:
    """The WWW-Authenticate / Proxy-Authenticate value.

    ``algorithm`` is unquoted and ``qop`` quoted (RFC 2617 §3.2.1), the form
    every client parses, SIPVicious included.
    """
    value = f'Digest realm="{cfg.realm}", nonce="{nonce}", algorithm={cfg.algorithm}'
    if cfg.qop:
        value += ', qop="auth"'
    if stale:
        value += ", stale=true"
    return value


def parse_credentials(value: str) -> dict[str, str] | None:
    """``Digest k=v, k="v"`` -> {k: v} (lower-case keys, quotes removed); None if not Digest."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    out: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if m is None or m.end() == pos:
            return None
        v = m.group(2)
        if v.startswith('"'):
            v = re.sub(r"\\(.)", r"\1", v[1:-1])
        out[m.group(1).lower()] = v
        pos = m.end()
    return out


def _h(algorithm: str, text: str) -> str:
    return ALGORITHMS[algorithm](text.encode("utf-8", "surrogateescape")).hexdigest()


def expected_response(
    cfg: AuthConfig, method: str, password: str, creds: Mapping[str, str]
) -> str | None:
    """The digest response a client knowing ``password`` sends for our challenge."""
    if cfg.algorithm not in ALGORITHMS:
        return None
    username, uri, nonce = creds.get("username"), creds.get("uri"), creds.get("nonce")
    if username is None or uri is None or nonce is None:
        return None
    ha1 = _h(cfg.algorithm, f"{username}:{cfg.realm}:{password}")
    ha2 = _h(cfg.algorithm, f"{method}:{uri}")
    if cfg.qop:
        nc, cnonce = creds.get("nc"), creds.get("cnonce")
        if nc is None or cnonce is None:
            return None
        return _h(cfg.algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
    return _h(cfg.algorithm, f"{ha1}:{nonce}:{ha2}")


def verify(
    cfg: AuthConfig,
    req: Request,
    header_key: str,
    seeded: Seeded,
    now: float,
    source_host: str,
) -> Verdict:
    """Check the request's credentials (``authorization`` or ``proxy-authorization``)."""
    found = None
    for value in req.header_values(header_key):
        creds = parse_credentials(value)
        if creds is not None and creds.get("realm") == cfg.realm:
            found = creds
            break
    if found is None:
        return Verdict.MISSING
    password = cfg.users.get(found.get("username", ""))
    claimed_alg = found.get("algorithm", "MD5")
    if password is None or claimed_alg.upper() != cfg.algorithm.upper():
        return Verdict.WRONG
    expected = expected_response(cfg, req.method, password, found)
    # Compared as bytes: compare_digest refuses a str with non-ASCII characters (a TypeError
    # for `response="é"`), and the client's text is whatever it sent.
    given = found.get("response", "").lower().encode("utf-8", "surrogateescape")
    if expected is None or not hmac.compare_digest(expected.encode("ascii"), given):
        return Verdict.WRONG
    nonce = found["nonce"]
    if not seeded.nonce_valid(nonce, source_host, now, float("inf")):
        return Verdict.WRONG  # not a nonce we issued to this host
    # Stamped up to one window before it was issued: valid for the lifetime from its issue.
    window = nonce_window(cfg.nonce_lifetime)
    if not seeded.nonce_valid(nonce, source_host, now, cfg.nonce_lifetime + window):
        return Verdict.STALE
    return Verdict.OK
