"""The one way rules change while serving (SIGHUP and PUT /rules): ops.reload.swap_rules."""

from __future__ import annotations

import pytest

from responder.core.engine import Engine
from responder.ops.metrics import ServerStats
from responder.ops.reload import Reloads, swap_rules
from responder.rules.loader import build_ruleset
from responder.rules.model import RuleError, RuleSet
from responder.sip.seeded import Seeded


def test_swap_counts_versions_and_failures() -> None:
    engine = Engine(build_ruleset(None, []), Seeded(1))
    reloads = Reloads()
    new = build_ruleset(None, ["INVITE->486"])
    assert swap_rules(engine, reloads, lambda: new, "admin") is new
    assert engine.ruleset is new and reloads.version == 2

    def bad() -> RuleSet:
        raise RuleError("<admin>:1:1: no")

    with pytest.raises(RuleError):
        swap_rules(engine, reloads, bad, "sighup")
    assert engine.ruleset is new and reloads.version == 2
    assert reloads.counts == {("admin", "ok"): 1, ("sighup", "failed"): 1}


def test_metrics_read_the_reloads_and_change_nothing() -> None:
    stats = ServerStats()
    assert stats.reloads.version == 1 and not hasattr(stats, "swap")
    swap_rules(Engine(build_ruleset(None, []), Seeded(1)), stats.reloads,
               lambda: build_ruleset(None, []), "sighup")
    assert stats.reloads.version == 2
