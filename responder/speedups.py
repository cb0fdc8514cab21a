"""The compiled fast path, ``responder._speedups`` (responder/_speedups.c), if it is there.

``pip install`` builds it when a C compiler and the Python headers are installed; it is
optional. Every part of it has a pure-Python twin that gives the same results
(tests/test_speedups.py). ``SIP_RESPONDER_PURE=1`` in the environment turns it off.
"""

from __future__ import annotations

import os
from types import ModuleType


def load() -> ModuleType | None:
    """The extension module, or None: not built, or SIP_RESPONDER_PURE is set."""
    if os.environ.get("SIP_RESPONDER_PURE"):
        return None
    try:
        from . import _speedups
    except ImportError:
        return None
    return _speedups


SPEEDUPS = load()
