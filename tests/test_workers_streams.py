"""``--workers N`` with stream listeners (SPEC §9, issue 14): every worker accepts on its
own socket of the listener (``SO_REUSEPORT``: the kernel spreads connections by their
addresses, whatever the workers' load) and keeps the connections it accepted; a request
whose dialog another worker owns is handed to that worker, and what it answers comes back
to the worker that holds the connection. So a CANCEL, a re-INVITE or a BYE meets its call
whichever connection, and whichever worker, it arrives on.

Real processes and loopback TCP; many calls each, so that requests land on workers other
than their dialog's owner (each call: its INVITE's connection and its CANCEL's or BYE's go
to the worker the kernel's hash picks, the owner is a hash of Call-ID and From tag).
"""

from __future__ import annotations

import os
import re
import signal
import socket

from certs import Certs
from sip import Response, read_response, request
from support import ResponderProcess, unique
from test_workers import restarted, worker_pids

from responder.testing import SipClient, SipResponse

WAIT = 5.0


class Stream:
    """One blocking TCP connection that sends requests and reads whole responses."""

    def __init__(self, addr: tuple[str, int]) -> None:
        self.sock = socket.create_connection(addr, timeout=WAIT)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self) -> Response:
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(rest) < length:
            self._more()
            head, _, rest = self.buf.partition(b"\r\n\r\n")
        self.buf = rest[length:]
        return read_response(head + b"\r\n\r\n" + rest[:length])

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, "the connection closed"
        self.buf += chunk

    def close(self) -> None:
        self.sock.close()


def stream_request(method: str, call_id: str, branch: str, **kw: object) -> bytes:
    return request(method, call_id=call_id, branch=branch, via_host="127.0.0.1:5099",
                   **kw)  # type: ignore[arg-type]


def worker_counts(server: ResponderProcess) -> list[int]:
    return [int(m.group(1)) for line in server.stderr_lines
            if (m := re.search(r"worker \d stopped: (\d+) datagrams received", line))]


def test_every_worker_accepts_and_answers_over_the_connections_it_holds() -> None:
    with ResponderProcess("--workers", "2", "-q",
                          listen=("127.0.0.1:0", "tcp:127.0.0.1:0")) as server:
        tcp = server.listener("tcp")
        for i in range(100):
            conn = Stream(tcp)
            conn.send(stream_request("OPTIONS", unique("o"), f"z9hG4bK-o{i}"))
            assert conn.response().status == 200
            conn.close()
        assert server.stop() == 0
    assert len([line for line in server.stderr_lines if "listening on tcp://" in line]) == 1
    counts = worker_counts(server)  # OPTIONS are never handed over: what each accepted
    assert len(counts) == 2 and sum(counts) == 100, counts
    assert min(counts) > 0, counts


def test_a_cancel_on_another_connection_meets_its_invite_on_whichever_worker() -> None:
    with ResponderProcess("--workers", "2", "-q", "--rule", "INVITE->180,486/3s",
                          listen=("127.0.0.1:0", "tcp:127.0.0.1:0")) as server:
        tcp = server.listener("tcp")
        for i in range(12):
            call_id, branch = unique("c"), f"z9hG4bK-c{i}"
            invite = Stream(tcp)
            invite.send(stream_request("INVITE", call_id, branch))
            assert invite.response().status == 180
            cancel = Stream(tcp)
            cancel.send(stream_request("CANCEL", call_id, branch))
            ok = cancel.response()
            assert (ok.status, ok.one("CSeq")) == (200, "1 CANCEL")
            terminated = invite.response()  # over the INVITE's own connection
            assert (terminated.status, terminated.one("CSeq")) == (487, "1 INVITE")
            invite.close()
            cancel.close()
        assert server.stop() == 0
    counts = worker_counts(server)
    assert len(counts) == 2 and sum(counts) >= 24, counts


