"""Small, strict readers for the address forms a UAS must look at.

Each function returns ``None`` for text it cannot read; the parser turns that
into a :class:`~responder.sip.errors.Problem` with a reason naming the field.
Nothing here rewrites what it reads.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
TOKEN = re.compile(f"[{TOKEN_CHARS}]+")
# An unquoted display name is a run of tokens separated by whitespace (RFC 3261 §25.1);
# RFC 4475 §3.1.1.6 (lwsdisp) asks us to accept it directly followed by "<".
_DISPLAY_TOKENS = re.compile(f"[{TOKEN_CHARS}]+(?:[ \\t]+[{TOKEN_CHARS}]+)*")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
# After "sip:": [user[:password]@] host [:port] [;params] [?headers]. The user part ends at
# the first "@"; a host is a name, IPv4 address or [IPv6 reference]: an unbracketed IPv6
# address leaves a non-numeric "port" and fails (RFC 5118 §4.3 ipv6-bad).
_SIP_REST = re.compile(
    r"(?:([^@]*)@)?(\[[^\]]*\]|[^:;?\[\]<>]+)(?::([0-9]{1,5}))?(;[^?]*)?(\?.*)?", re.DOTALL)

SIP_SCHEMES = frozenset({"sip", "sips"})
# Request-URI schemes we answer; anything else gets 416 (RFC 3261 §8.2.2.1).
SUPPORTED_SCHEMES = frozenset({"sip", "sips", "tel"})


# One comma-separated element: anything but a comma outside quotes and <>; a quoted string
# (backslash escapes) or <...> (which may hold quoted strings) runs to its end, or to the
# end of the value when it is not closed. Possessive: linear, whatever the input.
_QUOTED = r'"(?:[^"\\]++|\\[\s\S])*+(?:"|\\?\Z)'
_ELEMENT = re.compile(r'(?:[^",<]++|' + _QUOTED + r'|<(?:[^">]++|' + _QUOTED
                      + r')*+(?:>|\Z))*+')
_CLOSED_QUOTED = re.compile(r'"(?:[^"\\]++|\\[\s\S])*+"')  # a closed quoted-string


def split_commas(value: str) -> list[str]:
    """Split a header value into its comma-separated values, minding quotes and <>."""
    if '"' not in value and "<" not in value:
        return value.split(",")
    out: list[str] = []
    pos, n, match = 0, len(value), _ELEMENT.match
    while True:
        end = match(value, pos).end()  # type: ignore[union-attr]  # matches "" at least
        out.append(value[pos:end])
        if end >= n:
            return out
        pos = end + 1  # value[end] is a comma


def first_value(value: str) -> str:
    """The first of a header value's comma-separated values (``split_commas(value)[0]``)."""
    if "," not in value:
        return value
    if '"' not in value and "<" not in value:
        return value.partition(",")[0]
    return value[: _ELEMENT.match(value).end()]  # type: ignore[union-attr]


def _angle(text: str) -> tuple[str, str] | None:
    """``<uri> params`` -> (uri, params); ``text`` starts with '<'."""
    gt = text.find(">")
    if gt < 0:
        return None
    uri = text[1:gt]
    if not uri or " " in uri or "\t" in uri:
        return None  # RFC 4475 §3.3.8 badaspec: no LWS inside an addr-spec
    params = text[gt + 1 :].strip(" \t")
    if params and params[0] != ";":
        return None
    return uri, params


_HAS_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")


def name_addr(value: str) -> tuple[str, str] | None:
    parsed = _name_addr(value)
    if parsed is None or not _HAS_SCHEME.match(parsed[0]):
        return None  # RFC 3261 §25.1: an addr-spec is a URI, and a URI has a scheme
    return parsed


def _name_addr(value: str) -> tuple[str, str] | None:
    """Read a From/To/Contact value: ``(uri, ";params...")`` or None when malformed.

    Accepts ``"Display" <uri>;p``, ``Display <uri>;p``, ``<uri>;p`` and the
    bare addr-spec form ``uri;p`` (whose parameters are header parameters,
    RFC 3261 §20.10).
    """
    v = value.strip(" \t")
    if not v:
        return None
    if v[0] == '"':
        q = _CLOSED_QUOTED.match(v)
        if q is None:
            return None  # RFC 4475 §3.1.2.7 quotbal: unterminated quoted string
        rest = v[q.end() :].lstrip(" \t")
        return _angle(rest) if rest[:1] == "<" else None
    lt = v.find("<")
    if lt >= 0:
        display = v[:lt].strip(" \t")
        if display and not _DISPLAY_TOKENS.fullmatch(display):
            return None  # RFC 4475 §3.1.2.13 baddn: ',' in an unquoted display name
        return _angle(v[lt:])
    uri, sep, params = v.partition(";")
    uri = uri.strip(" \t")
    # An addr-spec holding ',', '?' or ';' must be in <> (RFC 3261 §20.10; regbadct).
    if not uri or any(c in uri for c in " \t,?<>\""):
        return None
    return uri, sep + params


