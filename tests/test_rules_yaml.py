"""What the user typed in a rules file is what is matched (issue 12): YAML 1.1 does not get to
rewrite unquoted values, and a quoted code is named as such."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# --------------------------------------------------------------------------- YAML syntax errors
# Each case: YAML with « where the error must point, and the whole message after FILE:LINE:COL.
# Before issue 12 these were PyYAML's own words ("mapping values are not allowed here",
# "expected <block end>, but found '<block mapping start>'"), often at another place.
SYNTAX = [
    pytest.param("rules:\n  - name: busy\n      «match: {method: INVITE}\n    respond: 486\n",
                 '"match" is indented more than the line above: keys of one rule must line up',
                 id="match-indented-more"),
    pytest.param("rules:\n  - name: busy\n   «match: {method: INVITE}\n    respond: 486\n",
                 '"match" is indented less than the line above: keys of one rule must line up',
                 id="match-indented-less"),
    pytest.param("rules:\n  - name: busy\n  «match: {method: INVITE}\n    respond: 486\n",
                 '"match" is indented less than the line above: keys of one rule must line up',
                 id="match-at-the-dash"),
    pytest.param("rules:\n  - name: busy\n«match: {method: INVITE}\n    respond: 486\n",
                 '"match" is indented less than "name" (line 2): keys of one rule must line up',
                 id="match-at-the-top-level"),
    pytest.param("rules:\n  - name: busy\n«match:\n  method: INVITE\n",
                 "unknown key 'match' in the rules file (known: identity, auth, media, rules, "
                 "default): match is a key of a rule: indent it with the rule's other keys",
                 id="match-a-top-level-key"),
    pytest.param("rules:\n  - match:\n      method: INVITE\n    «user: '1*'\n    respond: 486\n",
                 "unknown key 'user' in a rule (known: name, match, respond, probability, auth, "
                 "challenge, drop_first, repeat, media, sdp)", id="user-under-the-rule"),
    pytest.param("rules:\n  - match:\n        method: INVITE\n      «user: '1*'\n"
                 "    respond: 486\n",
                 '"user" is indented less than the line above: keys of one mapping must line up',
                 id="match-key-between-columns"),
    pytest.param("rules:\n  - respond: 486\n  - respond: 200\n «default: 200\n",
                 '"default" is indented more than "rules" (line 1): keys of one mapping must '
                 "line up", id="top-level-key-indented"),
    pytest.param("rules:\n«\t- respond: 486\n",
                 "a tab: YAML indents with spaces only (replace the tab with spaces)",
                 id="tab-indentation"),
    pytest.param("rules:\n  - match:\n    «\tmethod: INVITE\n    respond: 486\n",
                 "a tab: YAML indents with spaces only (replace the tab with spaces)",
                 id="tab-after-spaces"),
    pytest.param("rules:\n  - name: a\n    respond:«\t486\n",
                 "a tab: YAML indents with spaces only (replace the tab with spaces)",
                 id="tab-after-colon"),
    pytest.param("rules:\n  - name: a\n    «respond 486\n",
                 'expected ":" after "respond" (write "respond: 486")', id="missing-colon"),
    pytest.param("rules:\n  - name: a\n    «match\n      method: INVITE\n    respond: 486\n",
                 'expected ":" after "match"', id="missing-colon-before-block"),
    pytest.param("«rules\n  - respond: 486\n", 'expected ":" after "rules"',
                 id="missing-colon-top"),
    pytest.param("rules:\n  - name: «\"busy\n    respond: 486\n",
                 "this quote is never closed: end the value with the same quote",
                 id="unclosed-double-quote"),
    pytest.param("rules:\n  - name: «'busy\n    respond: 486\n",
                 "this quote is never closed: end the value with the same quote",
                 id="unclosed-single-quote"),
    pytest.param("rules:\n  - name: «\"busy\n    respond: 486\n  - name: \"x\"\n"
                 "    respond: 200\n",
                 "this quote is never closed on its line: end the value with the same quote",
                 id="unclosed-quote-closed-later"),
    pytest.param("rules:\n  - name: \"a\" «b\n    respond: 486\n",
                 "text after the closing quote: put the whole value in quotes",
                 id="text-after-quote"),
    pytest.param('rules:\n  - match: {user: "re:^«\\d+$"}\n    respond: 486\n',
                 '"\\d" is no escape in a double-quoted value: write "\\\\d", or put the value '
                 "in single quotes (a backslash is plain text there)", id="regex-escape"),
    pytest.param("rules:\n  - name: «a: b\n    respond: 486\n",
                 'a value with ": " in it must be in quotes', id="colon-in-value"),
    pytest.param("rules:\n  «-name: a\n    respond: 486\n",
                 'a list item needs a space after "-"', id="dash-without-space"),
    pytest.param("rules:\n  - respond: 486\n    «- respond: 200\n",
                 'a list item ("-") is indented more than the item on line 2: items of one '
                 "list must line up", id="list-item-indented"),
    pytest.param("rules:\n  - match: {method: INVITE\n    respond«: 486\n",
                 'expected "}" (or "," before the next item): the "{" at 2:12 is not closed',
                 id="unclosed-brace"),
    pytest.param("rules:\n  - match: {method: [INVITE, BYE«}\n    respond: 486\n",
                 'expected "]" (or "," before the next item): the "[" at 2:21 is not closed',
                 id="unclosed-bracket"),
    pytest.param("rules: [486, «}\n", 'expected a value before "}"', id="flow-missing-value"),
    pytest.param("rules:\n  - match: {method: «*}\n    respond: 486\n",
                 '"*" starts a YAML alias: put the value in quotes ("*" for any method)',
                 id="unquoted-star"),
    pytest.param("rules:\n  - match: {user: «*x}\n    respond: 486\n",
                 '"*x" is a YAML alias and no anchor "&x" defines it: put the value in quotes',
                 id="unquoted-star-glob"),
    pytest.param("rules:\n  - match: {user: «@home}\n    respond: 486\n",
                 'a value cannot start with "@": put it in quotes', id="at-sign"),
    pytest.param("rules: []\n«---\ndefault: 486\n",
                 "a second YAML document (---): a rules file is one document", id="two-documents"),
    pytest.param("# a lab\n«a comment without its hash\n# more\nrules: []\n",
                 '"a comment without its hash" is no "key: value" line: a rules file is a '
                 'mapping of keys (a comment starts with "#")', id="comment-without-hash-top"),
    pytest.param("# a lab\n«a comment without its hash\nrules: []\n",
                 '"a comment without its hash" is no "key: value" line: a rules file is a '
                 'mapping of keys (a comment starts with "#")', id="comment-without-hash"),
    pytest.param("auth:\n  «qop:,auth\n  realm: x\n",
                 'expected ": " (a colon and a space) after "qop"', id="colon-without-space"),
    pytest.param("rules:\n  - respond: 486\n  ], respond: 200\n".replace("]", "«]"),
                 'unexpected "]": outside [ ] and { } it can only be part of a value in quotes',
                 id="stray-bracket"),
    pytest.param("rules:\n  - match: {method: I}«VITE}\n    respond: 486\n",
                 'text after the closing "}": check the brackets of this value',
                 id="text-after-brace"),
    pytest.param("rules:\n  - respond: 486\n «- respond: 200\n",
                 'a list item ("-") is indented less than the item on line 2: items of one '
                 "list must line up", id="list-item-indented-less"),
    pytest.param("auth:\n  users:\n    \"1\": \"2\"   «- x\n",
                 'unexpected "-": a list item starts its own line, and a value with "- " in it '
                 "must be in quotes", id="stray-dash"),
    pytest.param("rules: [«\x00]\n", "the character U+0000 is not allowed in a YAML file",
                 id="control-character"),
]


def _located(marked: str) -> tuple[str, str]:
    before, _, after = marked.partition("«")
    line = before.count("\n") + 1
    return before + after, f"t.yaml:{line}:{len(before) - before.rfind(chr(10))}"


@pytest.mark.parametrize(("marked", "message"), SYNTAX)
def test_yaml_syntax_errors_are_said_in_our_words_where_they_are(
        marked: str, message: str) -> None:
    text, where = _located(marked)
    with pytest.raises(RuleError) as info:
        load_text(text, "t.yaml")
    assert str(info.value) == f"{where}: {message}"


def test_an_unknown_yaml_error_still_names_the_place() -> None:
    from responder.rules.syntax import explain

    assert explain("a: b\n", "found something new", (0, 3), "while doing x", (0, 0)) == (
        (0, 3), "not valid YAML: found something new (while doing x at 1:1)")


def test_a_failing_explanation_still_gives_the_place(monkeypatch: pytest.MonkeyPatch) -> None:
    from responder.rules import syntax

    def broken(*_: object) -> None:
        raise IndexError("a bug")

    monkeypatch.setattr(syntax, "explain", broken)
    with pytest.raises(RuleError, match=r"^t\.yaml:3:12: not valid YAML: mapping values are "
                                        r"not allowed here$"):
        load_text("rules:\n  - name: a\n      match: {}\n", "t.yaml")


@given(st.text(alphabet=" \t\n-:#'\"{}[],*&!|>@%`\\abc12", max_size=60))
@settings(max_examples=400, deadline=None)
def test_any_text_loads_or_gives_one_located_error(text: str) -> None:
    try:
        load_text(text, "t.yaml")
    except RuleError as exc:
        assert re.match(r"t\.yaml:\d+:\d+: \S", str(exc)), str(exc)


MISINDENTED = "rules:\n  - name: busy\n      match: {method: INVITE}\n    respond: 486\n"
SAID = '3:7: "match" is indented more than the line above: keys of one rule must line up'


def test_check_and_start_up_say_it_in_our_words(tmp_path: Path) -> None:
    from support import run_cli

    bad = tmp_path / "rules.yaml"
    bad.write_text(MISINDENTED)
    for args in (("--check", "--rules", str(bad)),
                 ("--rules", str(bad), "--listen", "127.0.0.1:0", "-q")):
        done = run_cli(*args)
        assert done.returncode == 2, done
        assert done.stderr == f"{bad}:{SAID}\n"


def test_sighup_and_put_rules_say_it_in_our_words(tmp_path: Path) -> None:
    from support import ResponderProcess
    from test_admin import ADMIN_LINE, put_rules

    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - match: {method: INVITE}\n    respond: 486\n")
    with ResponderProcess("--rules", str(rules), "--admin", "127.0.0.1:0", "-q") as server:
        base = server.wait_for_stderr(ADMIN_LINE).group(1)
        rules.write_text(MISINDENTED)
        server.send_signal(signal.SIGHUP)
        server.wait_for_stderr(re.escape(f"reload failed, the old rules stay in force: "
                                         f"{rules}:{SAID}"))
        got = put_rules(base, MISINDENTED)
        assert got.status == 400 and got.text.startswith(f"<admin>:{SAID}"), got.text
        assert server.stop() == 0
        assert "Traceback" not in server.stderr_text(last=1000)
