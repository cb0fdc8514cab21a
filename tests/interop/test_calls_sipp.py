"""SIPp 3.6 as a UAC with RTP against the ``sip-responder`` console script: calls that connect
(SPEC §8, issue 13). The scenarios are ``sipp/call_*.xml``; every SDP line they need is
checked inside SIPp (``<ereg check_it="true">``: a mismatch fails the call, so run_sipp
fails), and again here from SIPp's message trace, the responder's ``GET /journal`` and the
RTP that came back.

What proves what:

* **The answer's address is used**: the responder's media port (``media on udp://...`` at
  start) is named only in its answer; SIPp's pcap player sends to the ``c=``/``m=`` of the
  200 it received (SIPp call.cpp ``get_remote_media_addr``), and the journal counts every
  packet of the pcap on the call (``packets_in``).
* **The echo comes back**: the scenarios offer ``m=audio [media_port+4]``; SIPp's raw-socket
  player sends from that port, which SIPp itself never binds (it binds ``-mp`` and
  ``-mp``+2), so this test binds it and reads the echoes there: every packet of the pcap, from
  the responder's media socket, payload and sequence numbers unchanged, SSRC changed. SIPp
  3.6 cannot count RTP it receives as a UAC (its media socket is read only with
  ``-rtp_echo``, which would bounce the echo back forever), hence the test's socket.
* Hold: the re-INVITE's answer is ``a=recvonly`` (checked in SIPp) and the DTMF sent while on
  hold is counted by the responder (``dtmf`` is ``1234``) but never echoed.

``play_pcap_audio`` and ``play_dtmf`` need raw sockets (root or CAP_NET_RAW): without them
these tests skip, or fail when ``CI`` is set.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from interop_support import SippRun, run_sipp, sipp_messages, tool
from support import Message, ResponderProcess, norm

pytestmark = pytest.mark.interop

PCAP_DIRS = ("/usr/share/sip-tester", "/usr/share/sipp", "/usr/share/sipp/pcap",
             "/usr/local/share/sipp/pcap")
MEDIA_LINE = r"media on udp://127\.0\.0\.1:(\d+)"
ADMIN_LINE = r"admin on (http://127\.0\.0\.1:\d+)"
G711A_PACKETS = 236  # g711a.pcap: 236 PCMA packets, 7.05 s, SSRC 0xdee0ee8f
DTMF_PT = 96  # SIPp's play_dtmf: RFC 2833 events on payload 96


# --------------------------------------------------------------------------- helpers


def need(condition: bool, message: str) -> None:
    """Skip (locally) or fail (under CI) when a prerequisite is missing."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must provide it")
    pytest.skip(message)


def require_raw_sockets() -> None:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP).close()
    except PermissionError:
        need(False, "SIPp's play_pcap_audio/play_dtmf send through raw sockets: run as root "
                    "or with CAP_NET_RAW")


def debian_pcap(name: str) -> Path:
    for directory in PCAP_DIRS:
        path = Path(directory) / name
        if path.is_file():
            return path
    need(False, f"{name} (shipped with SIPp: Debian sip-tester) is in none of {PCAP_DIRS}")
    raise AssertionError("unreachable")


def pcap_records(path: Path) -> list[tuple[float, bytes]]:
    """(time, UDP payload) of every packet of a little-endian, Ethernet, IPv4 pcap file."""
    data = path.read_bytes()
    magic, _, _, _, _, _, link = struct.unpack("<IHHiIII", data[:24])
    assert magic == 0xA1B2C3D4 and link == 1, f"{path}: not a little-endian Ethernet pcap"
    out, offset = [], 24
    while offset + 16 <= len(data):
        sec, usec, incl, _ = struct.unpack("<IIII", data[offset : offset + 16])
        frame = data[offset + 16 : offset + 16 + incl]
        offset += 16 + incl
        ip = frame[14:]
        udp = ip[(ip[0] & 0x0F) * 4 :]
        out.append((sec + usec / 1e6, udp[8:]))
    return out


