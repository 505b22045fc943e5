"""Start the console (or the demo sandbox around it). Imports Textual; --check never comes here."""

from __future__ import annotations

import argparse
import sys


def run_console(args: argparse.Namespace) -> int:
    """Open the console for ``args``; returns the process exit code."""
    print("afirgen-tui: the console is not built yet; try --check or --help", file=sys.stderr)
    return 2
