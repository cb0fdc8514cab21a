"""Patterns of the rule language: a shell-style glob or ``re:REGEX``, compiled once at load
time, and the check that keeps a ``re:`` pattern from backtracking without bound (SPEC §10).
"""

from __future__ import annotations

import fnmatch
import importlib
import re
from dataclasses import dataclass
from typing import Any

MAX_PATTERN_INPUT = 256    # characters: a longer value never matches a re: pattern
MAX_PATTERN_REPEATS = 2    # variable repeats (*, +, {m,n}) in one re: pattern


@dataclass(frozen=True, slots=True)
class Pattern:
    """A glob or ``re:REGEX`` as written, and its compiled form.

    ``literal``: a glob without wildcards, matched by equality (no regex run). ``bounded``:
    a ``re:`` pattern, which never matches a value longer than MAX_PATTERN_INPUT.
    """

    text: str
    regex: re.Pattern[str] | None  # None: ``literal``
    literal: str | None = None
    bounded: bool = True

    def matches(self, value: str | None) -> bool:
        if value is None:
            return False
        if self.regex is None:
            return value == self.literal
        if self.bounded and len(value) > MAX_PATTERN_INPUT:
            return False
        return self.regex.search(value) is not None


def make_pattern(text: str) -> Pattern:
    """A shell-style glob (fnmatch, case-sensitive, the whole value) or ``re:REGEX`` (a
    search), checked (:func:`check_regex`); raises ValueError saying what is wrong."""
    if text.startswith("re:"):
        source = text[3:]
        try:
            regex = re.compile(source)
        except re.error as exc:
            raise ValueError(f"bad regular expression {source!r}: {exc}") from None
        check_regex(source)
        return Pattern(text, regex)
    # fnmatch.translate anchors only the end; a glob matches the whole value. Its
    # translation of several * cannot backtrack (lookahead and a backreference).
    if not any(c in text for c in "*?["):
        return Pattern(text, None, text, bounded=False)
    return Pattern(text, re.compile(r"\A" + fnmatch.translate(text)), bounded=False)


# The standard library's own regular-expression parser (re._parser, ``sre_parse`` before
# 3.11): the tree it builds is what the matcher walks, so it is what backtracks.
_sre: Any = importlib.import_module("re._parser")
_REPEATS = {"MAX_REPEAT", "MIN_REPEAT"}


def check_regex(source: str) -> None:
    """Refuse the shapes that make Python's backtracking matcher exponential or steeply
    polynomial on a value an attacker chooses (SPEC §10; docs/limits.md):

    * a repeat inside a repeat (nested quantifiers: ``(a+)+``, ``(\\d*){2,}``);
    * an alternation or a backreference inside a repeat (``(a|ab)*``, ``(a)\\1*``);
    * more than MAX_PATTERN_REPEATS variable repeats in the whole pattern.

    With these, and values of at most MAX_PATTERN_INPUT characters, one search costs at
    most a few milliseconds (tests/test_rules_limits.py measures the worst shape).
    Possessive repeats and atomic groups never backtrack and are not counted.
    """
    variable = 0

    def walk(items: Any, inside: bool) -> None:
        nonlocal variable
        for op, av in items:
            name = str(op)
            if name in _REPEATS:
                low, high, body = av
                if inside and high > low:
                    raise ValueError(f"the regular expression {source!r} repeats a repeat "
                                     "(nested quantifiers backtrack exponentially)")
                if high > low and high > 1:
                    variable += 1
                walk(body, inside or high > 1)
            elif name == "BRANCH":
                if inside:
                    raise ValueError(f"the regular expression {source!r} repeats an "
                                     "alternation (a|b): write a character class [ab] or "
                                     "repeat each alternative on its own")
                for branch in av[1]:
                    walk(branch, inside)
            elif name in ("GROUPREF", "GROUPREF_EXISTS") and inside:
                raise ValueError(f"the regular expression {source!r} repeats a "
                                 "backreference")
            elif name == "SUBPATTERN":
                walk(av[3], inside)
            elif name in ("ASSERT", "ASSERT_NOT"):
                walk(av[1], inside)
            elif name == "GROUPREF_EXISTS":
                walk(av[1], inside)
                if av[2] is not None:
                    walk(av[2], inside)
            # POSSESSIVE_REPEAT and ATOMIC_GROUP never backtrack into their body.

    walk(_sre.parse(source), False)
    if variable > MAX_PATTERN_REPEATS:
        raise ValueError(f"the regular expression {source!r} has {variable} variable repeats "
                         f"(*, +, {{m,n}}): at most {MAX_PATTERN_REPEATS}")
