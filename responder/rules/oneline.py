"""The one-line rule grammar of ``--rule`` (SPEC §3.1).

    RULE   := MATCH "->" REPLY { ";" OPTION }
    MATCH  := METHOD [ "@" USER ]
    REPLY  := "drop" | STEP { "," STEP }
    STEP   := CODE [ "/" DELAY ]
    OPTION := "p=" FLOAT | "reason=" TEXT
            | "jitter=" DELAY        every delayed step: after ± jitter (docs/faults.md)
            | "drop_first=" INT      the first INT transmissions get no answer
            | "repeat=" INT          the final response is sent INT times (Timer G spacing)
            | "fault=" NAME          the last step is malformed on purpose (FAULTS)
            | "media=" MODE          the rule's media.mode: echo, sink or none (SPEC §8.3)
            | "codecs=" NAME {"," NAME}   the rule's media.codecs (a=rtpmap names)
            | "early=" BOOL          the rule's media.early: does a 183 carry the answer
            | "sdp=ignore"           the rule's body is opaque: no answer, 488 or 400
            | "in_dialog=" BOOL      match only requests with (true) / without a To tag
            | "hangup=" DELAY        BYE that long after the 2xx (SPEC §8.5)
            | "reliable=" BOOL       the provisionals (not 100) are sent reliably (RFC 3262)
    BOOL   := "true" | "false"

The media options and ``sdp=`` are the rule's (its every step); options apply where they
are written. The options are split at ";" first, so the commas of ``codecs=`` never meet
the commas between steps.

Errors read ``--rule 'SPEC': what is wrong``.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace

from responder.rules.media import MAX_HANGUP, MediaPatch, split_codecs
from responder.rules.model import (
    Match,
    Pattern,
    Rule,
    RuleError,
    Step,
    make_pattern,
    validate_rule,
)
from responder.sip import codes
from responder.sip.uri import TOKEN

_DELAY = re.compile(r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s)?")


def parse_delay(text: str) -> float | None:
    """``250ms``, ``2s``, ``1.5s``, ``2`` (seconds), ``1e-05s`` -> seconds; None if
    unreadable or not finite (``1e999s``). How large a delay may be is the model's to say."""
    m = _DELAY.fullmatch(text.strip())
    if m is None:
        return None
    value = float(m.group(1))
    if not math.isfinite(value):
        return None
    return value / 1000.0 if m.group(2) == "ms" else value


def format_delay(seconds: float) -> str:
    """The inverse of :func:`parse_delay`, exact: ``2s``, ``0.25s``, ``1234.567s``."""
    short = f"{seconds:g}"
    return f"{short}s" if float(short) == seconds else f"{seconds!r}s"


def parse_code(text: str) -> int | None:
    text = text.strip()
    if not text.isascii() or not text.isdigit():
        return None
    code = int(text)
    return code if codes.is_valid_code(code) else None


def glob(text: str) -> Pattern:
    """A shell-style glob (fnmatch, case-sensitive) or ``re:REGEX``; raises ValueError."""
    return make_pattern(text)


# The top-level keys of a rules file: a line that starts with one is YAML.
YAML_KEYS = ("rules:", "identity:", "auth:", "default:", "media:", "{")


def is_oneline(text: str, content_type: str | None = None) -> bool:
    """THE decision "one-line rules or a YAML rules file?" (PUT /rules, responder.testing).

    One-line rules: every line that is not blank or a ``#`` comment holds ``->`` and does
    not start like a rules file (``rules:``, ``identity:``, ``auth:``, ``default:``,
    ``media:``, ``{``),
    and there is at least one such line. A rules file always has a key line without
    ``->``. With ``content_type`` (HTTP), only ``text/plain`` can be one-line rules, and
    ``application/x-www-form-urlencoded``: what ``curl --data 'INVITE->486'`` sends.
    """
    if content_type is not None and content_type.split(";")[0].strip().lower() not in (
            "text/plain", "application/x-www-form-urlencoded"):
        return False
    lines = [s for line in text.splitlines() if (s := line.strip()) and not s.startswith("#")]
    return bool(lines) and all("->" in s and not s.startswith(YAML_KEYS) for s in lines)


def parse_lines(text: str, filename: str) -> tuple[list[Rule], list[str]]:
    """One-line rules, one per line (blank lines and ``#`` comments skipped); errors read
    ``FILE:LINE:COL: 'SPEC': what is wrong`` (the origin of each rule: ``FILE:LINE:COL:
    'SPEC'``)."""
    rules: list[Rule] = []
    warnings: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        spec = line.strip()
        if not spec or spec.startswith("#"):
            continue
        column = len(line) - len(line.lstrip()) + 1
        rule, w = parse_rule(spec, f"{filename}:{number}:{column}: {spec!r}")
        rules.append(rule)
        warnings += w
    return rules, warnings


WHOLE_DIGITS = 9  # drop_first= and repeat= take at most this many digits
FLAGS = {"true": True, "false": False}


