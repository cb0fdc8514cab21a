"""Transport addresses: the one definition of ``Addr`` and the one way ``host:port`` is
written (IPv6 in brackets, RFC 3986 §3.2.2), for logs, URIs and announcements."""

from __future__ import annotations

Addr = tuple[str, int]  # (host, port) as the socket gives it; IPv6 without brackets


def hostport(addr: Addr) -> str:
    """``127.0.0.1:5060``, ``[::1]:5060``."""
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def url(scheme: str, addr: Addr) -> str:
    """``udp://127.0.0.1:5060``, ``http://[::1]:8080``."""
    return f"{scheme}://{hostport(addr)}"
