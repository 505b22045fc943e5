"""A synthetic cluster on the wire: task and worker events through Celery's own dispatcher.

    python -m bench.publisher --url redis://127.0.0.1:6391/0 --rate 5000 --seconds 15 [--workers 20]

Sends, at a fixed rate (events per second, paced every 5 ms), the life of tasks:
``task-sent`` from a client dispatcher (one message per event, as ``apply_async`` does),
then ``task-received``/``task-started``/``task-succeeded`` (2% ``task-failed`` with a
traceback) from one dispatcher per worker hostname, plus a ``worker-heartbeat`` from every
worker each 2 s.  Worker task events go through ``buffer_group=['task']`` and are flushed
at the end of each 5 ms slot, as a prefork worker's event loop does (``--no-worker-buffer``
sends them one message each).  ``timestamp`` is the publisher's wall clock at send time:
the console measures lag against it.

Prints one JSON line on stdout at the end: events published, achieved rate, late slots.
Run by hand (bench/bench_e2e.py starts it); never in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid as uuidlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from celery import Celery  # noqa: E402

SLOT_S = 0.005
TASKS = (
    "afirgen_tasks.reports.generate_fir_pdf",
    "afirgen_tasks.notify.send_email",
    "afirgen_tasks.analytics.aggregate_daily",
    "afirgen_tasks.cleanup.purge_temp",
    "afirgen_tasks.reports.render_summary",
)
QUEUES = ("reports", "email", "analytics", "cleanup", "default")
TRACEBACK = (
    'Traceback (most recent call last):\n  File "/srv/afirgen/afirgen_tasks/reports.py", '
    'line 88, in generate_fir_pdf\n    raise ReportError(f"template {name} missing")\n'
    "afirgen_tasks.errors.ReportError: template fir_v2 missing\n"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="broker URL, e.g. redis://127.0.0.1:6391/0")
    parser.add_argument("--rate", type=float, required=True, help="events per second")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=20, help="worker hostnames")
    parser.add_argument("--prefix", default="", help="uuid prefix (tells runs apart)")
    parser.add_argument(
        "--no-worker-buffer",
        action="store_true",
        help="send every worker task event as its own message",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rnd = random.Random(args.seed)

    app = Celery("bench-publisher", broker=args.url)
    conn = app.connection_for_write()
    conn.ensure_connection(max_retries=3)
    channel = conn.default_channel
    client = app.events.Dispatcher(conn, hostname="gen-client@bench", channel=channel)
    hosts = [f"celery@bench-w{i:03d}" for i in range(args.workers)]
    buffered = None if args.no_worker_buffer else ["task"]
    workers = [
        app.events.Dispatcher(
            conn, hostname=h, channel=channel, buffer_group=buffered, buffer_limit=24
        )
        for h in hosts
    ]
    counts = {"task": 0, "heartbeat": 0}
    processed = [0] * len(workers)

    # Each task: sent (client) -> received -> started -> succeeded/failed (its worker), spread out
    # so that a few hundred tasks are in flight at once, as on a busy cluster.
    in_flight: list[tuple[str, int, int, str, str]] = []  # (uuid, worker, next step, name, queue)
    seq = 0

    def next_event() -> None:
        nonlocal seq
        # one new task for every three follow-up events keeps the mix at 1/4 task-sent
        if not in_flight or (seq % 4 == 0 and len(in_flight) < 2000):
            task_id = f"{args.prefix}{uuidlib.UUID(int=rnd.getrandbits(128), version=4)}"
            k = rnd.randrange(len(TASKS))
            name, queue = TASKS[k], QUEUES[k]
            client.send(
                "task-sent",
                uuid=task_id,
                root_id=task_id,
                parent_id=None,
                name=name,
                args=f"({rnd.randrange(10**6)}, 'FIR-{rnd.randrange(10**5):05d}')",
                kwargs="{'lang': 'en', 'notify': True}",
                retries=0,
                eta=None,
                expires=None,
                queue=queue,
                exchange="",
                routing_key=queue,
                priority=rnd.choice((1, 4, 5, 8, 10)),
            )
            in_flight.append((task_id, rnd.randrange(len(workers)), 1, name, queue))
        else:
            i = rnd.randrange(len(in_flight)) if len(in_flight) > 64 else 0
            task_id, w, step, name, queue = in_flight[i]
            d = workers[w]
            if step == 1:
                d.send(
                    "task-received",
                    uuid=task_id,
                    name=name,
                    args="(...)",
                    kwargs="{...}",
                    root_id=task_id,
                    parent_id=None,
                    retries=0,
                    eta=None,
                    expires=None,
                )
            elif step == 2:
                d.send("task-started", uuid=task_id)
            elif rnd.random() < 0.02:
                d.send(
                    "task-failed",
                    uuid=task_id,
                    exception="ReportError('template fir_v2 missing')",
                    traceback=TRACEBACK,
                )
            else:
                d.send(
                    "task-succeeded",
                    uuid=task_id,
                    result=f"'/srv/afirgen/out/{task_id[:8]}.pdf'",
                    runtime=round(rnd.uniform(0.01, 3.0), 4),
                )
            if step >= 3:
                in_flight[i] = in_flight[-1]
                in_flight.pop()
                processed[w] += 1
            else:
                in_flight[i] = (task_id, w, step + 1, name, queue)
        seq += 1
        counts["task"] += 1

    def heartbeats() -> None:
        for w, d in enumerate(workers):
            d.send(
                "worker-heartbeat",
                freq=2.0,
                active=rnd.randrange(4),
                processed=processed[w],
                loadavg=[1.2, 1.1, 0.9],
                sw_ident="py-celery",
                sw_ver="5.7.0",
                sw_sys="Linux",
            )
            counts["heartbeat"] += 1

    for d in workers:
        d.send("worker-online", freq=2.0, sw_ident="py-celery", sw_ver="5.7.0", sw_sys="Linux")
    counts["heartbeat"] += len(workers)

    started = time.perf_counter()
    wall_started = time.time()
    next_hb = started + 2.0
    late_slots = slots = 0
    target_total = int(args.rate * args.seconds)
    while True:
        now = time.perf_counter()
        elapsed = now - started
        if elapsed >= args.seconds:
            break
        due = min(int(elapsed * args.rate) + 1, target_total) - counts["task"]
        for _ in range(max(0, due)):
            next_event()
        for d in workers:  # the worker's event loop flushing its buffered task events
            if d._group_buffer:
                d.flush(errors=False, groups=True)
        if now >= next_hb:
            heartbeats()
            next_hb += 2.0
        slots += 1
        behind = int((time.perf_counter() - started) * args.rate) - counts["task"]
        if behind > args.rate * SLOT_S * 2:
            late_slots += 1
        sleep = SLOT_S - (time.perf_counter() - now)
        if sleep > 0:
            time.sleep(sleep)
    for d in workers:
        d.flush(errors=False, groups=True)
    elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "rate_target": args.rate,
                "seconds": round(elapsed, 3),
                "task_events": counts["task"],
                "worker_events": counts["heartbeat"],
                "published": counts["task"] + counts["heartbeat"],
                "achieved_rate": round(counts["task"] / elapsed, 1),
                "late_slots": late_slots,
                "slots": slots,
                "wall_started": wall_started,
                "worker_buffer": not args.no_worker_buffer,
                "pid": os.getpid(),
            }
        ),
        flush=True,
    )
    for d in (client, *workers):
        d.close()
    conn.release()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
