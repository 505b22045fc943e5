"""Command line of ``afirgen-tui``.

``--check`` and ``--serve-metrics`` are dispatched before Textual is imported: they run
without a TTY and without Textual (tests prove it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from afirgen_tasks import __version__
from afirgen_tasks.cli_parser import OneLineErrorParser

EXIT_CODES = """\
exit codes (--check):
  0  every check OK (warnings allowed unless --strict)
  1  a check failed (or warned, with --strict)
  2  could not check: bad settings or options, broker unreachable, or --timeout ran out
     before a check could answer (those checks read "not checked"; a budget too short to
     ask proves nothing, so it neither passes nor calls the cluster unhealthy)
"""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 3600 seconds")
    return value


def _broker_url(text: str) -> str:
    # an empty --broker (an unset variable in a script: --broker "$URL") must not quietly
    # fall back to another broker
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "needs a URL like redis://host:6379/0, not an empty string"
        )
    return text


def _listen_address(text: str) -> tuple[str, int]:
    from tui.metrics.address import parse_listen

    try:
        return parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used by the docs and tests)."""
    p = OneLineErrorParser(
        prog="afirgen-tui",
        description="Keyboard-driven console for the AFIRGen Celery + Redis task queue.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"afirgen-tui {__version__}")
    p.add_argument(
        "--config", metavar="PATH", help="settings file (default: $AFIRGEN_CONFIG or ./config.toml)"
    )
    p.add_argument(
        "--broker",
        metavar="URL",
        type=_broker_url,
        help="broker URL (overrides CELERY_BROKER_URL and the config file)",
    )
    p.add_argument(
        "--cluster",
        metavar="NAME",
        help="watch (or --check) the cluster of config.toml's [clusters.NAME] table "
        "(default: the top-level settings, [console] cluster_name)",
    )
    p.add_argument(
        "--demo",
        action="store_true",
        help="open on a self-contained sandbox cluster (Redis + 2 workers + jobs)",
    )
    p.add_argument(
        "--read-only",
        action="store_true",
        help="disable every action that changes the cluster (enqueue, revoke, terminate, "
        "scale, pause, purge, the queue's jobs and the worker detail actions)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="headless health check; prints one line per check and exits 0/1/2",
    )
    p.add_argument(
        "--json", action="store_true", help="with --check: print one JSON document instead of lines"
    )
    p.add_argument(
        "--strict", action="store_true", help="with --check: warnings fail the check (exit 1)"
    )
    p.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="with --check: bound the whole run (default 5)",
    )
    p.add_argument(
        "--serve-metrics",
        type=_listen_address,
        metavar="HOST:PORT",
        help="headless: serve Prometheus metrics on http://HOST:PORT/metrics until SIGTERM",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``afirgen-tui`` console script."""
    args = build_parser().parse_args(argv)
    if (args.json or args.strict or args.timeout is not None) and not args.check:
        print(
            "afirgen-tui: --json, --strict and --timeout only apply with --check", file=sys.stderr
        )
        return 2
    if args.cluster is not None and (args.broker or args.demo):
        print(
            "afirgen-tui: --cluster cannot be combined with --broker or --demo"
            " (a cluster brings its own broker)",
            file=sys.stderr,
        )
        return 2
    if args.check and args.demo:
        print("afirgen-tui: --check and --demo cannot be combined", file=sys.stderr)
        return 2
    if args.serve_metrics is not None:
        if args.check or args.demo or args.read_only:
            print(
                "afirgen-tui: --serve-metrics cannot be combined with --check, --demo or --read-only",
                file=sys.stderr,
            )
            return 2
        from tui.metrics.serve import run_serve_metrics

        return run_serve_metrics(args, args.serve_metrics)
    if args.check:
        from tui.check import run_check_cli

        return run_check_cli(args)
    from tui.run import run_console

    return run_console(args)


if __name__ == "__main__":
    raise SystemExit(main())