def test_a_bye_on_another_connection_ends_the_call_and_a_second_gets_481() -> None:
    with ResponderProcess("--workers", "2", "-q",
                          listen=("127.0.0.1:0", "tcp:127.0.0.1:0")) as server:
        tcp = server.listener("tcp")
        for i in range(10):
            call_id = unique("b")
            caller = Stream(tcp)
            caller.send(stream_request("INVITE", call_id, f"z9hG4bK-b{i}"))
            got = [caller.response() for _ in range(3)]
            assert [r.status for r in got] == [100, 180, 200]
            tag = got[-1].to_tag
            to = f"<sip:1000@lab.example>;tag={tag}"
            caller.send(stream_request("ACK", call_id, f"z9hG4bK-b{i}", to=to))
            for n, want in ((0, 200), (1, 481)):
                other = Stream(tcp)
                other.send(stream_request("BYE", call_id, f"z9hG4bK-bye{i}-{n}", to=to,
                                          cseq=2 + n))
                assert other.response().status == want
                other.close()
            caller.close()
        assert server.stop() == 0


def cancel_of(ringing: SipResponse, uri: str) -> bytes:
    """The CANCEL of the INVITE ``ringing`` answers, from the response's copies of its Via
    (the server's received/rport taken off), From, To (without our tag), Call-ID and CSeq."""
    via = re.sub(r";(received|rport)=[^;]*", "", ringing.header("via") or "")
    to = re.sub(r";tag=[^;>]*", "", ringing.header("to") or "")
    cseq = (ringing.header("cseq") or "").split()[0]
    return (f"CANCEL {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n"
            f"From: {ringing.header('from')}\r\nTo: {to}\r\n"
            f"Call-ID: {ringing.header('call-id')}\r\nCSeq: {cseq} CANCEL\r\n"
            f"Content-Length: 0\r\n\r\n").encode()


def test_tls_and_websocket_listeners_are_shared_by_the_workers_too(certs: Certs) -> None:
    """tls:, ws: and wss: with --workers: each worker accepts on the listener the parent
    bound (with the certificate); a call's CANCEL over a second connection of the same
    scheme meets its INVITE, and its 487 comes over the INVITE's connection."""
    listen = ("127.0.0.1:0", "tls:127.0.0.1:0", "ws:127.0.0.1:0", "wss:127.0.0.1:0")
    with ResponderProcess("--workers", "2", "-q", "--rule", "INVITE->180,486/3s",
                          "--tls-cert", str(certs.server_cert), "--tls-key",
                          str(certs.server_key), listen=listen) as server:
        for scheme in ("tls", "ws", "wss"):
            where = server.listener(scheme)
            ca = str(certs.ca) if scheme in ("tls", "wss") else None
            for _ in range(4):
                with SipClient(where, transport=scheme, timeout=WAIT, ca=ca) as caller:
                    assert caller.options().status == 200
                    ringing = caller.invite(until="provisional")
                    assert ringing.statuses == [180]
                    uri = f"sip:service@127.0.0.1:{where[1]}"
                    with SipClient(where, transport=scheme, timeout=WAIT, ca=ca) as other:
                        done = other.send_raw(cancel_of(ringing[0], uri))
                        assert done.final.status == 200
                    assert caller.wait_final().final.status == 487
        assert server.stop() == 0


def test_a_restarted_worker_accepts_on_its_listening_socket_again() -> None:
    """Each worker has its own listening socket (SO_REUSEPORT), kept by the parent: the
    worker started after a SIGKILL takes it over, and the connections the kernel gives it
    (queued meanwhile, or new) are answered."""
    with ResponderProcess("--workers", "2", "-q",
                          listen=("127.0.0.1:0", "tcp:127.0.0.1:0")) as server:
        first = worker_pids(server, 2)
        os.kill(first[0], signal.SIGKILL)  # a worker of the responder this test started
        restarted(server, 0, first[0])
        tcp = server.listener("tcp")
        for i in range(100):
            conn = Stream(tcp)
            conn.send(stream_request("OPTIONS", unique("r"), f"z9hG4bK-r{i}"))
            assert conn.response().status == 200
            conn.close()
        assert server.stop() == 0
    counts = worker_counts(server)  # the killed worker says nothing: the new one and worker 1
    assert len(counts) == 2 and sum(counts) == 100, counts
    assert min(counts) > 0, counts
