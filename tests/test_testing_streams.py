"""The test toolkit over TCP and TLS (issue 14): Responder listening on streams, SipClient
and AsyncSipClient speaking them, and the pytest plugin's choice of transport."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from certs import Certs

from responder.ops.listen import Listen
from responder.testing import AsyncSipClient, Responder, SipClient, SipResponse
from responder.testing.client_core import Core

pytest_plugins = ["pytester"]

OFFER = ("v=0\r\no=me 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
         "m=audio 40000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
         "a=rtpmap:101 telephone-event/8000\r\n")


@pytest.fixture(scope="module")
def server(certs: Certs) -> Iterator[Responder]:
    with Responder(transports=("udp", "tcp", "tls"), tls_cert=certs.server_cert,
                   tls_key=certs.server_key, seed=3) as responder:
        yield responder


@pytest.fixture
def responder(server: Responder) -> Responder:
    server.reset()
    return server


def bye(client: SipClient, ok: SipResponse) -> SipResponse:
    """BYE in the dialog the 200 ``ok`` made."""
    dialog = {"From": ok.header("from") or "", "To": ok.header("to") or "",
              "Call-ID": ok.header("call-id") or "", "CSeq": "2 BYE"}
    return client.request("BYE", "1000", headers=dialog).final


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_options_and_a_call_over_each_transport(responder: Responder, certs: Certs,
                                                transport: str) -> None:
    with SipClient(responder.address_of(transport), transport=transport,
                   ca=certs.ca) as client:
        assert client.transport == transport
        assert client.options(responder.uri(transport=transport)).status == 200
        calls = client.invite(responder.uri("1000", transport), body=OFFER)
        assert calls.statuses == [100, 180, 200]
        ok = calls.final
        assert ok.header("content-type") == "application/sdp"
        assert "a=rtpmap:8 PCMA/8000" in ok.body.decode()
        if transport != "udp":  # our Contact names the stream (docs/transports.md)
            assert f";transport={transport}" in (ok.header("contact") or "")
        assert bye(client, ok).status == 200

    [invite] = responder.assert_answered("INVITE", [100, 180, 200], user="1000")
    assert invite.transport == transport
    assert (invite.header("via") or "").startswith(f"SIP/2.0/{transport.upper()} ")
    contact = invite.header("contact") or ""
    if transport == "udp":
        assert "transport=" not in contact
    else:
        assert contact.endswith(f";transport={transport}>")
    [ack] = responder.assert_received("ACK", count=1)
    assert ack.transport == transport
    [ended] = responder.assert_answered("BYE", [200], count=1)
    assert ended.transport == transport


def test_a_delayed_rule_and_a_cancel_over_tcp(responder: Responder) -> None:
    responder.set_rules("INVITE@1000->180,486/300ms")
    with SipClient(responder.address_of("tcp"), transport="tcp") as client:
        assert client.invite(responder.uri("1000", "tcp")).statuses == [180, 486]
        responder.set_rules("INVITE->180,486/5s")
        assert client.invite("2000", until="provisional").statuses == [180]
        ok, terminated = client.cancel()
        assert (ok.status, terminated.status) == (200, 487)
    responder.assert_answered("INVITE", [180, 487], user="2000")
    assert [e.transport for e in responder.requests("ACK")] == ["tcp", "tcp"]


def test_tls_trusts_only_what_it_is_told(responder: Responder, certs: Certs) -> None:
    where = responder.address_of("tls")
    with pytest.raises(ValueError, match="needs ca="):
        SipClient(where, transport="tls")
    with pytest.raises(ssl.SSLCertVerificationError):  # the system's CAs did not sign it
        SipClient(where, transport="tls", ssl_context=ssl.create_default_context())
    with SipClient(where, transport="tls", ssl_context=certs.client_context()) as client:
        assert client.options().status == 200


def test_mutual_tls(certs: Certs) -> None:
    with Responder(transports=("tcp", "tls"), tls_cert=certs.server_cert,
                   tls_key=certs.server_key, tls_ca=certs.ca) as server:
        where = server.address_of("tls")
        signed = certs.client_context(certs.client_cert, certs.client_key)
        with SipClient(where, transport="tls", ssl_context=signed) as client:
            assert client.options().status == 200
        rogue = certs.client_context(certs.rogue_cert, certs.rogue_key)
        # refused in the handshake, or at the first read (TLS 1.3)
        with pytest.raises(OSError), \
                SipClient(where, transport="tls", ssl_context=rogue) as client:
            client.options(timeout=1)
        assert [e.transport for e in server.journal] == ["tls"]


def test_async_client_over_tcp_and_tls(responder: Responder, certs: Certs) -> None:
    async def main() -> list[list[int]]:
        out = []
        for transport in ("tcp", "tls"):
            async with AsyncSipClient(responder.address_of(transport), transport=transport,
                                      ca=certs.ca) as client:
                assert (await client.options()).status == 200
                out.append((await client.invite("1000")).statuses)
        return out

    assert asyncio.run(main()) == [[100, 180, 200]] * 2
    acks = responder.assert_received("ACK", count=2)  # (the last one sent by aclose())
    assert [e.transport for e in acks] == ["tcp", "tls"]


def test_listen_specs_addresses_and_uris() -> None:
    specs: list[str | Listen] = ["tcp:127.0.0.1:0", Listen("udp", "127.0.0.1", 0)]
    with Responder(listen=specs) as server:
        [(first, tcp), (second, udp)] = sorted(server.listeners)
        assert (first, second) == ("tcp", "udp")
        assert server.address == udp == server.address_of("UDP")  # UDP's, when it has one
        assert server.address_of("tcp") == tcp
        assert server.uri("1000", transport="tcp") == f"sip:1000@127.0.0.1:{tcp[1]};transport=tcp"
        assert server.uri("1000") == f"sip:1000@127.0.0.1:{udp[1]}"
        assert server.uri(transport="udp") == f"sip:127.0.0.1:{udp[1]}"
        assert f"tcp://127.0.0.1:{tcp[1]}" in repr(server)
        with pytest.raises(LookupError, match=r"does not listen on tls \(it listens on udp, tcp\)"):
            server.address_of("tls")


def test_a_stream_only_responder_probes_and_resets_over_tcp() -> None:
    with Responder("INVITE->486", transports=["tcp"]) as server:
        assert [s for s, _ in server.listeners] == ["tcp"]
        with SipClient(server.address, transport="tcp") as client:
            assert client.invite("1000").statuses == [486]
        server.reset()  # the probe goes over TCP, and is forgotten
        assert server.journal == []


def test_responder_argument_mistakes(certs: Certs) -> None:
    with pytest.raises(ValueError, match=r"tls://127\.0\.0\.1:0 needs tls_cert= and tls_key="):
        Responder(transports=("udp", "tls"))
    with pytest.raises(ValueError, match="no tls or wss listener"):
        Responder(tls_cert=certs.server_cert, tls_key=certs.server_key)
    with pytest.raises(ValueError, match="go together"):
        Responder(transports=("tls",), tls_cert=certs.server_cert)
    with pytest.raises(ValueError, match=r"transports \['sctp'\]"):
        Responder(transports=("udp", "sctp"))
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        Responder(listen=["tcp:127.0.0.1:99999"])
    with pytest.raises(ValueError, match="the test clients speak udp, tcp, tls, ws, wss"):
        SipClient(("127.0.0.1", 5060), transport="sctp")


def test_via_and_contact_name_the_transport() -> None:
    for transport, via, param in [("udp", "UDP", ""), ("tcp", "TCP", ";transport=tcp"),
                                  ("tls", "TLS", ";transport=tls"),
                                  ("wss", "WSS", ";transport=ws")]:
        core = Core(("127.0.0.1", 5000), ("127.0.0.1", 5060), "ua", 1.0, transport)
        txn = core.new("INVITE", "1000")
        text = txn.data.decode()
        # a WebSocket client names a random .invalid host (RFC 7118 §5)
        host = r"[0-9a-f]{12}\.invalid" if transport == "wss" else "127.0.0.1:5000"
        assert re.fullmatch(host, core.sent_by)
        host = core.sent_by
        assert f"Via: SIP/2.0/{via} {host};branch=" in text
        assert f"Contact: <sip:client@{host}{param}>\r\n" in text
        assert core.derive(txn, "CANCEL").via.startswith(f"SIP/2.0/{via} ")


# --------------------------------------------------------------------------- framing


def answer(request: bytes, status: str, body: bytes = b"") -> bytes:
    """A response copying the request's Via, From, To, Call-ID and CSeq."""
    text = request.decode()
    keep = [line for line in text.split("\r\n")
            if re.match(r"(?i)(via|from|to|call-id|cseq):", line)]
    head = "\r\n".join([f"SIP/2.0 {status}", *keep, f"Content-Length: {len(body)}"])
    return head.encode() + b"\r\n\r\n" + body


