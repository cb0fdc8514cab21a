"""YAML syntax errors in our words (issue 12): what PyYAML reports, said as a SIP engineer
would want to read it, at the line and column to fix.

PyYAML's ``MarkedYAMLError`` carries a ``problem`` (what it found) at ``problem_mark`` and
often a ``context`` (what it was reading) at ``context_mark``; the marks are 0-based. The
common slips -- a key indented more or less than its neighbours, a tab, a missing colon, an
unclosed quote or bracket, an unquoted ``*`` -- are recognised from those and from the text
around them; anything else still gets ``not valid YAML: <problem>`` at a line and column.
This module reads no YAML itself (the loader hands it the pieces): it only explains.
"""

from __future__ import annotations

import re
from typing import Any

Mark = tuple[int, int]  # (line, column), 0-based as PyYAML's marks

# The keys of a rule (loader.py's list): a key of these is named "a rule's key" in messages.
RULE_KEYS = ("name", "match", "respond", "probability", "auth", "challenge", "drop_first",
             "repeat", "media", "sdp")

# Every key of a rules file (the loader's lists): ``respond 486`` lacks a colon, while
# ``a comment without its hash`` is no key at all.
KEYS = frozenset((*RULE_KEYS, "identity", "auth", "rules", "default", "method", "user",
                  "from_user", "to_user", "source", "headers", "in_dialog", "code", "after",
                  "reason", "body", "content_type", "jitter", "fault", "server", "supported",
                  "realm", "users", "algorithm", "qop", "nonce_lifetime", "codecs", "mode",
                  "early", "port", "reliable", "hangup"))

_BREAKS = re.compile(r"\r\n|[\n\r\x85\u2028\u2029]")  # PyYAML's line breaks
_FOUND = re.compile(r"found [^']*'(.*?)'")


class _Text:
    def __init__(self, text: str) -> None:
        self.lines = _BREAKS.split(text)

    def line(self, n: int) -> str:
        return self.lines[n] if 0 <= n < len(self.lines) else ""

    def content(self, n: int) -> tuple[int, str]:
        """Where the key (or value) of line ``n`` starts, past indentation and ``- `` item
        marks, and the text from there on, without a trailing comment."""
        text = self.line(n)
        col = len(text) - len(text.lstrip(" "))
        while text[col:col + 1] == "-" and text[col + 1:col + 2] in (" ", ""):
            col += 1
            col += len(text[col:]) - len(text[col:].lstrip(" "))
        rest = text[col:]
        cut = rest.find(" #")
        return col, (rest[:cut] if cut >= 0 else rest).rstrip()

    def key(self, n: int) -> str:
        word = self.content(n)[1]
        return re.split(r"[:\s]", word, maxsplit=1)[0] if word else ""

    def before(self, n: int) -> int | None:
        """The nearest line above ``n`` that holds something (not blank, not a comment)."""
        for m in range(n - 1, -1, -1):
            if self.content(m)[1] and not self.content(m)[1].startswith("#"):
                return m
        return None


def _kind(text: _Text, n: int) -> str:
    """What the keys next to line ``n`` belong to, for "keys of one ... must line up"."""
    return "rule" if text.key(n) in RULE_KEYS else "mapping"


def _indent(text: _Text, at: Mark, what: str) -> tuple[Mark, str] | None:
    """A key (or, ``what`` "a list item", a ``-``) at ``at`` that does not line up with
    the lines above it."""
    line, col = at
    above = text.before(line)
    if above is None:
        return None
    if what == "a list item":
        for m in range(above, -1, -1):
            raw = text.line(m).lstrip(" ")
            dash = len(text.line(m)) - len(raw)
            if raw.startswith("-") and dash != col:
                return at, (f'a list item ("-") is indented {"more" if col > dash else "less"} '
                            f"than the item on line {m + 1}: items of one list must line up")
            if raw.startswith("-") or (raw and not raw.startswith("#") and dash < col):
                break
        return None
    col_above = text.content(above)[0]
    # The keys this one could line up with: the line above's, then each one less indented
    # further up (the mappings the line above is inside).
    keys: list[tuple[int, int]] = [(col_above, above)]
    for m in range(above - 1, -1, -1):
        c, word = text.content(m)
        if word and not word.startswith("#"):
            if c == col and col_above < col:
                # The line above is the one out of place: ``match:`` dragged to column 1
                # under a rule's ``- name:``.
                return (above, col_above), (
                    f'"{text.key(above)}" is indented less than "{text.key(m)}" (line {m + 1}):'
                    f" keys of one {_kind(text, m)} must line up")
            if c < keys[-1][0]:
                keys.append((c, m))
    if col in (c for c, _ in keys):
        return None
    c, m = min(keys, key=lambda k: (abs(k[0] - col), -k[0]))
    more = "more" if col > c else "less"
    near = "the line above" if m == above else f'"{text.key(m)}" (line {m + 1})'
    return at, f"{what} is indented {more} than {near}: keys of one {_kind(text, m)} must line up"


