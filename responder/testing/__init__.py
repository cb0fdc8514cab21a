"""Helpers for tests of SIP code: a real sip-responder in a background thread, and clients.

The public surface of the test toolkit; the pieces live in
:mod:`responder.testing.controller` (:class:`Responder`), :mod:`responder.testing.clients`
(:class:`SipClient`, :class:`AsyncSipClient`), :mod:`responder.testing.expectations`
(the fluent rules and the near-miss reports), :mod:`responder.testing.sipvicious` and
:mod:`responder.testing.pytest_plugin` (the fixtures). Nothing else in the package imports
this layer.
"""

from responder.core.journal import JournalEntry
from responder.rules.model import RuleError, RuleSet
from responder.testing.client_core import Responses, SipResponse, SipTimeout
from responder.testing.clients import AsyncSipClient, SipClient
from responder.testing.controller import Responder
from responder.testing.expectations import (
    RuleBuilder,
    RulesLike,
    StepLike,
    make_match,
    make_step,
    to_ruleset,
)

__all__ = [
    "AsyncSipClient", "JournalEntry", "Responder", "Responses", "RuleBuilder", "RuleError",
    "RuleSet", "RulesLike", "SipClient", "SipResponse", "SipTimeout", "StepLike",
    "make_match", "make_step", "to_ruleset",
]
