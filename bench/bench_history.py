"""History search on a large file: time per query for each filter term kind.

Builds a history of N synthetic tasks (default 1,000,000) in a temporary SQLite file
with :meth:`HistoryStore.upsert` and :meth:`HistoryStore.index_pending` (the writer's own path),
then times :meth:`HistoryStore.search` for every term kind of the Tasks pane filter
plus ``args:`` and a time range, and prints a table (best of 3, warm cache) and the
plan each query took.

Run by hand, never in CI::

    . .venv/bin/activate && python -m bench.bench_history            # 1M rows
    python -m bench.bench_history --rows 200000 --keep /tmp/h.sqlite3
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tui.history import HistoryStore

NAMES = (
    "afirgen_tasks.email.send_fir_confirmation_email",
    "afirgen_tasks.email.send_notification_email",
    "afirgen_tasks.reports.generate_pdf_report",
    "afirgen_tasks.reports.generate_excel_report",
    "afirgen_tasks.analytics.update_dashboard_stats",
    "afirgen_tasks.analytics.process_analytics_data",
    "afirgen_tasks.cleanup.archive_old_records",
    "afirgen_tasks.cleanup.clear_expired_cache",
    "afirgen_tasks.cleanup.cleanup_temp_files",
)
QUEUE_OF = {
    n: {"email": "email", "reports": "reports", "analytics": "analytics", "cleanup": "cleanup"}[
        n.split(".")[1]
    ]
    for n in NAMES
}
#: (state, weight): mostly successes, a few failures, some in flight
STATES = (
    ("SUCCESS", 900),
    ("FAILURE", 40),
    ("STARTED", 20),
    ("RECEIVED", 15),
    ("SENT", 10),
    ("RETRY", 8),
    ("REVOKED", 5),
    ("REJECTED", 2),
)
HOSTS = tuple(f"celery@worker-{i:02d}" for i in range(20))
#: one host that ran only a handful of tasks (a selective worker: term)
RARE_HOST = "celery@canary-01"
SPAN_S = 30 * 86400


def synthetic_rows(n: int, seed: int = 7, end: float | None = None) -> Iterator[dict[str, Any]]:
    """``n`` task rows spread over 30 days up to ``end``, oldest first."""
    rng = random.Random(seed)
    end = time.time() if end is None else end
    start = end - SPAN_S
    states = [s for s, _ in STATES]
    weights = [w for _, w in STATES]
    step = SPAN_S / max(n, 1)
    for i in range(n):
        name = NAMES[i % len(NAMES)]
        state = rng.choices(states, weights)[0]
        sent = start + i * step
        host = RARE_HOST if i % 100_000 == 5 else HOSTS[rng.randrange(len(HOSTS))]
        fir = rng.randrange(1, 50_000)
        row: dict[str, Any] = {
            "uuid": str(uuidlib.UUID(int=rng.getrandbits(128), version=4)),
            "name": name,
            "state": state,
            "queue": QUEUE_OF[name],
            "priority": rng.randrange(1, 11),
            "hostname": host,
            "retries": 0,
            "sent": sent,
            "received": sent + 0.01,
            "args": f"({fir},)",
            "kwargs": f"{{'fir_id': {fir}, 'recipient_email': 'user{i}@example.org'}}",
        }
        if state in ("SUCCESS", "FAILURE", "STARTED", "RETRY"):
            row["started"] = sent + 0.02
        if state == "SUCCESS":
            row["finished"] = sent + 0.5
            row["runtime"] = 0.48
            row["result"] = f"{{'status': 'ok', 'fir_id': {fir}}}"
        elif state == "FAILURE":
            row["finished"] = sent + 0.3
            row["exception"] = f"PermanentTaskError('FIR {fir} does not exist')"
            row["traceback"] = (
                'Traceback (most recent call last):\n  File "tasks.py", '
                f"line 42, in run\nPermanentTaskError: FIR {fir} does not exist\n"
            )
        yield row


def build(path: Path, n: int, chunk: int = 50_000, end: float | None = None) -> HistoryStore:
    """A new store at ``path`` holding ``n`` synthetic rows (``max_rows`` above ``n``).

    Uses the writer's upsert, then fills the args index as the writer does after its
    flushes (:meth:`HistoryStore.index_pending`, rows indexed behind a watermark).
    """
    store = HistoryStore(path, max_rows=max(n * 2, 1000), max_age_days=3650)
    batch: list[dict[str, Any]] = []
    for row in synthetic_rows(n, end=end):
        batch.append(row)
        if len(batch) >= chunk:
            store.upsert(batch)
            batch = []
    if batch:
        store.upsert(batch)
    while store.index_pending(budget_s=5.0, chunk=50_000):
        pass
    store._conn().execute("PRAGMA optimize")
    return store


def queries(store: HistoryStore, now: float) -> list[tuple[str, str, float | None, float | None]]:
    """(label, query, since, until) for every term kind, selective and not."""
    some = store.load_recent(1)[0]
    rare_uuid = store.search("", limit=1, until=now - 20 * 86400)[0]["uuid"]
    fir_kwargs = "user123457@example.org"
    return [
        ("(empty) newest 500", "", None, None),
        ("bare word 'pdf'", "pdf", None, None),
        ("bare word 'canary' (rare)", "canary", None, None),
        ("name:excel", "name:excel", None, None),
        ("state:failure (4%)", "state:failure", None, None),
        ("state:rej (0.2%)", "state:rej", None, None),
        ("state:success (90%)", "state:success", None, None),
        ("queue:cleanup", "queue:cleanup", None, None),
        ("worker:worker-07", "worker:worker-07", None, None),
        ("worker:canary (10 rows)", "worker:canary", None, None),
        ("uuid:<8 chars>", f"uuid:{some['uuid'][:8]}", None, None),
        ("uuid:<4 chars> old", f"uuid:{rare_uuid[:4]}", None, None),
        ("prio:>=8", "prio:>=8", None, None),
        ("prio:10 state:rej", "prio:10 state:rej", None, None),
        ("args:<one email> (1 row)", f"args:{fir_kwargs}", None, None),
        ("args:example.org (all)", "args:example.org", None, None),
        ("args:(4242 (rare, common trigrams)", "args:(4242", None, None),
        ("args:fir_id (common) state:rej", "args:fir_id state:rej", None, None),
        ("time range 1 h, 20 days ago", "", now - 20 * 86400 - 3600, now - 20 * 86400),
        ("state:failure + 1 h range", "state:failure", now - 86400 - 3600, now - 86400),
        ("state:failure queue:email", "state:failure queue:email", None, None),
        (
            "state:success worker:canary name:pdf",
            "state:success worker:canary name:pdf",
            None,
            None,
        ),
        ("queue:email name:excel (none)", "queue:email name:excel", None, None),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--keep", type=Path, help="build (or reuse) this file instead of a temp file")
    ap.add_argument("--limit", type=int, default=500)
    args = ap.parse_args(argv)
    tmp = None
    if args.keep:
        path = args.keep
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bench-history-")
        path = Path(tmp.name) / "history.sqlite3"
    now = time.time()
    reuse = path.exists()
    t0 = time.perf_counter()
    store = (
        HistoryStore(path, max_rows=max(args.rows * 2, 1000), max_age_days=3650)
        if reuse
        else build(path, args.rows, end=now)
    )
    build_s = time.perf_counter() - t0
    rows = store.count()
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    print(
        f"command: {' '.join([sys.executable, '-m', 'bench.bench_history', *(argv or sys.argv[1:])])}"
    )
    print(
        f"rows: {rows:,}  file: {size / 1e6:,.0f} MB  "
        f"{'reused' if reuse else f'built in {build_s:,.1f} s ({rows / build_s:,.0f} rows/s)'}"
    )
    print(f"{'query':<42} {'best ms':>8} {'worst ms':>8} {'rows':>5}  plan")
    worst = 0.0
    for label, q, since, until in queries(store, now):
        times = []
        for _ in range(3):
            t = time.perf_counter()
            found, plan = store.search_with_plan(q, since, until, limit=args.limit)
            times.append((time.perf_counter() - t) * 1000)
        worst = max(worst, max(times))
        print(f"{label:<42} {min(times):>8.1f} {max(times):>8.1f} {len(found):>5}  {plan}")
    print(f"slowest query: {worst:.1f} ms (target < 200 ms)")
    store.close()
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
