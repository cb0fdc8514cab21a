"""End-to-end behaviour of the ``sip-responder`` console script (SPEC §2, §3.1, §4, §5, §7).

Each test starts its own process on a free loopback port and talks real UDP to it.
"""

from __future__ import annotations

import random
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import support
from support import (
    ResponderProcess,
    ResponderStartError,
    build_request,
    has_ipv6_loopback,
    invite,
    norm,
    parse_message,
    run_cli,
    statuses,
    tag_of,
    unique,
)

# SPEC §3.1: "These must work exactly as written".
ONE_LINE_RULES = [
    "INVITE->486",
    "*->503",
    "OPTIONS->200",
    "INVITE->180,486/2s",
    "INVITE@1000->486",
    "REGISTER->401",
    "OPTIONS->drop",
    "INVITE->503;p=0.25",
    "INVITE->603;reason=Go Away",
]

BAD_YAML = """\
rules:
  - match: {method: INVITE}
    respond: 999
"""

LOG_LINE = re.compile(
    r"\d\d:\d\d:\d\d\.\d{3} 127\.0\.0\.1:(\d+) OPTIONS sip:\S+ -> 200 OK \[rule ok\]"
)


def transaction(**kw: object) -> dict[str, object]:
    """The identity of a new client transaction (reused for its ACK / CANCEL)."""
    return {"call_id": unique("call"), "branch": unique("z9hG4bK"), "from_tag": unique("ft"),
            **kw}


# ----------------------------------------------------------------- one-shot commands


def test_codes_prints_the_table() -> None:
    result = run_cli("--codes")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(re.match(r"486\b.*Busy Here", line) for line in lines), result.stdout
    assert any(re.match(r"199\b", line) for line in lines), "199 missing"
    assert any(re.match(r"608\b", line) for line in lines), "608 missing"
    assert any(re.match(r"100\b.*Trying", line) for line in lines)
    codes = [int(m.group(1)) for line in lines if (m := re.match(r"([1-6]\d\d)\b", line))]
    assert codes == sorted(set(codes)), "one line per code, in order"


def test_check_prints_the_default_rules() -> None:
    result = run_cli("--check")
    assert result.returncode == 0, result.stderr
    assert "INVITE" in result.stdout
    assert "OPTIONS" in result.stdout
    assert "501" in result.stdout  # the default answer


def test_check_rejects_a_bad_one_line_rule() -> None:
    result = run_cli("--check", "--rule", "INVITE->")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("--rule 'INVITE->':"), result.stderr
    assert "Traceback" not in result.stderr


def test_check_rejects_a_bad_rules_file_with_its_position(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_YAML)
    result = run_cli("--check", "--rules", str(bad))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "bad.yaml:3:" in result.stderr, result.stderr
    assert re.search(r"bad\.yaml:3:\d+: \S", result.stderr), "FILE:LINE:COL: what is wrong"
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("spec", ONE_LINE_RULES)
def test_check_accepts_every_one_line_rule_of_the_spec(spec: str) -> None:
    result = run_cli("--check", "--rule", spec)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), "normalized rules printed"


def test_check_accepts_all_spec_rules_together() -> None:
    args = [arg for spec in ONE_LINE_RULES for arg in ("--rule", spec)]
    result = run_cli("--check", *args)
    assert result.returncode == 0, result.stderr
    assert "Go Away" in result.stdout


@pytest.mark.parametrize("how", ["rule", "file"])
def test_start_with_a_bad_rule_exits_2(how: str, tmp_path: Path) -> None:
    if how == "rule":
        args, expected = ["--rule", "INVITE->"], "--rule 'INVITE->':"
    else:
        bad = tmp_path / "bad.yaml"
        bad.write_text(BAD_YAML)
        args, expected = ["--rules", str(bad)], "bad.yaml:3:"
    result = run_cli("--listen", "127.0.0.1:0", *args, timeout=20)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert expected in result.stderr, result.stderr
    assert "listening on" not in result.stderr


# ----------------------------------------------------------------- listening


def test_listen_on_ipv4_and_ipv6() -> None:
    if not has_ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback (::1)")
    with ResponderProcess(listen=["127.0.0.1:0", "[::1]:0"]) as server:
        hosts = sorted(host for host, _ in server.addresses)
        assert hosts == ["127.0.0.1", "::1"], server.addresses
        lines = [line for line in server.stderr_lines if "listening on udp://" in line]
        assert len(lines) == 2, lines
        assert any(re.search(r"udp://\[::1\]:\d+", line) for line in lines), lines
        assert all(port != 0 for _, port in server.addresses)
        for index in range(2):
            with server.client(index) as client:
                call_id = unique("opt")
                (response,) = client.exchange(client.request("OPTIONS", call_id=call_id))
                assert response.status == 200
                assert norm(response.get("call-id") or "") == call_id
        assert server.stop() == 0


