"""SDP offer/answer (RFC 3264 over RFC 4566), sans-I/O: bytes in, bytes out.

SPEC §8.1. :func:`read_offer` reads an offer (or raises :class:`BadSdp`, which the engine
answers with ``400 Bad SDP``); :func:`answer` builds our answer to it, line by line:

* one ``m=`` line per offered one, same order, media type and transport protocol;
* an audio line over ``RTP/AVP`` or ``RTP/AVPF`` that shares a codec with ours is accepted:
  our port, the shared formats in the OFFER's order with the offer's payload-type numbers
  and their ``a=rtpmap``/``a=fmtp`` lines, ``telephone-event`` at the offered rate when
  offered and configured, ``a=ptime`` mirrored, the direction mirrored;
* every other line (video, application, an encrypted or unknown profile, no shared codec)
  is refused: port 0, the offered formats, no attributes;
* nothing accepted: :func:`answer` gives None (the engine sends 488 with Warning 305).

:func:`offer` builds the offer a 2xx carries when the INVITE had none (delayed offer).
The session id and version are inputs (the engine derives them from the dialog and the
CSeq number, so nothing here keeps a table); so are the address and the media port.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# --- bounds: an offer past them is Bad SDP (no real offer comes near) -------------------
MAX_SDP_BYTES = 16_384      # the SDP body
MAX_MEDIA = 16              # m= lines
MAX_FORMATS = 64            # formats on one m= line
MAX_LINE = 1_024            # one line of the offer

DEFAULT_CODECS = ("PCMU", "PCMA", "G722", "opus", "telephone-event")
TELEPHONE_EVENT = "telephone-event"
COMFORT_NOISE = "cn"
ACCEPTED_PROTOS = ("RTP/AVP", "RTP/AVPF")

# The static payload types of RFC 3551 §6 that an offer may use without an a=rtpmap.
STATIC: dict[str, tuple[str, int, int]] = {
    "0": ("PCMU", 8000, 1), "3": ("GSM", 8000, 1), "4": ("G723", 8000, 1),
    "5": ("DVI4", 8000, 1), "6": ("DVI4", 16000, 1), "7": ("LPC", 8000, 1),
    "8": ("PCMA", 8000, 1), "9": ("G722", 8000, 1), "10": ("L16", 44100, 2),
    "11": ("L16", 44100, 1), "12": ("QCELP", 8000, 1), "13": ("CN", 8000, 1),
    "14": ("MPA", 90000, 1), "15": ("G728", 8000, 1), "16": ("DVI4", 11025, 1),
    "17": ("DVI4", 22050, 1), "18": ("G729", 8000, 1),
}
# What we offer (delayed offer) for each codec name we know: payload type, rtpmap, fmtp.
OFFERED: dict[str, tuple[int, str, str | None]] = {
    "pcmu": (0, "PCMU/8000", None),
    "pcma": (8, "PCMA/8000", None),
    "g722": (9, "G722/8000", None),
    "gsm": (3, "GSM/8000", None),
    "g729": (18, "G729/8000", "annexb=no"),
    "opus": (111, "opus/48000/2", "useinbandfec=1"),
    "cn": (13, "CN/8000", None),
    "telephone-event": (101, "telephone-event/8000", "0-16"),
}
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
MIRROR = {"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive",
          "sendrecv": "sendrecv"}


class BadSdp(ValueError):
    """An offer we cannot read; ``str()`` says what is wrong."""


@dataclass(frozen=True, slots=True)
class Format:
    """One payload format of an m= line: its number as offered, and what it is."""

    pt: str
    name: str          # as written in a=rtpmap ("" when neither mapped nor static)
    rate: int
    channels: int
    fmtp: str | None


@dataclass(frozen=True, slots=True)
class Media:
    kind: str          # audio, video, ...
    port: int
    proto: str
    formats: tuple[Format, ...]
    direction: str | None   # the line's a=sendrecv/... (None: the session's, or sendrecv)
    ptime: str | None
    address: str | None     # the line's c= address


@dataclass(frozen=True, slots=True)
class Offer:
    media: tuple[Media, ...]
    direction: str | None   # the session-level direction attribute
    address: str | None     # the session-level c= address

    def audio_target(self) -> tuple[str, int] | None:
        """Where the offerer said it receives audio (the first audio line's c= and port)."""
        for m in self.media:
            if m.kind == "audio" and m.port:
                address = m.address or self.address
                return (address, m.port) if address else None
        return None


def _digits(text: str, what: str, limit: int = 65535) -> int:
    if not text or len(text) > 5 or not all("0" <= c <= "9" for c in text):
        raise BadSdp(f"bad {what} {text[:20]!r}")
    value = int(text)
    if value > limit:
        raise BadSdp(f"bad {what} {text!r}")
    return value


def _connection(value: str) -> str:
    parts = value.split()
    if len(parts) < 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise BadSdp(f"bad c= line {value[:40]!r}")
    return parts[2].split("/", 1)[0]


def read_offer(body: bytes) -> Offer:
    """The offer in ``body`` (an SDP session description), or :class:`BadSdp`."""
    if len(body) > MAX_SDP_BYTES:
        raise BadSdp(f"SDP larger than {MAX_SDP_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadSdp("SDP is not UTF-8") from None
    lines = [line for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines or lines[0].strip() != "v=0":
        raise BadSdp("SDP does not start with v=0")
    session_dir: str | None = None
    session_addr: str | None = None
    media: list[dict[str, object]] = []
    current: dict[str, object] | None = None
    for line in lines:
        if len(line) > MAX_LINE:
            raise BadSdp(f"an SDP line longer than {MAX_LINE} bytes")
        if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
            raise BadSdp(f"bad SDP line {line[:40]!r}")
        kind, value = line[0], line[2:].strip()
        if kind == "m":
            if len(media) == MAX_MEDIA:
                raise BadSdp(f"more than {MAX_MEDIA} m= lines")
            current = _media_line(value)
            media.append(current)
        elif kind == "c":
            if current is None:
                session_addr = _connection(value)
            else:
                current["address"] = _connection(value)
        elif kind == "a":
            name, _, arg = value.partition(":")
            if name in DIRECTIONS:
                if current is None:
                    session_dir = name
                else:
                    current["direction"] = name
            elif current is not None:
                _attribute(current, name, arg)
    return Offer(tuple(_media(m) for m in media), session_dir, session_addr)


def _media_line(value: str) -> dict[str, object]:
    parts = value.split()
    if len(parts) < 4:
        raise BadSdp(f"bad m= line {value[:40]!r}")
    if len(parts) - 3 > MAX_FORMATS:
        raise BadSdp(f"more than {MAX_FORMATS} formats on an m= line")
    port = _digits(parts[1].split("/", 1)[0], "m= port")
    return {"kind": parts[0], "port": port, "proto": parts[2], "fmts": parts[3:],
            "rtpmap": {}, "fmtp": {}, "direction": None, "ptime": None, "address": None}


def _attribute(m: dict[str, object], name: str, arg: str) -> None:
    rtpmap, fmtp = m["rtpmap"], m["fmtp"]
    assert isinstance(rtpmap, dict) and isinstance(fmtp, dict)
    # An attribute we cannot read is left out, as RFC 4566 §5.13 says of attributes a
    # receiver does not understand (RFC 4475's esc01 has "a=rtpmap:31 LPC", no rate).
    if name == "rtpmap":
        pt, _, encoding = arg.strip().partition(" ")
        fields = encoding.strip().split("/")
        if pt and len(fields) >= 2 and fields[0]:
            try:
                channels = _digits(fields[2], "rtpmap channels", 255) if len(fields) > 2 \
                    else 1
                rtpmap[pt] = (fields[0], _digits(fields[1], "rtpmap rate", 10_000_000),
                              channels)
            except BadSdp:
                pass
    elif name == "fmtp":
        pt, _, params = arg.strip().partition(" ")
        fmtp[pt] = params.strip()
    elif name == "ptime":
        text = arg.strip()
        if text.isascii() and text.isdigit() and len(text) <= 5:
            m["ptime"] = str(int(text))


def _media(m: dict[str, object]) -> Media:
    rtpmap, fmtp, fmts = m["rtpmap"], m["fmtp"], m["fmts"]
    assert isinstance(rtpmap, dict) and isinstance(fmtp, dict) and isinstance(fmts, list)
    formats = []
    for pt in fmts:
        name, rate, channels = rtpmap.get(pt) or STATIC.get(pt) or ("", 0, 1)
        formats.append(Format(pt, name, rate, channels, fmtp.get(pt)))
    port, kind, proto = m["port"], m["kind"], m["proto"]
    direction, ptime, address = m["direction"], m["ptime"], m["address"]
    assert isinstance(port, int) and isinstance(kind, str) and isinstance(proto, str)
    assert direction is None or isinstance(direction, str)
    assert ptime is None or isinstance(ptime, str)
    assert address is None or isinstance(address, str)
    return Media(kind, port, proto, tuple(formats), direction, ptime, address)


# --- the answer ----------------------------------------------------------------------------
def _family(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def origin(session_id: int, version: int, address: str) -> bytes:
    """The first two lines of our SDP: ``v=0`` and ``o=`` (the only ones that name the
    dialog and its version; what follows depends on the offer and the settings alone)."""
    return (f"v=0\r\no=sip-responder {session_id} {version} IN {_family(address)} "
            f"{address}\r\n").encode()


def _rest(address: str) -> list[str]:
    return ["s=-", f"c=IN {_family(address)} {address}", "t=0 0"]


def _rtpmap(f: Format) -> str:
    channels = f"/{f.channels}" if f.channels != 1 else ""
    return f"a=rtpmap:{f.pt} {f.name}/{f.rate}{channels}"


def shared(media: Media, codecs: Sequence[str]) -> list[Format]:
    """The formats of ``media`` we answer with, in the offer's order: those named in
    ``codecs`` -- empty unless at least one is a real codec (not telephone-event or CN)."""
    wanted = {c.lower() for c in codecs}
    chosen = [f for f in media.formats if f.name.lower() in wanted]
    if not any(f.name.lower() not in (TELEPHONE_EVENT, COMFORT_NOISE) for f in chosen):
        return []
    # One telephone-event (RFC 4733 §2.5.1.5: at the clock rate of the audio codec): the
    # one at the rate of the first codec we answer with, or the first offered.
    events = [f for f in chosen if f.name.lower() == TELEPHONE_EVENT]
    if len(events) > 1:
        first = next(f for f in chosen if f.name.lower() not in (TELEPHONE_EVENT, COMFORT_NOISE))
        keep = next((f for f in events if f.rate == first.rate), events[0])
        chosen = [f for f in chosen if f.name.lower() != TELEPHONE_EVENT or f is keep]
    return chosen


def answer(
    offer: Offer,
    codecs: Sequence[str],
    *,
    session_id: int,
    version: int,
    address: str,
    port: int,
    inactive: bool = False,
) -> bytes | None:
    """Our answer to ``offer``; None when no m= line can be accepted (SPEC §8.1: 488).
    ``inactive``: media mode ``none`` (the accepted lines say ``a=inactive``)."""
    body = answer_body(offer, tuple(codecs), address, port, inactive)
    return None if body is None else origin(session_id, version, address) + body


def answer_body(offer: Offer, codecs: tuple[str, ...], address: str, port: int,
                inactive: bool = False) -> bytes | None:
    """:func:`answer` after its ``o=`` line (the same for every dialog with this offer)."""
    lines = _rest(address)
    accepted = 0
    for m in offer.media:
        formats = shared(m, codecs) if (m.kind == "audio" and m.port
                                        and m.proto in ACCEPTED_PROTOS) else []
        if not formats:
            lines.append(f"m={m.kind} 0 {m.proto} {' '.join(f.pt for f in m.formats)}")
            continue
        accepted += 1
        lines.append(f"m=audio {port} {m.proto} {' '.join(f.pt for f in formats)}")
        for f in formats:
            if f.name:
                lines.append(_rtpmap(f))
            if f.fmtp is not None:
                lines.append(f"a=fmtp:{f.pt} {f.fmtp}")
        if m.ptime is not None:
            lines.append(f"a=ptime:{m.ptime}")
        offered = m.direction or offer.direction or "sendrecv"
        lines.append("a=" + ("inactive" if inactive else MIRROR[offered]))
    if not accepted:
        return None
    return ("\r\n".join(lines) + "\r\n").encode()


def offer(codecs: Iterable[str], *, session_id: int, version: int, address: str,
          port: int, inactive: bool = False) -> bytes:
    """The offer of a 2xx (or 183) to an INVITE that had none (delayed offer)."""
    return origin(session_id, version, address) + offer_body(tuple(codecs), address, port,
                                                             inactive)


def offer_body(codecs: tuple[str, ...], address: str, port: int, inactive: bool = False
               ) -> bytes:
    """:func:`offer` after its ``o=`` line."""
    known = [OFFERED[c.lower()] for c in codecs if c.lower() in OFFERED]
    lines = _rest(address)
    lines.append(f"m=audio {port} RTP/AVP {' '.join(str(pt) for pt, _, _ in known)}")
    for pt, rtpmap, fmtp in known:
        lines.append(f"a=rtpmap:{pt} {rtpmap}")
        if fmtp is not None:
            lines.append(f"a=fmtp:{pt} {fmtp}")
    lines.append("a=inactive" if inactive else "a=sendrecv")
    return ("\r\n".join(lines) + "\r\n").encode()


# --- where the offer is ------------------------------------------------------------------
def sdp_of(content_type: str | None, body: bytes) -> bytes | None:
    """The SDP in a message body: the body itself when ``application/sdp``, the first
    ``application/sdp`` part of a ``multipart/mixed`` (or ``multipart/alternative``) body;
    None when there is none. A multipart body without its boundary is Bad SDP."""
    if not body or content_type is None:
        return None
    ctype, _, params = content_type.partition(";")
    ctype = ctype.strip().lower()
    if ctype == "application/sdp":
        return body
    if not ctype.startswith("multipart/"):
        return None
    boundary = None
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "boundary":
            boundary = value.strip().strip('"')
    if not boundary:
        raise BadSdp("multipart body without a boundary")
    delimiter = b"--" + boundary.encode("utf-8", "surrogateescape")
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        part = part[2:] if part.startswith(b"\r\n") else part.lstrip(b"\n")
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            head, sep, content = part.partition(b"\n\n")
        for line in head.decode("utf-8", "replace").splitlines():
            name, _, value = line.partition(":")
            if (name.strip().lower() == "content-type"
                    and value.split(";")[0].strip().lower() == "application/sdp"):
                # RFC 2046 §5.1.1: the line end before a delimiter belongs to it.
                if content.endswith(b"\r\n"):
                    return content[:-2]
                return content.removesuffix(b"\n")
    return None
