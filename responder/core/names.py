"""The names the engine gives its own answers (the ``rule`` of logs, journal and metrics)
and the canned steps behind them."""

from __future__ import annotations

from responder.core.limits import RETRY_AFTER
from responder.rules.model import Step

DEFAULT_RULE = "default"
PROBLEM_RULE = "bad-request"    # the answer to a malformed request (Problem)
CANCEL_RULE = "cancel"          # 200/487 of a CANCEL that stopped pending steps
NO_TXN_RULE = "no-transaction"  # 481 to an unmatched CANCEL
REQUIRE_RULE = "require"        # 420 for unsupported Require tags
OVERLOAD_RULE = "pending-full"  # 503 to a request whose delayed steps have no room
NO_DIALOG_RULE = "no-dialog"    # 481 to an in-dialog request of a dialog we never made
IN_DIALOG_RULE = "in-dialog"    # 200 + answer to a re-INVITE or UPDATE (SPEC §8.2)
BAD_SDP_RULE = "bad-sdp"        # 400 Bad SDP: an offer we cannot read
NO_MEDIA_RULE = "not-acceptable"  # 488 + Warning 305: nothing of the offer is acceptable
TIMER_RULE = "session-timer"    # 422: a Session-Expires below our Min-SE (RFC 4028)
# SPEC §10: a request that needs a pending entry when the table is full (entries or bytes)
# gets this INSTEAD of its steps: a final answer at once, never a 180 and then silence.
OVERLOAD = Step.make(503, headers=(("Retry-After", str(RETRY_AFTER)),))
NO_DIALOG = Step.make(481)
SESSION_TOO_SHORT = Step.make(422)  # with Min-SE (the code's required header)
IN_DIALOG_OK = Step.make(200)
# The discard reason of a message whose handling raised: counted, never a traceback, and
# never the loss of the other messages read with it (SPEC §10).
INTERNAL_ERROR = "internal-error"
NO_RACK_RULE = "no-provisional"  # 481 to a PRACK that names no provisional of ours