EXPOSED = "is not a loopback address and neither --rate-limit nor --allow is given"


@pytest.mark.parametrize(("listen", "flags", "warned"), [
    ("0.0.0.0:0", (), True),
    ("0.0.0.0:0", ("--rate-limit", "100/s"), False),
    ("0.0.0.0:0", ("--allow", "127.0.0.0/8"), False),
    ("127.0.0.1:0", (), False),
])
def test_a_listen_address_open_to_the_network_is_warned_about(
        listen: str, flags: tuple[str, ...], warned: bool) -> None:
    """SPEC §10 (amplification): listening beyond loopback with neither --rate-limit nor
    --allow prints a warning line through the same log as "listening on" (nothing is
    sent anywhere: the server only binds, then stops)."""
    with ResponderProcess("-q", *flags, listen=[listen]) as server:
        assert server.stop() == 0
    lines = [line for line in server.stderr_lines if EXPOSED in line]
    if not warned:
        assert lines == [], server.stderr_text()
        return
    assert len(lines) == 1, server.stderr_text()
    assert lines[0].startswith("sip-responder: warning: 0.0.0.0 is not a loopback address")
    assert "listening on" not in lines[0]  # a script waiting for that line is not fooled
    assert "README, Amplification" in lines[0]


def test_listen_accepts_the_udp_prefix() -> None:
    with ResponderProcess(listen=["udp:127.0.0.1:0"]) as server, server.client() as client:
        (response,) = client.exchange(client.request("OPTIONS"))
        assert response.status == 200
        assert server.stop() == 0


# ----------------------------------------------------------------- rules


def test_one_line_rule_answers_and_defaults_answer_the_rest() -> None:
    with ResponderProcess("--rule", "INVITE->486") as server, server.client() as client:
        t = transaction()
        responses = client.exchange(client.request("INVITE", **t))
        finals = [r for r in responses if r.status != 100]
        assert statuses(finals) == [486], statuses(responses)
        assert finals[0].raw.startswith(b"SIP/2.0 486 Busy Here\r\n")
        to_tag = tag_of(finals[0].get("to"))
        assert to_tag
        # ACK for the non-2xx final response is absorbed silently.
        assert client.exchange(client.request("ACK", **t, to_tag=to_tag)) == []
        # The built-in defaults answer everything else.
        assert statuses(client.exchange(client.request("OPTIONS"))) == [200]
        assert statuses(client.exchange(client.request("REGISTER"))) == [200]
        assert statuses(client.exchange(client.request("FOO"))) == [501]
        assert server.stop() == 0


def test_rules_file_replaces_the_defaults(tmp_path: Path) -> None:
    with_default = tmp_path / "with-default.yaml"
    with_default.write_text(
        "rules:\n  - name: busy\n    match: {method: INVITE}\n    respond: 486\ndefault: 403\n"
    )
    with ResponderProcess("--rules", str(with_default)) as server, server.client() as client:
        responses = client.exchange(client.request("INVITE"))
        assert [s for s in statuses(responses) if s != 100] == [486]
        assert statuses(client.exchange(client.request("OPTIONS"))) == [403]
        assert statuses(client.exchange(client.request("REGISTER"))) == [403]
        assert server.stop() == 0


def test_rules_file_without_default_answers_200(tmp_path: Path) -> None:
    # SPEC §3.2 shows `default: 200`; without the key, 200 is assumed.
    only_invite = tmp_path / "only-invite.yaml"
    only_invite.write_text("rules:\n  - match: {method: INVITE}\n    respond: 486\n")
    with ResponderProcess("--rules", str(only_invite)) as server, server.client() as client:
        assert statuses(client.exchange(client.request("OPTIONS"))) == [200]
        # The built-in defaults would answer an unknown method 501: they are not in force.
        assert statuses(client.exchange(client.request("FOO"))) == [200]
        assert server.stop() == 0


def test_delayed_final_response_keeps_the_to_tag() -> None:
    with ResponderProcess("--rule", "INVITE->180,486/1s") as server, server.client() as client:
        t = transaction()
        sent_at = time.monotonic()
        client.send(client.request("INVITE", **t))
        ringing = client.recv_response(2.0)
        assert ringing.status == 180, ringing
        busy = client.recv_response(3.0)
        elapsed = time.monotonic() - sent_at
        assert busy.status == 486, busy
        assert elapsed >= 0.9, f"486 after {elapsed:.3f} s, the rule says 1 s"
        assert elapsed < 2.5, f"486 after {elapsed:.3f} s, the rule says 1 s"
        tag = tag_of(ringing.get("to"))
        assert tag and tag == tag_of(busy.get("to"))
        client.send(client.request("ACK", **t, to_tag=tag))
        assert server.stop() == 0


