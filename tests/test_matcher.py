"""Which rule answers a request (SPEC §3.2, §3.3, §3.4, §5): ``matches`` and ``select``.

Requests are real ones, parsed by ``responder.sip.parser.parse`` from small byte templates;
rules come from the rule languages (YAML snippets and ``--rule`` specs).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from responder.rules.loader import build_ruleset, load_text
from responder.rules.matcher import explain, matches, select, select_in_dialog
from responder.rules.model import Match, Pattern, Rule, RuleSet, Step
from responder.rules.oneline import parse_rule
from responder.sip.message import Request
from responder.sip.parser import parse
from responder.sip.seeded import Seeded

SOURCE = "192.0.2.10"


def request(
    method: str = "INVITE",
    uri: str = "sip:1000@lab.example",
    *,
    from_: str = '"Alice" <sip:alice@client.example>;tag=f1',
    to: str | None = None,
    call_id: str = "call-1@client.example",
    branch: str = "z9hG4bK-1",
    cseq: int = 1,
    extra: tuple[str, ...] = (),
) -> Request:
    """Parse a small, well-formed request; ``extra`` are raw header lines."""
    to_value = to if to is not None else f"<{uri}>"
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP client.example:5060;branch={branch};rport",
        "Max-Forwards: 70",
        f"From: {from_}",
        f"To: {to_value}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        *extra,
        "Content-Length: 0",
    ]
    req = parse(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert req.problem is None, req.problem  # the template itself must be well formed
    return req


def match_of(yaml_match: str) -> Match:
    """The Match of a one-rule file whose match block is ``yaml_match`` (flow style)."""
    rs = load_text(f"rules:\n  - match: {yaml_match}\n    respond: 486\n", "m.yaml")
    return rs.rules[0].match


def spec_match(spec: str) -> Match:
    rule, _ = parse_rule(spec)
    return rule.match


def ruleset(*specs: str) -> RuleSet:
    return RuleSet(rules=tuple(parse_rule(s)[0] for s in specs))


def names(rule: Rule | None) -> str | None:
    return None if rule is None else rule.name


# --------------------------------------------------------------------------- methods


@pytest.mark.parametrize(
    ("rule_method", "method", "expected"),
    [
        ("INVITE", "INVITE", True),
        ("INVITE", "OPTIONS", False),
        ("INVITE", "ACK", False),
        ("invite", "INVITE", False),  # RFC 3261 §7.1: the method is case-sensitive
        ("[OPTIONS, REGISTER]", "OPTIONS", True),
        ("[OPTIONS, REGISTER]", "REGISTER", True),
        ("[OPTIONS, REGISTER]", "INVITE", False),
        ('"*"', "INVITE", True),
        ('"*"', "OPTIONS", True),
        ('"*"', "BYE", True),
        ('"*"', "REGISTER", True),
        ('"*"', "PUBLISH", True),
        ('"*"', "XFOO", True),  # an extension method
        ('"*"', "ACK", False),  # SPEC §5: * means any method but ACK and CANCEL
        ('"*"', "CANCEL", False),
        ("CANCEL", "CANCEL", True),  # only a rule naming CANCEL answers one
        ("[INVITE, CANCEL]", "CANCEL", True),
        ("[INVITE, CANCEL]", "BYE", False),
    ],
)
def test_method(rule_method: str, method: str, expected: bool) -> None:
    uri = "sip:1000@lab.example"
    assert matches(match_of(f"{{method: {rule_method}}}"), request(method, uri), SOURCE) \
        is expected


@pytest.mark.parametrize(
    ("method", "expected"),
    [("INVITE", True), ("MESSAGE", True), ("ACK", False), ("CANCEL", False)],
)
def test_no_match_block_is_any_request_but_ack_and_cancel(method: str, expected: bool) -> None:
    rs = load_text("rules:\n  - respond: 200\n", "m.yaml")
    assert rs.rules[0].match == Match()
    assert matches(rs.rules[0].match, request(method), SOURCE) is expected


@pytest.mark.parametrize(
    ("spec", "method", "expected"),
    [
        ("*->503", "OPTIONS", True),
        ("*->503", "ACK", False),
        ("*->503", "CANCEL", False),
        ("CANCEL->200", "CANCEL", True),
        ("CANCEL->200", "INVITE", False),
        ("OPTIONS->200", "OPTIONS", True),
    ],
)
def test_method_of_oneline_rules(spec: str, method: str, expected: bool) -> None:
    assert matches(spec_match(spec), request(method), SOURCE) is expected


# --------------------------------------------------------------------------- target user


@pytest.mark.parametrize(
    ("pattern", "user", "expected"),
    [
        ("1000", "1000", True),
        ("1000", "10000", False),
        ("1000", "100", False),
        ("10*", "1000", True),
        ("10*", "10", True),
        ("10*", "1099", True),
        ("10*", "2000", False),
        ("1?00", "1200", True),
        ("1?00", "12000", False),
        ("1[0-4]??", "1234", True),
        ("1[0-4]??", "1534", False),
        ("alice", "Alice", False),  # the user part is case-sensitive (RFC 3261 §19.1.4)
        ("re:^(alice|bob)$", "bob", True),
        ("re:^(alice|bob)$", "bobby", False),
        ("re:^\\+49", "+4930123456", True),
        ("re:^\\+49", "004930123456", False),
        ("re:99$", "1099", True),
    ],
)
def test_user_pattern_on_request_uri_user(pattern: str, user: str, expected: bool) -> None:
    req = request("INVITE", f"sip:{user}@lab.example")
    assert req.target_user == user
    assert matches(match_of(f"{{user: '{pattern}'}}"), req, SOURCE) is expected


@pytest.mark.parametrize(
    ("yaml_match", "extra", "uri"),
    [
        ("{user: '1000'}", (), "sip:21000@lab.example"),
        ("{user: '10*'}", (), "sip:2100@lab.example"),
        ("{to_user: 'alice'}", (), "sip:malice@lab.example"),
        ("{headers: {User-Agent: friendly-scanner}}", ("User-Agent: unfriendly-scanner",),
         "sip:1000@lab.example"),
    ],
    ids=["user-exact", "user-star", "to-user", "header"],
)
def test_glob_matches_the_whole_value(yaml_match: str, extra: tuple[str, ...], uri: str) -> None:
    assert not matches(match_of(yaml_match), request("INVITE", uri, extra=extra), SOURCE)


def test_oneline_user_glob_matches_the_whole_user() -> None:
    assert not matches(spec_match("INVITE@1000->486"), request("INVITE", "sip:91000@lab"), SOURCE)


def test_oneline_user_glob() -> None:
    m = spec_match("INVITE@10*->486")
    assert matches(m, request("INVITE", "sip:1000@lab.example"), SOURCE)
    assert matches(m, request("INVITE", "sip:1099@lab.example"), SOURCE)
    assert not matches(m, request("INVITE", "sip:2000@lab.example"), SOURCE)
    assert not matches(m, request("OPTIONS", "sip:1000@lab.example"), SOURCE)


def test_target_user_falls_back_to_the_to_user() -> None:
    """SPEC §3.3: REGISTER sip:domain has no user; the To URI's user is the target."""
    req = request("REGISTER", "sip:example.com", to="<sip:alice@example.com>",
                  extra=("Contact: <sip:alice@192.0.2.10>", "Expires: 60"))
    assert req.target_user == "alice"
    assert matches(match_of("{method: REGISTER, user: alice}"), req, SOURCE)
    assert matches(spec_match("REGISTER@al*->401"), req, SOURCE)
    assert not matches(match_of("{method: REGISTER, user: bob}"), req, SOURCE)


