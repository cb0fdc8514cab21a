"""Media settings of answered calls (SPEC §8): ``media:`` at the top of a rules file, per
rule and per step; their values, their validation (called by :func:`.model.validate_rule`,
the one place rules are judged), and their reading and writing for the loader and
``--check``. YAML-free: the loader hands its nodes through :class:`Reader`.

A rule's or a step's settings may be partial (``media: {mode: sink}``): they are kept as
written (:class:`MediaPatch`) and resolved over the enclosing settings by
:class:`~responder.rules.model.RuleSet`, so the engine reads one finished
:class:`MediaConfig` per rule and step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from responder.rules.errors import RuleError
from responder.sip.sdp import COMFORT_NOISE, DEFAULT_CODECS, OFFERED, TELEPHONE_EVENT
from responder.sip.uri import TOKEN

ECHO, SINK, NONE = "echo", "sink", "none"
MEDIA_MODES = (ECHO, SINK, NONE)


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """How a call's media is answered: the codecs we accept (in the offer's order), what the
    media socket does with its RTP (``echo``, ``sink``, ``none``: ``a=inactive``), and
    whether a 183 carries the answer (early media)."""

    codecs: tuple[str, ...] = DEFAULT_CODECS
    mode: str = ECHO
    early: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MEDIA_MODES:
            raise RuleError(f"media mode {self.mode!r}: one of {', '.join(MEDIA_MODES)}")


DEFAULT_MEDIA = MediaConfig()
MAX_CODECS = 32        # names in one codecs list
MAX_CODEC_NAME = 32    # characters in one codec name (the longest real ones have ~15)
MAX_PORT = 65535       # media.port; 0: a free port
SIGNALS = (TELEPHONE_EVENT, COMFORT_NOISE)  # formats that are no shared codec on their own


@dataclass(frozen=True, slots=True)
class MediaPatch:
    """The ``media:`` keys a rule or a step writes; None: not written, inherited (a step's
    from its rule, a rule's from the rule set's ``media``). Kept as written for ``--check``;
    :class:`RuleSet` resolves it into a finished :class:`MediaConfig`."""

    codecs: tuple[str, ...] | None = None
    mode: str | None = None
    early: bool | None = None

    def over(self, base: MediaConfig) -> MediaConfig:
        return MediaConfig(
            codecs=base.codecs if self.codecs is None else self.codecs,
            mode=base.mode if self.mode is None else self.mode,
            early=base.early if self.early is None else self.early,
        )


def validate_media(media: MediaPatch, at: Callable[[str], str],
                   port: int | None = None) -> list[str]:
    """Check media settings (SPEC §8); raise RuleError, return warnings. ``at(key)`` locates
    ``mode``, ``codecs``, ``codecs.N`` (the N-th name, from 0), ``early`` and ``port``.

    Any codec name that is a token is accepted (the answerer compares a=rtpmap encoding
    names case-insensitively, so iLBC, AMR or speex work when a peer offers them); a list
    no offer can share a codec with, or that gives a delayed offer nothing, is warned about.
    """
    if media.mode is not None and media.mode not in MEDIA_MODES:
        raise RuleError(f"{at('mode')}: unknown media mode {media.mode!r} "
                        f"(known: {', '.join(MEDIA_MODES)})")
    if port is not None and not 0 <= port <= MAX_PORT:
        raise RuleError(f"{at('port')}: media port must be from 0 (a free port) to "
                        f"{MAX_PORT}, not {port}")
    if media.codecs is None:
        return []
    if not media.codecs:
        raise RuleError(f"{at('codecs')}: an empty codecs list: name at least one codec, "
                        "e.g. PCMU")
    if len(media.codecs) > MAX_CODECS:
        raise RuleError(f"{at(f'codecs.{MAX_CODECS}')}: {len(media.codecs)} codecs: at most "
                        f"{MAX_CODECS}")
    for i, name in enumerate(media.codecs):
        if not (TOKEN.fullmatch(name) and len(name) <= MAX_CODEC_NAME):
            raise RuleError(f"{at(f'codecs.{i}')}: bad codec name {name[:40]!r}: an a=rtpmap "
                            f"encoding name (a token of at most {MAX_CODEC_NAME} characters, "
                            "e.g. PCMU, opus, telephone-event)")
    names = [c.lower() for c in media.codecs]
    warnings = []
    if all(n in SIGNALS for n in names):
        warnings.append(f"{at('codecs')}: only {', '.join(media.codecs)}: these alone are no "
                        "shared codec, so every offer gets 488 (SPEC §8.1)")
    elif not any(n in OFFERED and n not in SIGNALS for n in names):
        warnings.append(f"{at('codecs')}: none of {', '.join(media.codecs)} can be offered "
                        f"when an INVITE has no SDP (a delayed offer knows "
                        f"{', '.join(sorted(set(OFFERED) - set(SIGNALS)))})")
    return warnings


# --- reading (the loader's YAML nodes, through its walker) and writing (--check) ---------
MEDIA_KEYS = ("codecs", "mode", "early")  # and, at the top level only, "port"


class Reader(Protocol):
    """What :func:`read_media` needs of the loader's walker (nodes are YAML nodes)."""

    def mapping(self, node: Any, what: str,
                known: tuple[str, ...]) -> dict[str, tuple[Any, Any]]: ...
    def scalar(self, node: Any) -> Any: ...
    def text(self, node: Any, what: str) -> str: ...
    def items(self, node: Any) -> list[Any]: ...
    def integer(self, node: Any, what: str) -> int: ...
    def delay(self, node: Any) -> float: ...
    def error(self, node: Any, what: str) -> RuleError: ...


