"""Benchmark: does the console's model memory stay bounded under a flood of unique task ids?

Run by hand, never in CI:

    python -m bench.bench_memory_bound                       # 10^6 ids, max_tasks=100k
    python -m bench.bench_memory_bound --ids 300000 --max-tasks 10000 --top 5

Feeds ``ClusterModel`` ``--ids`` unique task ids in batches (as the console's tick
would), in one of three shapes: ``open`` (one ``task-received`` per id, never finished:
what a flood of forged events looks like), ``done`` (``task-sent`` then
``task-succeeded``) and ``mixed`` (alternating).  At each checkpoint it prints the
model's task count, tracemalloc's *current* traced size (what is still referenced) and
the process RSS (psutil), so "still referenced" and "freed, but not returned to the OS"
can be told apart.  ``--trim`` calls glibc ``malloc_trim(0)`` before each RSS reading.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import sys
import tracemalloc
from collections.abc import Iterator
from typing import Any

import psutil

from tui.core.model import ClusterModel

Batch = list[dict[str, Any]]
HOST = "celery@bench-worker"


def _events(i: int, shape: str, t: float) -> list[dict[str, Any]]:
    uuid = f"{i:08x}-5f0e-4c1b-9d9e-{i:012x}"
    if shape == "open" or (shape == "mixed" and i % 2):
        return [
            {
                "type": "task-received",
                "uuid": uuid,
                "hostname": HOST,
                "timestamp": t,
                "local_received": t,
                "name": "afirgen_tasks.email.send_notification_email",
                "args": "('a@example.com', 'subject', 'body')",
                "kwargs": "{}",
                "retries": 0,
            }
        ]
    return [
        {
            "type": "task-sent",
            "uuid": uuid,
            "hostname": "gen1@api",
            "timestamp": t,
            "local_received": t,
            "name": "afirgen_tasks.email.send_notification_email",
            "queue": "email",
            "priority": 3,
            "args": "('a@example.com', 'subject', 'body')",
            "kwargs": "{}",
            "retries": 0,
        },
        {
            "type": "task-succeeded",
            "uuid": uuid,
            "hostname": HOST,
            "timestamp": t + 0.5,
            "local_received": t + 0.5,
            "result": "{'status': 'ok'}",
            "runtime": 0.4,
        },
    ]


def batches(ids: int, shape: str, batch: int) -> Iterator[tuple[int, Batch]]:
    """(ids fed so far, batch of fresh event dicts)."""
    out: Batch = []
    t = 1_700_000_000.0
    for i in range(ids):
        out.extend(_events(i, shape, t + i * 0.001))
        if len(out) >= batch:
            yield i + 1, out
            out = []
    if out:
        yield ids, out


def rss_mb(trim: bool) -> float:
    if trim:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return psutil.Process().memory_info().rss / 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--ids", type=int, default=1_000_000)
    p.add_argument("--max-tasks", type=int, default=100_000)
    p.add_argument("--shape", choices=("open", "done", "mixed"), default="open")
    p.add_argument("--batch", type=int, default=2000)
    p.add_argument("--checkpoints", type=int, default=5, help="readings after the bound is reached")
    p.add_argument(
        "--top", type=int, default=0, help="print the N largest allocation sites at the end"
    )
    p.add_argument("--trim", action="store_true", help="malloc_trim(0) before each RSS reading")
    args = p.parse_args(argv)

    print(
        f"python {sys.version.split()[0]}, ids={args.ids:,}, max_tasks={args.max_tasks:,}, shape={args.shape}"
    )
    gc.collect()
    print(f"start: rss {rss_mb(args.trim):.0f} MB")
    tracemalloc.start(1 if not args.top else 3)
    base = tracemalloc.get_traced_memory()[0]
    model = ClusterModel(max_tasks=args.max_tasks)
    step = max(1, (args.ids - args.max_tasks) // max(1, args.checkpoints))
    marks = {args.max_tasks} | set(range(args.max_tasks + step, args.ids + 1, step)) | {args.ids}
    nxt = sorted(marks)
    for fed, batch in batches(args.ids, args.shape, args.batch):
        model.apply(batch)
        del batch
        while nxt and fed >= nxt[0]:
            nxt.pop(0)
            gc.collect()
            cur = tracemalloc.get_traced_memory()[0] - base
            print(
                f"ids {fed:>9,}: tasks {model.task_count:>7,}  traced {cur / 1e6:7.1f} MB  "
                f"({cur / max(model.task_count, 1):5.0f} B/task)  order {len(model._order):>7,}  "
                f"finished {len(model._finished):>7,}  rss {rss_mb(args.trim):6.0f} MB"
            )
    if args.top:
        snap = tracemalloc.take_snapshot()
        for stat in snap.statistics("traceback")[: args.top]:
            print(
                f"{stat.size / 1e6:8.1f} MB {stat.count:>9,} blocks  "
                + " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in stat.traceback)
            )
    tracemalloc.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