def test_request_uri_user_wins_over_to_user() -> None:
    req = request("INVITE", "sip:1000@lab.example", to="<sip:2000@lab.example>")
    assert matches(match_of("{user: '1000'}"), req, SOURCE)
    assert not matches(match_of("{user: '2000'}"), req, SOURCE)


def test_user_rule_never_matches_a_request_without_user() -> None:
    req = request("REGISTER", "sip:example.com", to="<sip:example.com>")
    assert req.target_user is None
    assert not matches(match_of("{user: alice}"), req, SOURCE)
    assert matches(match_of("{method: REGISTER}"), req, SOURCE)


# --------------------------------------------------------------------------- from / to user


@pytest.mark.parametrize(
    ("yaml_match", "from_", "to", "expected"),
    [
        ("{from_user: 're:^\\+49'}", "<sip:+4930123@gw.example>;tag=a", None, True),
        ("{from_user: 're:^\\+49'}", "<sip:+4330123@gw.example>;tag=a", None, False),
        ("{from_user: 're:^\\+49'}", "sip:+4930123@gw.example;tag=a", None, True),
        ("{from_user: 'alice'}", '"Alice" <sip:alice@a.example>;tag=a', None, True),
        ("{from_user: 'alice'}", '"alice" <sip:bob@a.example>;tag=a', None, False),
        ("{from_user: 'al*'}", "<sips:alfred@a.example>;tag=a", None, True),
        ("{to_user: alice}", "<sip:x@a>;tag=a", '"Bob" <sip:alice@lab.example>', True),
        ("{to_user: alice}", "<sip:x@a>;tag=a", "<sip:bob@lab.example>", False),
        ("{to_user: 're:^(alice|bob)$'}", "<sip:x@a>;tag=a", "<sip:bob@lab.example>", True),
        ("{to_user: 're:^(alice|bob)$'}", "<sip:x@a>;tag=a", "<sip:carol@lab.example>", False),
        ("{to_user: alice}", "<sip:x@a>;tag=a", "<sip:lab.example>", False),
    ],
)
def test_from_user_and_to_user(yaml_match: str, from_: str, to: str | None,
                               expected: bool) -> None:
    req = request("INVITE", "sip:1000@lab.example", from_=from_, to=to)
    assert matches(match_of(yaml_match), req, SOURCE) is expected


