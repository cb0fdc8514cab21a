"""The ``sip-responder`` command line (SPEC §2)."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import resource
import ssl
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

from responder import __version__
from responder.core.engine import Engine
from responder.core.journal import Journal
from responder.core.limits import parse_network, parse_rate
from responder.io.stream import STREAM_LIMITS
from responder.io.tls import TlsOptions, server_context
from responder.ops.http import AdminOptions
from responder.ops.listen import DEFAULT_PORTS, SECURE, Listen, parse_listen
from responder.ops.logs import ExchangeLog, note_line
from responder.ops.server import run, serve, serve_workers
from responder.ops.trace import Tracer
from responder.rules.loader import build_ruleset, dump
from responder.rules.model import RuleError, RuleSet
from responder.sip import codes
from responder.sip.addr import Addr
from responder.sip.seeded import Seeded, random_seed

T = TypeVar("T")
JOURNAL_MAX = 100_000  # --journal-size bound: each entry keeps its datagram (<= 64 KiB)

EPILOG = """\
one-line rules (--rule), tried before the rules file, in order:
  RULE   := MATCH "->" REPLY { ";" OPTION }
  MATCH  := METHOD [ "@" USER ]        METHOD or *, USER a glob on the target user
  REPLY  := drop | CODE[/DELAY] { "," CODE[/DELAY] }     DELAY: 250ms, 2s, 1.5s
  OPTION := p=FLOAT | reason=TEXT
          | jitter=DELAY    every delayed step at its DELAY +/- jitter (seeded)
          | drop_first=N    no answer to the first N transmissions of a transaction
          | repeat=K        send the final response K times (1-11), Timer G spacing
          | fault=NAME      malform the last step: wrong-content-length, no-to-tag,
                            no-via, truncated, garbage
examples:
  INVITE->486   *->503   OPTIONS->200   INVITE->180,486/2s   INVITE@1000->486
  REGISTER->401   OPTIONS->drop   'INVITE->503;p=0.25'   'INVITE->603;reason=Go Away'
fault injection (docs/faults.md):
  'INVITE->180,486/2s;jitter=200ms'   'INVITE->486;drop_first=2'   'INVITE->200;repeat=3'
  'INVITE->486;fault=no-to-tag'
"""


def _checked(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type that reports the parser's own message."""
    def check(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    check.__name__ = parse.__name__
    return check


def _hostport(text: str, prefixes: tuple[str, ...]) -> Addr:
    """``HOST:PORT`` or ``[IPV6]:PORT``, after an optional prefix from ``prefixes`` (the
    ``--listen`` specs are responder.ops.listen's)."""
    t = text
    for prefix in prefixes:
        if t.lower().startswith(prefix):
            t = t[len(prefix):]
            break
    if t.startswith("["):
        host, _, rest = t[1:].partition("]")
        if not rest.startswith(":"):
            raise argparse.ArgumentTypeError(f"{text!r}: expected [IPV6]:PORT")
        port_text = rest[1:]
    else:
        host, sep, port_text = t.rpartition(":")
        if not sep or ":" in host:
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected HOST:PORT or [IPV6]:PORT")
    if not host or not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5 \
            or int(port_text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT with a port 0-65535")
    return host, int(port_text)


def parse_http(text: str) -> Addr:
    """``HOST:PORT`` or ``[IPV6]:PORT`` for --metrics and --admin (``http://`` allowed)."""
    return _hostport(text, ("http://",))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_parser() -> Parser:
    p = Parser(
        prog="sip-responder",
        description="A stateless SIP user-agent server: answers every SIP request exactly "
                    "as its rules say.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--listen", action="append", type=_checked(parse_listen), metavar="ADDR",
                   help="[udp:|tcp:|tls:|ws:|wss:]HOST[:PORT] or [IPV6]:PORT to listen on "
                        "(repeatable; port 0 picks a free port; no port: 5060, tls 5061, ws 80, "
                        "wss 443; default udp:127.0.0.1:5060)")
    p.add_argument("--tls-cert", metavar="PEM", help="certificate chain for tls: and wss:")
    p.add_argument("--tls-key", metavar="PEM", help="private key for tls: and wss:")
    p.add_argument("--tls-ca", metavar="PEM",
                   help="mutual TLS: request client certificates and verify them against "
                        "these CAs (refused otherwise)")
    p.add_argument("--rules", metavar="FILE", help="rules file (YAML); replaces the built-in "
                                                   "default rules")
    p.add_argument("--rule", action="append", default=[], metavar="SPEC",
                   help="a one-line rule, tried before the file's rules (repeatable)")
    p.add_argument("--allow", action="append", type=_checked(parse_network), metavar="CIDR",
                   help="answer only sources in CIDR (repeatable); others are discarded "
                        "and counted")
    p.add_argument("--rate-limit", type=_checked(parse_rate), metavar="N/s",
                   help="at most N datagrams a second per source address (bursts of N); "
                        "more are discarded and counted")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="N processes sharing the sockets (default 1)")
    p.add_argument("--seed", type=int, help="seed for every random decision (default: random, "
                                            "logged at start)")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--log-file", metavar="PATH",
                   help="also append the exchange lines to PATH (reopened on SIGHUP; -q "
                        "silences only stderr)")
    p.add_argument("--trace", action="store_true",
                   help="write every SIP message received and sent, whole, to stdout "
                        "(docs/operations.md, Message trace)")
    p.add_argument("--trace-file", metavar="PATH",
                   help="append the same trace to PATH (reopened on SIGHUP)")
    ops = p.add_argument_group("operations (docs/operations.md)")
    ops.add_argument("--metrics", type=parse_http, metavar="ADDR",
                     help="serve Prometheus /metrics and /healthz on HOST:PORT (port 0 picks "
                          "a free port; single worker only)")
    ops.add_argument("--admin", type=parse_http, metavar="ADDR",
                     help="serve the admin API (/rules, /journal) on HOST:PORT, a loopback "
                          "address unless --admin-allow-remote (single worker only)")
    ops.add_argument("--admin-token", metavar="TOKEN",
                     help="require 'Authorization: Bearer TOKEN' on the admin API")
    ops.add_argument("--admin-allow-remote", action="store_true",
                     help="allow --admin on an address that is not loopback")
    ops.add_argument("--journal-size", type=int, default=1000, metavar="N",
                     help=f"exchanges the admin journal keeps (default 1000, at most "
                          f"{JOURNAL_MAX})")
    verbosity = p.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true",
                           help="summarise discarded datagrams every second (default: "
                                "every 10 s)")
    verbosity.add_argument("-q", "--quiet", action="store_true",
                           help="no line per exchange")
    p.add_argument("--check", action="store_true",
                   help="validate the rules, print them normalized, and exit")
    p.add_argument("--codes", action="store_true", help="print the response-code table and exit")
    p.add_argument("--version", action="version", version=f"sip-responder {__version__}")
    return p


