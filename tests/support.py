"""Black-box helpers: run the installed ``sip-responder`` and talk SIP to it over loopback UDP.

Nothing here imports ``responder``: these helpers see the product the way its users do,
through the console script, its stderr and real datagrams.

* :class:`ResponderProcess` starts the console script, reads its stderr in a background
  thread (so the pipe never fills), waits for its ``listening on udp://`` lines and stops it
  with a signal.
* :class:`SipClient` is a UDP socket on loopback with the **sentinel technique**: after the
  datagrams under test, send an OPTIONS with a unique Call-ID. The responder answers in
  arrival order, so once the sentinel's final response is in, every immediate response to
  the earlier datagrams is in too. No sleeps.
* :func:`parse_message` is a small, forgiving SIP parser for assertions (header lines kept
  in order, folding undone, compact names known); :func:`build_request` and friends write
  requests with a given Call-ID, branch and From tag.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, TypedDict

SCRIPT = "sip-responder"
STARTUP_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
RECV_TIMEOUT = 5.0

LISTENING = re.compile(r"listening on (?P<scheme>udp|tcp|tls|ws|wss)://"
                       r"(?:\[(?P<v6>[^\]]+)\]|(?P<v4>[^\s:/\]]+)):(?P<port>\d+)")


# --------------------------------------------------------------------------- the program


def responder_script() -> str:
    """Path of the installed console script; fails (never skips) when it is missing."""
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    found = shutil.which(SCRIPT, path=path)
    if found is None:
        raise AssertionError(
            f"the console script {SCRIPT!r} is not installed next to {sys.executable} nor on "
            f"PATH; run `pip install -e .` (or `pip install .[test]`) first"
        )
    return found


def run_cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run ``sip-responder ARGS`` to completion (for ``--check``, ``--codes``, bad starts)."""
    return subprocess.run(
        [responder_script(), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for peers such as SIPp that need a number)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_udp_and_tcp_port(host: str = "127.0.0.1") -> int:
    """A port free for UDP and for TCP on ``host`` a moment ago (SIPp with ``-t t1``/``tn``
    and twinkle bind their port for TCP as well)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(100):
        port = free_udp_port(host)
        try:
            with socket.socket(family, socket.SOCK_STREAM) as tcp:
                tcp.bind((host, port))
        except OSError:
            continue
        return port
    raise AssertionError(f"no port free for UDP and TCP on {host}")


class ResponderStartError(AssertionError):
    """The responder exited or stayed silent instead of listening."""


class _LineReader(threading.Thread):
    """Drains one pipe into a list of lines, waking waiters on every line."""

    def __init__(self, stream: IO[bytes], lines: list[str], cond: threading.Condition) -> None:
        super().__init__(daemon=True)
        self._stream = stream
        self._lines = lines
        self._cond = cond
        self.finished = False

    def run(self) -> None:
        try:
            for raw in iter(self._stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                with self._cond:
                    self._lines.append(line)
                    self._cond.notify_all()
        finally:
            with self._cond:
                self.finished = True
                self._cond.notify_all()


class ResponderProcess:
    """``sip-responder`` as a child process, ready when all its sockets listen.

    >>> with ResponderProcess("--rule", "INVITE->486") as server:
    ...     with server.client() as client:
    ...         ...
    ...     assert server.stop() == 0

    ``listen``: the ``--listen`` values (default one IPv4 loopback socket on a free port).
    """

    def __init__(
        self,
        *args: str,
        listen: Sequence[str] = ("127.0.0.1:0",),
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        self.args = list(args)
        self.listen = list(listen)
        self.startup_timeout = startup_timeout
        self.addresses: list[tuple[str, int]] = []  # the UDP ones (SipClient's)
        self.listeners: list[tuple[str, str, int]] = []  # (scheme, host, port), all of them
        self.returncode: int | None = None
        self._cond = threading.Condition()
        self._stderr: list[str] = []
        self._stdout: list[str] = []
        self._readers: list[_LineReader] = []
        self._proc: subprocess.Popen[bytes] | None = None

    # -- life cycle -------------------------------------------------------------------
    @property
    def argv(self) -> list[str]:
        listen_args = [arg for addr in self.listen for arg in ("--listen", addr)]
        return [responder_script(), *listen_args, *self.args]

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    def start(self) -> ResponderProcess:
        assert self._proc is None, "start() is called once"
        self._proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._readers = [
            _LineReader(self._proc.stderr, self._stderr, self._cond),
            _LineReader(self._proc.stdout, self._stdout, self._cond),
        ]
        for reader in self._readers:
            reader.start()
        try:
            self._wait_listening(max(1, len(self.listen)))
        except BaseException:
            self.close()
            raise
        return self

    def _wait_listening(self, expected: int) -> None:
        deadline = time.monotonic() + self.startup_timeout
        with self._cond:
            while True:
                found = [m for line in self._stderr if (m := LISTENING.search(line))]
                if len(found) >= expected:
                    self.listeners = [(m.group("scheme"), m.group("v6") or m.group("v4"),
                                       int(m.group("port"))) for m in found]
                    self.addresses = [(h, p) for s, h, p in self.listeners if s == "udp"]
                    return
                if self._readers[0].finished or self._proc_exited():
                    raise ResponderStartError(
                        f"sip-responder exited (status {self._proc_poll()}) before listening;"
                        f" argv={self.argv}\nstderr:\n{self.stderr_text()}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ResponderStartError(
                        f"sip-responder printed {len(found)} of {expected} 'listening on "
                        f"udp://' lines within {self.startup_timeout} s; argv={self.argv}\n"
                        f"stderr:\n{self.stderr_text()}"
                    )
                self._cond.wait(min(remaining, 0.1))

    def _proc_poll(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def _proc_exited(self) -> bool:
        return self._proc_poll() is not None

    def send_signal(self, sig: int) -> None:
        assert self._proc is not None, "not started"
        if self._proc.poll() is None:
            self._proc.send_signal(sig)  # our own child, by its PID

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Signal the process, wait for it and its output; returns the exit status."""
        assert self._proc is not None, "not started"
        self.send_signal(sig)
        try:
            self.returncode = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)
            raise AssertionError(
                f"sip-responder did not exit within {timeout} s of signal {sig}; killed it.\n"
                f"stderr:\n{self.stderr_text()}"
            ) from None
        self._join_readers()
        return self.returncode

    def _join_readers(self) -> None:
        for reader in self._readers:
            reader.join(5)

    def close(self) -> None:
        """Make sure the child is gone (TERM, then KILL); never raises for a live child."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.returncode = proc.returncode
        self._join_readers()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> ResponderProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- output -----------------------------------------------------------------------
    @property
    def stderr_lines(self) -> list[str]:
        with self._cond:
            return list(self._stderr)

    @property
    def stdout_lines(self) -> list[str]:
        with self._cond:
            return list(self._stdout)

    def stderr_text(self, last: int = 60) -> str:
        lines = self.stderr_lines
        return "\n".join(lines[-last:])

    def wait_for_stderr(
        self, pattern: str | re.Pattern[str], timeout: float = 5.0
    ) -> re.Match[str]:
        """The first stderr line matching ``pattern`` (search), waiting up to ``timeout``."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self._stderr:
                    if m := regex.search(line):
                        return m
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._readers[0].finished:
                    raise AssertionError(
                        f"no stderr line matched {regex.pattern!r} within {timeout} s;"
                        f" stderr:\n{self.stderr_text()}"
                    )
                self._cond.wait(min(remaining, 0.1))

    # -- clients ----------------------------------------------------------------------
    @property
    def address(self) -> tuple[str, int]:
        return self.addresses[0]

    def listener(self, scheme: str) -> tuple[str, int]:
        """The first address listening for ``scheme`` (udp, tcp, tls, ws, wss)."""
        return next((h, p) for s, h, p in self.listeners if s == scheme)

    def client(self, index: int = 0, timeout: float = RECV_TIMEOUT) -> SipClient:
        return SipClient(self.addresses[index], timeout=timeout)


