"""Typed errors.

Two kinds of bad input exist, and each has exactly one representation:

* an *answerable* defect (the request line parses and there is a top Via with a
  sent-by, so the client can match a response) is a value, :class:`Problem`,
  that travels with the parsed request to the builder;
* an *unanswerable* datagram raises :class:`Discard`, the only exception the
  parser raises. The engine catches it once, counts it by ``reason`` and moves on.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """A defect the request will be answered with: ``SIP/2.0 <status> <reason>``.

    ``reason`` is None where the code table's phrase says it all (505, 416).
    """

    status: int
    reason: str | None = None


class Discard(Exception):
    """The datagram cannot be answered; ``reason`` is a short counter key."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# The discard reasons, one counter each (metrics and log summaries use these keys).
EMPTY = "empty"            # zero-length datagram
KEEPALIVE = "keepalive"    # CRLF / whitespace keep-alive (RFC 5626 §3.5.1)
NOT_SIP = "not-sip"        # no SIP request line
RESPONSE = "response"      # a SIP response: a UAS never answers one
NO_VIA = "no-via"          # no Via with a sent-by: nowhere a client could match a reply
TOO_LARGE = "too-large"    # larger than the biggest datagram we take
REASONS = (EMPTY, KEEPALIVE, NOT_SIP, RESPONSE, NO_VIA, TOO_LARGE)
