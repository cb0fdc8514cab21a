"""pytest fixtures for sip-responder (entry point ``pytest11``, loaded when it is installed).

* ``sip_responder_server`` (session): one :class:`~responder.testing.Responder` on
  127.0.0.1, UDP and TCP on free ports, for the whole session; its start rules come from
  ``--sip-responder-rules FILE`` or the ini option ``sip_responder_rules`` (default: the
  built-in rules). Override ``sip_responder_options`` (session) for other arguments
  (``transports``, ``tls_cert`` ...).
* ``sip_responder``: that server, reset before each test (start rules, empty journal).
* ``sip_client``: a :class:`~responder.testing.SipClient` aimed at it over
  ``sip_transport`` (``"udp"``; parametrize it to choose ``"tcp"``, ``"tls"``, ``"ws"`` or
  ``"wss"``), closed afterwards; override ``sip_client_options`` for more arguments
  (``ca=`` for tls and wss).
* ``sip_client_factory``: ``sip_client_factory("tcp")`` makes more clients, each closed
  after the test.
* ``sipvicious``: ``svmap``, ``svwar`` and ``svcrack`` from :mod:`responder.testing.sipvicious`,
  bound to its address (the test is skipped when those tools are missing).

Fixtures only: everything they use is public in :mod:`responder.testing`.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from collections.abc import Callable, Iterator
from contextlib import ExitStack
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
def sip_responder_options() -> dict[str, Any]:
    """Keyword arguments of the session's Responder (override it, session-scoped, for
    ``transports=("udp", "tcp", "tls", "ws", "wss")``, ``tls_cert=``, ``tls_key=``,
    ``rules=`` ...)."""
    return {"transports": ("udp", "tcp")}


@pytest.fixture(scope="session")
def sip_responder_server(pytestconfig: pytest.Config,
                         sip_responder_options: dict[str, Any]) -> Iterator[Responder]:
    """One sip-responder for the session (stopped at its end); prefer ``sip_responder``."""
    options = dict(sip_responder_options)
    path = options.pop("rules", None) or _rules_path(pytestconfig)
    try:
        responder = Responder(path, **options)
    except RuleError as exc:
        pytest.fail(f"sip-responder: the rules in {path} do not load: {exc}", pytrace=False)
    except (TypeError, ValueError) as exc:
        pytest.fail(f"sip-responder: sip_responder_options {options}: {exc}", pytrace=False)
    with responder:
        yield responder


@pytest.fixture
def sip_responder(sip_responder_server: Responder) -> Iterator[Responder]:
    """The session's sip-responder with its start rules and an empty journal."""
    sip_responder_server.reset()
    yield sip_responder_server
    sip_responder_server.check()  # an error in the server thread fails the test that saw it


@pytest.fixture
def sip_transport() -> str:
    """The transport of ``sip_client``: ``"udp"``; parametrize it to choose among
    ``"udp"``, ``"tcp"``, ``"tls"``, ``"ws"``, ``"wss"``
    (``@pytest.mark.parametrize("sip_transport", ["udp", "tcp", "ws"])``)."""
    return "udp"


@pytest.fixture
def sip_client_options() -> dict[str, Any]:
    """More keyword arguments of every SipClient the fixtures make (``ca=`` for tls and
    wss)."""
    return {}


SipClientFactory = Callable[..., SipClient]


@pytest.fixture
def sip_client_factory(sip_responder: Responder, sip_transport: str,
                       sip_client_options: dict[str, Any]) -> Iterator[SipClientFactory]:
    """``sip_client_factory(transport=None, **options)``: a new SipClient whose requests go
    to ``sip_responder``'s listener of that transport (default ``sip_transport``); every
    one is closed after the test."""
    with ExitStack() as clients:
        def make(transport: str | None = None, **options: Any) -> SipClient:
            transport = transport or sip_transport
            try:
                address = sip_responder.address_of(transport)
            except LookupError as exc:
                pytest.fail(f"{exc}: add it to sip_responder_options' transports",
                            pytrace=False)
            client = SipClient(address, transport=transport,
                               **{**sip_client_options, **options})
            return clients.enter_context(client)
        yield make


@pytest.fixture
def sip_client(sip_client_factory: SipClientFactory) -> SipClient:
    """A SipClient on 127.0.0.1 whose requests go to ``sip_responder`` over
    ``sip_transport``."""
    return sip_client_factory()


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
