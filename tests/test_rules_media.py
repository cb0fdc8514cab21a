"""The rules side of calls that connect (SPEC §8): ``media:`` (top level, per rule, per
step), one-line ``;media= ;codecs= ;early= ;sdp=ignore ;in_dialog=``, ``sdp: ignore``,
``match: {in_dialog:}``; inheritance resolved at load time, errors at FILE:LINE:COL,
warnings, and ``--check`` writing it all back."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from test_rules import load_error, located, oneline_error

from responder.rules.loader import build_ruleset, dump, load_rules_text, load_text
from responder.rules.media import MAX_CODEC_NAME, MAX_CODECS, split_codecs
from responder.rules.model import (
    DEFAULT_MEDIA,
    MediaConfig,
    MediaPatch,
    RuleError,
    RuleSet,
)
from responder.rules.oneline import is_oneline, parse_rule
from responder.sip.sdp import DEFAULT_CODECS

GLOBAL = "media: {codecs: [PCMA, telephone-event], mode: sink, early: false, port: 40000}\n"


def one_rule(rule_yaml: str, top: str = GLOBAL) -> RuleSet:
    return load_text(f"{top}rules:\n  - {rule_yaml}\n", "x.yaml")


# --------------------------------------------------------------------------- top level


def test_no_media_block_is_the_defaults() -> None:
    rs = load_text("rules: [{respond: 200}]\n", "x.yaml")
    assert rs.media == DEFAULT_MEDIA == MediaConfig(DEFAULT_CODECS, "echo", True)
    assert rs.media_port == 0
    assert rs.rules[0].media is None and rs.rules[0].media_given is None
    assert rs.media_for(rs.rules[0], rs.rules[0].reply[0]) is DEFAULT_MEDIA
    assert rs.media_for(None, rs.default[0]) is DEFAULT_MEDIA


def test_top_level_media_every_key() -> None:
    rs = load_text(GLOBAL, "x.yaml")
    assert rs.media == MediaConfig(("PCMA", "telephone-event"), "sink", False)
    assert rs.media_port == 40000


@pytest.mark.parametrize(("text", "media"), [
    ("media: {mode: none}", MediaConfig(DEFAULT_CODECS, "none", True)),
    ("media: {early: no}", MediaConfig(DEFAULT_CODECS, "echo", False)),
    ("media: {codecs: PCMU}", MediaConfig(("PCMU",), "echo", True)),
    ("media: {codecs: 'PCMU, pcma ,G722'}", MediaConfig(("PCMU", "pcma", "G722"), "echo", True)),
    ("media: {codecs: [iLBC, AMR-WB, opus]}", MediaConfig(("iLBC", "AMR-WB", "opus"))),
    ("media: {port: 0}", DEFAULT_MEDIA),
    ("media: {}", DEFAULT_MEDIA),
])
def test_top_level_partial_media_keeps_the_defaults(text: str, media: MediaConfig) -> None:
    rs = load_text(text + "\n", "x.yaml")
    assert rs.media == media
    assert rs.warnings == ()  # unknown names (iLBC, AMR-WB) beside a known one: no warning


def test_codec_names_keep_their_case() -> None:
    """The answerer compares names case-insensitively; the rules keep them as written."""
    assert load_text("media: {codecs: [pcmu, OPUS]}\n", "x").media.codecs == ("pcmu", "OPUS")


@pytest.mark.parametrize(("text", "expected"), [
    ("PCMA", ("PCMA",)), ("PCMA,PCMU", ("PCMA", "PCMU")), (" PCMA , PCMU ", ("PCMA", "PCMU")),
    ("", ()), ("  ", ()), ("PCMA,,PCMU", ("PCMA", "", "PCMU")),
])
def test_split_codecs(text: str, expected: tuple[str, ...]) -> None:
    assert split_codecs(text) == expected


# --------------------------------------------------------------------------- inheritance


def test_a_rules_partial_media_inherits_the_global_settings() -> None:
    rs = one_rule("{respond: 200, media: {mode: echo}}")
    rule = rs.rules[0]
    assert rule.media_given == MediaPatch(mode="echo")
    assert rule.media == MediaConfig(("PCMA", "telephone-event"), "echo", False)
    assert rs.media_for(rule, rule.reply[0]) is rule.media


def test_a_steps_media_inherits_its_rules_which_inherits_the_global() -> None:
    rs = one_rule("respond: [{code: 183, media: {early: true}}, 200]\n"
                  "    media: {codecs: [PCMU, G722]}")
    rule = rs.rules[0]
    early, final = rule.reply
    assert rule.media == MediaConfig(("PCMU", "G722"), "sink", False)
    assert early.media == MediaConfig(("PCMU", "G722"), "sink", True)
    assert final.media is None  # no media of its own: its rule's
    assert rs.media_for(rule, early) is early.media
    assert rs.media_for(rule, final) is rule.media


def test_a_steps_media_without_rule_media_inherits_the_global() -> None:
    rs = one_rule("respond: [{code: 183, media: {mode: none}}, 200]")
    rule = rs.rules[0]
    assert rule.media is None
    assert rule.reply[0].media == MediaConfig(("PCMA", "telephone-event"), "none", False)
    assert rs.media_for(rule, rule.reply[1]) is rs.media


def test_default_reply_steps_have_media_too() -> None:
    rs = load_text(GLOBAL + "default: [{code: 200, media: {mode: echo}}]\n", "x")
    assert rs.default[0].media == MediaConfig(("PCMA", "telephone-event"), "echo", False)
    assert rs.media_for(None, rs.default[0]) is rs.default[0].media


def test_rules_without_media_are_kept_as_they_are() -> None:
    """Resolving copies only the rules that write media (10,000 rules load in one pass)."""
    rule = parse_rule("INVITE->486")[0]
    assert RuleSet((rule,)).rules[0] is rule


def test_a_changed_global_media_is_resolved_again() -> None:
    """The test toolkit builds new sets with dataclasses.replace: resolution follows."""
    rs = one_rule("{respond: 200, media: {mode: echo}}")
    other = dataclasses.replace(rs, media=MediaConfig(("GSM",), "none", True))
    assert other.rules[0].media == MediaConfig(("GSM",), "echo", True)
    assert other.rules[0] == rs.rules[0]  # as written: the same rule


# --------------------------------------------------------------------------- one-line


@pytest.mark.parametrize(("spec", "patch"), [
    ("INVITE->200;media=sink", MediaPatch(mode="sink")),
    ("INVITE->200;media=none", MediaPatch(mode="none")),
    ("INVITE->183,200;codecs=PCMA", MediaPatch(codecs=("PCMA",))),
    ("INVITE->183,200;codecs=PCMA,PCMU", MediaPatch(codecs=("PCMA", "PCMU"))),
    ("INVITE->183,200 ; codecs = PCMA , telephone-event ",
     MediaPatch(codecs=("PCMA", "telephone-event"))),
    ("INVITE->183,200;early=false", MediaPatch(early=False)),
    ("INVITE->183,200;early=TRUE", MediaPatch(early=True)),
    ("INVITE->180,200/2s;media=echo;codecs=opus;early=false;p=0.5",
     MediaPatch(("opus",), "echo", False)),
])
def test_oneline_media_options(spec: str, patch: MediaPatch) -> None:
    rule, warnings = parse_rule(spec)
    assert rule.media_given == patch and warnings == []
    assert all(step.media_given is None for step in rule.reply)  # the rule's, every step
    assert [s.code for s in rule.reply][-1] == 200  # the commas of codecs= are not steps


def test_oneline_sdp_ignore_and_in_dialog() -> None:
    rule, _ = parse_rule("INVITE->200;sdp=ignore;in_dialog=true")
    assert rule.sdp_ignore and rule.match.in_dialog is True and rule.media_given is None
    rule, _ = parse_rule("BYE->481;in_dialog=false")
    assert rule.match.in_dialog is False and not rule.sdp_ignore
    assert parse_rule("OPTIONS->drop;in_dialog=true")[0].match.in_dialog is True


def test_oneline_rules_take_the_files_global_media(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(GLOBAL + "rules: [{respond: 200}]\n")
    rs = build_ruleset(str(path), ["INVITE->200;media=echo", "OPTIONS->200"])
    assert rs.media_port == 40000
    assert rs.rules[0].media == MediaConfig(("PCMA", "telephone-event"), "echo", False)
    assert rs.rules[1].media is None
    admin = load_rules_text("INVITE->183,200;codecs=G722\n", "<admin>", str(path))
    assert admin.rules[0].media == MediaConfig(("G722",), "sink", False)


def test_a_media_line_makes_a_rules_file() -> None:
    assert not is_oneline("media: {mode: sink}\nINVITE->200\n")


@pytest.mark.parametrize(("spec", "what"), [
    ("INVITE->200;media=loud", "unknown media mode 'loud' (known: echo, sink, none)"),
    ("INVITE->200;media=", "unknown media mode ''"),
    ("INVITE->200;codecs=", "an empty codecs list"),
    ("INVITE->200;codecs=PCMA,,PCMU", "bad codec name ''"),
    ("INVITE->200;codecs=PC MA", "bad codec name 'PC MA'"),
    ("INVITE->200;codecs=PCMA/8000", "bad codec name 'PCMA/8000'"),
    ("INVITE->200;early=yes", "early=yes is not true or false"),
    ("INVITE->200;in_dialog=1", "in_dialog=1 is not true or false"),
    ("INVITE->200;sdp=parse", "sdp=parse: the only value is ignore"),
    ("INVITE->200;sdp", "unknown option 'sdp'"),
    ("INVITE->drop;media=sink", "media makes no sense with respond: drop"),
    ("INVITE->drop;codecs=PCMA", "media makes no sense with respond: drop"),
])
def test_oneline_media_errors_name_the_spec(spec: str, what: str) -> None:
    message = oneline_error(spec)
    assert message.startswith(f"--rule {spec!r}: ") and what in message, message


# --------------------------------------------------------------------------- sdp: ignore


def test_sdp_ignore_in_yaml() -> None:
    rs = one_rule("{respond: 200, sdp: ignore}")
    assert rs.rules[0].sdp_ignore
    assert not one_rule("{respond: 200}").rules[0].sdp_ignore


# --------------------------------------------------------------------------- errors


# YAML with « before the node the error must point at, and part of the message.
BROKEN = [
    pytest.param("media: {mode: «loud}\n", "unknown media mode 'loud'", id="top-mode"),
    pytest.param("media: {codecs: «[]}\n", "an empty codecs list", id="top-empty-list"),
    pytest.param("media: {codecs: «''}\n", "an empty codecs list", id="top-empty-string"),
    pytest.param("media: {codecs: [PCMA, «'G 722']}\n", "bad codec name 'G 722'",
                 id="top-bad-name-in-list"),
    pytest.param("media: {codecs: «'PCMA, G 722'}\n", "bad codec name 'G 722'",
                 id="top-bad-name-in-string"),
    pytest.param("media: {codecs: [PCMA, «[PCMU]]}\n", "expected a single value here",
                 id="top-nested-list"),
    pytest.param("media: {codecs: [PCMA, «true]}\n", "a codec name must be text",
                 id="top-bool-name"),
    pytest.param(f"media: {{codecs: «{'x' * (MAX_CODEC_NAME + 1)}}}\n", "bad codec name",
                 id="top-long-name"),
    pytest.param("media: {codecs: [" + ", ".join(["PCMU"] * MAX_CODECS) + ", «PCMA]}\n",
                 f"{MAX_CODECS + 1} codecs: at most {MAX_CODECS}", id="top-too-many"),
    pytest.param("media: {port: «65536}\n", "media port must be from 0", id="port-high"),
    pytest.param("media: {port: «-1}\n", "media port must be from 0", id="port-negative"),
    pytest.param("media: {port: «'5060'}\n", "port must be a whole number", id="port-text"),
    pytest.param("media: {port: «true}\n", "port must be a whole number", id="port-bool"),
    pytest.param("media: {early: «maybe}\n", "early must be true or false", id="early-text"),
    pytest.param("media: {«codec: PCMA}\n", "unknown key 'codec' in media", id="unknown-key"),
    pytest.param("media: «sink\n", "media must be a mapping", id="not-a-mapping"),
    pytest.param("rules:\n  - respond: 200\n    media: {«port: 5000}\n",
                 "port: is only for the top-level media", id="rule-port"),
    pytest.param("rules:\n  - respond: 200\n    media:\n      codecs: [PCMU, «'a;b']\n",
                 "bad codec name 'a;b'", id="rule-bad-name"),
    pytest.param("rules:\n  - respond: 200\n    media:\n      mode: «echoes\n",
                 "unknown media mode 'echoes'", id="rule-mode"),
    pytest.param("rules:\n  - respond: drop\n    «media: {mode: sink}\n",
                 "media makes no sense with respond: drop", id="rule-media-drop"),
    pytest.param("rules:\n  - respond:\n      - 180\n      - code: 200\n"
                 "        media: {mode: «x}\n", "unknown media mode 'x'", id="step-mode"),
    pytest.param("rules:\n  - respond:\n      - code: 200\n        media: {codecs: «[]}\n",
                 "an empty codecs list", id="step-empty"),
    pytest.param("rules:\n  - respond:\n      - code: 200\n        media: {«port: 1}\n",
                 "port: is only for the top-level media", id="step-port"),
    pytest.param("default:\n  - code: 200\n    media: {mode: «loud}\n",
                 "unknown media mode 'loud'", id="default-step-mode"),
    pytest.param("rules:\n  - respond: 200\n    sdp: «parse\n", "the only value is ignore",
                 id="sdp-not-ignore"),
    pytest.param("rules:\n  - respond: 200\n    sdp: «true\n", "the only value is ignore",
                 id="sdp-bool"),
    pytest.param("rules:\n  - respond: 200\n    match: {in_dialog: «maybe}\n",
                 "in_dialog must be true", id="in-dialog-text"),
    pytest.param("rules:\n  - respond: 200\n    match: {in_dialog: «1}\n",
                 "in_dialog must be true", id="in-dialog-number"),
]


@pytest.mark.parametrize(("marked", "what"), BROKEN)
def test_media_errors_point_at_the_offending_node(marked: str, what: str) -> None:
    text, where = located(marked)
    message = load_error(text)
    assert message.startswith(where + " ") and what in message, (message, where)


def test_a_bad_mode_is_refused_by_the_model_too() -> None:
    with pytest.raises(RuleError, match="media mode"):
        MediaConfig(mode="loud")


# --------------------------------------------------------------------------- warnings


@pytest.mark.parametrize(("codecs", "warning"), [
    ("[telephone-event]", "these alone are no shared codec, so every offer gets 488"),
    ("[telephone-event, CN]", "these alone are no shared codec"),
    ("[iLBC, telephone-event]", "none of iLBC, telephone-event can be offered"),
    ("[PCMU]", None),
    ("[AMR, pcma]", None),
])
def test_codec_lists_that_cannot_connect_warn(codecs: str, warning: str | None) -> None:
    text = f"rules:\n  - respond: 200\n    media:\n      codecs: {codecs}\n"
    rs = load_text(text, "x.yaml")
    if warning is None:
        assert rs.warnings == ()
    else:
        assert len(rs.warnings) == 1 and rs.warnings[0].startswith("x.yaml:4:15: ")
        assert warning in rs.warnings[0]


def test_oneline_codec_warning() -> None:
    _, warnings = parse_rule("INVITE->200;codecs=telephone-event")
    assert warnings == ["--rule 'INVITE->200;codecs=telephone-event': only telephone-event: "
                        "these alone are no shared codec, so every offer gets 488 (SPEC §8.1)"]


# --------------------------------------------------------------------------- --check


@pytest.mark.parametrize("spec", [
    "INVITE->200;media=sink",
    "INVITE->183,200;codecs=PCMA,PCMU;early=false",
    "INVITE->200;sdp=ignore;in_dialog=true",
    "BYE->481;in_dialog=false",
])
def test_oneline_media_dumps_and_loads_back(spec: str) -> None:
    rs = build_ruleset(None, [spec])
    again = load_text(dump(rs), "dumped.yaml")
    first, back = rs.rules[0], again.rules[0]
    assert (back.media_given, back.media, back.sdp_ignore, back.match) == (
        first.media_given, first.media, first.sdp_ignore, first.match)
    assert again.media == rs.media and again.media_port == rs.media_port
    assert dump(again) == dump(rs)