def first_second(source: Path, target: Path, seconds: float = 1.0) -> int:
    """Write the packets of the first ``seconds`` of ``source`` to ``target``; their count."""
    data = source.read_bytes()
    out, offset, count, start = bytearray(data[:24]), 24, 0, None
    while offset + 16 <= len(data):
        sec, usec, incl, _ = struct.unpack("<IIII", data[offset : offset + 16])
        at = sec + usec / 1e6
        start = at if start is None else start
        if at - start > seconds:
            break
        out += data[offset : offset + 16 + incl]
        offset += 16 + incl
        count += 1
    target.write_bytes(bytes(out))
    return count


@contextmanager
def echo_port() -> Iterator[tuple[int, socket.socket]]:
    """(the ``-mp`` to give SIPp, a socket bound to ``-mp``+4): the port the scenarios name
    in their SDP and send RTP from, which SIPp does not bind itself."""
    for _ in range(100):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        free = port > 5000
        for other in (port - 4, port - 2):  # SIPp's -mp and -mp+2
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                    probe.bind(("127.0.0.1", other))
            except OSError:
                free = False
        if free:
            try:
                yield port - 4, sock
            finally:
                sock.close()
            return
        sock.close()
    raise AssertionError("found no free UDP ports P-4, P-2, P for SIPp's media")


Datagrams = list[tuple[bytes, tuple[str, int]]]


def receive(sock: socket.socket, count: int, timeout: float = 5.0) -> Datagrams:
    """Up to ``count`` datagrams, waiting at most ``timeout`` seconds in all."""
    got: Datagrams = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            data, source = sock.recvfrom(4096)
        except TimeoutError:
            break
        got.append((data, source))
    sock.setblocking(False)  # and whatever else is queued: there must be nothing
    try:
        while True:
            got.append(sock.recvfrom(4096))
    except BlockingIOError:
        pass
    return got


def journal(base: str, call_id: str) -> list[dict[str, object]]:
    with urllib.request.urlopen(f"{base}/journal?call_id={call_id}", timeout=5) as resp:
        entries = json.load(resp)["entries"]
    assert isinstance(entries, list)
    return entries


def invite_media(base: str, call_id: str) -> dict[str, int | object]:
    entries = journal(base, call_id)
    first = next(e for e in entries if e["method"] == "INVITE")
    media = first["media"]
    assert isinstance(media, dict), f"no media facts on the INVITE: {entries}"
    return media


def received_responses(run: SippRun) -> list[Message]:
    return [m for d, m in sipp_messages(run.message_file) if d == "received"]


def response_to(run: SippRun, cseq: str, status: int = 200) -> Message:
    found = [m for m in received_responses(run)
             if m.status == status and norm(m.get("cseq") or "") == cseq]
    seen = [(m.status, m.get("cseq")) for m in received_responses(run)]
    assert found, f"no {status} to {cseq}: {seen}"
    return found[0]


def sdp(message: Message) -> list[str]:
    assert message.get("content-type") == "application/sdp", str(message)
    lines: list[str] = message.body.decode().split("\r\n")
    return lines


def origin(lines: list[str]) -> tuple[str, int]:
    """(session id, version) of an SDP's o= line."""
    fields = next(line for line in lines if line.startswith("o=")).split()
    return fields[1], int(fields[2])


def call_id_of(run: SippRun) -> str:
    ids = {norm(m.get("call-id") or "") for _, m in sipp_messages(run.message_file)}
    assert len(ids) == 1, ids
    only: str = ids.pop()
    return only


def sipp_media_args(mp: int) -> list[str]:
    # -mp again after run_sipp's own: SIPp applies its options in order, the last one wins.
    return ["-mi", "127.0.0.1", "-mp", str(mp)]


def responder() -> ResponderProcess:
    return ResponderProcess("-q", "--admin", "127.0.0.1:0")


def started(server: ResponderProcess) -> tuple[int, str]:
    media_port = int(server.wait_for_stderr(MEDIA_LINE).group(1))
    return media_port, server.wait_for_stderr(ADMIN_LINE).group(1)


# --------------------------------------------------------------------------- tests