def address_and_tag(value: str) -> tuple[str, str | None] | None:
    """From/To: (URI, tag or None), or None when malformed; ``tag=`` empty is malformed.

    The common ``<uri>;tag=x`` and ``"Name" <uri>;tag=x`` are read without the
    general name-addr walk.
    """
    lt = value.find("<")
    gt = value.find(">")
    if 0 <= lt < gt and '"' not in value[:lt] and "\\" not in value and value.count(">") == 1:
        display = value[:lt].strip(" \t")
        uri = value[lt + 1 : gt]
        params = value[gt + 1 :].strip(" \t")
        if (display and not _DISPLAY_TOKENS.fullmatch(display)) or not uri \
                or " " in uri or "\t" in uri or not _HAS_SCHEME.match(uri) \
                or (params and params[0] != ";"):
            return None
    else:
        parsed = name_addr(value)
        if parsed is None:
            return None
        uri, params = parsed
    if not params:
        return uri, None
    k = params.find(";tag=")
    tag: str | None
    if k >= 0 and params.count("tag") == 1:
        tag = params[k + 5 :].partition(";")[0].strip(" \t")
    else:
        tag = param(params, "tag")
    if tag == "":
        return None
    return uri, tag


_PARAM_PATTERNS: dict[str, re.Pattern[bytes]] = {}


def param(params: str, name: str) -> str | None:
    """The value of parameter ``name`` (lower case) in ``;a=1;b``, "" if it has none.

    Names compare by ASCII case (a parameter name is a token); C-speed searches, however
    many parameters there are.
    """
    if not params:
        return None
    raw = params.encode("utf-8", "surrogateescape")
    low = raw.lower()  # bytes: ASCII letters only, offsets kept
    if name.encode() not in low:
        return None
    pattern = _PARAM_PATTERNS.get(name)
    if pattern is None:  # a few names, all constants of this package
        pattern = _PARAM_PATTERNS[name] = re.compile(
            rb"(?:^|;)[ \t]*" + re.escape(name.encode()) + rb"[ \t]*(?:=([^;]*)|(?=;|\Z))")
    m = pattern.search(low)
    if m is None:
        return None
    if m.start(1) < 0:
        return ""
    return raw[m.start(1) : m.end(1)].decode("utf-8", "surrogateescape").strip(" \t")


def params_well_formed(params: str) -> bool:
    """False for empty elements such as ``;;`` (RFC 4475 §3.1.2.1 badinv01)."""
    if not params:
        return True
    # Whitespace never makes an element (or its name) non-empty: without it, an empty
    # element is ";;" or a ";" last, an empty name ";=", and the first element must be empty.
    bare = params.replace(" ", "").replace("\t", "")
    if not bare:
        return True
    return bare[0] == ";" and bare[-1] != ";" and ";;" not in bare and ";=" not in bare


class URIParts:
    """Scheme, user and host of a URI; host/port validity for sip/sips."""

    __slots__ = ("has_headers", "host", "scheme", "user")

    def __init__(self, scheme: str, user: str | None, host: str | None, has_headers: bool):
        self.scheme = scheme
        self.user = user
        self.host = host
        self.has_headers = has_headers


def uri_parts(uri: str) -> URIParts | None:
    """Read ``scheme:user@host:port;params?headers``; None if it is not a URI at all.

    For sip/sips the host must be a hostname, an IPv4 address or a bracketed
    IPv6 reference, and the port digits: ``sip:user@2001:db8::10`` is rejected
    (RFC 5118 §4.3 ipv6-bad). The user part is %-decoded once (RFC 4475 §3.1.1.3).
    """
    if " " in uri or "\t" in uri:
        return None
    if uri[:4] == "sip:":  # the common case first
        scheme, rest = "sip", uri[4:]
    else:
        colon = uri.find(":")
        if colon <= 0 or not _SCHEME.fullmatch(uri[:colon]):
            return None
        scheme, rest = uri[:colon].lower(), uri[colon + 1 :]
        if scheme == "tel":
            number = rest.split(";", 1)[0]
            return URIParts(scheme, _unescape(number) if number else None, None, False)
        if scheme not in SIP_SCHEMES:
            return URIParts(scheme, None, None, False)
    # The user part may hold "?" (user-unreserved, RFC 4475 intmeth); headers follow the host.
    m = _SIP_REST.fullmatch(rest)
    if m is None:
        return None
    user, host, port, _, headers = m.groups()
    if port is not None and int(port) > 65535:
        return None
    if user is not None:
        user = _unescape(user.split(":", 1)[0])  # drop a password
    return URIParts(scheme, user, host, headers is not None)


def _unescape(text: str) -> str:
    return unquote(text, errors="surrogateescape") if "%" in text else text
