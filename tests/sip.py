"""Tiny helpers shared by the unit tests: request bytes and a response reader."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from responder.core.effects import Effect, Inbound, Send
from responder.core.engine import Engine
from responder.core.journal import Journal


def feed(engine: Engine, data: bytes, source: tuple[str, int], now: float,
         local: tuple[str, int] | None = None, handed: bool = False) -> list[Effect]:
    """One datagram into the engine: ``Engine.receive(Inbound(...), now)``."""
    return engine.receive(Inbound(data, source, local), now, handed)


class Recorded:
    """An engine whose effects a journal observes, wired the way the server wires them."""

    def __init__(self, engine: Engine, size: int) -> None:
        engine.record = True
        self.engine, self.journal = engine, Journal(size)

    def feed(self, data: bytes, source: tuple[str, int], now: float,
             local: tuple[str, int] | None = None) -> list[Effect]:
        effects = feed(self.engine, data, source, now, local)
        self.journal.observe(effects)
        return effects

    def due(self, now: float) -> list[Effect]:
        effects = self.engine.due(now)
        self.journal.observe(effects)
        return effects


def answer(engine: Engine, data: bytes, source: tuple[str, int], now: float,
           local: tuple[str, int] | None = None) -> list[Send]:
    """:func:`feed`, and only what went on the wire (every effect a Send: checked)."""
    return all_sends(feed(engine, data, source, now, local))


def sends(effects: Sequence[Effect]) -> list[Send]:
    """The Send effects (what goes on the wire), in order."""
    return [e for e in effects if isinstance(e, Send)]


def all_sends(effects: Sequence[Effect]) -> list[Send]:
    """The effects, every one of them a Send (checked): typed for the wire."""
    out = sends(effects)
    assert len(out) == len(effects), effects
    return out


def request(
    method: str = "OPTIONS",
    uri: str = "sip:1000@lab.example",
    *,
    call_id: str = "call-1@test",
    branch: str = "z9hG4bK-test-1",
    via_host: str = "192.0.2.10:5062",
    rport: bool = False,
    from_tag: str = "ft-1",
    to: str = "<sip:1000@lab.example>",
    cseq: int = 1,
    cseq_method: str | None = None,
    extra: str = "",
    body: str = "",
) -> bytes:
    via = f"SIP/2.0/UDP {via_host};branch={branch}" + (";rport" if rport else "")
    text = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: {via}\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: \"Alice\" <sip:alice@client.example>;tag={from_tag}\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {cseq_method or method}\r\n"
        f"{extra}"
        f"Content-Length: {len(body.encode())}\r\n"
        f"\r\n{body}"
    )
    return text.encode()


@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def one(self, name: str) -> str:
        values = self.all(name)
        assert len(values) == 1, f"{name}: {values}"
        return values[0]

    def has(self, name: str) -> bool:
        return bool(self.all(name))

    @property
    def to_tag(self) -> str | None:
        """The tag parameter of To (None without one)."""
        to = self.one("To")
        at = to.rfind(";tag=")
        return to[at + 5:].split(";", 1)[0] if at >= 0 else None


def read_response(data: bytes) -> Response:
    """Strict reader: CRLF lines, a status line, ``Name: value`` headers, exact framing."""
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, "response has no empty line after its headers"
    lines = head.decode("utf-8", "surrogateescape").split("\r\n")
    version, code, reason = lines[0].split(" ", 2)
    assert version == "SIP/2.0"
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        assert colon and name == name.strip(), f"bad header line {line!r}"
        headers.append((name, value.strip()))
    resp = Response(int(code), reason, headers, body)
    assert int(resp.one("Content-Length")) == len(body), "Content-Length is not exact"
    return resp
