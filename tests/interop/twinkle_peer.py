"""twinkle-console (Twinkle 1.10) driven headless: commands on stdin, its console on stdout.

>>> with Twinkle(tmp_path) as phone:
...     phone.command("call sip:bob@127.0.0.1:5060")
...     phone.wait_output("far end answered call")

Headless recipe (all in a private ``HOME`` = ``directory``):

* ``~/.asoundrc`` makes ALSA's ``default`` PCM the ``null`` plugin (playback discarded,
  capture silent), so no sound card is needed; ``validate_audio_dev=no`` in
  ``~/.twinkle/twinkle.sys`` stops Twinkle from probing devices at start.
* ``~/.twinkle/test.cfg``, the profile (``-f test``): ``sip:alice@127.0.0.1``, no
  registration, no presence PUBLISH at start (it would go to 127.0.0.1:5060), codecs
  G.711 A-law then u-law, DTMF as RFC 2833 events on payload 101.
* ``--sip-port``/``--rtp-port``: free loopback ports chosen here (Twinkle binds RTP on the
  port and the next one, for RTCP).

Twinkle writes every SIP message it sends or receives to ``~/.twinkle/twinkle.log``
(:meth:`log`), which the tests read for the SDP it got.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

from interop_support import PeerProcess, tool
from support import free_udp_and_tcp_port

START_TIMEOUT = 10.0
PROMPT = "Twinkle>"

ASOUNDRC = """\
pcm.!default { type null }
ctl.!default { type hw card 0 }
"""

PROFILE = """\
user_name=alice
user_domain=127.0.0.1
user_display=Alice
register_at_startup=no
pres_publish_startup=no
codecs=g711a,g711u
dtmf_transport=rfc2833
dtmf_payload_type=101
sip_transport=udp
"""

SYSTEM = """\
dev_ringtone=alsa:default
dev_speaker=alsa:default
dev_mic=alsa:default
validate_audio_dev=no
play_ringtone=no
play_ringback=no
log_show_sip=yes
"""


def free_udp_pair() -> int:
    """An even port P with P and P+1 free on 127.0.0.1 a moment ago (RTP and RTCP)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first:
            first.bind(("127.0.0.1", 0))
            port: int = first.getsockname()[1]
            if port % 2 or port > 65000:
                continue
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second:
                    second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise AssertionError("no free even UDP port pair on 127.0.0.1")


def free_udp_and_tcp() -> int:
    """Twinkle listens on UDP and TCP at its ``--sip-port`` (and exits, "Failed to create a
    TCP socket", when TCP is taken)."""
    return free_udp_and_tcp_port()


class Twinkle(PeerProcess):
    """One twinkle-console process with the profile ``test`` (``sip:alice@127.0.0.1``)."""

    name = "twinkle"

    def __init__(self, directory: Path, *, profile: dict[str, str] | None = None) -> None:
        """``profile``: settings of ``test.cfg`` to set or replace (``sip_transport``,
        ``codecs``, ...)."""
        super().__init__()
        self.binary = tool("twinkle", "twinkle-console")
        self.home = directory
        self.sip_port = free_udp_and_tcp()
        self.rtp_port = free_udp_pair()
        config = directory / ".twinkle"
        config.mkdir(parents=True, exist_ok=True)
        (directory / ".asoundrc").write_text(ASOUNDRC)
        settings = dict(line.split("=", 1) for line in PROFILE.splitlines())
        settings.update(profile or {})
        (config / "test.cfg").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        (config / "twinkle.sys").write_text(SYSTEM)

    @property
    def argv(self) -> list[str]:
        return [self.binary, "-c", "-f", "test", "--sip-port", str(self.sip_port),
                "--rtp-port", str(self.rtp_port)]

    def __enter__(self) -> Twinkle:
        env = {**os.environ, "HOME": str(self.home)}
        self.start(self.argv, self.home, env)
        try:
            self.wait_output(PROMPT, START_TIMEOUT)
        except BaseException:
            self.close()
            raise
        return self

    def quit(self, proc: subprocess.Popen[bytes]) -> bool:
        self.command("quit")
        return True

    # --- console -------------------------------------------------------------------------
    def command(self, line: str) -> int:
        """Type ``line``; returns the output offset before it (for ``wait_output(after=)``)."""
        with self.cond:
            mark = len(self.output)
        self.send_line(line)
        return mark

    # --- its log -------------------------------------------------------------------------
    def log(self) -> str:
        path = self.home / ".twinkle" / "twinkle.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def received_sip(self) -> list[str]:
        """The SIP messages Twinkle's log says it received (as logged, LF line ends)."""
        out = []
        for block in self.log().split("\n---\n"):
            head, _, rest = block.partition("Received from: ")
            if rest and "::process_sip_msg" in head:
                out.append(rest.partition("\n")[2])
        return out

    def sent_to(self) -> list[str]:
        """Every destination of Twinkle's ``Send to:`` log lines (``udp:HOST:PORT``)."""
        return re.findall(r"^Send to: (\S+)", self.log(), re.MULTILINE)
