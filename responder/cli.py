"""The ``sip-responder`` command line (SPEC §2)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__, codes
from .engine import Engine
from .logs import ExchangeLog
from .rules.loader import build_ruleset, dump
from .rules.model import RuleError, RuleSet
from .seeded import Seeded, random_seed
from .server import Addr, run, serve, serve_workers

EPILOG = """\
one-line rules (--rule), tried before the rules file, in order:
  RULE   := MATCH "->" REPLY { ";" OPTION }
  MATCH  := METHOD [ "@" USER ]        METHOD or *, USER a glob on the target user
  REPLY  := drop | CODE[/DELAY] { "," CODE[/DELAY] }     DELAY: 250ms, 2s, 1.5s
  OPTION := p=FLOAT | reason=TEXT
examples:
  INVITE->486   *->503   OPTIONS->200   INVITE->180,486/2s   INVITE@1000->486
  REGISTER->401   OPTIONS->drop   'INVITE->503;p=0.25'   'INVITE->603;reason=Go Away'
"""


def parse_listen(text: str) -> Addr:
    """``HOST:PORT``, ``[IPV6]:PORT``, optionally prefixed ``udp:`` (or ``udp://``)."""
    t = text
    for prefix in ("udp://", "udp:"):
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
    if not host or not port_text.isdigit() or int(port_text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT with a port 0-65535")
    return host, int(port_text)


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sip-responder",
        description="A stateless SIP user-agent server: answers every SIP request exactly "
                    "as its rules say.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--listen", action="append", type=parse_listen, metavar="ADDR",
                   help="udp:HOST:PORT or [IPV6]:PORT to listen on (repeatable; port 0 picks "
                        "a free port; default 127.0.0.1:5060)")
    p.add_argument("--rules", metavar="FILE", help="rules file (YAML); replaces the built-in "
                                                   "default rules")
    p.add_argument("--rule", action="append", default=[], metavar="SPEC",
                   help="a one-line rule, tried before the file's rules (repeatable)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="N processes sharing the sockets (default 1)")
    p.add_argument("--seed", type=int, help="seed for every random decision (default: random, "
                                            "logged at start)")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.codes:
        sys.stdout.write(codes.format_table())
        return 0
    try:
        ruleset = build_ruleset(args.rules, args.rule)
    except RuleError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    for warning in ruleset.warnings:
        sys.stderr.write(f"warning: {warning}\n")
    if args.check:
        sys.stdout.write(dump(ruleset))
        return 0

    seed = args.seed if args.seed is not None else random_seed()
    log = ExchangeLog(sys.stderr, args.log_format, quiet=args.quiet)
    log.note(f"seed {seed}")
    listen = args.listen or [("127.0.0.1", 5060)]
    summary_interval = 1.0 if args.verbose else 10.0

    def reload() -> RuleSet:
        # SIGHUP: re-read the file; the --rule rules stay in front of it.
        return build_ruleset(args.rules, args.rule)

    reloader = reload if args.rules else None
    try:
        if args.workers > 1:
            return serve_workers(
                listen, args.workers,
                lambda index, count: Engine(ruleset, Seeded(seed), shard=(index, count)),
                log,
                lambda engine, worker: run(lambda: serve(
                    [], engine, log, reloader, summary_interval=summary_interval,
                    worker=worker)),
            )
        engine = Engine(ruleset, Seeded(seed))
        run(lambda: serve(listen, engine, log, reloader, summary_interval=summary_interval))
    except OSError as exc:
        sys.stderr.write(f"sip-responder: cannot listen: {exc}\n")
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
