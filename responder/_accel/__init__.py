"""The compiled fast path, ``responder._accel._speedups`` (_speedups.c here), if it is there.

``pip install`` builds it when a C compiler and the Python headers are installed; it is
optional. Every part of it has a pure-Python twin that gives the same results
(tests/test_speedups.py, tests/test_accel.py, tests/test_media_accel.py).
``SIP_RESPONDER_PURE=1`` in the environment turns it off.

The C code takes some things about the Python side for granted (the slots of ``Request``,
the positions of ``TopVia``, the parser's header slot numbers, the grammar's character
classes, the To tag's parameters, how RTP packets are read). It says which in
``_speedups.ASSUMES``; the module that uses a part compares that with what it really has
(:func:`mismatch`) before using it, and on any difference uses its pure-Python twin
instead and says so (:func:`turn_off`): a slower answer, never a wrong one.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from types import ModuleType


class SpeedupsWarning(RuntimeWarning):
    """A compiled part is not used: what it assumes about the Python side does not hold."""


def load() -> ModuleType | None:
    """The extension module, or None: not built, or SIP_RESPONDER_PURE is set."""
    if os.environ.get("SIP_RESPONDER_PURE"):
        return None
    try:
        from responder._accel import _speedups
    except ImportError:
        return None
    return _speedups


SPEEDUPS = load()
"""The compiled primitives (responder/_accel/_speedups.c), or None."""


def assumptions(ext: ModuleType, part: str) -> Mapping[str, object] | None:
    """What the extension assumes for ``part`` ("parser", "to_tag", "media"); None: it does
    not say."""
    every = getattr(ext, "ASSUMES", None)
    found = every.get(part) if isinstance(every, Mapping) else None
    return found if isinstance(found, Mapping) else None


def mismatch(assumed: Mapping[str, object] | None, actual: Mapping[str, object]) -> str | None:
    """The first assumption that does not hold, in one line naming it; None when all hold.

    ``actual`` says, in the extension's own terms, what the Python side has. An assumption
    the Python side does not state, or a fact the extension assumes nothing about, is a
    difference too: one of the two was changed without the other.
    """
    if assumed is None:
        return "the extension does not say what it assumes (built from older source?)"
    for name in [*assumed, *(n for n in actual if n not in assumed)]:
        if name not in actual:
            return f"{name}: assumed by the extension, not checked by the Python side"
        if name not in assumed:
            return f"{name}: checked by the Python side, not stated by the extension"
        if assumed[name] != actual[name]:
            return f"{name}: {_difference(assumed[name], actual[name])}"
    return None


def _difference(c: object, py: object) -> str:
    """Where two values differ, briefly (the first differing item of two sequences)."""
    if isinstance(c, tuple | list) and isinstance(py, tuple | list):
        for i, (a, b) in enumerate(zip(c, py, strict=False)):
            if a != b:
                return f"at position {i} the extension has {a!r}, Python {b!r}"
        return f"the extension has {len(c)} items, Python {len(py)}"
    if isinstance(c, str) and isinstance(py, str):
        only_c, only_py = sorted(set(c) - set(py)), sorted(set(py) - set(c))
        return f"only the extension has {''.join(only_c)!r}, only Python {''.join(only_py)!r}"
    if isinstance(c, Mapping) and isinstance(py, Mapping):
        for key in [*c, *(k for k in py if k not in c)]:
            if c.get(key) != py.get(key):
                return f"[{key!r}] is {c.get(key)!r} in the extension, {py.get(key)!r} in Python"
    return f"the extension has {c!r}, Python {py!r}"


def turn_off(part: str, why: str) -> None:
    """Say, in one warning line, that ``part`` answers in pure Python, and why.

    Issued for this module, not for a line of source: shown, it is that one line (no
    source line under it); a filter for module ``responder._accel`` or for
    :class:`SpeedupsWarning` silences it, ``-W error`` makes it an error.
    """
    warnings.warn_explicit(f"compiled {part} not used, pure Python answers instead: {why}",
                           SpeedupsWarning, __name__, 0, module=__name__)


def adopt(ext: ModuleType | None, part: str, check: Callable[[ModuleType], str | None],
          ) -> tuple[ModuleType | None, str | None]:
    """(the extension, when ``check`` finds nothing wrong with it for ``part``, else None;
    why not, when it is built but not used -- said once by :func:`turn_off`)."""
    if ext is None:
        return None, None
    why = check(ext)
    if why is not None:
        turn_off(part, why)
        return None, why
    return ext, None
