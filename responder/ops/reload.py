"""The one way the rules in force change while serving: SIGHUP and ``PUT /rules`` both call
:func:`swap_rules`. Metrics read the counts kept here; they change nothing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from responder.core.engine import Engine
from responder.rules.model import RuleError, RuleSet

SOURCES = ("sighup", "admin")


@dataclass
class Reloads:
    """``version`` starts at 1 and grows by one on every successful swap; ``counts[(source,
    result)]`` counts the attempts (source ``sighup`` or ``admin``, result ``ok`` or
    ``failed``)."""

    version: int = 1
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)


def swap_rules(engine: Engine, reloads: Reloads, build: Callable[[], RuleSet],
               source: str) -> RuleSet:
    """Build a rule set and install it at once; a RuleError leaves the old one in force."""
    try:
        ruleset = build()
    except RuleError:
        reloads.counts[(source, "failed")] += 1
        raise
    engine.set_rules(ruleset)
    reloads.version += 1
    reloads.counts[(source, "ok")] += 1
    return ruleset
