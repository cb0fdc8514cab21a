"""What the user typed in a rules file is what is matched (issue 12): YAML 1.1 does not get to
rewrite unquoted values, and a quoted code is named as such."""

from __future__ import annotations

import pytest

from responder.rules.loader import load_text
from responder.rules.model import RuleError


@pytest.mark.parametrize(("written", "meant"), [
    ("+4930123", "+4930123"),  # YAML 1.1: the int 4930123
    ("0100", "0100"),          # YAML 1.1: octal, the int 64
    ("0x1F", "0x1F"),          # YAML 1.1: hexadecimal, 31
    ("1_000", "1_000"),        # YAML 1.1: 1000
    ("1e3", "1e3"),
    ("1000", "1000"),
])
def test_unquoted_users_are_matched_as_written(written: str, meant: str) -> None:
    ruleset = load_text(f"rules:\n  - match: {{method: INVITE, user: {written}}}\n"
                        f"    respond: 486\n", "t.yaml")
    user = ruleset.rules[0].match.user
    assert user is not None and user.text == meant


def test_an_unquoted_password_is_the_password_as_written() -> None:
    ruleset = load_text('auth:\n  realm: lab\n  users: {"1000": 0123, 0100: 1e3}\n'
                        "rules: []\n", "t.yaml")
    assert ruleset.auth is not None
    assert dict(ruleset.auth.users) == {"1000": "0123", "0100": "1e3"}


def test_a_quoted_code_is_named_as_quoted() -> None:
    with pytest.raises(RuleError, match=r"t\.yaml:2:14: bad response code '486': a number, "
                                        r"written without quotes \(e\.g\. 486\)"):
        load_text('rules:\n  - respond: "486"\n', "t.yaml")
    with pytest.raises(RuleError, match="a number from 100 to 699"):
        load_text("rules:\n  - respond: 999\n", "t.yaml")


def test_rules_that_can_never_match_are_warned_about() -> None:
    from responder.rules.loader import build_ruleset

    def warned(spec: str) -> str:
        return " ".join(build_ruleset(None, [spec]).warnings)

    assert "SIP methods are case-sensitive (RFC 3261 §7.1); write INVITE" in warned("invite->486")
    assert "'INVIT' is no SIP method: did you mean INVITE?" in warned("INVIT->486")
    assert "a rule for ACK never applies" in warned("ACK->200")
    assert warned("FOO->200") == "" and warned("INVITE->486") == ""  # extension methods: fine
    yaml_warned = load_text("rules:\n  - match: {method: invite}\n    respond: 486\n",
                            "t.yaml").warnings
    assert yaml_warned and yaml_warned[0].startswith("t.yaml:2:")


def test_curl_form_content_type_carries_one_line_rules() -> None:
    from responder.rules.oneline import is_oneline

    assert is_oneline("INVITE->486", "application/x-www-form-urlencoded")
    assert is_oneline("INVITE->486\n", "text/plain; charset=utf-8")
    assert not is_oneline("INVITE->486", "application/yaml")
    assert not is_oneline("rules: []", "application/x-www-form-urlencoded")


def test_a_rule_after_a_catch_all_in_the_same_file_is_warned_about() -> None:
    text = ("rules:\n  - name: all\n    respond: 486\n"
            "  - name: inv\n    match: {method: INVITE}\n    respond: 200\n"
            "  - name: cancel\n    match: {method: CANCEL}\n    respond: 200\n"
            "  - name: some\n    match: {method: OPTIONS, user: '1*'}\n    respond: 404\n")
    warnings = load_text(text, "t.yaml").warnings
    assert warnings == ("t.yaml:4:5: rule 'inv' is never reached: t.yaml:2:5 ('all') takes "
                        "every request it could match",
                        "t.yaml:10:5: rule 'some' is never reached: t.yaml:2:5 ('all') takes "
                        "every request it could match")
    partial = ("rules:\n  - match: {method: INVITE, user: '1*'}\n    respond: 486\n"
               "  - match: {method: INVITE}\n    respond: 200\n"
               "  - match: {method: INVITE}\n    probability: 0.5\n    respond: 503\n"
               "  - match: {method: INVITE}\n    respond: 200\n")
    # The first rule has a user condition: it shadows nothing; the second takes every
    # INVITE, so the two after it are never reached (a probability does not help them).
    assert [w.split(" (")[0] for w in load_text(partial, "t.yaml").warnings] == [
        "t.yaml:6:5: rule '#3' is never reached: t.yaml:4:5",
        "t.yaml:9:5: rule '#4' is never reached: t.yaml:4:5"]
