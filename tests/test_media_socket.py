"""A call end to end over loopback: INVITE with an offer, the answer names the media socket
announced at start, and RTP sent there comes back from it, echoed (SPEC §8.3)."""

from __future__ import annotations

import re
import socket
import struct
from pathlib import Path

from support import ResponderProcess, parse_message

MEDIA_LINE = re.compile(r"media on udp://127\.0\.0\.1:(\d+)")


def offer(rtp_port: int) -> bytes:
    return (f"v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            f"a=rtpmap:101 telephone-event/8000\r\n").encode()


def rtp(seq: int, pt: int = 0, payload: bytes = bytes(160), ts: int | None = None) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, seq * 160 if ts is None else ts,
                       0xCAFE0001) + payload


def test_the_answer_names_the_media_socket_and_rtp_is_echoed_to_its_source() -> None:
    with ResponderProcess("-q") as server:
        media_port = int(server.wait_for_stderr(MEDIA_LINE).group(1))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as media:
            media.bind(("127.0.0.1", 0))
            media.settimeout(5.0)
            with server.client() as client:
                invite = client.request("INVITE", body=offer(media.getsockname()[1]),
                                        content_type="application/sdp")
                responses = client.exchange(invite)
            ok = responses[-1]
            assert ok.status == 200 and ok.get("content-type") == "application/sdp"
            answer = ok.body.decode()
            assert f"m=audio {media_port} RTP/AVP 0 101\r\n" in answer
            assert "c=IN IP4 127.0.0.1\r\n" in answer
            for seq in range(50):
                media.sendto(rtp(seq), ("127.0.0.1", media_port))
            echoed = [media.recvfrom(2048) for _ in range(50)]
        assert {source for _, source in echoed} == {("127.0.0.1", media_port)}
        assert sorted(struct.unpack("!H", data[2:4])[0] for data, _ in echoed) == list(range(50))
        assert {data[8:12] for data, _ in echoed} != {struct.pack("!I", 0xCAFE0001)}
        assert server.stop() == 0


def test_the_journal_and_metrics_show_the_calls_media() -> None:
    """GET /journal gives the INVITE's entry its call's media facts; /metrics the totals."""
    import json
    import urllib.request

    with ResponderProcess("-q", "--admin", "127.0.0.1:0", "--metrics", "127.0.0.1:0") as server:
        media_port = int(server.wait_for_stderr(MEDIA_LINE).group(1))
        admin = server.wait_for_stderr(r"admin on (http://127\.0\.0\.1:\d+)").group(1)
        metrics = server.wait_for_stderr(r"metrics on (http://127\.0\.0\.1:\d+/metrics)").group(1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as media:
            media.bind(("127.0.0.1", 0))
            media.settimeout(5.0)
            with server.client() as client:
                invite = client.request("INVITE", body=offer(media.getsockname()[1]),
                                        content_type="application/sdp", call_id="media-1")
                assert client.exchange(invite)[-1].status == 200
            for seq in range(10):
                media.sendto(rtp(seq), ("127.0.0.1", media_port))
            for _ in range(10):
                media.recvfrom(2048)
            with urllib.request.urlopen(f"{admin}/journal?call_id=media-1") as resp:
                entries = json.load(resp)["entries"]
            with urllib.request.urlopen(metrics) as resp:
                text = resp.read().decode()
        invite_entry = next(e for e in entries if e["method"] == "INVITE")
        facts = invite_entry["media"]
        assert facts["packets_in"] >= 10 and facts["packets_out"] >= 10
        assert facts["payload_types"][0] == 0 and facts["mode"] == "echo"
        assert facts["first"] <= facts["last"]
        assert next(e for e in entries if e["method"] == "ACK")["media"] is None
        totals = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
                  if line and not line.startswith("#")}
        assert totals["sip_responder_rtp_packets_received_total"] >= 10
        assert totals["sip_responder_rtp_packets_echoed_total"] >= 10
        assert totals["sip_responder_media_calls"] == 1
        assert server.stop() == 0


def test_each_worker_has_its_own_media_socket_and_answers_name_the_owners() -> None:
    """--workers 2: each worker opens a media socket of its own and says so; a call answered
    by either names one of them, and its RTP is echoed from there."""
    with ResponderProcess("-q", "--workers", "2") as server:
        ports = {int(server.wait_for_stderr(rf"worker {i} media on udp://127\.0\.0\.1:(\d+)")
                     .group(1)) for i in (0, 1)}
        assert len(ports) == 2
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as media:
            media.bind(("127.0.0.1", 0))
            media.settimeout(5.0)
            with server.client() as client:
                invite = client.request("INVITE", body=offer(media.getsockname()[1]),
                                        content_type="application/sdp", call_id="w-1")
                # The INVITE may be handed to the other worker: wait for its own 200 (a
                # sentinel answered by the worker that read it could come back first).
                client.send(invite)
                while True:
                    dgram = client.recv(5.0)
                    assert dgram is not None, "no 200 to the INVITE"
                    ok = parse_message(dgram.data)
                    if ok.status == 200:
                        client.ack_2xx(ok)
                        break
            port = int(next(line for line in ok.body.decode().split("\r\n")
                            if line.startswith("m=audio")).split()[1])
            assert port in ports
            media.sendto(rtp(1), ("127.0.0.1", port))
            _, source = media.recvfrom(2048)
            assert source == ("127.0.0.1", port)
        assert server.stop() == 0


def test_the_rules_media_port_is_the_media_sockets_port(tmp_path: Path) -> None:
    """``media: {port: N}`` (SPEC §8.3): the media socket listens there and answers name it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"media: {{port: {port}}}\nrules: []\n", encoding="utf-8")
    with ResponderProcess("-q", "--rules", str(rules)) as server:
        assert int(server.wait_for_stderr(MEDIA_LINE).group(1)) == port
        with server.client() as client:
            ok = client.exchange(client.request("INVITE", body=offer(4000),
                                                content_type="application/sdp"))[-1]
        assert f"m=audio {port} RTP/AVP 0 101\r\n" in ok.body.decode()
        assert server.stop() == 0
