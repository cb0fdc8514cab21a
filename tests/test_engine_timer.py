"""EngineTimer (responder/io/timer.py): one loop timer at the engine's next deadline.

The loop here is a real asyncio loop whose clock the test reads; the engine is a stand-in
that only says when it next has something (``next_deadline``) and what is due (``due``):
what is under test is when the timer is (re)armed and that nothing due is ever missed."""

from __future__ import annotations

import asyncio
from typing import Any

from responder.core.effects import Effect
from responder.io.timer import EngineTimer


class Deadlines:
    """An engine with a list of deadlines; ``due`` takes the ones passed."""

    def __init__(self) -> None:
        self.at: list[float] = []
        self.taken: list[float] = []

    def next_deadline(self) -> float | None:
        return min(self.at) if self.at else None

    def due(self, now: float) -> list[Effect]:
        passed = sorted(t for t in self.at if t <= now)
        self.at = [t for t in self.at if t > now]
        self.taken += passed
        return []


class CountingLoop:
    """The loop's call_at, counted (everything else is the real loop's)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop, self.calls = loop, 0

    def call_at(self, when: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        self.calls += 1
        return self.loop.call_at(when, callback, *args)

    def time(self) -> float:
        return self.loop.time()


def test_a_later_deadline_does_not_move_the_timer_and_nothing_is_missed() -> None:
    async def run() -> tuple[int, list[float], list[float]]:
        loop = asyncio.get_running_loop()
        counting = CountingLoop(loop)
        engine = Deadlines()
        timer = EngineTimer(counting, engine, lambda effects: None)  # type: ignore[arg-type]
        t0 = loop.time()
        wanted = [t0 + 0.05 + 0.01 * i for i in range(10)]
        for at in wanted:  # a call's 2xx resend queued, its ACK takes the last one away
            engine.at.append(at)
            timer.arm()
            engine.at = engine.at[-1:]
            timer.arm()
        armed_once = counting.calls
        await asyncio.sleep(0.25)
        return armed_once, engine.taken, wanted[-1:]

    armed_once, taken, wanted = asyncio.run(run())
    assert armed_once == 1  # ten deadlines, each later than the last: one loop timer
    assert taken == wanted  # and the one left was taken when it came


def test_an_earlier_deadline_moves_the_timer() -> None:
    async def run() -> tuple[int, list[float]]:
        loop = asyncio.get_running_loop()
        counting = CountingLoop(loop)
        engine = Deadlines()
        timer = EngineTimer(counting, engine, lambda effects: None)  # type: ignore[arg-type]
        t0 = loop.time()
        engine.at.append(t0 + 5.0)
        timer.arm()
        engine.at.append(t0 + 0.02)
        timer.arm()
        await asyncio.sleep(0.1)
        timer.cancel()
        return counting.calls, engine.taken

    calls, taken = asyncio.run(run())
    assert calls >= 2 and len(taken) == 1  # the earlier one re-armed and was taken in time
