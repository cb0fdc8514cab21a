"""The engine's express way (Engine._handle, responder.core.answer.express): a request outside
calls whose rule is one immediate plain step is answered without _answer's questions. It must
give exactly what the full way gives -- the same bytes, events, counters -- for every request
it takes, and never take one the full way answers differently (a call's method, a To tag, a
Require, a problem, a delayed, faulty, repeated, reliable, authenticated or several-step rule)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sip import feed, request

from responder.core.effects import Effect
from responder.core.engine import CALL_METHODS, Engine
from responder.rules.loader import build_ruleset, load_text
from responder.rules.model import RuleSet
from responder.sip.seeded import Seeded

SRC = ("192.0.2.10", 5062)
LOCAL = ("127.0.0.1", 5060)

RULES = """
identity: {server: "express-test", supported: [100rel, timer]}
auth: {realm: lab, users: {"1000": "pw"}}
rules:
  - name: info-body
    match: {method: INFO}
    respond: {code: 200, body: "ok", content_type: text/plain, headers: {X-Lab: one}}
  - {name: msg-two, match: {method: MESSAGE}, respond: [100, 202]}
  - {name: sub-late, match: {method: SUBSCRIBE}, respond: [{code: 202, after: 1s}]}
  - {name: notify-fault, match: {method: NOTIFY}, respond: {code: 200, fault: no-to-tag}}
  - {name: pub-repeat, match: {method: PUBLISH}, repeat: 3, respond: 412}
  - {name: refer-half, match: {method: REFER}, probability: 0.5, respond: 403}
  - {name: reg-auth, match: {method: REGISTER}, auth: digest, respond: 200}
  - {name: options-from, match: {method: OPTIONS, from_user: bob}, respond: 404}
  - {name: ok, match: {method: [OPTIONS, BYE, UPDATE, PRACK]}, respond: 200}
default: 501
"""


def rulesets() -> list[RuleSet]:
    return [build_ruleset(None, []), load_text(RULES, "express.yaml")]


def pair(ruleset: RuleSet, record: bool) -> tuple[Engine, Engine]:
    """Two engines alike, but the second never takes the express way."""
    fast, full = Engine(ruleset, Seeded(7), record=record), Engine(ruleset, Seeded(7),
                                                                    record=record)
    full.express = {}
    return fast, full


def test_the_table_takes_only_one_immediate_plain_step_outside_calls() -> None:
    default, lab = rulesets()
    engine = Engine(default, Seeded(1))
    assert {"OPTIONS", "REGISTER", "MESSAGE", "INFO", "NOTIFY", "SUBSCRIBE",
            "PUBLISH", "REFER"} <= set(engine.express)
    assert not set(engine.express) & CALL_METHODS  # INVITE, ACK, CANCEL, UPDATE, BYE, PRACK
    engine.set_rules(lab)  # a reload computes it again
    # INFO: one step with a body and headers is express; the others are not: two steps,
    # delayed, fault, repeat, probability, auth, a condition before the plain rule
    assert set(engine.express) == {"INFO"}


REQUESTS = [
    request("OPTIONS"),
    request("OPTIONS", branch="z9hG4bK-2", from_tag="ft-2", call_id="c2"),
    request("OPTIONS", extra="Require: 100rel\r\n"),
    request("OPTIONS", extra="Require: foo\r\n"),
    request("OPTIONS", to="<sip:1000@lab.example>;tag=abc"),
    request("OPTIONS", cseq_method="INFO"),  # a problem: CSeq method mismatch
    request("REGISTER", extra="Contact: <sip:alice@192.0.2.10:5062>\r\nExpires: 60\r\n"),
    request("INFO", body="hello"),
    request("MESSAGE", body="hi"),
    request("SUBSCRIBE", extra="Event: presence\r\n"),
    request("NOTIFY", extra="Event: presence\r\n"),
    request("PUBLISH"),
    request("REFER", extra="Refer-To: <sip:x@y>\r\n"),
    request("BYE", to="<sip:1000@lab.example>;tag=abc"),
    request("UPDATE"),
    request("FOO"),
]


@pytest.mark.parametrize("record", [False, True])
@pytest.mark.parametrize("which", [0, 1], ids=["default-rules", "lab-rules"])
def test_every_request_gets_what_the_full_way_gives(which: int, record: bool) -> None:
    fast, full = pair(rulesets()[which], record)
    now = 0.0
    for data in REQUESTS + REQUESTS:  # the second round: retransmissions
        now += 0.01
        assert feed(fast, data, SRC, now, LOCAL) == feed(full, data, SRC, now, LOCAL)
    for later in (0.6, 1.2, 5.0, 40.0):
        assert fast.due(later) == full.due(later)
    assert fast.counters == full.counters


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(REQUESTS) - 1), st.floats(0.0, 2.0)),
                max_size=25),
       st.booleans())
def test_any_order_and_timing_gives_the_same_effects(steps: list[tuple[int, float]],
                                                     record: bool) -> None:
    fast, full = pair(rulesets()[1], record)
    now = 0.0
    for i, gap in steps:
        now += gap
        got: list[Effect] = fast.due(now) + feed(fast, REQUESTS[i], SRC, now, LOCAL)
        want: list[Effect] = full.due(now) + feed(full, REQUESTS[i], SRC, now, LOCAL)
        assert got == want
    assert fast.counters == full.counters