class OneShotServer:
    """A hand-written TCP peer: answers the first request with the parts ``reply`` makes,
    then waits for the client to close (``linger``) or closes at once."""

    def __init__(self, reply: Callable[[bytes], list[bytes]], linger: bool = True) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()[:2]
        self.reply, self.linger = reply, linger
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            for part in self.reply(data):
                conn.sendall(part)
            while self.linger and conn.recv(4096):  # until the client closes
                pass

    def close(self) -> None:
        self.thread.join(5)
        self.listener.close()


def test_the_client_cuts_responses_from_the_stream() -> None:
    # keep-alive CRLFs, two responses in one segment, one split inside Content-Length
    def reply(request: bytes) -> list[bytes]:
        trying, ok = answer(request, "100 Trying"), answer(request, "200 OK", b"hello")
        cut = ok.index(b"Content-Length") + 9
        return [b"\r\n\r\n" + trying + ok[:cut], ok[cut:]]

    peer = OneShotServer(reply)
    with SipClient(peer.address, transport="tcp") as client:
        responses = client.request("MESSAGE", "1000")
        assert responses.statuses == [100, 200]
        assert responses.final.body == b"hello"
    peer.close()


def test_a_closed_connection_says_so() -> None:
    def reply(request: bytes) -> list[bytes]:
        return [answer(request, "100 Trying")]  # then the peer closes

    peer = OneShotServer(reply, linger=False)
    with SipClient(peer.address, transport="tcp") as client, \
            pytest.raises(ConnectionError, match=r"closed the connection.*it received: 100"):
        client.request("MESSAGE", "1000", timeout=5)
    peer.close()


