"""``--check``: a rule set written back as the document of a rules file (SPEC §3.2), every
key as the loader reads it, so that it loads back to the same set. YAML-free: the loader
serialises it (:func:`responder.rules.loader.dump`)."""

from __future__ import annotations

from typing import Any

from responder.rules.media import media_document
from responder.rules.model import Reply, RuleSet
from responder.rules.oneline import format_delay


def document(ruleset: RuleSet) -> dict[str, Any]:
    """The normalized rules as a YAML document (``--check`` prints it with
    :func:`~responder.rules.loader.dump`); it loads back to the same set."""

    def reply(steps: Reply) -> Any:
        if not steps:
            return "drop"
        out = []
        for s in steps:
            d: dict[str, Any] = {"code": s.code}
            if s.after:
                d["after"] = format_delay(s.after)
            if s.jitter:
                d["jitter"] = format_delay(s.jitter)
            if s.reason_given:  # a phrase from the code table is not repeated
                d["reason"] = s.reason
            if s.headers:
                d["headers"] = dict(s.headers)
            if s.body:
                d["body"] = s.body.decode()
            if s.content_type:
                d["content_type"] = s.content_type
            if s.repeat != 1:
                d["repeat"] = s.repeat
            if s.fault is not None:
                d["fault"] = s.fault
            if s.media_given is not None:
                d["media"] = media_document(s.media_given)
            if s.reliable:
                d["reliable"] = True
            if s.hangup is not None:
                d["hangup"] = format_delay(s.hangup)
            out.append(d)
        return out

    rules = []
    for r in ruleset.rules:
        match: dict[str, Any] = {"method": sorted(r.match.methods) if r.match.methods else "*"}
        for key in ("user", "from_user", "to_user"):
            p = getattr(r.match, key)
            if p is not None:
                match[key] = p.text
        if r.match.source:
            match["source"] = [str(n) for n in r.match.source]
        if r.match.headers:
            match["headers"] = {k: p.text for k, p in r.match.headers}
        if r.match.in_dialog is not None:
            match["in_dialog"] = r.match.in_dialog
        entry: dict[str, Any] = {"name": r.name, "match": match}
        if r.auth:
            entry["auth"] = "digest"
            entry["challenge"] = "proxy" if r.proxy_challenge else "www"
        if r.probability != 1.0:
            entry["probability"] = r.probability
        if r.drop_first:
            entry["drop_first"] = r.drop_first
        if r.sdp_ignore:
            entry["sdp"] = "ignore"
        if r.media_given is not None:
            entry["media"] = media_document(r.media_given)
        entry["respond"] = reply(r.reply)
        rules.append(entry)
    doc: dict[str, Any] = {
        "identity": {"server": ruleset.identity.server,
                     "supported": list(ruleset.identity.supported)},
    }
    if ruleset.auth is not None:
        a = ruleset.auth
        doc["auth"] = {"realm": a.realm, "users": {u: "***" for u in a.users},
                       "algorithm": a.algorithm, "qop": "auth" if a.qop else "none",
                       "nonce_lifetime": format_delay(a.nonce_lifetime)}
    doc["media"] = media_document(ruleset.media, ruleset.media_port)
    doc["rules"] = rules
    doc["default"] = reply(ruleset.default)
    return doc
