"""Softphones over TCP and TLS against the console script (SPEC §9, issue 14).

tests/interop/test_transports.py has SIPp, sipsak and baresip over the streams; here:

* linphonec (liblinphone 5.1) calls ``sip:test@127.0.0.1:PORT;transport=tcp`` and
  ``;transport=tls`` (trusting our CA: ``[sip] root_ca``, server certificates and names
  verified): the call reaches StreamsRunning and stays up past linphone's ``nortp_timeout``,
  which only our echo can do; our ``--trace`` shows the INVITE ``TCP received``/``TLS
  received`` and the journal's INVITE entry names the transport; without our CA the TLS
  call fails in the handshake (the control: linphone does verify);
* twinkle (1.10, ``sip_transport=auto``: a request larger than its UDP threshold, 1,300
  bytes by default, goes over TCP, RFC 3261 §18.1.1) calls ``sip:bob@127.0.0.1:P`` with
  the responder on UDP and TCP port P both: with its codec list and a 444-character
  ``Organization`` header its INVITE is over 1,300 bytes and comes over TCP (with the
  default profile, 711 bytes, over UDP: the control), the call connects and an RFC 2833
  digit it sends comes back in our echo (twinkle prints ``DTMF detected``);
* mutual TLS with baresip (``sip_certificate``: its client certificate and key): with
  ``--tls-ca`` our CA, a certificate it signed gets the call, one signed by another CA
  (``certs.rogue_cert``) fails the handshake (counted ``handshake-failed`` in our metrics)
  and reaches nothing.
"""

from __future__ import annotations

import itertools
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from baresip_peer import Baresip
from certs import Certs
from interop_support import ResponderAdmin, count
from linphone_peer import Linphone
from support import ResponderProcess, ResponderStartError
from twinkle_peer import Twinkle, free_udp_and_tcp

pytestmark = pytest.mark.interop

ENDED = r"Call \d+ with .* ended"


@pytest.fixture
def server(certs: Certs) -> Iterator[ResponderProcess]:
    with ResponderProcess("-q", "--trace", "--admin", "127.0.0.1:0",
                          "--tls-cert", str(certs.server_cert),
                          "--tls-key", str(certs.server_key),
                          listen=("udp:127.0.0.1:0", "tcp:127.0.0.1:0",
                                  "tls:127.0.0.1:0")) as running:
        yield running
        assert running.stop() == 0
        assert "Traceback" not in running.stderr_text()


def traced(process: ResponderProcess, scheme: str, first_line: str) -> list[int]:
    """The sizes (bytes) of the messages our ``--trace`` shows received over ``scheme``
    whose first line starts with ``first_line``."""
    lines = process.stdout_lines
    head = re.compile(rf"^-+ \S+ \S+ {scheme.upper()} received from .*, (\d+) bytes")
    return [int(m.group(1)) for line, following in itertools.pairwise(lines)
            if (m := head.search(line)) and following.startswith(first_line)]


@pytest.mark.parametrize("scheme", ["tcp", "tls"])
def test_linphone_calls_over_a_stream_and_our_echo_keeps_it_up(
        server: ResponderProcess, certs: Certs, tmp_path: Path, scheme: str) -> None:
    admin = ResponderAdmin(server)
    _, port = server.listener(scheme)
    # linphone's TLS (mbedTLS 2) matches the name it dialled against the certificate's DNS
    # names only (an IP address SAN shows as "<unsupported>": CN-mismatch, handshake
    # refused), so it dials our certificate's DNS name, localhost (IPv4 only: use_ipv6=0).
    host = "localhost" if scheme == "tls" else "127.0.0.1"
    root_ca = certs.ca if scheme == "tls" else None
    with Linphone(tmp_path, streams=True, root_ca=root_ca, nortp_timeout=3) as phone:
        mark = phone.mark()
        phone.command(f"call sip:test@{host}:{port};transport={scheme}")
        phone.wait_line(r"Call \d+ with <?sip:test@.* connected", timeout=15.0, after=mark)
        phone.wait_line(r"Media streams established with <?sip:test@", after=mark)
        invite = phone.wait_sip(True, "INVITE")
        assert f"SIP/2.0/{scheme.upper()} " in invite.text, invite.text
        ok = phone.wait_sip(False, "SIP/2.0 200", cseq=invite.cseq)
        assert f"transport={scheme}" in (ok.message.get("contact") or ""), ok.text
        assert f"m=audio {admin.media_port} RTP/AVP" in ok.body
        phone.wait_absent(ENDED, 4.0, after=mark)  # 4 s > nortp_timeout: the echo arrives
        media = admin.media()
        assert count(media, "packets_in") >= 100 and count(media, "packets_out") >= 100, media

        mark = phone.mark()
        phone.command("terminate", ENDED)
        phone.wait_sip(True, "BYE")
        phone.close()
    # Our side: the INVITE, its ACK and the BYE all came over the stream.
    for method in ("INVITE", "ACK", "BYE"):
        assert traced(server, scheme, f"{method} sip:"), (method, server.stdout_lines[-80:])
    entries = {e["method"]: e for e in admin.journal()}
    assert entries["INVITE"]["transport"] == scheme, entries["INVITE"]
    assert entries["BYE"]["statuses"] == [200], entries["BYE"]