def split_codecs(text: str) -> tuple[str, ...]:
    """``PCMA, PCMU`` -> ("PCMA", "PCMU"): codec names separated by commas (no codec name
    holds one: an a=rtpmap encoding name is a token); "" -> () (an error to validate)."""
    return tuple(c.strip() for c in text.split(",")) if text.strip() else ()


def read_media(r: Reader, node: Any, top: bool = False) -> tuple[MediaPatch, int | None]:
    """A ``media:`` mapping as written (its values judged by :func:`validate_media`) and,
    at the top level, its ``port`` (None: not given)."""
    m = r.mapping(node, "media" if top else "media (port: is only for the top-level media)",
                  MEDIA_KEYS + (("port",) if top else ()))
    codecs = None
    if "codecs" in m:
        value = m["codecs"][1]
        items = r.items(value)
        if len(items) == 1 and items[0] is value:  # one string: a name, or names and commas
            codecs = split_codecs(r.text(value, "codecs"))
        else:
            codecs = tuple(r.text(n, "a codec name") for n in items)
    mode = r.text(m["mode"][1], "mode") if "mode" in m else None
    early = None
    if "early" in m:
        early = r.scalar(m["early"][1])
        if not isinstance(early, bool):
            raise r.error(m["early"][1], f"early must be true or false, not {early!r}")
    port = r.integer(m["port"][1], "port") if "port" in m else None
    return MediaPatch(codecs=codecs, mode=mode, early=early), port


MAX_HANGUP = 3600.0  # hangup: at most an hour after the 2xx (like any delay)


def call_keys(r: Reader, m: dict[str, tuple[Any, Any]], code: int) -> dict[str, Any]:
    """A step's ``reliable:`` (a provisional sent per RFC 3262, SPEC §8.4) and ``hangup:``
    (a 2xx after which we send BYE, SPEC §8.5)."""
    out: dict[str, Any] = {}
    if "reliable" in m:
        node = m["reliable"][1]
        value = r.scalar(node)
        if not isinstance(value, bool):
            raise r.error(node, f"reliable must be true or false, not {value!r}")
        if value and not 100 < code < 200:
            raise r.error(node, "reliable is for a provisional response (101-199)")
        out["reliable"] = value
    if "hangup" in m:
        node = m["hangup"][1]
        hangup = r.delay(node)
        if hangup > MAX_HANGUP:
            raise r.error(node, f"hangup {hangup:g}s is too long: at most 3600s")
        if not 200 <= code < 300:
            raise r.error(node, "hangup is for a 2xx step: the call it ends")
        out["hangup"] = hangup
    return out


def media_document(media: MediaPatch | MediaConfig, port: int | None = None) -> dict[str, Any]:
    """The keys of ``media`` that are given, as ``--check`` writes them (loads back)."""
    out: dict[str, Any] = {}
    if media.codecs is not None:
        out["codecs"] = list(media.codecs)
    if media.mode is not None:
        out["mode"] = media.mode
    if media.early is not None:
        out["early"] = media.early
    if port is not None:
        out["port"] = port
    return out