# --------------------------------------------------------------------------- the plugin


def run(pytester: pytest.Pytester) -> pytest.RunResult:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-W", "error")


def test_plugin_default_is_udp_and_parametrize_chooses(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        def test_default(sip_responder, sip_client):
            assert sip_client.transport == "udp"
            assert sip_client.remote_address == sip_responder.address
            assert sip_client.options().status == 200
            assert sip_responder.journal[0].transport == "udp"

        @pytest.mark.parametrize("sip_transport", ["udp", "tcp"])
        def test_each(sip_responder, sip_client, sip_transport):
            assert sip_client.invite(sip_responder.uri("1000")).statuses == [100, 180, 200]
            [ack] = sip_responder.assert_received("ACK", count=1)
            assert ack.transport == sip_transport

        def test_factory(sip_responder, sip_client_factory):
            tcp, udp = sip_client_factory("tcp"), sip_client_factory()
            assert (tcp.transport, udp.transport) == ("tcp", "udp")
            assert tcp.remote_address == sip_responder.address_of("tcp")
            assert tcp.options().status == udp.options().status == 200
            with pytest.raises(pytest.fail.Exception, match="does not listen on tls"):
                sip_client_factory("tls")
    """)
    run(pytester).assert_outcomes(passed=4)


def test_plugin_over_tls(pytester: pytest.Pytester, certs: Certs) -> None:
    paths = {k: str(v) for k, v in vars(certs).items() if isinstance(v, Path)}
    pytester.makepyfile(f"""
        import pytest

        @pytest.fixture(scope="session")
        def sip_responder_options():
            return {{"transports": ("udp", "tls"), "tls_cert": {paths['server_cert']!r},
                    "tls_key": {paths['server_key']!r}}}

        @pytest.fixture
        def sip_client_options():
            return {{"ca": {paths['ca']!r}}}

        @pytest.mark.parametrize("sip_transport", ["tls"])
        def test_tls(sip_responder, sip_client):
            assert sip_client.options().status == 200
            assert [e.transport for e in sip_responder.journal] == ["tls"]

        def test_udp_still(sip_responder, sip_client):
            assert sip_client.options().status == 200
    """)
    run(pytester).assert_outcomes(passed=2)


def test_plugin_bad_options_fail_clearly(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.fixture(scope="session")
        def sip_responder_options():
            return {"transports": ("udp", "tls")}

        def test_it(sip_responder):
            pass
    """)
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*sip_responder_options*needs tls_cert= and tls_key=*"])


def test_a_websocket_listener() -> None:
    """A Responder listens on ws: and names it; another WebSocket client than ours (the
    ``websockets`` library's) is answered (our clients over ws: tests/test_testing_ws.py)."""
    client = pytest.importorskip("websockets.sync.client")
    with Responder(transports=("udp", "ws")) as server:
        host, port = server.address_of("ws")
        assert server.uri("1000", "ws") == f"sip:1000@{host}:{port};transport=ws"
        request = (f"OPTIONS sip:1000@{host}:{port};transport=ws SIP/2.0\r\n"
                   "Via: SIP/2.0/WS client.invalid;branch=z9hG4bK-ws1\r\n"
                   "From: <sip:a@client.invalid>;tag=1\r\nTo: <sip:1000@127.0.0.1>\r\n"
                   "Call-ID: ws-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
        with client.connect(f"ws://{host}:{port}", subprotocols=["sip"]) as ws:
            ws.send(request)
            assert str(ws.recv(timeout=2)).startswith("SIP/2.0 200 OK\r\n")
        [entry] = server.assert_received("OPTIONS", count=1)
        assert entry.transport == "ws"