def parse_rule(spec: str, where: str | None = None) -> tuple[Rule, list[str]]:
    """Parse one ``--rule`` SPEC; returns the rule and its warnings. ``where`` prefixes
    errors and is the rule's origin (default ``--rule 'SPEC'``)."""
    where = where if where is not None else f"--rule {spec!r}"

    def fail(what: str) -> RuleError:
        return RuleError(f"{where}: {what}")

    head, arrow, tail = spec.partition("->")
    if not arrow:
        raise fail('expected MATCH "->" REPLY, e.g. INVITE->486')
    method_text, at, user_text = head.strip().partition("@")
    method_text = method_text.strip()
    if method_text == "*":
        methods = None
    elif TOKEN.fullmatch(method_text):
        methods = frozenset({method_text})
    else:
        raise fail(f"bad method {method_text!r}: a SIP method token or *")
    user = None
    if at:
        user_text = user_text.strip()
        if not user_text:
            raise fail("empty user after @")
        try:
            user = glob(user_text)
        except ValueError as exc:
            raise fail(str(exc)) from None

    reply_text, *options = tail.split(";")
    reply_text = reply_text.strip()
    if not reply_text:
        raise fail('missing reply after "->": a code, a list of CODE[/DELAY], or drop')
    probability = 1.0
    reason: str | None = None
    jitter, drop_first, repeat, fault = 0.0, 0, 1, None
    media: dict[str, str] = {}  # media=, codecs=, early= as written
    flags: dict[str, bool] = {}  # early=, in_dialog=
    sdp_ignore = False
    hangup: float | None = None
    for option in options:
        key, eq, value = option.partition("=")
        key, value = key.strip(), value.strip()
        if key == "p" and eq:
            try:
                probability = float(value)
            except ValueError:
                raise fail(f"p={value} is not a probability between 0 and 1") from None
        elif key == "reason" and eq:
            reason = value
            if not reason or any(c in reason for c in "\r\n"):
                raise fail("reason= needs a one-line text")
        elif key == "jitter" and eq:
            parsed = parse_delay(value)
            if parsed is None:
                raise fail(f"bad jitter {value!r}: a delay, e.g. 200ms")
            jitter = parsed
        elif key in ("drop_first", "repeat") and eq:
            if not (value.isascii() and value.isdigit()):
                raise fail(f"{key}={value} is not a whole number")
            if len(value.lstrip("0")) > WHOLE_DIGITS:
                raise fail(f"{key}={value[:20]}... is too large")
            if key == "drop_first":
                drop_first = int(value)
            else:
                repeat = int(value)
        elif key == "fault" and eq:
            fault = value
        elif key in ("media", "codecs") and eq:
            media[key] = value
        elif key == "hangup" and eq:
            hangup = parse_delay(value)
            if hangup is None or hangup > MAX_HANGUP:
                raise fail(f"bad hangup {value!r}: a delay up to {MAX_HANGUP:.0f}s, e.g. 10s")
        elif key in ("early", "in_dialog", "reliable") and eq:
            if value.lower() not in FLAGS:
                raise fail(f"{key}={value} is not true or false")
            flags[key] = FLAGS[value.lower()]
        elif key == "sdp" and eq:
            if value != "ignore":
                raise fail(f"sdp={value}: the only value is ignore")
            sdp_ignore = True
        else:
            raise fail(f"unknown option {option.strip()!r} (known: p=FLOAT, reason=TEXT, "
                       "jitter=DELAY, drop_first=N, repeat=N, fault=NAME, media=MODE, "
                       "codecs=NAME,..., early=BOOL, sdp=ignore, in_dialog=BOOL, "
                       "hangup=DELAY, reliable=BOOL)")

    steps: list[Step] = []
    if reply_text.lower() == "drop":
        for given, name in ((reason is not None, "reason="), (jitter, "jitter="),
                            (drop_first, "drop_first="), (repeat != 1, "repeat="),
                            (fault is not None, "fault=")):
            if given:
                raise fail(f"{name} makes no sense with drop")
    else:
        for item in reply_text.split(","):
            code_text, slash, delay_text = item.strip().partition("/")
            code = parse_code(code_text)
            if code is None:
                raise fail(f"bad response code {code_text.strip()!r}: a number from 100 to 699")
            after = 0.0
            if slash:
                parsed = parse_delay(delay_text)
                if parsed is None:
                    raise fail(f"bad delay {delay_text.strip()!r}: e.g. 250ms, 2s, 1.5s")
                after = parsed
            steps.append(Step.make(code, after))
        if jitter:
            if not any(s.after > 0 for s in steps):
                raise fail("jitter= needs a delayed step (CODE/DELAY) to vary")
            steps = [replace(s, jitter=jitter) if s.after > 0 else s for s in steps]
        if repeat != 1 and not steps[-1].final:
            raise fail("repeat= needs a final response (200-699) as the last step")
        last = steps[-1]
        if reason is not None:
            last = replace(last, reason=reason, reason_given=True)
        steps[-1] = replace(last, repeat=repeat, fault=fault)
        if hangup is not None:
            if not any(200 <= s.code < 300 for s in steps):
                raise fail("hangup= needs a 2xx step: the call it ends")
            steps = [replace(s, hangup=hangup) if 200 <= s.code < 300 else s for s in steps]
        if flags.get("reliable"):
            steps = [replace(s, reliable=True) if 100 < s.code < 200 else s for s in steps]
    patch = None
    if media or "early" in flags:
        patch = MediaPatch(
            codecs=split_codecs(media["codecs"]) if "codecs" in media else None,
            mode=media.get("media"),
            early=flags.get("early"),
        )
    rule = Rule(
        match=Match(methods=methods, user=user, in_dialog=flags.get("in_dialog")),
        reply=tuple(steps),
        name=spec.strip(),
        probability=probability,
        origin=where,
        drop_first=drop_first,
        sdp_ignore=sdp_ignore,
        media_given=patch,
    )
    return rule, validate_rule(rule, where)