def test_control_linphone_refuses_our_certificate_without_our_ca(
        server: ResponderProcess, tmp_path: Path) -> None:
    """What the TLS call above rules out: linphone verifying nothing. Without ``root_ca``
    (the system's CAs only) the same call fails in the handshake, and nothing reaches us."""
    _, port = server.listener("tls")
    with Linphone(tmp_path, streams=True) as phone:
        mark = phone.mark()
        phone.command(f"call sip:test@localhost:{port};transport=tls")
        phone.wait_line(r"Call \d+ with <?sip:test@.* error", timeout=15.0, after=mark)
        assert "SSL handshake failed" in phone.log.read_text(errors="replace")
    assert not traced(server, "tls", "INVITE sip:"), server.stdout_lines[-40:]


@pytest.fixture
def same_port() -> Iterator[ResponderProcess]:
    """The responder on UDP and TCP, one port (a free one; taken meanwhile: another)."""
    for attempt in range(3):
        port = free_udp_and_tcp()
        process = ResponderProcess("-q", "--trace", "--admin", "127.0.0.1:0",
                                   listen=(f"udp:127.0.0.1:{port}", f"tcp:127.0.0.1:{port}"))
        try:
            process.start()
        except ResponderStartError:
            if attempt == 2:
                raise
            continue
        try:
            yield process
            assert process.stop() == 0
            assert "Traceback" not in process.stderr_text()
        finally:
            process.close()
        return


# Twinkle's INVITE with every codec it has and this Organization header: ~1,400 bytes
# (~1,290 with 100 characters fewer).
LARGE = {"codecs": "g711a,g711u,gsm,speex-nb,speex-wb,speex-uwb,ilbc,g726-16,g726-24,"
                   "g726-32,g726-40,g729a",
         # Twinkle writes it in an Organization header of every request.
         "user_organization": "Example Interoperability Laboratory, " * 12}


@pytest.mark.parametrize(("size", "transport"), [("small", "udp"), ("large", "tcp")])
def test_twinkle_sends_a_large_invite_over_tcp_and_the_call_connects(
        same_port: ResponderProcess, tmp_path: Path, size: str, transport: str) -> None:
    admin = ResponderAdmin(same_port)
    host, port = same_port.address
    profile = {"sip_transport": "auto", **(LARGE if size == "large" else {})}
    with Twinkle(tmp_path, profile=profile) as phone:
        mark = phone.command(f"call sip:bob@{host}:{port}")
        phone.wait_output(r"far end answered call", after=mark)
        mark = phone.command("dtmf 5")
        phone.wait_output(r"DTMF detected: 5", after=mark)  # our echo of its RFC 2833 event
        mark = phone.command("bye")
        phone.wait_output(r"call ended", after=mark)

    sizes = traced(same_port, transport, "INVITE sip:bob@")
    assert len(sizes) == 1, same_port.stdout_lines[-80:]
    assert (sizes[0] > 1300) == (size == "large"), sizes  # RFC 3261 §18.1.1's threshold
    # Its ACK and BYE followed: over TCP our Contact names the transport (;transport=tcp).
    assert set(phone.sent_to()) == {f"{transport}:127.0.0.1:{port}"}, phone.sent_to()
    other = "udp" if transport == "tcp" else "tcp"
    assert not traced(same_port, other, "INVITE sip:"), same_port.stdout_lines[-80:]
    entries = {e["method"]: e for e in admin.journal()}
    assert entries["INVITE"]["transport"] == transport, entries["INVITE"]
    assert entries["INVITE"]["statuses"] == [100, 180, 200], entries["INVITE"]
    assert entries["BYE"]["statuses"] == [200], entries["BYE"]
    media = admin.media()
    assert count(media, "packets_out") >= 1 and media["dtmf"] == "5", media


