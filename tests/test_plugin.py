"""The pytest plugin, run the way users run it: small test files under ``pytester``."""

from __future__ import annotations

import pytest

from responder.testing import pytest_plugin

pytest_plugins = ["pytester"]

INI = """\
[pytest]
asyncio_default_fixture_loop_scope = function
{extra}
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-W", "error", *args)


@pytest.fixture(autouse=True)
def ini(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI.format(extra=""))


def test_the_entry_point_loads_the_plugin(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--fixtures")
    result.stdout.fnmatch_lines_random([
        "sip_responder_server [[]session scope[]] -- *pytest_plugin.py:*",
        "sip_responder -- *pytest_plugin.py:*",
        "sip_client -- *pytest_plugin.py:*",
        "sipvicious -- *pytest_plugin.py:*",
        "sip_responder_options [[]session scope[]] -- *pytest_plugin.py:*",
        "sip_client_factory -- *pytest_plugin.py:*",
        "sip_client_options -- *pytest_plugin.py:*",
        "sip_transport -- *pytest_plugin.py:*",
    ])
    result = run(pytester, "--help")
    result.stdout.fnmatch_lines(["*--sip-responder-rules=FILE*", "*sip_responder_rules*"])
    assert pytest_plugin.OPTION == "--sip-responder-rules"


def test_rules_are_reset_between_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        PORTS = []

        def test_busy(sip_responder, sip_client):
            sip_responder.set_rules("INVITE->486")
            assert sip_client.invite(sip_responder.uri("1000")).statuses == [486]
            PORTS.append(sip_responder.address)

        def test_default_again(sip_responder, sip_client):
            assert sip_responder.journal == []  # the journal was cleared
            assert sip_client.invite(sip_responder.uri("1000")).final.status == 200
            PORTS.append(sip_responder.address)

        def test_fluent_then_reset(sip_responder, sip_client):
            sip_responder.on("OPTIONS").respond(503)
            assert sip_client.options().status == 503

        def test_one_server_per_session(sip_responder, sip_client):
            assert sip_client.options().status == 200
            assert PORTS[0] == PORTS[1] == sip_responder.address
    """)
    run(pytester).assert_outcomes(passed=4)


def test_sip_client_is_closed_after_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        SEEN = []

        def test_use(sip_client, sip_responder):
            assert sip_client.remote_address == sip_responder.address
            SEEN.append(sip_client)

        def test_closed():
            assert SEEN[0]._sock.fileno() == -1
    """)
    run(pytester).assert_outcomes(passed=2)


def test_server_is_stopped_at_the_end_of_the_session(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
        SERVERS = []

        def pytest_unconfigure(config):
            print(f"session server running at the end: {SERVERS[0].running}")
    """)
    pytester.makepyfile("""
        from conftest import SERVERS

        def test_it(sip_responder_server):
            SERVERS.append(sip_responder_server)
            assert sip_responder_server.running
    """)
    result = run(pytester, "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*session server running at the end: False*"])


RULES = """\
rules:
  - name: lab-busy
    match: {method: INVITE, user: "10*"}
    respond: 486
default: 404
"""

USES_RULES = """
    def test_start_rules(sip_responder, sip_client):
        assert sip_client.invite("1000").statuses == [486]
        assert sip_client.options().status == 404
        assert sip_responder.journal[0].rule == "lab-busy"

    def test_start_rules_survive_the_reset(sip_responder, sip_client):
        sip_responder.set_rules("OPTIONS->200")  # one-line rules go in front of them
        assert sip_client.options().status == 200
        assert sip_client.invite("1000").statuses == [486]
"""


def test_rules_option(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", lab=RULES)
    pytester.makepyfile(USES_RULES)
    run(pytester, "--sip-responder-rules", "lab.yaml").assert_outcomes(passed=2)


def test_rules_ini_option(pytester: pytest.Pytester) -> None:
    sub = pytester.mkdir("conf")
    (sub / "lab.yaml").write_text(RULES)
    pytester.makeini(INI.format(extra="sip_responder_rules = conf/lab.yaml"))
    pytester.makepyfile(USES_RULES)
    run(pytester).assert_outcomes(passed=2)


def test_a_bad_rules_file_errors_the_tests(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", bad="rules:\n  - respond: 999\n")
    pytester.makepyfile("""
        def test_it(sip_responder):
            pass
    """)
    result = run(pytester, "--sip-responder-rules", "bad.yaml")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*sip-responder: the rules in *bad.yaml do not load: "
                                 "*bad.yaml:2:*: bad response code 999*"])