def test_sipp_pcma_call_rtp_reaches_the_answer_and_the_echo_comes_back(tmp_path: Path) -> None:
    tool("sipp", "sip-tester")
    require_raw_sockets()
    pcap = debian_pcap("g711a.pcap")
    (tmp_path / "g711a.pcap").symlink_to(pcap)
    sent = [payload for _, payload in pcap_records(pcap)]
    assert len(sent) == G711A_PACKETS
    with responder() as server, echo_port() as (mp, echoes):
        media_port, admin = started(server)
        run = run_sipp("call_rtp_pcma.xml", server, tmp_path, calls=1, rate=10, limit=1,
                       extra=sipp_media_args(mp), timeout=25)
        # The answer (also checked inside SIPp): PCMA only, our media socket, our address.
        answer = sdp(response_to(run, "1 INVITE"))
        assert f"m=audio {media_port} RTP/AVP 8" in answer, answer
        assert "c=IN IP4 127.0.0.1" in answer and "a=rtpmap:8 PCMA/8000" in answer, answer
        assert not any(line.startswith("a=rtpmap:0 ") for line in answer), answer
        # SIPp sent the whole pcap to the answer's address: the responder counted all of it.
        media = invite_media(admin, call_id_of(run))
        assert media["packets_in"] == G711A_PACKETS, media
        assert media["packets_out"] == G711A_PACKETS, media
        assert media["payload_types"] == [8] and media["mode"] == "echo", media
        # ... and echoed every packet to the port SIPp sent from.
        got = receive(echoes, G711A_PACKETS)
    assert len(got) == G711A_PACKETS, f"{len(got)} echoes came back, not {G711A_PACKETS}"
    assert {source for _, source in got} == {("127.0.0.1", media_port)}
    ssrcs = {data[8:12] for data, _ in got}
    assert len(ssrcs) == 1 and ssrcs != {sent[0][8:12]}, "the echo must carry another SSRC"
    by_seq = sorted(got, key=lambda item: struct.unpack("!H", item[0][2:4])[0])
    assert [d[:8] + d[12:] for d, _ in by_seq] == [p[:8] + p[12:] for p in sent]


def test_sipp_hold_answers_recvonly_and_dtmf_on_hold_is_counted_not_echoed(
        tmp_path: Path) -> None:
    tool("sipp", "sip-tester")
    require_raw_sockets()
    with responder() as server, echo_port() as (mp, echoes):
        media_port, admin = started(server)
        run = run_sipp("call_hold_dtmf.xml", server, tmp_path, calls=1, rate=10, limit=1,
                       extra=sipp_media_args(mp), timeout=25)
        first, hold, resume = (sdp(response_to(run, f"{n} INVITE")) for n in (1, 2, 3))
        assert f"m=audio {media_port} RTP/AVP 8 96" in first and "a=sendrecv" in first
        assert "a=rtpmap:96 telephone-event/8000" in first, first
        assert "a=recvonly" in hold and "a=sendrecv" not in hold, hold
        assert "a=sendrecv" in resume, resume
        # RFC 3264 §8: one session (o= id), a new version with each answer.
        origins = [origin(lines) for lines in (first, hold, resume)]
        assert len({sid for sid, _ in origins}) == 1, origins
        assert origins[0][1] < origins[1][1] < origins[2][1], origins
        assert response_to(run, "4 BYE").status == 200
        media = invite_media(admin, call_id_of(run))
        assert media["dtmf"] == "1234", media  # every digit counted, on hold too
        echoed = int(str(media["packets_out"]))
        assert 0 < echoed < int(str(media["packets_in"])), media
        got = receive(echoes, echoed)
    assert len(got) == echoed, f"{len(got)} echoes came back, the journal says {echoed}"
    assert {source for _, source in got} == {("127.0.0.1", media_port)}
    events = {data[12] for data, _ in got if data[1] & 0x7F == DTMF_PT}
    assert events == {1, 2}, f"DTMF events echoed: {events} (3 and 4 were sent on hold)"


