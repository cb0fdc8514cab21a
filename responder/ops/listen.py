"""``--listen`` specs (SPEC §2, §9): ``[SCHEME:]HOST[:PORT]`` -> :class:`Listen`.

``SCHEME`` is ``udp``, ``tcp``, ``tls``, ``ws`` or ``wss`` (``udp://`` style too; none:
UDP); ``HOST`` a name, an IPv4 address, or an IPv6 address in brackets (a bare IPv6 address
is taken whole, without a port). Without a port: 5060 for UDP and TCP, 5061 for TLS (RFC 3261
§19.1.2), 80 for ws and 443 for wss (RFC 7118 names no port of its own: RFC 6455 §3's).
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

from responder.sip.addr import Addr, url

SCHEMES = ("udp", "tcp", "tls", "ws", "wss")
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061, "ws": 80, "wss": 443}
SECURE = frozenset({"tls", "wss"})  # need --tls-cert and --tls-key


class Listen(NamedTuple):
    """One listener: its scheme and the address to bind."""

    scheme: str
    host: str
    port: int

    @property
    def addr(self) -> Addr:
        return self.host, self.port

    def __str__(self) -> str:
        return url(self.scheme, self.addr)


def _is_ipv6(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv6Address)
    except ValueError:
        return False


def split_scheme(text: str) -> tuple[str, str]:
    """(scheme, the rest): ``tls:[::1]:5061`` -> ("tls", "[::1]:5061"); none -> udp."""
    head, sep, rest = text.partition(":")
    scheme = head.lower()
    if sep and scheme in SCHEMES and not _is_ipv6(text):
        return scheme, rest[2:] if rest.startswith("//") else rest
    return "udp", text


def parse_listen(text: str) -> Listen:
    """``tcp:127.0.0.1:5060``, ``tls:[::1]``, ``ws://0.0.0.0:8080``, ``127.0.0.1:0``, ...

    Raises ValueError naming the spec and what was expected."""
    scheme, t = split_scheme(text.strip())
    default = DEFAULT_PORTS[scheme]
    if t.startswith("["):
        host, closed, rest = t[1:].partition("]")
        if not closed:
            raise ValueError(f"{text!r}: expected [IPV6]:PORT")
        if not rest:
            port_text = None
        elif rest.startswith(":"):
            port_text = rest[1:]
        else:
            raise ValueError(f"{text!r}: expected [IPV6]:PORT")
        if not _is_ipv6(host.partition("%")[0]):
            raise ValueError(f"{text!r}: expected an IPv6 address in brackets")
    elif _is_ipv6(t.partition("%")[0]):
        host, port_text = t, None
    else:
        host, sep, port_text_or = t.rpartition(":")
        if not sep:
            host, port_text = t, None
        elif ":" in host:
            raise ValueError(f"{text!r}: expected HOST:PORT or [IPV6]:PORT")
        else:
            port_text = port_text_or
    if not host:
        raise ValueError(f"{text!r}: expected HOST:PORT or [IPV6]:PORT")
    if port_text is None:
        return Listen(scheme, host, default)
    if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5 \
            or int(port_text) > 65535:
        raise ValueError(f"{text!r}: expected HOST:PORT with a port 0-65535")
    return Listen(scheme, host, int(port_text))