def test_a_failed_assertion_shows_the_near_misses(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        def test_it(sip_responder, sip_client):
            sip_client.options("1001")
            sip_responder.assert_received("INVITE", user="1000", timeout=0)
    """)
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*expected INVITE with user='1000' at least once; 0 matched",
        "*near misses (closest first):",
        "*OPTIONS sip:1001@127.0.0.1:* -> 200: method OPTIONS is not INVITE; "
        "user '1001' does not match '1000'",
        "*received in total: 1 request(s) (OPTIONS x1)",
    ])


def test_async_client_with_the_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest
        from responder.testing import AsyncSipClient

        @pytest.mark.asyncio
        async def test_it(sip_responder):
            sip_responder.set_rules("INVITE->486")
            async with AsyncSipClient(sip_responder.address) as client:
                assert (await client.invite("1000")).statuses == [486]
            sip_responder.assert_received("ACK", count=1)
    """)
    run(pytester).assert_outcomes(passed=1)


def test_sipvicious_fixture_skips_without_the_module(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
        import sys
        import pytest

        @pytest.fixture(autouse=True)
        def hide_sipvicious(monkeypatch):
            monkeypatch.setitem(sys.modules, "responder.testing.sipvicious", None)
    """)
    pytester.makepyfile("""
        def test_it(sipvicious):
            raise AssertionError("not reached")
    """)
    result = run(pytester, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*responder.testing.sipvicious is not available*"])


def test_sipvicious_fixture_binds_the_address(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
        import sys
        import types
        import pytest

        @pytest.fixture(autouse=True)
        def fake_sipvicious(monkeypatch):
            fake = types.ModuleType("responder.testing.sipvicious")
            fake.available = lambda: True
            fake.svmap = lambda host, port, **kw: ("svmap", host, port, kw)
            fake.svwar = lambda host, port, *a, **kw: ("svwar", host, port, a)
            fake.svcrack = lambda host, port, *a, **kw: ("svcrack", host, port, a)
            monkeypatch.setitem(sys.modules, "responder.testing.sipvicious", fake)
    """)
    pytester.makepyfile("""
        def test_it(sipvicious, sip_responder):
            host, port = sip_responder.address
            assert (sipvicious.host, sipvicious.port) == (host, port)
            assert sipvicious.svmap(method="INVITE") == ("svmap", host, port,
                                                         {"method": "INVITE"})
            assert sipvicious.svwar("100-200") == ("svwar", host, port, ("100-200",))
            assert sipvicious.svcrack("1000", ["a"]) == ("svcrack", host, port,
                                                        ("1000", ["a"]))
    """)
    run(pytester).assert_outcomes(passed=1)


def test_sipvicious_fixture_for_real(pytester: pytest.Pytester) -> None:
    try:
        from responder.testing import sipvicious
    except ImportError:
        pytest.skip("responder.testing.sipvicious is not there yet")
    if not sipvicious.available():
        pytest.skip("SIPVicious is not installed")
    pytester.makepyfile("""
        def test_it(sipvicious, sip_responder):
            found = sipvicious.svmap(timeout=60)
            assert [h.port for h in found] == [sip_responder.address[1]]
            sip_responder.assert_received("OPTIONS")
    """)
    run(pytester).assert_outcomes(passed=1)


def test_a_server_thread_error_is_reported_by_the_test_that_saw_it(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        def boom():
            raise ZeroDivisionError("inside the server")

        def test_breaks_it(sip_responder, sip_client):
            sip_responder._loop.call_soon_threadsafe(boom)
            assert sip_client.options().status == 200  # boom has run by now

        def test_next_one_is_fine(sip_responder, sip_client):
            assert sip_client.options().status == 200
    """)
    result = run(pytester)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_breaks_it*",
                                 "*ZeroDivisionError: inside the server*"])


def test_a_new_user_reads_port_and_sends_to_it(pytester: pytest.Pytester) -> None:
    """The first thing a test author does: read ``sip_responder.host``/``.port`` and aim a
    plain UDP socket at it (no helper of ours in between)."""
    pytester.makepyfile("""
        import socket

        def test_plain_socket(sip_responder):
            assert sip_responder.host == "127.0.0.1"
            assert sip_responder.port != 0
            assert (sip_responder.host, sip_responder.port) == sip_responder.address
            request = (
                "OPTIONS sip:1000@{h}:{p} SIP/2.0\\r\\n"
                "Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-user-1\\r\\n"
                "From: <sip:user@127.0.0.1>;tag=u1\\r\\nTo: <sip:1000@{h}>\\r\\n"
                "Call-ID: user-1\\r\\nCSeq: 1 OPTIONS\\r\\nContent-Length: 0\\r\\n\\r\\n"
            ).format(h=sip_responder.host, p=sip_responder.port)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(5)
                sock.sendto(request.encode(), (sip_responder.host, sip_responder.port))
                answer = sock.recv(65535)
            assert answer.startswith(b"SIP/2.0 200 OK\\r\\n")
            assert b"Call-ID: user-1\\r\\n" in answer
    """)
    run(pytester).assert_outcomes(passed=1)
