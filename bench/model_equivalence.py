"""Differential check: another checkout's ``ClusterModel.apply`` against this one's.

Run by hand after changing the model's hot path, never in CI:

    python -m bench.model_equivalence OTHER/tui/core/model.py

Both models get the same batches (copies of the same dicts) from seven streams of
bench/events.py: clean ones, hostile ones (fields mutated to junk, junk events, duplicates,
shuffled batches, forged worker-offline events, merge_task_info between batches), and
hostile ones passed through the receiver's ``EventValidator`` first; max_tasks from 300 to
200k.  After every batch the ``Changes`` must be equal, and at the end every task and
worker field, every counter, the rate buckets, the running index and the finish and
first-seen orders.  Queue flow (``Changes.flow``) is compared with what the console's
former ``_count_flow`` counted from the batch: batches that differ are counted, not failed
(see docs/performance.md, issue 17, for the two deliberate differences).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from typing import Any

from bench.bench_model import load_model_class
from bench.events import iter_batches
from tui.core.model import ClusterModel, TaskRecord
from tui.sources.validate import EventValidator

WORKER_FIELDS = (
    "hostname",
    "online",
    "last_heartbeat",
    "freq",
    "pid",
    "pool",
    "concurrency",
    "max_concurrency",
    "autoscale",
    "active",
    "processed",
    "succeeded",
    "failed",
    "loadavg",
    "queues",
    "sw_ident",
    "sw_ver",
    "sw_sys",
    "totals",
)
JUNK: tuple[Any, ...] = (
    None,
    1,
    -1,
    2**70,
    1.5,
    float("nan"),
    float("inf"),
    "",
    "x" * 300,
    "ok",
    b"bytes",
    [1, 2],
    {"a": 1},
    True,
    ("t",),
    "celery@w1",
    "q1",
)
EXTRA_KEYS = (
    "requeue",
    "expired",
    "terminated",
    "signum",
    "retries",
    "queue",
    "result",
    "runtime",
    "traceback",
    "exception",
    "pid",
)


def _norm(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if value.__class__.__name__ == "LostInfo":
        return ("LostInfo", value.worker, value.why, value.in_broker)
    return value


def state_of(model: Any) -> tuple[Any, ...]:
    """Everything apply can change, comparable across two model classes."""
    slots = sorted(TaskRecord.__slots__)
    tasks = [(u, tuple(_norm(getattr(r, k)) for k in slots)) for u, r in model._tasks.items()]
    workers = [
        (h, tuple(_norm(getattr(w, k)) for k in WORKER_FIELDS)) for h, w in model._workers.items()
    ]
    counters = (
        model.events_applied,
        model.events_skipped,
        model.events_unknown,
        model.fields_clipped,
        model.fields_invalid,
        model.tasks_evicted,
        model.workers_evicted,
        model.last_error,
    )
    return (
        tasks,
        workers,
        counters,
        [tuple(b) for b in model._rate],
        sorted(model._running),
        [r.uuid for r in model._finished],
        [r.uuid for r in model._order],
        list(model._lost),
        list(model._lost_unasked),
    )


def former_flow(batch: list[Any], model: Any) -> dict[str, list[int]]:
    """What ConsoleScreen._count_flow counted for ``batch`` (after it was applied)."""
    flow: dict[str, list[int]] = {}
    for ev in batch:
        kind = ev.get("type") if isinstance(ev, dict) else None
        if kind == "task-sent":
            queue = ev.get("queue")
            if isinstance(queue, str):
                flow.setdefault(queue, [0, 0])[0] += 1
        elif kind == "task-received":
            try:
                task = model.get_task(ev.get("uuid", ""))
            except TypeError:  # an unhashable uuid
                task = None
            queue = getattr(task, "queue", None) if task is not None else None
            if isinstance(queue, str):
                flow.setdefault(queue, [0, 0])[1] += 1
    return flow


def hostile(batch: list[dict[str, Any]], rng: random.Random) -> list[Any]:
    out: list[Any] = []
    for ev in batch:
        roll = rng.random()
        if roll < 0.15:
            ev = dict(ev)
            for _ in range(rng.randrange(1, 4)):
                key = rng.choice([*ev, *EXTRA_KEYS])
                if rng.random() < 0.15:
                    ev.pop(key, None)
                else:
                    ev[key] = rng.choice(JUNK)
            out.append(ev)
        elif roll < 0.17:
            out.append(rng.choice(JUNK))
        elif roll < 0.2:
            out += [dict(ev), dict(ev)]
        else:
            out.append(ev)
    if rng.random() < 0.3:
        rng.shuffle(out)
    if rng.random() < 0.1:
        host = rng.choice(["celery@afirgen-worker-01", "celery@afirgen-worker-02"])
        out.append({"type": "worker-offline", "hostname": host, "timestamp": 1.7e9})
    return out


def run(
    other_class: type[ClusterModel],
    label: str,
    max_tasks: int,
    batches: list[list[dict[str, Any]]],
    *,
    junk: bool,
    validated: bool = False,
    seed: int = 7,
) -> int:
    rng = random.Random(seed)
    validator = EventValidator(now=lambda: 1.8e9)
    other = other_class(max_tasks=max_tasks, max_workers=50)
    this = ClusterModel(max_tasks=max_tasks, max_workers=50)
    flow_differs = 0
    for n, clean in enumerate(batches, 1):
        batch: list[Any] = hostile(clean, rng) if junk else clean
        if validated:
            batch = [v for ev in batch if (v := validator(ev)) is not None]
        if rng.random() < 0.05:
            uuid = next((e.get("uuid") for e in clean if isinstance(e.get("uuid"), str)), None)
            if uuid:
                for model in (other, this):
                    model.merge_task_info(uuid, state="STARTED", worker="celery@x")
        ch_other = other.apply([dict(e) if isinstance(e, dict) else e for e in batch])
        ch_this = this.apply([dict(e) if isinstance(e, dict) else e for e in batch])
        pair = [(c.tasks, c.new_tasks, c.evicted, c.workers) for c in (ch_other, ch_this)]
        if pair[0] != pair[1]:
            print(f"{label}: Changes differ at batch {n}")
            return 1
        if former_flow(batch, this) != ch_this.flow:
            flow_differs += 1
        if n % 10 == 0:
            for model in (other, this):
                model.refresh_liveness(1.7e9 + n)
    for i, (a, b) in enumerate(zip(state_of(other), state_of(this), strict=True)):
        if a != b:
            print(f"{label}: model state part {i} differs")
            return 1
    print(
        f"{label}: {len(batches)} batches identical; {len(this):,} tasks, "
        f"{this.events_applied:,} applied, {this.events_skipped:,} skipped, "
        f"{this.fields_invalid:,} fields invalid, {this.tasks_evicted:,} evicted; "
        f"flow unlike the former _count_flow in {flow_differs} batches"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", help="the model.py to compare with (e.g. main's)")
    args = parser.parse_args(argv)
    other = load_model_class(args.other)
    print(f"$ python -m bench.model_equivalence {' '.join(sys.argv[1:])}")

    def stream(n: int, batch: int, seed: int, rate: float, workers: int) -> list[Any]:
        return list(iter_batches(n, batch, seed, rate=rate, workers=workers))

    failed = 0
    failed |= run(other, "clean", 3000, stream(60_000, 700, 3, 300, 30), junk=False)
    failed |= run(other, "clean 5k/s", 5000, stream(120_000, 2000, 4, 5000, 100), junk=False)
    failed |= run(other, "hostile", 2000, stream(60_000, 500, 5, 400, 30), junk=True)
    failed |= run(other, "hostile, tiny", 300, stream(30_000, 300, 6, 400, 30), junk=True)
    failed |= run(
        other, "clean 5k/s, 200k", 200_000, stream(120_000, 2000, 4, 5000, 100), junk=False
    )
    failed |= run(
        other,
        "hostile, validated",
        200_000,
        stream(60_000, 500, 5, 400, 30),
        junk=True,
        validated=True,
    )
    failed |= run(
        other,
        "hostile, validated, small",
        2000,
        stream(60_000, 500, 8, 400, 30),
        junk=True,
        validated=True,
    )
    return failed


if __name__ == "__main__":
    raise SystemExit(main())
