"""Per-event cost of the trust boundary (tui.sources.validate.EventValidator).

    python -m bench.bench_validate [N]

Validates N (default 100,000) typical Celery events from :mod:`bench.events` (JSON
round-tripped, timestamps moved to the last hour so they are inside the window), the
way the receiver thread does, and prints microseconds per event.  Run by hand, not in CI.
"""

from __future__ import annotations

import json
import sys
import time
import timeit

from bench.events import generate_events
from tui.sources.validate import EventValidator


def main(n: int = 100_000) -> None:
    events = generate_events(n, seed=1)
    start = min(e["timestamp"] for e in events)
    now = time.time()
    wire = []
    for e in events:
        e = {k: v for k, v in e.items() if k != "local_received"}
        e["timestamp"] = e["timestamp"] - start + now - 3600
        wire.append(json.loads(json.dumps(e)))
    validator = EventValidator()
    validate = validator.validate
    runs = 5
    best = min(timeit.repeat(lambda: [validate(e) for e in wire], number=1, repeat=runs))
    print(
        f"{n:,} events, best of {runs}: {best * 1e6 / n:.2f} µs/event "
        f"({n / best:,.0f} events/s on one core); {validator.tally!r}"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