def yaml_error(text: str, filename: str, exc: Exception) -> str:
    """``FILE:LINE:COL: what`` for a PyYAML error (read through its attributes, so that
    only the loader imports yaml)."""
    position = getattr(exc, "position", None)
    if isinstance(position, int):  # ReaderError: a character YAML does not allow
        line = text.count("\n", 0, position)
        col = position - (text.rfind("\n", 0, position) + 1)
        char = getattr(exc, "character", 0)
        code = char if isinstance(char, int) else ord(str(char)[:1] or "\0")
        return (f"{filename}:{line + 1}:{col + 1}: the character U+{code:04X} is not allowed "
                f"in a YAML file")
    pm, cm = getattr(exc, "problem_mark", None), getattr(exc, "context_mark", None)
    if pm is None and cm is None:
        return f"{filename}:1:1: not valid YAML: {exc}"
    problem, context = getattr(exc, "problem", None), getattr(exc, "context", None)
    try:
        (line, col), what = explain(text, problem, pm and (pm.line, pm.column), context,
                                    cm and (cm.line, cm.column))
    except Exception:  # an explanation must never cost the error itself (SPEC §10)
        mark: Any = pm if pm is not None else cm
        line, col = mark.line, mark.column
        what = f"not valid YAML: {problem or context}"
    return f"{filename}:{line + 1}:{col + 1}: {what}"


def explain(text: str, problem: str | None, problem_at: Mark | None, context: str | None,
            context_at: Mark | None) -> tuple[Mark, str]:
    """Where a YAML syntax error is (0-based line and column) and what it means."""
    t = _Text(text)
    problem, context = problem or "", context or ""
    at = problem_at or context_at or (0, 0)
    line, col = at
    found = _FOUND.search(problem)
    token = found.group(1) if found else ""
    # A tab anywhere in the indentation (or where a token should start).
    tab = t.line(line).find("\t")
    if token == "\\t" or (0 <= tab < len(t.line(line)) - len(t.line(line).lstrip(" \t"))):
        return (line, tab if tab >= 0 else col), (
            "a tab: YAML indents with spaces only (replace the tab with spaces)")
    if "alias" in context and context_at is not None:
        return context_at, ('"*" starts a YAML alias: put the value in quotes ("*" for any '
                            "method)")
    if problem.startswith("found undefined alias"):
        name = problem.split("'")[1] if "'" in problem else "?"
        return at, (f'"*{name}" is a YAML alias and no anchor "&{name}" defines it: put the '
                    f"value in quotes")
    if "quoted scalar" in context and "end of stream" in problem and context_at:
        return context_at, "this quote is never closed: end the value with the same quote"
    if "double-quoted" in context and "escape" in problem:
        return (line, max(col - 1, 0)), (
            f'"\\{token}" is no escape in a double-quoted value: write "\\\\{token}", or put '
            f"the value in single quotes (a backslash is plain text there)")
    if "could not find expected ':'" in problem and context_at is not None:
        words = t.line(context_at[0])[context_at[1]:].split(" #")[0].split(None, 1)
        if words and words[0][0] in "'\"":
            return context_at, "this quote is never closed: end the value with the same quote"
        if words:
            return context_at, _no_colon(words)
    if "cannot start any token" in problem:
        return at, f'a value cannot start with "{token}": put it in quotes'
    if "single document" in context:
        return at, "a second YAML document (---): a rules file is one document"
    if problem == "mapping values are not allowed here":
        said = _colon(t, at)
        if said is not None:
            return said
    if "'<document start>'" in problem:
        return _top(t, at)
    if problem == "sequence entries are not allowed here":
        return at, ('unexpected "-": a list item starts its own line, and a value with "- " '
                    "in it must be in quotes")
    if "<block end>" in problem:
        said = _block(t, at, token)
        if said is not None:
            return said
    if context in ("while parsing a flow mapping", "while parsing a flow sequence") \
            and context_at is not None:
        opener, closer = ("[", "]") if "sequence" in context else ("{", "}")
        return at, (f'expected "{closer}" (or "," before the next item): the "{opener}" at '
                    f"{context_at[0] + 1}:{context_at[1] + 1} is not closed")
    if "expected the node content" in problem:
        if token == "<stream end>":
            return at, 'the file ends where a value was expected (a "[" or "{" not closed?)'
        return at, f'expected a value before "{token}"'
    where = (f" ({context} at {context_at[0] + 1}:{context_at[1] + 1})"
             if context and context_at else f" ({context})" if context else "")
    return at, f"not valid YAML: {problem or context}{where}"