def test_sipp_update_with_an_offer_gets_an_answer(tmp_path: Path) -> None:
    tool("sipp", "sip-tester")
    with responder() as server:
        media_port, admin = started(server)
        run = run_sipp("call_update.xml", server, tmp_path, calls=1, rate=10, limit=1,
                       extra=["-mi", "127.0.0.1"], timeout=20)
        invite_answer = sdp(response_to(run, "1 INVITE"))
        assert f"m=audio {media_port} RTP/AVP 8" in invite_answer, invite_answer
        update_answer = sdp(response_to(run, "2 UPDATE"))
        assert f"m=audio {media_port} RTP/AVP 0 8" in update_answer, update_answer
        assert "c=IN IP4 127.0.0.1" in update_answer and "a=sendrecv" in update_answer
        (sid, version), (update_sid, update_version) = map(origin, (invite_answer, update_answer))
        assert sid == update_sid and version < update_version, (invite_answer, update_answer)
        statuses = {(str(e["method"]), str(e["statuses"]))
                    for e in journal(admin, call_id_of(run))}
        assert ("UPDATE", "[200]") in statuses and ("BYE", "[200]") in statuses, statuses


def test_sipp_stray_bye_forged_to_tag_and_second_bye_get_481(tmp_path: Path) -> None:
    tool("sipp", "sip-tester")
    with responder() as server:
        _, admin = started(server)
        run = run_sipp("call_bye_481.xml", server, tmp_path, calls=1, rate=10, limit=1,
                       extra=["-mi", "127.0.0.1"], timeout=20)
        byes = [(norm(m.get("cseq") or ""), m.status) for m in received_responses(run)
                if (m.get("cseq") or "").endswith("BYE")]
        assert byes == [("1 BYE", 481), ("3 BYE", 481), ("4 BYE", 200), ("5 BYE", 481)], byes
        in_journal = [e["statuses"] for e in journal(admin, call_id_of(run))
                      if e["method"] == "BYE"]
        assert in_journal == [[481], [481], [200], [481]], in_journal


def test_sipp_delayed_offer_200_carries_an_offer_and_the_acks_answer_is_used(
        tmp_path: Path) -> None:
    tool("sipp", "sip-tester")
    require_raw_sockets()
    count = first_second(debian_pcap("g711a.pcap"), tmp_path / "g711a_1s.pcap")
    with responder() as server, echo_port() as (mp, echoes):
        media_port, admin = started(server)
        run = run_sipp("call_delayed_offer.xml", server, tmp_path, calls=1, rate=10, limit=1,
                       extra=sipp_media_args(mp), timeout=20)
        offer = sdp(response_to(run, "1 INVITE"))
        m_line = next(line for line in offer if line.startswith("m=audio "))
        assert re.fullmatch(rf"m=audio {media_port} RTP/AVP( \d+)+", m_line), offer
        assert " 8" in m_line and "c=IN IP4 127.0.0.1" in offer, offer
        # The responder knows where our RTP comes from only from the ACK's answer.
        media = invite_media(admin, call_id_of(run))
        assert media["packets_in"] == count and media["packets_out"] == count, media
        got = receive(echoes, count)
    assert len(got) == count and {s for _, s in got} == {("127.0.0.1", media_port)}


def test_sipp_reliable_180_prack_and_our_hangup(tmp_path: Path) -> None:
    """SPEC §8.4 and §8.5 with a real stack: SIPp requires 100rel, PRACKs our 180 by its
    RSeq, and answers the BYE we send one second after the 200 (SIPp checks each step)."""
    tool("sipp", "sip-tester")
    rules = tmp_path / "rules.yaml"
    rules.write_text("identity:\n  supported: [100rel]\nrules:\n  - match: {method: INVITE}\n"
                     "    respond: [180, {code: 200, after: 1s, hangup: 1s}]\n")
    with ResponderProcess("-q", "--admin", "127.0.0.1:0", "--rules", str(rules)) as server:
        _, admin = started(server)
        run = run_sipp("call_100rel_hangup.xml", server, tmp_path, calls=1, rate=10, limit=1,
                       extra=["-mi", "127.0.0.1"], timeout=30)
        statuses = {(str(e["method"]), str(e["statuses"]))
                    for e in journal(admin, call_id_of(run))}
        assert ("PRACK", "[200]") in statuses, statuses
        got = [m for direction, m in sipp_messages(run.message_file) if direction == "received"]
        ringing = next(m for m in got if m.is_response and m.status == 180)
        assert ringing.get("require") == "100rel" and (ringing.get("rseq") or "").isdigit()
        bye = next(m for m in got if not m.is_response and m.method == "BYE")
        assert norm(bye.get("cseq") or "") == "1 BYE" and bye.get("route") is None
        assert server.stop() == 0
