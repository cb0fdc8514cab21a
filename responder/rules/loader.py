"""The rules file (SPEC §3.2): YAML -> RuleSet, every error as ``FILE:LINE:COL: what``.

The file is composed into YAML nodes (which keep their positions) and walked by
hand, so that an error points at the key or value at fault. Unknown keys are
errors: a typo must not silently turn a rule into "match everything".
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import replace
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from responder.rules.dump import document
from responder.rules.media import call_keys, read_media, validate_media
from responder.rules.model import (
    DEFAULT_MEDIA,
    Identity,
    IPNetwork,
    Match,
    Pattern,
    Reply,
    Rule,
    RuleError,
    RuleSet,
    Step,
    Where,
    shadowed,
    validate_reply,
    validate_rule,
)
from responder.rules.oneline import (
    glob,
    is_oneline,
    parse_code,
    parse_delay,
    parse_lines,
    parse_rule,
)
from responder.rules.syntax import RULE_KEYS, yaml_error
from responder.sip.auth import ALGORITHMS, AuthConfig
from responder.sip.uri import TOKEN

DEFAULT_RULES = "default_rules.yaml"


def default_rules_text() -> str:
    """The built-in defaults, shipped inside the package (same as config/rules.yaml)."""
    return resources.files("responder").joinpath(DEFAULT_RULES).read_text(encoding="utf-8")


class _Walker:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.warnings: list[str] = []
        self._constructor = SafeConstructor()

    def at(self, node: Node) -> str:
        mark = node.start_mark
        return f"{self.filename}:{mark.line + 1}:{mark.column + 1}"

    def error(self, node: Node, what: str) -> RuleError:
        return RuleError(f"{self.at(node)}: {what}")

    def scalar(self, node: Node) -> Any:
        if not isinstance(node, ScalarNode):
            raise self.error(node, "expected a single value here")
        try:
            return self._constructor.construct_object(node)
        except ConstructorError as exc:
            raise self.error(node, str(exc.problem)) from None

    def text(self, node: Node, what: str) -> str:
        """Text as the user typed it: an unquoted scalar that YAML 1.1 reads as a number
        (``+4930123``, ``0100`` -- octal 64 --, a password ``0123``) is taken as written."""
        value = self.scalar(node)
        if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
            raise self.error(node, f"{what} must be text")
        if isinstance(value, (int, float)) and isinstance(node, ScalarNode):
            return str(node.value)
        return str(value)

    def mapping(
        self, node: Node, what: str, known: tuple[str, ...]
    ) -> dict[str, tuple[Node, Node]]:
        if not isinstance(node, MappingNode):
            raise self.error(node, f"{what} must be a mapping")
        out: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            key = self.text(key_node, "a key")
            if known and key not in known:
                hint = (f": {key} is a key of a rule: indent it with the rule's other keys"
                        if key in RULE_KEYS and what == "the rules file" else "")
                raise self.error(key_node, f"unknown key {key!r} in {what} "
                                           f"(known: {', '.join(known)}){hint}")
            if key in out:
                raise self.error(key_node, f"duplicate key {key!r}")
            out[key] = (key_node, value_node)
        return out

    def items(self, node: Node) -> list[Node]:
        return list(node.value) if isinstance(node, SequenceNode) else [node]

    # --- pieces -----------------------------------------------------------------
    def code(self, node: Node) -> int:
        value = self.scalar(node)
        code = parse_code(str(value)) if isinstance(value, int) and not isinstance(
            value, bool) else None
        if code is None:
            if isinstance(value, str) and parse_code(value.strip()) is not None:
                raise self.error(node, f"bad response code {value!r}: a number, written "
                                       f"without quotes (e.g. {value.strip()})")
            raise self.error(node, f"bad response code {value!r}: a number from 100 to 699")
        return code

    def delay(self, node: Node) -> float:
        value = self.scalar(node)
        parsed = None if isinstance(value, bool) else parse_delay(str(value))
        if parsed is None:
            raise self.error(node, f"bad delay {value!r}: e.g. 250ms, 2s, 1.5s")
        return parsed

    def integer(self, node: Node, what: str) -> int:
        """A whole number (its range is the model's to judge)."""
        value = self.scalar(node)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(node, f"{what} must be a whole number, not {value!r}")
        return value

    def faults(self, m: dict[str, tuple[Node, Node]], code: int) -> dict[str, Any]:
        """A step's fault-injection keys (docs/faults.md): jitter, repeat, fault."""
        out: dict[str, Any] = {}
        if "jitter" in m:
            value = self.scalar(m["jitter"][1])
            jitter = None if isinstance(value, bool) else parse_delay(str(value))
            if jitter is None:
                raise self.error(m["jitter"][1], f"bad jitter {value!r}: a delay, e.g. 200ms")
            out["jitter"] = jitter
        if "repeat" in m:
            out["repeat"] = self.integer(m["repeat"][1], "repeat")
        if "fault" in m:
            out["fault"] = self.text(m["fault"][1], "fault")
        return out

    def step(self, node: Node) -> Step:
        if isinstance(node, ScalarNode):
            return Step.make(self.code(node))
        known = ("code", "after", "jitter", "reason", "headers", "body", "content_type",
                 "repeat", "fault", "media", "reliable", "hangup")
        m = self.mapping(node, "a step", known)
        if "code" not in m:
            raise self.error(node, "a step needs a code")
        code = self.code(m["code"][1])
        after = self.delay(m["after"][1]) if "after" in m else 0.0
        reason = None
        if "reason" in m:
            reason = self.text(m["reason"][1], "reason")
            if not reason.strip() or any(c in reason for c in "\r\n"):
                raise self.error(m["reason"][1], "reason must be one line of text")
        headers: list[tuple[str, str]] = []
        if "headers" in m:
            for name, (kn, vn) in self.mapping(m["headers"][1], "headers", ()).items():
                value = self.text(vn, f"header {name}")
                if not TOKEN.fullmatch(name):
                    raise self.error(kn, f"bad header name {name!r}")
                if any(c in value for c in "\r\n"):
                    raise self.error(vn, "a header value must be one line")
                headers.append((name, value))
        body = self.text(m["body"][1], "body").encode() if "body" in m else b""
        content_type = self.text(m["content_type"][1], "content_type") \
            if "content_type" in m else None
        if body and content_type is None:
            raise self.error(m["body"][1], "a body needs a content_type")
        media = read_media(self, m["media"][1])[0] if "media" in m else None
        return Step.make(code, after, reason, tuple(headers), body, content_type,
                         **self.faults(m, code), media=media, **call_keys(self, m, code))

    def reply(self, node: Node) -> Reply:
        """The steps as written; :func:`validate_rule` judges them (see :meth:`where`)."""
        if isinstance(node, ScalarNode) and self.scalar(node) == "drop":
            return ()
        steps = tuple(self.step(n) for n in self.items(node))
        if not steps:
            raise self.error(node, "an empty list of steps: give steps, a code or drop")
        return steps

    def where(self, rule: Node | None, reply: Node) -> Where:
        """The locator of a rule's keys (model.Where): the value node of a key (the key
        node for "repeat:"...); a step's "step" is where its delay is written, else the
        step. A rule-level ``repeat`` stands for the final step's."""
        steps = [] if isinstance(reply, ScalarNode) and reply.value == "drop" \
            else self.items(reply)
        top = self._keys(rule) if rule is not None else {}

        def at(i: int, key: str) -> str:
            name, is_key = key.rstrip(":"), key.endswith(":")
            if "." in name:  # media.codecs.2: where that value is written (or nearest)
                first, path = name.split(".", 1)
                pair = (top if i < 0 or i >= len(steps) else self._keys(steps[i])).get(first)
                return self.at(self.descend(pair[1], path)) if pair else at(i, first + ":")
            if i < 0 or i >= len(steps):
                pair = top.get(name)
                return self.at(pair[0 if is_key else 1]) if pair else self.at(rule or reply)
            node = steps[i]
            keys = self._keys(node)
            if name == "repeat" and name not in keys and "repeat" in top \
                    and i == len(steps) - 1:
                return self.at(top["repeat"][0 if is_key else 1])
            if name == "step":
                pair = keys.get("after")
                return self.at(pair[1] if pair else node)
            pair = keys.get(name)
            return self.at(pair[0 if is_key else 1]) if pair else self.at(node)

        return at

    def descend(self, node: Node, path: str) -> Node:
        """The node at ``path`` (``codecs.2``: key codecs, item 2) under ``node``, or the
        deepest one on the way that exists."""
        for part in path.split("."):
            if isinstance(node, SequenceNode) and part.isdigit() and int(part) < len(
                    node.value):
                node = node.value[int(part)]
            elif part in (keys := self._keys(node)):
                node = keys[part][1]
            else:
                break
        return node

    @staticmethod
    def _keys(node: Node) -> dict[str, tuple[Node, Node]]:
        if not isinstance(node, MappingNode):
            return {}
        return {k.value: (k, v) for k, v in node.value if isinstance(k, ScalarNode)}

    def pattern(self, node: Node, what: str) -> Pattern:
        try:
            return glob(self.text(node, what))
        except ValueError as exc:
            raise self.error(node, str(exc)) from None

    def match(self, node: Node) -> Match:
        known = ("method", "user", "from_user", "to_user", "source", "headers", "in_dialog")
        m = self.mapping(node, "match", known)
        in_dialog = self.scalar(m["in_dialog"][1]) if "in_dialog" in m else None
        if not isinstance(in_dialog, bool | None):
            raise self.error(m["in_dialog"][1], f"in_dialog must be true (only requests with "
                             f"a To tag) or false (only without), not {in_dialog!r}")
        methods: frozenset[str] | None = None
        if "method" in m:
            names = [self.text(n, "method") for n in self.items(m["method"][1])]
            if not names:
                raise self.error(m["method"][1], 'an empty method list: give methods or "*"')
            if "*" not in names:
                for n, name in zip(self.items(m["method"][1]), names, strict=True):
                    if not TOKEN.fullmatch(name):
                        raise self.error(n, f"bad method {name!r}")
                methods = frozenset(names)
        source: list[IPNetwork] = []
        if "source" in m:
            for n in self.items(m["source"][1]):
                try:
                    source.append(ipaddress.ip_network(self.text(n, "source"), strict=False))
                except ValueError as exc:
                    raise self.error(n, f"bad CIDR: {exc}") from None
        headers: list[tuple[str, Pattern]] = []
        if "headers" in m:
            from responder.sip.message import COMPACT

            for name, (kn, vn) in self.mapping(m["headers"][1], "match headers", ()).items():
                key = name.lower()
                if any(COMPACT.get(key, key) == k for k, _ in headers):
                    raise self.error(kn, f"header {name!r} is given twice")
                headers.append((COMPACT.get(key, key), self.pattern(vn, f"header {name}")))
        def pick(k: str) -> (Pattern | None):
            return (self.pattern(m[k][1], k) if k in m else None)
        return Match(
            methods=methods,
            user=pick("user"),
            from_user=pick("from_user"),
            to_user=pick("to_user"),
            source=tuple(source),
            headers=tuple(headers),
            in_dialog=in_dialog,
        )

    def rule(self, node: Node, index: int, auth: AuthConfig | None) -> Rule:
        m = self.mapping(node, "a rule", RULE_KEYS)
        digest = False
        if "auth" in m:
            if self.scalar(m["auth"][1]) != "digest":
                raise self.error(m["auth"][1], "auth: the only method is digest")
            if auth is None:
                raise self.error(m["auth"][0], "auth: digest needs a top-level auth: block "
                                               "(realm, users)")
            digest = True
        proxy = False
        if "challenge" in m:
            kind = self.scalar(m["challenge"][1])
            if kind not in ("www", "proxy"):
                raise self.error(m["challenge"][1], "challenge must be www (401) or proxy (407)")
            if not digest:
                raise self.error(m["challenge"][0], "challenge needs auth: digest")
            proxy = kind == "proxy"
        if "respond" not in m:
            raise self.error(node, "a rule needs respond: (a code, a list of steps, or drop)")
        match = self.match(m["match"][1]) if "match" in m else Match()
        probability = 1.0
        if "probability" in m:
            value = self.scalar(m["probability"][1])
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 <= value <= 1:
                raise self.error(m["probability"][1],
                                 f"probability must be a number from 0 to 1, not {value!r}")
            probability = float(value)
        name = self.text(m["name"][1], "name") if "name" in m else f"#{index + 1}"
        reply = self.reply(m["respond"][1])
        drop_first = 0
        if "drop_first" in m:
            drop_first = self.integer(m["drop_first"][1], "drop_first")
        if "repeat" in m:
            # Rule level: the final response's repeat (the same as writing it on that step).
            if not reply or not reply[-1].final:
                raise self.error(m["repeat"][0], "repeat needs a final response (200-699) "
                                                 "as the last step")
            if reply[-1].repeat != 1:
                raise self.error(m["repeat"][0], "repeat is given on the rule and on its "
                                                 "final step: keep one")
            reply = (*reply[:-1], replace(reply[-1],
                                          repeat=self.integer(m["repeat"][1], "repeat")))
        if "sdp" in m and self.scalar(m["sdp"][1]) != "ignore":
            raise self.error(m["sdp"][1], "sdp: the only value is ignore (the body is opaque: "
                                          "no answer, no 488, no 400 Bad SDP)")
        rule = Rule(
            match=match,
            reply=reply,
            name=name,
            probability=probability,
            origin=self.at(node),
            auth=digest,
            proxy_challenge=proxy,
            drop_first=drop_first,
            sdp_ignore="sdp" in m,
            media_given=read_media(self, m["media"][1])[0] if "media" in m else None,
        )
        self.warnings += validate_rule(rule, self.where(node, m["respond"][1]))
        return rule

    def auth(self, node: Node) -> AuthConfig:
        known = ("realm", "users", "algorithm", "qop", "nonce_lifetime")
        m = self.mapping(node, "auth", known)
        realm = self.text(m["realm"][1], "realm") if "realm" in m else "sip-responder"
        if not realm or '"' in realm or "\\" in realm:
            raise self.error(m["realm"][1], "realm must be text without quotes")
        users: dict[str, str] = {}
        if "users" in m:
            for user, (_kn, vn) in self.mapping(m["users"][1], "users", ()).items():
                users[user] = self.text(vn, f"the password of {user}")
        algorithm = "MD5"
        if "algorithm" in m:
            algorithm = self.text(m["algorithm"][1], "algorithm").upper()
            if algorithm not in ALGORITHMS:
                raise self.error(m["algorithm"][1], f"algorithm must be one of "
                                                    f"{', '.join(ALGORITHMS)}")
        qop = True
        if "qop" in m:
            value = self.scalar(m["qop"][1])
            if value not in ("auth", "none", None):
                raise self.error(m["qop"][1], "qop must be auth or none")
            qop = value == "auth"
        lifetime = self.delay(m["nonce_lifetime"][1]) if "nonce_lifetime" in m else 300.0
        return AuthConfig(realm=realm, users=MappingProxyType(users), algorithm=algorithm,
                          qop=qop, nonce_lifetime=lifetime)

    def identity(self, node: Node) -> Identity:
        m = self.mapping(node, "identity", ("server", "supported"))
        server = self.text(m["server"][1], "server") if "server" in m else "sip-responder"
        supported: tuple[str, ...] = ()
        if "supported" in m:
            tags = []
            for n in self.items(m["supported"][1]):
                tag = self.text(n, "an option tag")
                if not TOKEN.fullmatch(tag):
                    raise self.error(n, f"bad option tag {tag!r}")
                tags.append(tag)
            supported = tuple(tags)
        return Identity(server=server, supported=supported)


def load_text(text: str, filename: str) -> RuleSet:
    """Parse rules-file text; raises RuleError with ``FILE:LINE:COL: what``."""
    walker = _Walker(filename)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:  # said in our words, at FILE:LINE:COL (rules/syntax.py)
        raise RuleError(yaml_error(text, filename, exc)) from None
    if root is None:
        raise RuleError(f"{filename}:1:1: the file is empty (expected rules:)")
    top = walker.mapping(root, "the rules file",
                         ("identity", "auth", "media", "rules", "default"))
    media, port = DEFAULT_MEDIA, 0
    if "media" in top:
        node = top["media"][1]
        patch, given_port = read_media(walker, node, top=True)
        walker.warnings += validate_media(
            patch, lambda key: walker.at(walker.descend(node, key)), given_port)
        media, port = patch.over(DEFAULT_MEDIA), given_port or 0
    auth = walker.auth(top["auth"][1]) if "auth" in top else None
    identity = walker.identity(top["identity"][1]) if "identity" in top else Identity()
    rules: list[Rule] = []
    if "rules" in top:
        node = top["rules"][1]
        if not isinstance(node, SequenceNode):
            raise walker.error(node, "rules must be a list")
        rules = [walker.rule(n, i, auth) for i, n in enumerate(node.value)]
        walker.warnings += shadowed(rules)
    default: Reply = (Step.make(200),)
    if "default" in top:
        node = top["default"][1]
        default = walker.reply(node)
        walker.warnings += validate_reply(default, None, walker.where(None, node))
    return RuleSet(rules=tuple(rules), default=default, identity=identity,
                   warnings=tuple(walker.warnings), auth=auth, media=media, media_port=port)


def step_from_mapping(step: Mapping[str, Any]) -> Step:
    """One step given as a mapping, read exactly like a YAML step (errors: ``<step>:L:C``)."""
    text = yaml.safe_dump({"rules": [{"respond": [dict(step)]}]}, sort_keys=False)
    return load_text(text, "<step>").rules[0].reply[0]


def load_file(path: str | Path) -> RuleSet:
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(f"{name}:1:1: cannot read the rules file: {exc}") from None
    return load_text(text, name)


def build_ruleset(rules_file: str | None, specs: list[str]) -> RuleSet:
    """SPEC §2: --rule rules first, in order, then the file's rules or the built-in ones."""
    first: list[Rule] = []
    warnings: list[str] = []
    for spec in specs:
        rule, w = parse_rule(spec)
        first.append(rule)
        warnings += w
    return in_front(first, warnings, base_ruleset(rules_file))


def base_ruleset(rules_file: str | None) -> RuleSet:
    """The rules one-line rules go in front of: ``rules_file``'s, or the built-in ones."""
    return load_file(rules_file) if rules_file else load_text(default_rules_text(),
                                                              "<built-in rules>")


def in_front(first: list[Rule], warnings: list[str], base: RuleSet) -> RuleSet:
    return RuleSet(rules=(*first, *base.rules), default=base.default, identity=base.identity,
                   warnings=(*warnings, *base.warnings), auth=base.auth, media=base.media,
                   media_port=base.media_port)


def load_rules_text(text: str, filename: str, rules_file: str | None = None,
                    content_type: str | None = None) -> RuleSet:
    """Rules as text, either kind (:func:`~responder.rules.oneline.is_oneline` decides): a
    YAML rules file replaces everything; one-line rules, one per line, go in front of
    ``rules_file`` (or the built-in rules), as ``--rules FILE --rule LINE...`` would.
    Errors read ``FILENAME:LINE:COL: ...``."""
    if not is_oneline(text, content_type):
        return load_text(text, filename)
    rules, warnings = parse_lines(text, filename)
    return in_front(rules, warnings, base_ruleset(rules_file))


def dump(ruleset: RuleSet) -> str:
    """The normalized rules as YAML (what ``--check`` prints); loads back to the same set."""
    return yaml.safe_dump(document(ruleset), sort_keys=False, allow_unicode=True, width=100)