def test_from_user_is_not_the_target_user() -> None:
    req = request("INVITE", "sip:1000@lab.example", from_="<sip:2000@a.example>;tag=x")
    assert matches(match_of("{from_user: '2000'}"), req, SOURCE)
    assert not matches(match_of("{user: '2000'}"), req, SOURCE)
    assert not matches(match_of("{to_user: '2000'}"), req, SOURCE)


# --------------------------------------------------------------------------- source


@pytest.mark.parametrize(
    ("cidrs", "source", "expected"),
    [
        ('["192.0.2.0/24"]', "192.0.2.10", True),
        ('["192.0.2.0/24"]', "192.0.3.10", False),
        ('["192.0.2.0/24"]', "198.51.100.1", False),
        ('"192.0.2.7"', "192.0.2.7", True),  # a bare address is a /32
        ('"192.0.2.7"', "192.0.2.8", False),
        ('["2001:db8::/32"]', "2001:db8::5", True),
        ('["2001:db8::/32"]', "2001:db8:ffff::1", True),
        ('["2001:db8::/32"]', "2001:db9::1", False),
        ('["::1/128"]', "::1", True),
        ('["fe80::/10"]', "fe80::1%eth0", True),  # a scoped link-local source
        ('["192.0.2.0/24", "2001:db8::/32"]', "192.0.2.200", True),
        ('["192.0.2.0/24", "2001:db8::/32"]', "2001:db8::1", True),
        ('["192.0.2.0/24", "2001:db8::/32"]', "203.0.113.1", False),
        ('["192.0.2.0/24"]', "::ffff:10.0.0.1", False),  # IPv6 source, IPv4 net
        ('["0.0.0.0/0"]', "203.0.113.9", True),
        ('["0.0.0.0/0"]', "2001:db8::1", False),
        ('["::/0"]', "2001:db8::1", True),
    ],
)
def test_source_cidr(cidrs: str, source: str, expected: bool) -> None:
    assert matches(match_of(f"{{source: {cidrs}}}"), request(), source) is expected


@pytest.mark.parametrize("source", ["localhost", "", "client.example", "[::1]", "192.0.2"])
def test_non_ip_source_never_matches_a_source_rule(source: str) -> None:
    assert not matches(match_of('{source: ["0.0.0.0/0", "::/0"]}'), request(), source)
    # ... and does not stop a rule without a source block from matching
    assert matches(match_of("{method: INVITE}"), request(), source)