def test_cancel_during_a_delay_gives_200_and_487() -> None:
    with ResponderProcess("--rule", "INVITE->180,486/1s") as server, server.client() as client:
        t = transaction()
        client.send(client.request("INVITE", **t, cseq=7))
        ringing = client.recv_response(2.0)
        assert ringing.status == 180
        cancelled_at = time.monotonic()
        client.send(client.request("CANCEL", **t, cseq=7))
        got = {}
        for _ in range(2):
            response = client.recv_response(2.0)
            got[norm(response.get("cseq") or "")] = response
        assert set(got) == {"7 CANCEL", "7 INVITE"}, list(got)
        assert got["7 CANCEL"].status == 200
        terminated = got["7 INVITE"]
        assert terminated.status == 487
        assert terminated.raw.startswith(b"SIP/2.0 487 Request Terminated\r\n")
        assert tag_of(terminated.get("to")) == tag_of(ringing.get("to"))
        # The 486 must never go out: wait past its due time (1 s after the INVITE).
        late = client.collect(max(0.0, cancelled_at + 1.5 - time.monotonic()))
        assert late == [], [d.data[:40] for d in late]
        client.send(client.request("ACK", **t, cseq=7, to_tag=tag_of(terminated.get("to"))))
        assert client.exchange() == []
        assert server.stop() == 0


def test_cancel_without_pending_invite_gets_481() -> None:
    with ResponderProcess() as server, server.client() as client:
        (response,) = client.exchange(client.request("CANCEL", **transaction()))
        assert response.status == 481
        assert server.stop() == 0


def test_ack_is_never_answered() -> None:
    with ResponderProcess() as server, server.client() as client:
        t = transaction()
        assert client.exchange(client.request("ACK", **t, to_tag="abc")) == []
        assert client.exchange(client.request("ACK", **t, to_tag=None)) == []
        assert server.stop() == 0


def test_drop_rule_sends_nothing() -> None:
    with ResponderProcess("--rule", "OPTIONS->drop") as server, server.client() as client:
        # The sentinel is a REGISTER here: OPTIONS is what gets dropped.
        assert client.exchange(client.request("OPTIONS"), sentinel_method="REGISTER") == []
        assert server.stop() == 0


def test_seed_makes_decisions_repeatable() -> None:
    args = ("--seed", "42", "--rule", "INVITE->503;p=0.5", "-q")
    invites = [invite_with_fixed_identity(n) for n in range(24)]
    runs = []
    for _ in range(2):
        with ResponderProcess(*args) as server, server.client() as client:
            outcome = []
            for data in invites:
                first = client.exchange(data)
                # A retransmission: the same final response again, the same bytes.
                again = client.exchange(data)
                assert [r.raw for r in again] == [first[-1].raw]
                outcome.append(tuple(statuses(first)))
            runs.append(outcome)
            assert server.stop() == 0
    assert runs[0] == runs[1], "the same seed gives the same decisions"
    kinds = set(runs[0])
    assert kinds <= {(503,), (100, 503), (100, 180, 200)}, kinds
    assert len(kinds) >= 2, f"p=0.5 over 24 transactions always gave {kinds}"


def invite_with_fixed_identity(n: int) -> bytes:
    return invite(call_id=f"seeded-{n}@test", branch=f"z9hG4bKseeded{n}", from_tag=f"ft{n}")


# ----------------------------------------------------------------- logging and signals


def test_default_log_line_per_exchange() -> None:
    with ResponderProcess() as server, server.client() as client:
        client.exchange(client.request("OPTIONS", uri="sip:logtest@127.0.0.1"))
        m = server.wait_for_stderr(LOG_LINE)
        assert int(m.group(1)) == client.port
        assert server.stop() == 0


def test_quiet_silences_exchange_lines() -> None:
    with ResponderProcess("-q") as server, server.client() as client:
        assert statuses(client.exchange(client.request("OPTIONS"))) == [200]
        assert server.stop() == 0
    assert not [line for line in server.stderr_lines if "->" in line], server.stderr_lines


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_cleanly(sig: signal.Signals) -> None:
    with ResponderProcess() as server:
        with server.client() as client:
            assert statuses(client.exchange(client.request("OPTIONS"))) == [200]
        assert server.stop(sig) == 0
    assert not any("Traceback" in line for line in server.stderr_lines), server.stderr_lines