# --------------------------------------------------------------------------- messages

# RFC 3261 §7.3.3 and later extensions: compact form -> canonical name.
COMPACT = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

_END_OF_HEADERS = re.compile(rb"\r?\n\r?\n")
_LINE = re.compile(r"\r?\n")


def canonical(name: str) -> str:
    name = name.strip().lower()
    return COMPACT.get(name, name)


def norm(text: str) -> str:
    """Whitespace runs (folding included) collapsed to one space, ends stripped."""
    return " ".join(text.split())


def split_commas(value: str) -> list[str]:
    """Split a header value at commas outside quoted strings and <...>."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    angle = 0
    for ch in value:
        if quoted:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            angle += 1
        elif ch == ">":
            angle = max(0, angle - 1)
        elif ch == "," and angle == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    parts.append("".join(current).strip())
    return parts


def split_params(value: str) -> tuple[str, list[str]]:
    """``head;p1;p2`` -> (head, [p1, p2]) with every part whitespace-normalised.

    Splits at ';' outside quoted strings, [...] and <...>.
    """
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    depth = 0
    for ch in value:
        if quoted:
            if ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch in "[<":
            depth += 1
        elif ch in "]>":
            depth = max(0, depth - 1)
        elif ch == ";" and depth == 0:
            parts.append(norm("".join(current)))
            current = []
            continue
        current.append(ch)
    parts.append(norm("".join(current)))
    return parts[0], parts[1:]


def param_name_value(param: str) -> tuple[str, str | None]:
    name, eq, value = param.partition("=")
    return name.strip().lower(), (value.strip() if eq else None)


def header_params(value: str) -> dict[str, str | None]:
    """The header parameters of a name-addr/addr-spec header (From, To, Contact)."""
    value = value.strip()
    if "<" in value and ">" in value:
        value = value[value.rindex(">") + 1 :]
        _, params = split_params("x" + value)
    else:
        _, params = split_params(value)
    return dict(param_name_value(p) for p in params if p)


def tag_of(value: str | None) -> str | None:
    return None if value is None else header_params(value).get("tag")


def via_sent_by_host(via: str) -> str:
    """The sent-by host of one Via value, as written (IPv6 without brackets)."""
    head, _ = split_params(via)
    sent_by = head.split()[-1] if head.split() else ""
    if sent_by.startswith("["):
        return sent_by[1 : sent_by.find("]")] if "]" in sent_by else sent_by[1:]
    return sent_by.rsplit(":", 1)[0] if ":" in sent_by else sent_by


@dataclass(frozen=True)
class Message:
    """A SIP message as a test sees it: start line, header lines in order, body."""

    start_line: str
    headers: tuple[tuple[str, str], ...]  # (name as written, value unfolded)
    body: bytes
    raw: bytes

    @property
    def is_response(self) -> bool:
        return self.start_line.startswith("SIP/")

    @property
    def status(self) -> int:
        assert self.is_response, f"not a response: {self.start_line!r}"
        return int(self.start_line.split(" ", 2)[1])

    @property
    def reason(self) -> str:
        assert self.is_response, f"not a response: {self.start_line!r}"
        parts = self.start_line.split(" ", 2)
        text = parts[2] if len(parts) > 2 else ""
        return text.encode("latin-1").decode("utf-8", "replace")

    @property
    def method(self) -> str:
        assert not self.is_response, f"not a request: {self.start_line!r}"
        return self.start_line.split()[0]

    def all(self, name: str) -> list[str]:
        """Values of every header line called ``name`` (any case, compact form too)."""
        wanted = canonical(name)
        return [value for hname, value in self.headers if canonical(hname) == wanted]

    def get(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def values(self, name: str) -> list[str]:
        """Comma-separated values over all lines of ``name`` (for Via, Require, ...)."""
        return [v for line in self.all(name) for v in split_commas(line)]

    def __str__(self) -> str:
        return self.raw.decode("utf-8", "replace")


def parse_message(data: bytes) -> Message:
    """Parse a SIP message loosely (for assertions); raises ValueError when it is not one."""
    m = _END_OF_HEADERS.search(data)
    head, body = (data[: m.start()], data[m.end() :]) if m else (data, b"")
    lines = _LINE.split(head.decode("latin-1"))
    start = lines[0] if lines else ""
    if not (start.startswith("SIP/") or re.match(r"\S+\s+\S.*\sSIP/", start)):
        raise ValueError(f"not a SIP message: {data[:60]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
        elif ":" in line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        elif line:
            headers.append((line.strip(), ""))
    return Message(start, tuple(headers), body, data)


def parse_response(data: bytes) -> Message:
    msg = parse_message(data)
    if not msg.is_response:
        raise ValueError(f"not a SIP response: {data[:60]!r}")
    return msg


def statuses(responses: Iterable[Message]) -> list[int]:
    return [r.status for r in responses]


# --------------------------------------------------------------------------- requests


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


class Txn(TypedDict):
    """What names one transaction: ``invite(**txn)``, then ``ack(to_tag=..., **txn)``."""

    call_id: str
    branch: str
    from_tag: str


SDP = (
    b"v=0\r\n"
    b"o=tester 1 1 IN IP4 127.0.0.1\r\n"
    b"s=-\r\n"
    b"c=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
)


def build_request(
    method: str,
    *,
    uri: str = "sip:responder@127.0.0.1",
    call_id: str | None = None,
    branch: str | None = None,
    from_tag: str | None = None,
    to_tag: str | None = None,
    cseq: int = 1,
    cseq_method: str | None = None,
    from_uri: str = "sip:tester@127.0.0.1",
    to_uri: str | None = None,
    via_host: str = "127.0.0.1",
    via_port: int | None = 5060,
    rport: bool = True,
    max_forwards: int | None = 70,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> bytes:
    """One request, CRLF-framed, with an exact Content-Length."""
    call_id = call_id or unique("call")
    branch = branch or "z9hG4bK" + uuid.uuid4().hex[:16]
    from_tag = from_tag or uuid.uuid4().hex[:10]
    host = f"[{via_host}]" if ":" in via_host else via_host
    sent_by = host if via_port is None else f"{host}:{via_port}"
    via = f"SIP/2.0/UDP {sent_by};branch={branch}" + (";rport" if rport else "")
    to = f"<{to_uri or uri}>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: {via}",
        *([f"Max-Forwards: {max_forwards}"] if max_forwards is not None else []),
        f"From: <{from_uri}>;tag={from_tag}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        *(f"{name}: {value}" for name, value in headers),
        *([f"Content-Type: {content_type}"] if content_type else []),
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def options(**kw: Any) -> bytes:
    return build_request("OPTIONS", **kw)


def invite(**kw: Any) -> bytes:
    kw.setdefault("body", SDP)
    kw.setdefault("content_type", "application/sdp")
    kw.setdefault("headers", (("Contact", "<sip:tester@127.0.0.1>"),))
    return build_request("INVITE", **kw)


def register(**kw: Any) -> bytes:
    kw.setdefault("uri", "sip:127.0.0.1")
    kw.setdefault("to_uri", kw.get("from_uri", "sip:tester@127.0.0.1"))
    kw.setdefault("headers", (("Contact", "<sip:tester@127.0.0.1>"), ("Expires", "60")))
    return build_request("REGISTER", **kw)


def ack(*, call_id: str, branch: str, from_tag: str, to_tag: str | None, cseq: int = 1,
        **kw: Any) -> bytes:
    """ACK for a non-2xx final response (RFC 3261 §17.1.1.3): the INVITE's branch, CSeq
    number and the response's To tag."""
    return build_request(
        "ACK", call_id=call_id, branch=branch, from_tag=from_tag, to_tag=to_tag, cseq=cseq,
        **kw,
    )