# --------------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    ("yaml_headers", "extra", "expected"),
    [
        ('{user-agent: "re:friendly"}', ("User-Agent: friendly-scanner",), True),
        ('{User-Agent: "re:friendly"}', ("user-agent: friendly-scanner",), True),
        ('{USER-AGENT: "re:friendly"}', ("UsEr-AgEnT: friendly-scanner",), True),
        ('{User-Agent: "friendly-*"}', ("User-Agent: friendly-scanner",), True),
        ('{User-Agent: "friendly-*"}', ("User-Agent: sipvicious",), False),
        ('{User-Agent: "re:friendly"}', (), False),  # a missing header never matches
        ('{User-Agent: "*"}', (), False),
        ('{User-Agent: "re:^$"}', ("User-Agent:",), True),  # an empty value is a value
        # compact forms on either side (RFC 3261 §7.3.3)
        ('{Supported: "re:timer"}', ("k: 100rel, timer",), True),
        ('{k: "re:timer"}', ("Supported: timer",), True),
        ('{Subject: "re:urgent"}', ("s: urgent call",), True),
        ('{Call-ID: "re:^call-1@"}', (), True),
        ('{i: "re:^call-1@"}', (), True),
        ('{From: "re:alice@client"}', (), True),
        # any header line may match; every value is the line as written
        ('{X-Lab: "b"}', ("X-Lab: a", "X-Lab: b"), True),
        ('{X-Lab: "c"}', ("X-Lab: a", "X-Lab: b"), False),
        # every header given must match
        ('{X-Lab: "a", User-Agent: "re:friendly"}', ("X-Lab: a",), False),
        ('{X-Lab: "a", User-Agent: "re:friendly"}', ("X-Lab: a", "User-Agent: friendly"), True),
    ],
)
def test_headers(yaml_headers: str, extra: tuple[str, ...], expected: bool) -> None:
    req = request("OPTIONS", "sip:lab.example", to="<sip:lab.example>", extra=extra)
    assert matches(match_of(f"{{headers: {yaml_headers}}}"), req, SOURCE) is expected


def test_compact_from_header_in_request() -> None:
    lines = (
        b"OPTIONS sip:lab.example SIP/2.0\r\n"
        b"v: SIP/2.0/UDP client.example;branch=z9hG4bK-c\r\n"
        b"f: <sip:scanner@evil.example>;tag=1\r\n"
        b"t: <sip:lab.example>\r\n"
        b"i: compact-1\r\n"
        b"CSeq: 1 OPTIONS\r\n"
        b"l: 0\r\n\r\n"
    )
    req = parse(lines)
    assert req.problem is None
    assert matches(match_of('{headers: {From: "re:@evil\\\\."}, from_user: scanner}'), req, SOURCE)
    assert matches(match_of('{headers: {call-id: "compact-*"}}'), req, SOURCE)


# --------------------------------------------------------------------------- all keys


FULL_MATCH = (
    '{method: INVITE, user: "10*", from_user: "re:^\\\\+49", to_user: alice, '
    'source: ["192.0.2.0/24", "2001:db8::/32"], headers: {User-Agent: "re:friendly"}}'
)
GOOD: dict[str, Any] = {
    "method": "INVITE",
    "uri": "sip:1000@lab.example",
    "from_": "<sip:+4930123@gw.example>;tag=a",
    "to": "<sip:alice@lab.example>",
    "extra": ("User-Agent: friendly-scanner",),
}


@pytest.mark.parametrize(
    ("change", "source"),
    [
        ({"method": "OPTIONS"}, SOURCE),
        ({"uri": "sip:2000@lab.example"}, SOURCE),
        ({"from_": "<sip:+3312345@gw.example>;tag=a"}, SOURCE),
        ({"to": "<sip:bob@lab.example>"}, SOURCE),
        ({"extra": ("User-Agent: Linphone",)}, SOURCE),
        ({"extra": ()}, SOURCE),
        ({}, "198.51.100.1"),
        ({}, "2001:db9::1"),
    ],
    ids=["method", "user", "from_user", "to_user", "header", "no-header", "source-v4",
         "source-v6"],
)
def test_every_key_must_match(change: dict[str, Any], source: str) -> None:
    match = match_of(FULL_MATCH)
    good = request(**GOOD)
    assert matches(match, good, SOURCE)
    assert matches(match, good, "2001:db8::7")
    bad = request(**{**GOOD, **change})
    assert not matches(match, bad, source)


