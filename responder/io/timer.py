"""One timer for one engine, whatever transports drive it.

The engine says when it next has something to send (``next_deadline``) and gives it when
asked (``due``); an :class:`EngineTimer` keeps one asyncio timer handle at that deadline and
hands what is due to ``carry`` (observers first, then the transports). Every transport of an
engine shares its timer (the server gives the UDP transport's to the stream transport), so
a delayed step is taken once, by whoever owns its destination.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from responder.core.effects import Effect
from responder.core.engine import Engine

Carry = Callable[[list[Effect]], None]


class EngineTimer:
    def __init__(self, loop: asyncio.AbstractEventLoop, engine: Engine, carry: Carry) -> None:
        self.loop = loop
        self.engine = engine
        self.carry = carry
        self._handle: asyncio.TimerHandle | None = None
        self._at: float | None = None

    def arm(self) -> None:
        """After the engine took something in: be there at its next deadline."""
        deadline = self.engine.next_deadline()
        if deadline is None or (self._at is not None and self._at <= deadline):
            # Nothing to wait for, or the armed timer comes first: it fires, takes what is
            # due then (perhaps nothing) and arms for what is next. So a call whose 2xx
            # waits for its ACK does not move the loop's timer twice (INVITE, then ACK).
            return
        if self._handle is not None:
            self._handle.cancel()
        self._at = deadline
        self._handle = self.loop.call_at(deadline, self._fire, deadline)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._at = None

    def _fire(self, deadline: float) -> None:
        self._handle = self._at = None
        # asyncio may run a timer up to one clock tick early: it is due at its deadline.
        effects = self.engine.due(max(self.loop.time(), deadline))
        if effects:
            self.carry(effects)
        self.arm()
