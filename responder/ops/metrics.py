"""Prometheus metrics, read at scrape time from plain counters (``--metrics``).

Nothing here runs per request. The engine keeps its :class:`~responder.core.engine.Counters`
(requests by method, discards by reason, ...); :class:`ServerStats` keeps what only the
server sees: responses by status class and rule (tallied from the exchange batches the
transport already hands to the log) and rule-set swaps (SIGHUP, ``PUT /rules``).
:class:`ResponderCollector` turns both into metric families when Prometheus scrapes, on
the event loop's thread, so it reads the engine without locks.

Series are bounded: at most :data:`SERIES_LIMIT` (class, rule) pairs are counted by name,
later new ones under ``rule="other"``; methods are bounded by the engine the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from responder import __version__
from responder.core.effects import Exchange
from responder.core.engine import Engine
from responder.core.journal import Journal
from responder.io.stream import StreamTransport
from responder.ops.reload import Reloads
from responder.sip.errors import REASONS

SERIES_LIMIT = 1000   # distinct (status class, rule) pairs counted by name
OTHER_RULE = "other"  # ... the rest are counted under this rule name
PREFIX = "sip_responder"


class ServerStats:
    """Plain counters the server keeps beside the engine's; read at scrape time.

    ``responses[(class, rule)]``: responses sent (class 1..6) and drops (class 0), every
    repeat of a response to a retransmitted request included. ``reloads``: the rule-set
    swaps (:mod:`responder.ops.reload` makes them; metrics only read them).
    """

    def __init__(self) -> None:
        self.responses: dict[tuple[int, str], int] = {}
        self.reloads = Reloads()


    def observe(self, exchanges: list[Exchange]) -> None:
        """Tally one batch of exchanges (the transport's log callback; cheap)."""
        responses = self.responses
        for ex in exchanges:
            key = (0 if ex.status is None else ex.status // 100, ex.rule)
            count = responses.get(key)
            if count is None and len(responses) >= SERIES_LIMIT:
                key = (key[0], OTHER_RULE)
                count = responses.get(key)
            responses[key] = (count or 0) + 1


def _name(short: str) -> str:
    return f"{PREFIX}_{short}"


def stream_families(streams: StreamTransport) -> Iterable[Metric]:
    """TCP, TLS and WebSocket connections (SPEC §9): open ones by transport, and events."""
    open_now = GaugeMetricFamily(_name("connections"), "Stream connections open, by transport",
                                 labels=["transport"])
    by_scheme = streams.by_scheme()
    for scheme in ("tcp", "tls", "ws", "wss"):
        open_now.add_metric([scheme], by_scheme.get(scheme, 0))
    yield open_now
    events = CounterMetricFamily(_name("connection_events"),
                                 "Stream connection events (docs/transports.md, Counters)",
                                 labels=["event"])
    for event, n in sorted(streams.counts.items()):
        events.add_metric([event], n)
    yield events
    yield CounterMetricFamily(_name("stream_messages"), "SIP messages framed from streams",
                              value=streams.messages)


class ResponderCollector(Collector):
    """Yields the responder's metric families from the engine, the stats and the transport.

    ``send_errors``: a callable giving the transport's count of failed sends (optional);
    ``log_dropped``: one giving the log lines a full sink did not take (optional).
    """

    def __init__(self, engine: Engine, stats: ServerStats,
                 send_errors: Callable[[], int] | None = None,
                 journal: Journal | None = None,
                 log_dropped: Callable[[], int] | None = None,
                 streams: StreamTransport | None = None) -> None:
        self.engine = engine
        self.streams = streams
        self.stats = stats
        self.send_errors = send_errors
        self.journal = journal
        self.log_dropped = log_dropped

    def collect(self) -> Iterable[Metric]:
        engine, stats = self.engine, self.stats
        c = engine.counters
        info = GaugeMetricFamily(_name("build_info"), "sip-responder version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield CounterMetricFamily(_name("datagrams_received"),
                                  "UDP datagrams read, answerable or not", value=c.received)
        requests = CounterMetricFamily(_name("requests"), "Requests parsed, by method",
                                       labels=["method"])
        for method, n in sorted(c.methods.items()):
            requests.add_metric([method], n)
        yield requests
        responses = CounterMetricFamily(
            _name("responses"), "Responses sent, by status class and rule (repeats included)",
            labels=["class", "rule"])
        drops = CounterMetricFamily(_name("drops"), "Requests a drop rule left unanswered",
                                    labels=["rule"])
        for (klass, rule), n in sorted(stats.responses.items()):
            if klass:
                responses.add_metric([f"{klass}xx", rule], n)
            else:
                drops.add_metric([rule], n)
        yield responses
        yield drops
        yield CounterMetricFamily(
            _name("retransmissions"),
            "Retransmitted requests answered again with the same response",
            value=c.retransmissions)
        discards = CounterMetricFamily(_name("discarded"),
                                       "Datagrams discarded as unanswerable, by reason",
                                       labels=["reason"])
        for reason in sorted({*REASONS, *c.discarded}):  # every known reason, 0 included
            discards.add_metric([reason], c.discarded.get(reason, 0))
        yield discards
        yield GaugeMetricFamily(_name("pending_transactions"),
                                "Transactions with delayed steps still to send",
                                value=engine.pending)
        yield CounterMetricFamily(
            _name("resent_2xx"), "2xx responses to INVITE sent again while no ACK came",
            value=c.resent)
        yield CounterMetricFamily(
            _name("resent_1xx"), "Reliable provisionals sent again while no PRACK came",
            value=c.resent_1xx)
        yield CounterMetricFamily(_name("pracks"), "PRACKs that acknowledged a provisional",
                                  value=c.pracked)
        hangups = CounterMetricFamily(
            _name("hangups"), "BYEs of hangup: sent, and what became of them",
            labels=["outcome"])
        h = engine.hangups
        for outcome, n in (("sent", h.sent), ("retransmitted", h.retransmitted),
                           ("answered", h.answered_final), ("timed-out", h.timed_out),
                           ("cancelled", h.cancelled), ("refused", h.refused)):
            hangups.add_metric([outcome], n)
        yield hangups
        if self.streams is not None:
            yield from stream_families(self.streams)
        media = engine.media
        yield CounterMetricFamily(_name("rtp_packets_received"),
                                  "Datagrams read by the media sockets", value=media.packets)
        yield CounterMetricFamily(_name("rtp_packets_echoed"),
                                  "RTP packets sent back to their source (media mode echo)",
                                  value=media.sent)
        yield CounterMetricFamily(_name("rtp_unmatched"),
                                  "Media datagrams that belonged to no call (dropped)",
                                  value=media.unmatched)
        yield CounterMetricFamily(_name("dtmf_digits"), "RFC 4733 DTMF digits received",
                                  value=media.digits)
        yield GaugeMetricFamily(_name("media_calls"), "Calls whose media facts are kept",
                                value=len(media.calls))
        yield CounterMetricFamily(_name("pending_overflow"),
                                  "Requests refused because the pending table was full",
                                  value=c.pending_overflow)
        if self.log_dropped is not None:
            yield CounterMetricFamily(
                _name("log_lines_dropped"),
                "Log lines not written because the log sink (stderr, --log-file) was full",
                value=self.log_dropped())
        if self.send_errors is not None:
            yield CounterMetricFamily(_name("send_errors"), "Responses the socket refused",
                                      value=self.send_errors())
        yield GaugeMetricFamily(_name("rules"), "Rules in force (the default not counted)",
                                value=len(engine.ruleset.rules))
        yield GaugeMetricFamily(_name("ruleset_version"),
                                "Rule-set version: 1 at start, +1 on every successful swap",
                                value=stats.reloads.version)
        reloads = CounterMetricFamily(_name("reloads"), "Rule-set reloads, by source and result",
                                      labels=["source", "result"])
        for source in ("sighup", "admin"):
            for result in ("ok", "failed"):
                reloads.add_metric([source, result], stats.reloads.counts[(source, result)])
        yield reloads
        if self.journal is not None:
            yield GaugeMetricFamily(_name("journal_entries"),
                                    "Entries in the admin journal (bounded by --journal-size)",
                                    value=len(self.journal))


class Exposition:
    """A private registry (the responder's families plus process_*) and its rendering."""

    def __init__(self, collector: ResponderCollector, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        if process:
            ProcessCollector(registry=self.registry)

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The scrape body and its Content-Type, as the ``Accept`` header asks."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