# --------------------------------------------------------------------------- select


def test_first_matching_rule_wins() -> None:
    rs = ruleset("OPTIONS->200", "INVITE@1000->486", "INVITE->603", "*->503")
    seeded = Seeded(1)

    def pick(req: Request) -> str | None:
        return names(select(rs, req, SOURCE, seeded))

    assert pick(request("INVITE", "sip:1000@lab")) == "INVITE@1000->486"
    assert pick(request("INVITE", "sip:2000@lab")) == "INVITE->603"
    assert pick(request("OPTIONS", "sip:1000@lab")) == "OPTIONS->200"
    assert pick(request("BYE", "sip:1000@lab")) == "*->503"
    assert pick(request("CANCEL", "sip:1000@lab")) is None
    assert pick(request("ACK", "sip:1000@lab")) is None


def test_no_match_gives_none_for_the_default() -> None:
    rs = load_text("rules:\n  - match: {method: INVITE}\n    respond: 486\ndefault: 501\n",
                   "m.yaml")
    assert select(rs, request("OPTIONS"), SOURCE, Seeded(1)) is None
    assert [s.code for s in rs.default] == [501]
    assert select(RuleSet(rules=()), request("INVITE"), SOURCE, Seeded(1)) is None


def test_spec_rules_are_tried_before_the_defaults() -> None:
    rs = build_ruleset(None, ["INVITE->486"])
    seeded = Seeded(3)
    assert names(select(rs, request("INVITE"), SOURCE, seeded)) == "INVITE->486"
    assert names(select(rs, request("OPTIONS"), SOURCE, seeded)) == "ok"
    assert names(select(rs, request("REGISTER", "sip:lab.example",
                                    to="<sip:alice@lab.example>"), SOURCE, seeded)) == "ok"
    assert select(rs, request("CANCEL"), SOURCE, seeded) is None
    assert select(rs, request("XFOO"), SOURCE, seeded) is None  # -> default 501


# --------------------------------------------------------------------------- probability


def invite_with(i: int) -> Request:
    return request("INVITE", call_id=f"prob-{i}@client.example", branch=f"z9hG4bK-p{i}")


N = 2000


def decisions(rs: RuleSet, seed: int, n: int = N) -> list[bool]:
    seeded = Seeded(seed)
    return [select(rs, invite_with(i), SOURCE, seeded) is not None for i in range(n)]


def test_half_probability_is_chosen_about_half_the_time() -> None:
    got = decisions(ruleset("INVITE->503;p=0.5"), seed=42)
    assert 0.40 * N <= sum(got) <= 0.60 * N


def test_quarter_probability() -> None:
    got = decisions(ruleset("INVITE->503;p=0.25"), seed=7)
    assert 0.15 * N <= sum(got) <= 0.35 * N


def test_a_failed_draw_falls_through_to_later_rules() -> None:
    rs = ruleset("INVITE->503;p=0.5", "INVITE->200")
    seeded = Seeded(42)
    picked = [names(select(rs, invite_with(i), SOURCE, seeded)) for i in range(N)]
    assert set(picked) == {"INVITE->503;p=0.5", "INVITE->200"}
    assert picked.count("INVITE->503;p=0.5") == sum(decisions(ruleset("INVITE->503;p=0.5"), 42))


def test_retransmission_gets_the_same_decision() -> None:
    rs = ruleset("INVITE->503;p=0.5")
    for seed in (1, 2, 3):
        seeded = Seeded(seed)
        for i in range(200):
            first = select(rs, invite_with(i), SOURCE, seeded)
            # a retransmission is the same bytes parsed again, possibly from a new Seeded
            again = select(rs, invite_with(i), SOURCE, seeded)
            fresh = select(rs, invite_with(i), SOURCE, Seeded(seed))
            assert (first is None) == (again is None) == (fresh is None)


def test_same_seed_repeats_the_run() -> None:
    rs = ruleset("INVITE->503;p=0.5")
    assert decisions(rs, 99, 500) == decisions(rs, 99, 500)