# ----------------------------------------------------------------- bad input


def garbage() -> list[bytes]:
    rng = random.Random(4475)
    return [
        b"",
        b"\r\n\r\n",
        b"\r\n",
        b"hello",
        bytes(rng.randrange(256) for _ in range(300)),
        bytes(rng.randrange(256) for _ in range(1400)),
        b"\x00" * 64,
        b"x" * 60000,
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKresp\r\n"
        b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: resp@test\r\n"
        b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\n"
        b"Call-ID: novia@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",  # no Via
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    ]


def test_garbage_gets_no_answer_and_the_server_keeps_serving() -> None:
    with ResponderProcess() as server, server.client() as client:
        assert client.exchange(*garbage()) == []
        for data in garbage():
            assert client.exchange(data) == [], data[:40]
        (response,) = client.exchange(client.request("OPTIONS"))
        assert response.status == 200
        assert server.alive
        assert server.stop() == 0
    assert not any("Traceback" in line for line in server.stderr_lines), server.stderr_text()


def test_truncations_of_a_request_never_break_the_server() -> None:
    """Every prefix of an INVITE gets an answer to itself or nothing."""
    with ResponderProcess("-q") as server, server.client() as client:
        data = client.request("INVITE", call_id="trunc@test")
        for cut in range(0, len(data), 7):
            for response in client.exchange(data[:cut]):
                # A cut may fall inside the Call-ID: the response copies what arrived.
                assert "trunc@test".startswith(norm(response.get("call-id") or "")), response
        assert server.stop() == 0


def test_request_line_answers() -> None:
    with ResponderProcess() as server, server.client() as client:
        ok = client.request("OPTIONS").decode()
        bad_version = ok.replace("SIP/2.0\r\n", "SIP/3.0\r\n", 1).encode()
        (response,) = client.exchange(bad_version)
        assert response.status == 505
        bad_scheme = ok.replace("sip:responder@127.0.0.1", "http://x.example/", 1).encode()
        (response,) = client.exchange(bad_scheme)
        assert response.status == 416
        require = client.request("OPTIONS", headers=(("Require", "foo, bar"),))
        (response,) = client.exchange(require)
        assert response.status == 420
        assert {norm(v) for v in response.values("unsupported")} == {"foo", "bar"}
        assert server.stop() == 0


def test_options_200_and_response_basics() -> None:
    with ResponderProcess() as server, server.client() as client:
        data = client.request("OPTIONS", call_id="basics@test", from_tag="ft1", branch="z9hG4bKb1")
        (response,) = client.exchange(data)
        request = parse_message(data)
        assert response.status == 200
        for name in ("Allow", "Accept", "Supported", "Server"):
            assert response.all(name), f"200 to OPTIONS without {name}"
        assert response.get("call-id") == "basics@test"
        assert response.get("cseq") == "1 OPTIONS"
        assert response.get("from") == request.get("from")
        top = response.values("via")[0]
        assert top == f"SIP/2.0/UDP 127.0.0.1:{client.port};branch=z9hG4bKb1;rport={client.port}"\
            or top.startswith(f"SIP/2.0/UDP 127.0.0.1:{client.port};branch=z9hG4bKb1;rport="
                              f"{client.port}"), top
        assert int(response.get("content-length") or -1) == len(response.body)
        # A retransmission gets the same tag.
        (again,) = client.exchange(data)
        assert tag_of(again.get("to")) == tag_of(response.get("to")) is not None
        assert server.stop() == 0


def test_startup_failure_is_reported() -> None:
    """The helper reports a process that exits instead of listening (a bad rule)."""
    with pytest.raises(ResponderStartError, match="exited"):
        ResponderProcess("--rule", "INVITE->").start()


