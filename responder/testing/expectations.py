"""Test input -> rules, and journal entries -> near-miss reports (for :mod:`responder.testing`).

Pure functions: a one-line rule, a list of them, YAML text or a path becomes a RuleSet with
the command line's own parsers and errors; a step written as ``486``, ``"486/2s"``,
``(486, "2s")`` or a dict becomes a Step; an expectation becomes a Match, and
:func:`responder.rules.matcher.explain` says why each journal entry misses it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from responder.core.journal import JournalEntry
from responder.rules.loader import build_ruleset, load_file, load_text, step_from_mapping
from responder.rules.matcher import explain
from responder.rules.model import Match, Rule, RuleError, RuleSet, Step, validate_reply
from responder.rules.oneline import (
    glob,
    is_oneline,
    parse_code,
    parse_delay,
    parse_rule,
)
from responder.sip.addr import hostport
from responder.sip.message import COMPACT

RulesLike = str | Sequence[str] | RuleSet | os.PathLike[str]
StepLike = int | str | tuple[int, str | float] | Mapping[str, Any] | Step
Methods = str | Sequence[str] | None
Status = int | Sequence[int] | None

def to_ruleset(rules: RulesLike | None, base: RuleSet | None = None) -> RuleSet:
    """A RuleSet from what a test has at hand.

    * None: the built-in default rules;
    * a RuleSet, or a path (``pathlib.Path``) to a rules file;
    * YAML text (what :func:`responder.rules.oneline.is_oneline` does not take for one-line
      rules, the one decision PUT /rules uses too): it replaces everything;
    * one-line rules (``"INVITE->486"``, several lines of them, or a list): tried first, in
      order, in front of ``base`` (default: the built-in rules), like ``--rule``.

    Raises :class:`RuleError` with the same messages as the command line.
    """
    if rules is None:
        return build_ruleset(None, [])
    if isinstance(rules, RuleSet):
        return rules
    if isinstance(rules, os.PathLike):
        return load_file(os.fspath(rules))
    if isinstance(rules, str):
        if not is_oneline(rules):
            return load_text(rules, "<rules>")
        rules = [s for line in rules.splitlines()
                 if (s := line.strip()) and not s.startswith("#")]
    first = [parse_rule(spec)[0] for spec in rules]
    base = base if base is not None else build_ruleset(None, [])
    return dataclasses.replace(base, rules=(*first, *base.rules))


def _code(value: object) -> int:
    code = None if isinstance(value, bool) else parse_code(str(value))
    if code is None:
        raise RuleError(f"bad response code {value!r}: a number from 100 to 699")
    return code


def _delay(value: object) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    parsed = parse_delay(value) if isinstance(value, str) else None
    if parsed is None:
        raise RuleError(f"bad delay {value!r}: e.g. 250ms, 2s, 1.5s or a number of seconds")
    return parsed


def make_step(step: StepLike) -> Step:
    """``486``, ``"486/2s"``, ``(486, "2s")`` or a dict like a YAML step -> a Step."""
    if isinstance(step, Step):
        return step
    if isinstance(step, int):
        return Step.make(_code(step))
    if isinstance(step, str):
        code, slash, delay = step.partition("/")
        return Step.make(_code(code.strip()), _delay(delay) if slash else 0.0)
    if isinstance(step, tuple):
        if len(step) != 2:
            raise RuleError(f"a step tuple is (code, delay), not {step!r}")
        return Step.make(_code(step[0]), _delay(step[1]))
    # A dict is a YAML step: the rules-file loader reads it, so every key it knows
    # (after, reason, headers, body, content_type, jitter, repeat, fault) works the same.
    return step_from_mapping({k: (v.decode() if isinstance(v, bytes) else v)
                              for k, v in step.items()})


def make_match(method: Methods = None, user: str | None = None, from_user: str | None = None,
               to_user: str | None = None, source: str | Sequence[str] | None = None,
               headers: Mapping[str, str] | None = None) -> Match:
    """A Match like the YAML ``match:`` block (globs, ``re:REGEX``, CIDRs, header patterns)."""
    methods = None if method is None or method == "*" else frozenset(
        [method] if isinstance(method, str) else method)
    nets = [source] if isinstance(source, str) else list(source or ())
    keys = [(COMPACT.get(k.lower(), k.lower()), glob(v)) for k, v in (headers or {}).items()]
    return Match(methods=methods,
                 user=glob(user) if user is not None else None,
                 from_user=glob(from_user) if from_user is not None else None,
                 to_user=glob(to_user) if to_user is not None else None,
                 source=tuple(ipaddress.ip_network(n, strict=False) for n in nets),
                 headers=tuple(keys))


def why(match: Match, entry: JournalEntry, status: Status = None) -> list[str]:
    """Why ``entry`` does not meet the expectation ([] = it does)."""
    req = entry.request
    if req is None:
        return [f"discarded ({entry.discard})"]
    if match.methods is None:  # an expectation without a method takes any, ACK too
        match = dataclasses.replace(match, methods=frozenset({req.method}))
    reasons = explain(match, req, entry.source[0])
    if isinstance(status, int) and status not in entry.statuses:
        reasons.append(f"answered {_answers(entry)}, not {status}")
    elif status is not None and not isinstance(status, int) \
            and entry.statuses != list(status):
        reasons.append(f"answered {_answers(entry)}, not {', '.join(map(str, status))} "
                       "(in that order)")
    return reasons


def _answers(entry: JournalEntry) -> str:
    return ", ".join(map(str, entry.statuses)) or "nothing"


def _describe(entry: JournalEntry) -> str:
    req = entry.request
    what = f"{req.method} {req.uri}" if req is not None else f"{len(entry.data)} bytes"
    return f"{what} from {hostport(entry.source)} -> {_answers(entry)}"


def _expectation(match: Match, status: Status) -> str:
    what = "/".join(sorted(match.methods)) if match.methods else "any request"
    keys = [f"{k}={getattr(match, k).text!r}" for k in ("user", "from_user", "to_user")
            if getattr(match, k) is not None]
    if match.source:
        keys.append(f"source in {', '.join(map(str, match.source))}")
    keys += [f"header {k} ~ {p.text!r}" for k, p in match.headers]
    text = what + (f" with {', '.join(keys)}" if keys else "")
    if status is not None:
        text += f" answered {status if isinstance(status, int) else list(status)}"
    return text


def report(match: Match, status: Status, count: int | None,
            found: list[JournalEntry], entries: list[JournalEntry], limit: int = 5) -> str:
    times = "at least once" if count is None else f"exactly {count} time(s)"
    lines = [f"expected {_expectation(match, status)} {times}; {len(found)} matched"]
    if count is not None and len(found) > count:
        lines += ["matched:", *(f"  {_describe(e)}" for e in found[:limit])]
    requests = [e for e in entries if e.request is not None]
    misses = sorted(((why(match, e, status), i, e) for i, e in enumerate(requests)
                     if not any(e is f for f in found)), key=lambda m: (len(m[0]), m[1]))
    if misses:
        lines.append("near misses (closest first):")
        lines += [f"  {_describe(e)}: {'; '.join(why)}" for why, _, e in misses[:limit]]
    methods = Counter(e.method for e in requests)
    summary = ", ".join(f"{m} x{n}" for m, n in methods.items()) or "none"
    discarded = len(entries) - len(requests)
    lines.append(f"received in total: {len(requests)} request(s) ({summary})"
                 + (f" and {discarded} discarded datagram(s)" if discarded else ""))
    return "\n".join(lines)


class _Owner(Protocol):
    def add_rule(self, rule: Rule) -> None: ...


class RuleBuilder:
    """What :meth:`Responder.on` returns: call :meth:`respond` to install the rule."""

    def __init__(self, responder: _Owner, match: Match, name: str, probability: float):
        self._responder, self.match, self.name = responder, match, name
        self.probability = probability
        self._drop_first = 0

    def drop_first(self, count: int) -> RuleBuilder:
        """Answer nothing to the first ``count`` transmissions of each transaction."""
        if count < 0:
            raise RuleError(f"{self.name}: drop_first must be 0 or more, not {count}")
        self._drop_first = count
        return self

    def respond(self, *steps: StepLike) -> Rule:
        """Install the rule in front of the current rules; ``respond("drop")`` answers nothing.

        Steps: a code (``486``), ``"486/2s"``, ``(486, "2s")``, or a dict like a YAML step
        (``{"code": 486, "after": "2s", "reason": "Busy", "headers": {...}}``, and the fault
        keys ``jitter``, ``repeat``, ``fault``: docs/faults.md).
        """
        if not steps:
            raise RuleError(f"{self.name}: respond() needs steps, a code or 'drop'")
        reply = () if steps == ("drop",) else tuple(make_step(s) for s in steps)
        validate_reply(reply, self.match.methods, [self.name] * len(reply))
        rule = Rule(self.match, reply, self.name, self.probability, origin="Responder.on()",
                    drop_first=self._drop_first)
        self._responder.add_rule(rule)
        return rule
