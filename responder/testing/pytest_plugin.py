"""pytest fixtures for sip-responder (entry point ``pytest11``, loaded when it is installed).

* ``sip_responder_server`` (session): one :class:`~responder.testing.Responder` on
  127.0.0.1, a free port, for the whole session; its start rules come from
  ``--sip-responder-rules FILE`` or the ini option ``sip_responder_rules`` (default: the
  built-in rules).
* ``sip_responder``: that server, reset before each test (start rules, empty journal).
* ``sip_client``: a :class:`~responder.testing.SipClient` aimed at it, closed afterwards.
* ``sipvicious``: ``svmap``, ``svwar`` and ``svcrack`` from :mod:`responder.testing.sipvicious`,
  bound to its address (the test is skipped when those tools are missing).

Fixtures only: everything they use is public in :mod:`responder.testing`.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from responder.testing import Responder, RuleError, SipClient

OPTION = "--sip-responder-rules"
INI = "sip_responder_rules"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sip-responder")
    group.addoption(OPTION, metavar="FILE", default=None,
                    help="rules file (YAML) for the session's sip-responder server "
                         "(default: the built-in rules)")
    parser.addini(INI, default="",
                  help="rules file (YAML) for the session's sip-responder server, relative "
                       "to the ini file (default: the built-in rules)")


def _rules_path(config: pytest.Config) -> Path | None:
    given = config.getoption(OPTION)
    if given:
        return Path(config.invocation_params.dir, given)
    ini = str(config.getini(INI) or "")
    if ini:
        base = config.inipath.parent if config.inipath is not None else config.rootpath
        return base / ini
    return None


@pytest.fixture(scope="session")
def sip_responder_server(pytestconfig: pytest.Config) -> Iterator[Responder]:
    """One sip-responder for the session (stopped at its end); prefer ``sip_responder``."""
    path = _rules_path(pytestconfig)
    try:
        responder = Responder(path)
    except RuleError as exc:
        pytest.fail(f"sip-responder: the rules in {path} do not load: {exc}", pytrace=False)
    with responder:
        yield responder


@pytest.fixture
def sip_responder(sip_responder_server: Responder) -> Iterator[Responder]:
    """The session's sip-responder with its start rules and an empty journal."""
    sip_responder_server.reset()
    yield sip_responder_server
    sip_responder_server.check()  # an error in the server thread fails the test that saw it


@pytest.fixture
def sip_client(sip_responder: Responder) -> Iterator[SipClient]:
    """A SipClient on 127.0.0.1 whose requests go to ``sip_responder``."""
    with SipClient(sip_responder.address) as client:
        yield client


@dataclass(frozen=True)
class SipVicious:
    """The SIPVicious helpers with the server's host and port filled in."""

    host: str
    port: int
    svmap: Callable[..., Any]
    svwar: Callable[..., Any]
    svcrack: Callable[..., Any]


@pytest.fixture
def sipvicious(sip_responder: Responder) -> SipVicious:
    """``sipvicious.svmap(...)`` etc. run against ``sip_responder`` (skipped without them)."""
    try:
        module = importlib.import_module("responder.testing.sipvicious")
    except ImportError as exc:
        pytest.skip(f"responder.testing.sipvicious is not available ({exc})")
    missing = [n for n in ("svmap", "svwar", "svcrack") if not callable(getattr(module, n, None))]
    if missing:
        pytest.skip(f"responder.testing.sipvicious has no {', '.join(missing)}")
    available = getattr(module, "available", None)
    tools = available() if callable(available) else importlib.util.find_spec("sipvicious")
    if not tools:
        pytest.skip("the SIPVicious tools (svmap, svwar, svcrack) are not installed: "
                    "pip install sipvicious")
    host, port = sip_responder.address

    def bind(name: str) -> Callable[..., Any]:
        return functools.partial(getattr(module, name), host, port)

    return SipVicious(host, port, bind("svmap"), bind("svwar"), bind("svcrack"))