class Parser(argparse.ArgumentParser):
    """argparse, whose usage errors are a JSON line with ``--log-format json`` (SPEC §7:
    every line on that stream is JSON)."""

    json_errors = False

    def error(self, message: str) -> NoReturn:
        if not self.json_errors:
            super().error(message)
        sys.stderr.write(note_line("json", f"{self.prog}: error: {message}", "error"))
        raise SystemExit(2)


def wants_json(argv: Sequence[str]) -> bool:
    """``--log-format json`` (or ``=json``) among the arguments, before they are parsed."""
    for i, arg in enumerate(argv):
        if arg == "--log-format=json" or (arg == "--log-format" and argv[i + 1:i + 2]
                                          == ["json"]):
            return True
    return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser.json_errors = wants_json(argv)
    args = parser.parse_args(argv)
    fmt = args.log_format

    def say(text: str, message: str, event: str) -> None:
        """A line on stderr before the log exists: ``text``, or as JSON ``message``."""
        sys.stderr.write(note_line(fmt, message, event) if fmt == "json" else f"{text}\n")

    if args.workers < 1:
        parser.error("--workers must be at least 1")
    check_operations(parser, args)
    if args.codes:
        sys.stdout.write(codes.format_table())
        return 0
    try:
        ruleset = build_ruleset(args.rules, args.rule)
    except RuleError as exc:
        say(str(exc), str(exc), "error")
        return 2
    for warning in ruleset.warnings:
        say(f"warning: {warning}", warning, "warning")
    if args.check:
        sys.stdout.write(dump(ruleset))
        return 0

    seed = args.seed if args.seed is not None else random_seed()
    try:
        log = ExchangeLog(sys.stderr, args.log_format, quiet=args.quiet, path=args.log_file)
    except OSError as exc:
        message = f"cannot open the log file: {exc}"
        say(f"sip-responder: {message}", message, "error")
        return 1
    try:
        trace = (Tracer(sys.stdout if args.trace else None, args.trace_file)
                 if args.trace or args.trace_file else None)
    except OSError as exc:
        log.note(f"cannot open the trace file: {exc}", "error")
        log.close()
        return 1
    try:
        return _serve(args, ruleset, seed, log, trace)
    finally:
        if trace is not None:
            trace.close()
        log.close()


