"""``--listen`` specs: schemes, IPv6 in brackets, default ports (SPEC §2, §9)."""

from __future__ import annotations

import pytest

from responder.ops.listen import Listen, parse_listen


@pytest.mark.parametrize(("spec", "expected"), [
    ("127.0.0.1:5070", Listen("udp", "127.0.0.1", 5070)),
    ("127.0.0.1", Listen("udp", "127.0.0.1", 5060)),
    ("udp:lab.example", Listen("udp", "lab.example", 5060)),
    ("udp://127.0.0.1:0", Listen("udp", "127.0.0.1", 0)),
    ("tcp:127.0.0.1:5060", Listen("tcp", "127.0.0.1", 5060)),
    ("TCP:127.0.0.1", Listen("tcp", "127.0.0.1", 5060)),
    ("tls:127.0.0.1", Listen("tls", "127.0.0.1", 5061)),
    ("tls:[::1]:5071", Listen("tls", "::1", 5071)),
    ("tls:[::1]", Listen("tls", "::1", 5061)),
    ("tcp:::1", Listen("tcp", "::1", 5060)),
    ("::1", Listen("udp", "::1", 5060)),
    ("[::1]:0", Listen("udp", "::1", 0)),
    ("[fe80::1%eth0]:5060", Listen("udp", "fe80::1%eth0", 5060)),
    ("ws:0.0.0.0:8080", Listen("ws", "0.0.0.0", 8080)),
    ("ws:localhost", Listen("ws", "localhost", 80)),
    ("wss://[::]:8443", Listen("wss", "::", 8443)),
    ("wss:127.0.0.1", Listen("wss", "127.0.0.1", 443)),
])
def test_listen_specs(spec: str, expected: Listen) -> None:
    assert parse_listen(spec) == expected


@pytest.mark.parametrize("bad", [
    "tcp:127.0.0.1:65536", "127.0.0.1:x", "tls:127.0.0.1:\u00b2", "tcp:", "[::1", "[::1]x",
    "[lab.example]:5060", "tcp:a:b:c", ":5060", "ws:127.0.0.1:" + "0" * 9,
])
def test_bad_specs_name_themselves(bad: str) -> None:
    with pytest.raises(ValueError, match="expected"):
        parse_listen(bad)


def test_a_listen_prints_as_its_announcement_url() -> None:
    assert str(parse_listen("tls:[::1]:5061")) == "tls://[::1]:5061"
    assert parse_listen("ws:127.0.0.1:0").addr == ("127.0.0.1", 0)