def _no_colon(words: list[str]) -> str:
    """A key written without its ``: ``: ``respond 486``, ``match``, ``qop:,auth``."""
    if ":" in words[0].rstrip(":"):
        return f'expected ": " (a colon and a space) after "{words[0].split(":")[0]}"'
    if len(words) > 1 and words[0] not in KEYS:
        return _not_a_key(" ".join(words))
    hint = f' (write "{words[0]}: {words[1].strip()}")' if len(words) > 1 else ""
    return f'expected ":" after "{words[0]}"{hint}'


def _colon(t: _Text, at: Mark) -> tuple[Mark, str] | None:
    """"mapping values are not allowed here": a ``:`` where no key can be."""
    line, col = at
    start = t.content(line)[0]
    first = re.search(r":(?= |$)", t.line(line)[start:col])
    if first is not None:  # ``name: a: b``
        value = start + first.end()
        value += len(t.line(line)[value:]) - len(t.line(line)[value:].lstrip(" "))
        return (line, value), 'a value with ": " in it must be in quotes'
    above = t.before(line)
    if above is not None:
        c_above, text_above = t.content(above)
        raw = t.line(above).lstrip(" ")
        if raw.startswith("-") and raw[1:2] not in (" ", ""):
            return (above, len(t.line(above)) - len(raw)), (
                'a list item needs a space after "-"')
        lined_up = not raw.startswith("-") or (c_above == start and " " in text_above)
        if lined_up and not re.search(r":(?= |$)", text_above) \
                and text_above[:1] not in "\"'{[":
            return (above, c_above), _no_colon(text_above.split(None, 1))
    return _indent(t, (line, start), f'"{t.key(line)}"')


def _block(t: _Text, at: Mark, token: str) -> tuple[Mark, str] | None:
    """"expected <block end>, but found ...": something that does not line up."""
    line, col = at
    if token == "<scalar>":
        before = t.line(line)[:col].rstrip(" ")
        quote = before[-1:]
        if quote in ("'", '"'):
            for m in range(line):  # a quote opened and not closed on an earlier line
                opened = re.search(rf"(?:^|[:,\[{{-] ?){quote}", t.line(m))
                if opened and t.line(m).split(" #")[0].count(quote) % 2:
                    return (m, opened.end() - 1), (
                        "this quote is never closed on its line: end the value with the "
                        "same quote")
            return at, "text after the closing quote: put the whole value in quotes"
        if quote in ("}", "]"):
            return at, f'text after the closing "{quote}": check the brackets of this value'
        return None
    if token in ("-", "<block sequence start>"):
        return _indent(t, at, "a list item")
    if token in ("<block mapping start>", "?"):
        return _indent(t, at, f'"{t.key(line)}"')
    if token in (",", "}", "]", ":"):
        return at, (f'unexpected "{token}": outside [ ] and {{ }} it can only be part of a '
                    f"value in quotes")
    if token in ("{", "["):
        return at, (f'a "{token}" cannot start here: a [ ] or {{ }} value goes right after '
                    f'"key: " or "- "')
    return None


def _top(t: _Text, at: Mark) -> tuple[Mark, str]:
    """"expected '<document start>'": the file's first value ended and more follows; most
    often a first line that is no ``key: value`` (a comment without its ``#``)."""
    for n in range(len(t.lines)):
        col, word = t.content(n)
        if word and not word.startswith("#"):
            if not re.search(r":(?= |$)", word):
                return (n, col), _not_a_key(word)
            break
    return at, "expected a top-level key (identity, auth, media, rules, default) here"


def _not_a_key(text: str) -> str:
    return (f'"{text[:40]}" is no "key: value" line: a rules file is a mapping of keys (a '
            f'comment starts with "#")')
