"""Each lab profile in config/examples/ loads and behaves as its comment says (fake clock)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from sip import answer, feed, read_response, request, sends

from responder.core.effects import Effect
from responder.core.engine import Engine
from responder.rules.loader import load_file
from responder.sip.seeded import Seeded

EXAMPLES = Path(__file__).resolve().parents[1] / "config" / "examples"
SRC = ("127.0.0.1", 40000)


def engine(name: str, seed: int = 1) -> Engine:
    return Engine(load_file(EXAMPLES / name), Seeded(seed))


def statuses(outs: Sequence[Effect]) -> list[int]:
    return [read_response(o.data).status for o in sends(outs)]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_loads_without_warnings(path: Path) -> None:
    ruleset = load_file(path)
    assert ruleset.rules and not ruleset.warnings
    assert path.read_text().startswith("#"), "each profile starts with a comment saying what for"


def test_the_five_lab_use_cases_are_there() -> None:
    names = {p.stem for p in EXAMPLES.glob("*.yaml")}
    assert {"busy-pbx", "flaky-trunk", "scanner-honeypot", "registrar", "lab-pbx"} <= names


def test_busy_pbx_rings_then_is_busy_and_some_are_unreachable() -> None:
    e = engine("busy-pbx.yaml", seed=3)
    calls = [request("INVITE", uri=f"sip:10{i}@pbx", call_id=f"c{i}") for i in range(40)]
    first = [statuses(feed(e, c, SRC, 0.0)) for c in calls]
    overloaded = [s for s in first if s == [503]]
    assert 0 < len(overloaded) < 8  # about 5 %
    later = e.due(0.2) + e.due(3.0)
    assert statuses(later).count(486) == len(calls) - len(overloaded)
    busy = next(read_response(o.data) for o in sends(later) if b" 486 " in o.data[:12])
    assert busy.one("Retry-After") == "60"
    unreachable = answer(e, request("INVITE", uri="sip:900@pbx", call_id="u"), SRC, 10.0)
    assert statuses(unreachable) in ([100], [503])


def test_busy_pbx_refuses_message_with_an_allow_that_does_not_name_it() -> None:
    """Issue 12: its default (405) answered MESSAGE with an Allow that listed MESSAGE."""
    e = engine("busy-pbx.yaml")
    refused = read_response(answer(e, request("MESSAGE", call_id="m"), SRC, 0.0)[-1].data)
    assert refused.status == 405
    assert refused.one("Allow") == "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER"
    options = read_response(answer(e, request("OPTIONS", call_id="o"), SRC, 0.0)[-1].data)
    assert options.status == 200 and options.one("Allow") == refused.one("Allow")


def test_flaky_trunk_loses_the_first_invite_and_answers_the_retransmission() -> None:
    e = engine("flaky-trunk.yaml")
    invite = request("INVITE", uri="sip:+4912345@trunk", call_id="lossy")
    assert statuses(feed(e, invite, SRC, 0.0)) == []  # held back: logged, not sent
    assert statuses(feed(e, invite, SRC, 0.5)) == [100]


def test_scanner_honeypot_challenges_scanners_forever_and_hides_extensions() -> None:
    e = engine("scanner-honeypot.yaml")
    scanner = "User-Agent: friendly-scanner\r\n"
    reg = request("REGISTER", uri="sip:pbx", to="<sip:100@pbx>", extra=scanner)
    resp = read_response(answer(e, reg, SRC, 0.0)[0].data)
    assert resp.status == 401 and 'realm="asterisk"' in resp.one("WWW-Authenticate")
    assert resp.one("Server") == "Asterisk PBX 16.2.1"
    for user in ("100", "101", "999"):
        inv = request("INVITE", uri=f"sip:{user}@pbx", call_id=user, extra=scanner)
        assert statuses(feed(e, inv, SRC, 0.0)) == [404]
    # The comment names sipsak among the scanners: its User-Agent is recognised too.
    sipsak = request("OPTIONS", uri="sip:100@pbx", call_id="s",
                     extra="User-Agent: sipsak 0.9.8.1\r\n")
    assert statuses(feed(e, sipsak, SRC, 0.0)) == [404]


def test_registrar_refuses_brief_expiry_challenges_known_users_and_404s_unknown() -> None:
    e = engine("registrar.yaml")

    def register(user: str, expires: str, call_id: str) -> int:
        data = request("REGISTER", uri="sip:lab.example", to=f"<sip:{user}@lab.example>",
                       call_id=call_id, extra=f"Contact: <sip:{user}@192.0.2.9>\r\n"
                                             f"Expires: {expires}\r\n")
        resp = read_response(answer(e, data, SRC, 0.0)[0].data)
        if resp.status == 423:
            assert resp.one("Min-Expires") == "60"
        return resp.status

    assert register("1000", "30", "a") == 423
    assert register("1000", "0", "z") == 401  # a de-registration is no brief expiry
    assert register("1000", "3600", "b") == 401
    assert register("alice", "600", "c") == 401
    assert register("mallory", "600", "d") == 404
