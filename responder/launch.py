"""The console script's entry point (``sip-responder``, ``python -m responder``).

Importing the command line takes a while (asyncio, YAML, the HTTP server ...); a Ctrl-C
in that time, or before the server has put its own signal handlers in place, used to end in
a ``KeyboardInterrupt`` traceback (issue 12). Here the import happens inside a ``try``: an
interrupt before the server runs ends the program quietly with status 130 (128 + SIGINT, as
a shell reports a program a Ctrl-C stopped). Once serving, SIGINT stops the server cleanly
with status 0 (SPEC §2). Nothing but the standard library is imported before the ``try``.
"""

from __future__ import annotations

INTERRUPTED = 130  # 128 + SIGINT


def main() -> int:
    try:
        from responder.ops.cli import main as cli_main

        return cli_main()
    except KeyboardInterrupt:
        return INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