METRICS_ON = re.compile(r"metrics on (http://127\.0\.0\.1:\d+)")


def handshakes_failed(process: ResponderProcess) -> int:
    url = process.wait_for_stderr(METRICS_ON).group(1)
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    found = re.search(r'^sip_responder_connection_events_total\{event="handshake-failed"\} '
                      r"(\S+)$", text, re.MULTILINE)
    return int(float(found.group(1))) if found else 0


def wait_handshake_failed(process: ResponderProcess, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while handshakes_failed(process) == 0:
        assert time.monotonic() < deadline, f"no handshake-failed within {timeout} s"
        time.sleep(0.05)  # polling /metrics: the counter has no event to wait on


@pytest.mark.parametrize("signed_by", ["our-ca", "another-ca"])
def test_baresip_mutual_tls_with_a_client_certificate(certs: Certs, tmp_path: Path,
                                                      signed_by: str) -> None:
    cert, key = ((certs.client_cert, certs.client_key) if signed_by == "our-ca"
                 else (certs.rogue_cert, certs.rogue_key))
    tmp_path.joinpath("client.pem").write_text(cert.read_text() + key.read_text())
    with ResponderProcess("-q", "--trace", "--admin", "127.0.0.1:0",
                          "--metrics", "127.0.0.1:0",
                          "--tls-cert", str(certs.server_cert),
                          "--tls-key", str(certs.server_key), "--tls-ca", str(certs.ca),
                          listen=("udp:127.0.0.1:0", "tls:127.0.0.1:0")) as server:
        admin = ResponderAdmin(server)
        _, port = server.listener("tls")
        with Baresip(tmp_path / "baresip", extra=(f"sip_cafile {certs.ca}",
                                                  f"sip_certificate {tmp_path / 'client.pem'}")
                     ) as phone:
            phone.command("dial", f"sip:test@127.0.0.1:{port};transport=tls")
            if signed_by == "our-ca":
                phone.wait_event("CALL_ESTABLISHED", timeout=15.0)
                phone.wait_event("CALL_RTPESTAB", timeout=15.0)
                assert any(m.first_line == "SIP/2.0 200 OK" for m in phone.sip()), phone.sip()
                phone.command("hangup")
                phone.wait_event("CALL_CLOSED")
            else:
                # TLS 1.3: the client's handshake ends before we verify its certificate, so
                # baresip sends its INVITE, then sees the connection close (it ends the call
                # only at its Timer B, 32 s); what is shown is our side refusing it.
                wait_handshake_failed(server)
                # baresip traced its INVITE going out over TLS, and nothing coming back.
                assert [m.first_line.split()[0] for m in phone.sip()] == ["INVITE"], phone.sip()
                assert {e.get("type") for e in phone.events} <= {"CALL_LOCAL_SDP"}, phone.events
                phone.command("hangup")
        entries = {e["method"]: e for e in admin.journal()}
        if signed_by == "our-ca":
            assert entries["INVITE"]["transport"] == "tls", entries["INVITE"]
            assert entries["INVITE"]["statuses"] == [100, 180, 200], entries["INVITE"]
            assert handshakes_failed(server) == 0
        else:
            assert entries == {}, entries  # nothing got through
            assert handshakes_failed(server) == 1
        assert server.stop() == 0
        assert "Traceback" not in server.stderr_text()