def test_a_different_seed_gives_a_different_pattern() -> None:
    rs = ruleset("INVITE->503;p=0.5")
    a, b = decisions(rs, 1, 500), decisions(rs, 2, 500)
    assert a != b
    # not merely shifted or inverted: the two runs agree about half the time
    agree = sum(x == y for x, y in zip(a, b, strict=True))
    assert 0.35 * 500 <= agree <= 0.65 * 500


def test_a_new_transaction_gets_a_new_draw() -> None:
    """Same Call-ID, new branch and CSeq (a new transaction in the dialog): drawn again."""
    rs = ruleset("INVITE->503;p=0.5")
    seeded = Seeded(5)
    got = [
        select(rs, request("INVITE", call_id="one-call", branch=f"z9hG4bK-t{i}", cseq=i + 1),
               SOURCE, seeded) is not None
        for i in range(200)
    ]
    assert 0 < sum(got) < 200


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_probability_zero_never_and_one_always(seed: int) -> None:
    assert not any(decisions(ruleset("INVITE->503;p=0"), seed, 500))
    assert all(decisions(ruleset("INVITE->503;p=1"), seed, 500))
    assert all(decisions(ruleset("INVITE->503;p=1.0"), seed, 500))


def test_probability_does_not_apply_to_non_matching_requests() -> None:
    rs = ruleset("INVITE->503;p=1")
    assert select(rs, request("OPTIONS"), SOURCE, Seeded(1)) is None


# ------------------------------------------------------------------ the candidate index

METHOD_SETS = [None, frozenset({"INVITE"}), frozenset({"OPTIONS", "BYE"}),
               frozenset({"ACK"}), frozenset({"CANCEL", "INVITE"}), frozenset({"FOO"})]


def reference_select(ruleset: RuleSet, req: Request, seeded: Seeded) -> Rule | None:
    """select() as SPEC §3.2/§3.4 state it: every rule in order, matches() each."""
    for index, rule in enumerate(ruleset.rules):
        if matches(rule.match, req, SOURCE) and (
                rule.probability >= 1.0
                or seeded.draw(req.transaction_key, f"rule{index}") < rule.probability):
            return rule
    return None


@given(data=st.data())
@settings(max_examples=300, deadline=None, database=None)
def test_select_by_candidates_is_select_by_every_rule(data: st.DataObject) -> None:
    """RuleSet.candidates (the rules that can take a method) changes no decision."""
    rules = []
    for i in range(data.draw(st.integers(0, 6))):
        methods = data.draw(st.sampled_from(METHOD_SETS))
        user = data.draw(st.sampled_from([None, "^1000$", "^2"]))
        match = Match(methods=methods,
                      user=Pattern(user, re.compile(user)) if user is not None else None,
                      in_dialog=data.draw(st.sampled_from([None, None, True, False])))
        rules.append(Rule(match, (Step.make(486),), f"r{i}",
                          probability=data.draw(st.sampled_from([1.0, 1.0, 0.5, 0.0]))))
    ruleset = RuleSet(tuple(rules))
    seeded = Seeded(data.draw(st.integers(0, 1000)))
    method = data.draw(st.sampled_from(["INVITE", "OPTIONS", "BYE", "ACK", "CANCEL", "FOO",
                                        "PUBLISH"]))
    user = data.draw(st.sampled_from(["1000", "2000", "3"]))
    to = data.draw(st.sampled_from([None, "<sip:x@lab.example>;tag=t1"]))
    req = request(method, f"sip:{user}@lab.example", call_id=data.draw(st.sampled_from(
        ["a", "b", "c"])), to=to)
    chosen = select(ruleset, req, SOURCE, seeded)
    assert chosen is reference_select(ruleset, req, seeded)
    # The engine's short way (RuleSet.plain) takes every request of its method: it must be
    # what select() would choose, whatever the To tag (in_dialog rules are never plain).
    if method in ruleset.plain:
        assert chosen is ruleset.plain[method]
    dialog_rules = RuleSet(tuple(r for r in rules if r.match.in_dialog is True))
    in_dialog = select_in_dialog(ruleset, req, SOURCE, seeded)
    assert in_dialog is None or in_dialog.match.in_dialog is True
    if in_dialog is not None or not dialog_rules.rules:
        # the same draws as select() over the in_dialog: true rules alone (rule index kept)
        assert in_dialog is next((r for i, r in enumerate(ruleset.rules)
                                  if r.match.in_dialog is True
                                  and matches(r.match, req, SOURCE)
                                  and (r.probability >= 1.0 or seeded.draw(
                                      req.transaction_key, f"rule{i}") < r.probability)),
                                 None)