def check_operations(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The combinations of the operations flags that make sense (exit 2 otherwise)."""
    if args.workers > 1 and (args.metrics or args.admin):
        parser.error("--metrics and --admin work with a single worker only: with --workers N "
                     "each worker has its own engine, counters and journal")
    if not args.admin:
        given = [flag for flag, value in (("--admin-token", args.admin_token),
                                          ("--admin-allow-remote", args.admin_allow_remote))
                 if value]
        if given:
            parser.error(f"{', '.join(given)} needs --admin")
    elif not args.admin_allow_remote and not is_loopback(args.admin[0]):
        parser.error(f"--admin {args.admin[0]}: the admin API changes the rules; it listens "
                     "on a loopback address (127.0.0.1, ::1) unless --admin-allow-remote "
                     "is given")
    if args.admin_token is not None and not args.admin_token.strip():
        parser.error("--admin-token must not be empty")
    listens = args.listen or []
    secure = [str(spec) for spec in listens if spec.scheme in SECURE]
    if secure and not (args.tls_cert and args.tls_key):
        parser.error(f"{', '.join(secure)} needs --tls-cert and --tls-key")
    if (args.tls_cert or args.tls_key or args.tls_ca) and not secure:
        parser.error("--tls-cert, --tls-key and --tls-ca are for tls: and wss: listeners")
    if not 1 <= args.journal_size <= JOURNAL_MAX:
        parser.error(f"--journal-size must be from 1 to {JOURNAL_MAX}")


def exposure_warning(listen: Sequence[Addr], args: argparse.Namespace) -> str | None:
    """SPEC §10: the line that says a responder is open to forged sources (README
    "Amplification"), or None. It must not contain "listening on" (scripts wait for that)."""
    exposed = [host for host, _ in listen if not is_loopback(host)]
    if not exposed or args.rate_limit is not None or args.allow:
        return None
    return (f"warning: {', '.join(dict.fromkeys(exposed))} is not a loopback address and "
            "neither --rate-limit nor --allow is given: any host, or a forged source, can "
            "make this responder send several datagrams and many times the bytes of each "
            "request it sends (README, Amplification)")


NOFILE_WANTED = STREAM_LIMITS.connections + 64  # every connection, and the rest


def raise_open_files() -> str | None:
    """Stream listeners hold a descriptor per connection: raise the soft RLIMIT_NOFILE to
    the hard one (a shell's or a service's 1,024 would close connections long before the
    connection bound does); a warning when even that is below the bound, else None."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        target = hard
        if hard == resource.RLIM_INFINITY:
            try:
                target = int(Path("/proc/sys/fs/nr_open").read_text())
            except (OSError, ValueError):
                target = max(soft, NOFILE_WANTED)
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft != resource.RLIM_INFINITY and soft < NOFILE_WANTED:
        return (f"warning: at most {soft} open files (RLIMIT_NOFILE): stream connections past "
                f"about {max(soft - 64, 0)} cannot be accepted (the bound is "
                f"{STREAM_LIMITS.connections}); raise the limit (ulimit -n) to serve them")
    return None


def _serve(args: argparse.Namespace, ruleset: RuleSet, seed: int, log: ExchangeLog,
           trace: Tracer | None = None) -> int:
    log.note(f"seed {seed}", "seed", seed=seed)
    listens = args.listen or [Listen("udp", "127.0.0.1", DEFAULT_PORTS["udp"])]
    listen = [spec.addr for spec in listens if spec.scheme == "udp"]
    streams = [spec for spec in listens if spec.scheme != "udp"]
    if streams:
        note = raise_open_files()
        if note is not None:
            log.note(note, "warning")
    tls = TlsOptions(args.tls_cert, args.tls_key, args.tls_ca) if args.tls_cert else None
    if tls is not None:
        try:
            server_context(tls)  # a certificate that cannot be read fails now, by name
        except (OSError, ssl.SSLError) as exc:
            log.note(f"cannot use the TLS certificate: {exc}", "error")
            return 1
    warning = exposure_warning([spec.addr for spec in listens], args)
    if warning is not None:
        log.note(warning, "warning")
    summary_interval = 1.0 if args.verbose else 10.0

    def reload() -> RuleSet:
        # SIGHUP: back to the command line's rules: the file re-read (or the built-in rules
        # without one), the --rule rules in front; what PUT /rules installed is undone.
        return build_ruleset(args.rules, args.rule)

    reloader = reload
    try:
        if args.workers > 1:
            return serve_workers(
                listen, args.workers,
                lambda index, count: Engine(ruleset, Seeded(seed), shard=(index, count),
                                            allow=args.allow, rate_limit=args.rate_limit),
                log,
                lambda engine, worker: run(lambda: serve(
                    [], engine, log, reloader, summary_interval=summary_interval,
                    worker=worker, trace=trace, tls=tls)),
                trace=trace,
                streams=streams,
            )
        engine = Engine(ruleset, Seeded(seed), allow=args.allow, rate_limit=args.rate_limit)
        # The admin API's /journal (bounded: --journal-size).
        journal = Journal(args.journal_size) if args.admin else None
        admin = AdminOptions(args.admin, args.admin_token.strip() if args.admin_token else None,
                             args.rules) if args.admin else None
        run(lambda: serve(listen, engine, log, reloader, summary_interval=summary_interval,
                          metrics=args.metrics, admin=admin, journal=journal, trace=trace,
                          streams=streams, tls=tls))
    except OSError as exc:
        log.note(f"cannot listen: {exc}", "error")
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