def cancel(*, call_id: str, branch: str, from_tag: str, cseq: int = 1, **kw: Any) -> bytes:
    """CANCEL (RFC 3261 §9.1): same Request-URI, Call-ID, From, To (no tag), CSeq number and
    top Via branch as the INVITE it cancels."""
    kw.pop("to_tag", None)
    return build_request(
        "CANCEL", call_id=call_id, branch=branch, from_tag=from_tag, cseq=cseq,
        **kw,
    )


# --------------------------------------------------------------------------- the client


@dataclass
class Datagram:
    data: bytes
    source: tuple[str, int]
    at: float = field(default_factory=time.monotonic)


class SipClient:
    """A UDP socket on the loopback of the server's family, with the sentinel technique."""

    def __init__(self, server: tuple[str, int], timeout: float = RECV_TIMEOUT) -> None:
        self.server = server
        self.timeout = timeout
        family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        # A burst of answers read only after the burst is sent: the default receive buffer
        # (212,992 bytes, about 160 small datagrams) would drop some. As root the kernel's
        # rmem_max does not cap SO_RCVBUFFORCE.
        for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            if option is not None:
                try:
                    self.sock.setsockopt(socket.SOL_SOCKET, option, 4 << 20)
                    break
                except OSError:
                    continue
        self.received: list[Datagram] = []

    @property
    def local_address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    @property
    def port(self) -> int:
        return self.local_address[1]

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SipClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- building requests with this socket's address in the Via ----------------------
    def request(self, method: str, **kw: Any) -> bytes:
        builders: dict[str, Callable[..., bytes]] = {
            "OPTIONS": options, "INVITE": invite, "REGISTER": register,
            "ACK": ack, "CANCEL": cancel,
        }
        kw.setdefault("via_host", self.local_address[0])
        kw.setdefault("via_port", self.port)
        builder = builders.get(method)
        if builder is None:
            return build_request(method, **kw)
        return builder(**kw)

    # -- datagrams ----------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.server)

    def recv(self, timeout: float | None = None) -> Datagram | None:
        """The next datagram, or None after ``timeout`` seconds."""
        self.sock.settimeout(self.timeout if timeout is None else max(timeout, 0.0001))
        try:
            data, source = self.sock.recvfrom(65535)
        except (TimeoutError, BlockingIOError):
            return None
        dgram = Datagram(data, (str(source[0]), int(source[1])))
        self.received.append(dgram)
        return dgram

    def recv_response(self, timeout: float | None = None) -> Message:
        """The next datagram as a response; fails when none arrives in time."""
        wait = self.timeout if timeout is None else timeout
        dgram = self.recv(wait)
        assert dgram is not None, f"no response within {wait} s"
        self._check_source(dgram)
        return parse_response(dgram.data)

    def collect(self, duration: float) -> list[Datagram]:
        """Everything that arrives during the next ``duration`` seconds (a bounded wait for
        something that must *not* happen, such as a cancelled 486)."""
        deadline = time.monotonic() + duration
        got: list[Datagram] = []
        while (remaining := deadline - time.monotonic()) > 0:
            dgram = self.recv(remaining)
            if dgram is not None:
                got.append(dgram)
        return got

    def send_sentinel(self, method: str = "OPTIONS") -> str:
        call_id = unique("sentinel")
        self.send(self.request(method, call_id=call_id))
        return call_id

    def recv_all_until(self, sentinel_call_id: str, timeout: float | None = None) -> list[bytes]:
        """Every datagram that arrives before the sentinel's final response (that response
        and any provisional one to the sentinel are left out)."""
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        got: list[bytes] = []
        while True:
            remaining = deadline - time.monotonic()
            dgram = self.recv(remaining) if remaining > 0 else None
            if dgram is None:
                shown = "\n---\n".join(d.decode("utf-8", "replace")[:300] for d in got)
                raise AssertionError(
                    f"the sentinel {sentinel_call_id} got no final response within {wait} s "
                    f"(is the server alive?); {len(got)} other datagram(s) arrived:\n{shown}"
                )
            self._check_source(dgram)
            try:
                msg = parse_message(dgram.data)
            except ValueError:
                got.append(dgram.data)
                continue
            if msg.is_response and norm(msg.get("call-id") or "") == sentinel_call_id:
                if msg.status >= 200:
                    return got
                continue
            self.ack_2xx(msg)
            got.append(dgram.data)

    def ack_2xx(self, msg: Message) -> None:
        """A UAC acknowledges a 2xx to INVITE (RFC 3261 §13.2.2.4: a new transaction), or the
        responder resends it until 32 s pass (SPEC §4)."""
        cseq = norm(msg.get("cseq") or "").split()
        if not (msg.is_response and 200 <= msg.status < 300 and cseq[1:] == ["INVITE"]):
            return
        def hostport(addr: tuple[str, int]) -> str:
            return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"

        lines = [f"ACK sip:responder@{hostport(self.server)} SIP/2.0",
                 f"Via: SIP/2.0/UDP {hostport((self.local_address[0], self.port))};"
                 f"branch=z9hG4bK-ack-"
                 f"{uuid.uuid4().hex[:12]};rport",
                 "Max-Forwards: 70", f"From: {msg.get('from')}", f"To: {msg.get('to')}",
                 f"Call-ID: {msg.get('call-id')}", f"CSeq: {cseq[0]} ACK", "Content-Length: 0"]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode())

    def exchange(
        self, *datagrams: bytes, sentinel_method: str = "OPTIONS", timeout: float | None = None
    ) -> list[Message]:
        """Send ``datagrams``, then a sentinel; the parsed responses to the datagrams."""
        for data in datagrams:
            self.send(data)
        sentinel = self.send_sentinel(sentinel_method)
        raw = self.recv_all_until(sentinel, timeout)
        out = []
        for data in raw:
            try:
                out.append(parse_response(data))
            except ValueError as exc:
                raise AssertionError(f"the server sent something that is not a response: {exc}")\
                    from None
        return out

    def _check_source(self, dgram: Datagram) -> None:
        assert dgram.source == self.server, (
            f"datagram from {dgram.source}, expected the server {self.server}"
        )