def test_defaults_come_from_the_package_in_an_empty_directory(tmp_path: Path) -> None:
    """An installed sip-responder run where there is no config/ uses the shipped defaults."""
    from responder.rules.loader import dump, load_text

    run = subprocess.run([support.responder_script(), "--check"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=30, check=False)
    assert run.returncode == 0, run.stderr
    shipped = (Path(__file__).resolve().parents[1] / "config" / "rules.yaml").read_text()
    assert run.stdout == dump(load_text(shipped, "config/rules.yaml"))


def test_listen_without_a_port_takes_5060_and_ports_are_ascii_digits() -> None:
    from responder.ops.listen import parse_listen

    assert parse_listen("127.0.0.1").addr == ("127.0.0.1", 5060)
    assert parse_listen("udp:lab.example").addr == ("lab.example", 5060)
    assert parse_listen("[::1]").addr == ("::1", 5060)
    assert parse_listen("::1").addr == ("::1", 5060)
    assert parse_listen("[::1]:5070").addr == ("::1", 5070)
    assert parse_listen("127.0.0.1:0").addr == ("127.0.0.1", 0)
    for bad in ("127.0.0.1:\u00b2", "127.0.0.1:65536", "127.0.0.1:x", "127.0.0.1:" + "0" * 9):
        with pytest.raises(ValueError):
            parse_listen(bad)
    usage = subprocess.run([support.responder_script(), "--listen", "127.0.0.1:65536"],
                           capture_output=True, text=True, timeout=30, check=False)
    assert usage.returncode == 2 and "65536" in usage.stderr and "Traceback" not in usage.stderr


def test_a_bind_error_names_the_address() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = run_cli("--listen", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert f"cannot listen: [Errno 98] 127.0.0.1:{port}: Address already in use" \
        in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_workers_name_a_stream_address_they_cannot_bind() -> None:
    """--workers binds stream listeners in the parent, before the fork: a taken port is
    the same one-line error (exit 1) as without workers."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_cli("--workers", "2", "--listen", "127.0.0.1:0", "--listen",
                         f"tcp:127.0.0.1:{port}")
    assert result.returncode == 1
    assert f"cannot listen: [Errno 98] 127.0.0.1:{port}: Address already in use" \
        in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("args", "status", "says"), [
    (["--listen", "tls:127.0.0.1:0"], 2, "tls://127.0.0.1:0 needs --tls-cert and --tls-key"),
    (["--listen", "udp:127.0.0.1:0", "--tls-cert", "c.pem", "--tls-key", "k.pem"], 2,
     "are for tls: and wss: listeners"),
    (["--listen", "tls:127.0.0.1:0", "--tls-cert", "/nonexistent.pem", "--tls-key",
      "/nonexistent.key"], 1, "cannot use the TLS certificate"),
])
def test_stream_listener_options_are_checked(args: list[str], status: int, says: str) -> None:
    done = subprocess.run([support.responder_script(), *args], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == status and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_one_engine_answers_over_udp_and_tcp_at_once() -> None:
    with ResponderProcess("-q", listen=("udp:127.0.0.1:0", "tcp:127.0.0.1:0")) as server:
        assert [s for s, _, _ in server.listeners] == ["udp", "tcp"]
        with socket.create_connection(server.listener("tcp"), timeout=5) as tcp:
            tcp.sendall(build_request("OPTIONS").replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
            assert tcp.recv(65535).startswith(b"SIP/2.0 200 OK\r\n")
        with server.client() as client:
            assert statuses(client.exchange(client.request("OPTIONS"))) == [200]
        assert server.stop() == 0


def test_delayed_answers_leave_once_over_the_transport_of_their_request() -> None:
    """One engine timer for UDP and TCP (io/timer.py): a step due later leaves once, over
    the connection of a TCP request and from the socket of a UDP one."""
    rule = ("--rule", "OPTIONS->200/300ms")
    with ResponderProcess("-q", *rule, listen=("udp:127.0.0.1:0", "tcp:127.0.0.1:0")) as server:
        with socket.create_connection(server.listener("tcp"), timeout=5) as tcp, \
                server.client() as client:
            tcp.sendall(build_request("OPTIONS").replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
            assert statuses(client.exchange(client.request("OPTIONS"))) == [200]
            assert tcp.recv(65535).startswith(b"SIP/2.0 200 OK\r\n")
            tcp.settimeout(1.0)
            with pytest.raises(TimeoutError):
                tcp.recv(65535)  # once
            assert client.exchange() == []  # nothing of the TCP answer came over UDP
        assert server.stop() == 0


def test_stream_listeners_raise_the_open_file_limit_to_the_hard_one() -> None:
    """A connection holds a descriptor: started with a soft limit of 1,024 (a shell's or a
    service's default), the responder raises it to the hard limit when it listens on a
    stream, so its connection bound, not the file limit, decides (scripts/bench_idle.py)."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 1024:
        pytest.skip(f"the hard limit is {hard}: nothing to raise to")

    def low() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))

    proc = subprocess.Popen([support.responder_script(), "-q", "--listen", "tcp:127.0.0.1:0"],
                            stderr=subprocess.PIPE, text=True, preexec_fn=low)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        while "listening on" not in line and line:
            line = proc.stderr.readline()
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        soft_now = next(row.split()[3] for row in limits.splitlines()
                        if row.startswith("Max open files"))
        assert soft_now != "1024" and int(soft_now) > 1024, limits
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