# --------------------------------------------------------------------------- in_dialog (§8.2)

IN_DIALOG_TO = "<sip:1000@lab.example>;tag=ours-1"


@pytest.mark.parametrize(
    ("in_dialog", "with_tag", "without_tag"),
    [(None, True, True), (True, True, False), (False, False, True)],
    ids=["absent-both", "true-only-with-a-to-tag", "false-only-without"],
)
@pytest.mark.parametrize("how", ["yaml", "oneline"])
def test_in_dialog_is_whether_the_request_has_a_to_tag(
        in_dialog: bool | None, with_tag: bool, without_tag: bool, how: str) -> None:
    if how == "yaml":
        key = "" if in_dialog is None else f", in_dialog: {str(in_dialog).lower()}"
        match = match_of(f"{{method: BYE{key}}}")
    else:
        option = "" if in_dialog is None else f";in_dialog={str(in_dialog).lower()}"
        match = spec_match(f"BYE->481{option}")
    assert match.in_dialog is in_dialog
    assert matches(match, request("BYE", to=IN_DIALOG_TO), SOURCE) is with_tag
    assert matches(match, request("BYE"), SOURCE) is without_tag
    # explain() agrees and says why
    assert (explain(match, request("BYE", to=IN_DIALOG_TO), SOURCE) == []) is with_tag
    assert (explain(match, request("BYE"), SOURCE) == []) is without_tag


def test_explain_names_in_dialog() -> None:
    assert explain(spec_match("BYE->481;in_dialog=true"), request("BYE"), SOURCE) == [
        "in_dialog: true, and the request has no To tag"]
    why = explain(spec_match("BYE->481;in_dialog=false"), request("BYE", to=IN_DIALOG_TO),
                  SOURCE)
    assert why == ["in_dialog: false, and the request has a To tag ('ours-1')"]


def test_in_dialog_rules_are_not_plain_and_select_sees_through_them() -> None:
    rs = ruleset("BYE->481;in_dialog=false", "BYE->200", "INVITE->486;in_dialog=true",
                 "OPTIONS->200")
    assert "BYE" not in rs.plain and "INVITE" not in rs.plain
    assert rs.plain["OPTIONS"] is rs.rules[3]
    assert [c[2] for c in rs.candidates["BYE"]] == [False, True]  # not "method only"
    seeded = Seeded(1)
    assert select(rs, request("BYE"), SOURCE, seeded) is rs.rules[0]
    assert select(rs, request("BYE", to=IN_DIALOG_TO), SOURCE, seeded) is rs.rules[1]
    assert select(rs, request("INVITE"), SOURCE, seeded) is None
    assert select(rs, request("INVITE", to=IN_DIALOG_TO), SOURCE, seeded) is rs.rules[2]


def test_select_in_dialog_takes_only_in_dialog_true_rules() -> None:
    """A re-INVITE is the engine's to answer (SPEC §8.2) unless an in_dialog: true rule
    takes it: rules about INVITE without in_dialog never do."""
    rs = ruleset("INVITE->486", "INVITE@2000->503;in_dialog=true", "*->500;in_dialog=true",
                 "INVITE->180,200/2s;in_dialog=false")
    seeded = Seeded(1)
    reinvite = request("INVITE", to=IN_DIALOG_TO)
    assert select_in_dialog(rs, reinvite, SOURCE, seeded) is rs.rules[2]
    to_2000 = request("INVITE", "sip:2000@lab.example", to="<sip:2000@lab.example>;tag=x")
    assert select_in_dialog(rs, to_2000, SOURCE, seeded) is rs.rules[1]
    assert select_in_dialog(ruleset("INVITE->486", "UPDATE->500"),
                            request("UPDATE", to=IN_DIALOG_TO), SOURCE, seeded) is None
    assert select_in_dialog(ruleset("UPDATE->491;in_dialog=true;p=0"),
                            request("UPDATE", to=IN_DIALOG_TO), SOURCE, seeded) is None
