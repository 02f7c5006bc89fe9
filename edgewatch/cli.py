"""The ``edgewatch`` command line.

Each sub-command lives in ``edgewatch/commands/<name>.py`` and exposes
``register(subparsers)``; its handler takes the parsed namespace and returns an
exit code. Library errors become messages here:

====  =====================================================
exit  meaning
====  =====================================================
0     finished (or stopped by SIGINT/SIGTERM and drained), even with
      every live source down (they retry until stopped)
1     runtime failure: a model or sink could not start, a stage crashed,
      or no frame was processed and a file/image source failed
2     bad config or bad command line
130   interrupted twice (forced stop)
====  =====================================================
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from edgewatch import __version__
from edgewatch.errors import ConfigError, EdgewatchError
from edgewatch.logsetup import setup_logging
from edgewatch.secrets import mask

log = logging.getLogger("edgewatch")

COMMANDS = ("run", "validate", "demo", "models", "subscribe", "eval_mot", "bench", "keys")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgewatch",
        description="Real-time video analytics: YOLO + tracking + CLIP labels -> ZeroMQ/files.",
    )
    parser.add_argument("--version", action="version", version=f"edgewatch {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("--log-json", action="store_true", help="log one JSON object per line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"edgewatch.commands.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose else logging.INFO)
    setup_logging(level, json_format=args.log_json)
    try:
        return int(args.func(args))
    except ConfigError as e:
        print(f"edgewatch: config error:\n{mask(str(e))}", file=sys.stderr)
        return 2
    except EdgewatchError as e:
        print(f"edgewatch: error: {mask(str(e))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("edgewatch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
