"""Benchmark: ClusterModel vs celery.events.state.State on the same event stream.

Run by hand, never in CI:

    python -m bench.bench_model                 # full run, ~2-3 minutes
    python -m bench.bench_model --quick         # 20k tasks, a few seconds

Both models get the same deterministic stream (bench/events.py), in batches as the
console's tick drains them; only the apply/``State.event`` calls are timed.  Phases:
*filling* (until the model holds ``max_tasks`` tasks) and *full* (every new task
evicts one).  Retained memory: tracemalloc's traced size after building each model
with ``max_tasks`` tasks (the events themselves dropped), divided by the task count.
"""

from __future__ import annotations

import argparse
import gc
import shlex
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

from celery.events.state import State

from bench.events import iter_batches
from tui.core.model import ClusterModel

Batch = list[dict[str, Any]]


def phased_batches(
    max_tasks: int,
    full_events: int,
    batch: int,
    seed: int,
) -> Iterator[tuple[str, Batch]]:
    """("fill"|"full", batch): batches split exactly where task number max_tasks appears."""
    seen: set[str] = set()
    phase = "fill"
    full_left = full_events
    for chunk in iter_batches(10**9, batch, seed):
        if phase == "fill":
            cut = None
            for i, ev in enumerate(chunk):
                u = ev.get("uuid")
                if u is not None and u not in seen:
                    seen.add(u)
                    if len(seen) == max_tasks:
                        cut = i + 1
                        break
            if cut is None:
                yield "fill", chunk
                continue
            yield "fill", chunk[:cut]
            seen.clear()
            phase = "full"
            chunk = chunk[cut:]
            if not chunk:
                continue
        take = chunk[:full_left]
        yield "full", take
        full_left -= len(take)
        if full_left <= 0:
            return


def ours(max_tasks: int) -> tuple[object, Callable[[Batch], None], Callable[[], int]]:
    model = ClusterModel(max_tasks=max_tasks)
    return model, model.apply, lambda: len(model)


def celery_state(max_tasks: int) -> tuple[object, Callable[[Batch], None], Callable[[], int]]:
    state = State(max_tasks_in_memory=max_tasks)
    event = state.event

    def feed(batch: Batch) -> None:
        for ev in batch:
            event(ev)

    return state, feed, lambda: len(state.tasks)


MAKERS = {"ClusterModel": ours, "celery State": celery_state}


def run_speed(make: Callable[..., Any], args: argparse.Namespace) -> dict[str, tuple[int, float]]:
    _model, feed, _count = make(args.max_tasks)
    totals = {"fill": [0, 0.0], "full": [0, 0.0]}
    clock = time.perf_counter
    for phase, batch in phased_batches(args.max_tasks, args.full_events, args.batch, args.seed):
        t0 = clock()
        feed(batch)
        totals[phase][1] += clock() - t0
        totals[phase][0] += len(batch)
    return {k: (int(v[0]), float(v[1])) for k, v in totals.items()}


def run_memory(make: Callable[..., Any], args: argparse.Namespace) -> tuple[float, int]:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    model, feed, count = make(args.max_tasks)
    batches = phased_batches(args.max_tasks, 0, args.batch, args.seed)
    for phase, batch in batches:
        if phase != "fill":
            break
        feed(batch)
    del batches, batch
    gc.collect()
    size = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    n = count()
    del model
    return size / max(n, 1), n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tasks", type=int, default=100_000)
    parser.add_argument(
        "--full-events",
        type=int,
        default=400_000,
        help="events applied after the model is full (default 400000)",
    )
    parser.add_argument(
        "--batch", type=int, default=2000, help="events per apply (the tick's chunk)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="speed passes per implementation; the best one counts (noisy hosts)",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc pass")
    parser.add_argument("--only", choices=sorted(MAKERS), help="run one implementation")
    parser.add_argument(
        "--quick", action="store_true", help="--max-tasks 20000 --full-events 80000"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.max_tasks, args.full_events = 20_000, 80_000

    cmd = "python -m bench.bench_model " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    print(f"$ {cmd.strip()}")
    print(
        f"python {sys.version.split()[0]}, max_tasks={args.max_tasks:,}, "
        f"batch={args.batch}, seed={args.seed}"
    )
    speed: dict[str, dict[str, tuple[int, float]]] = {}
    memory: dict[str, tuple[float, int]] = {}
    for label, make in MAKERS.items():
        if args.only and label != args.only:
            continue
        runs = [run_speed(make, args) for _ in range(max(1, args.repeat))]
        speed[label] = {
            phase: min((r[phase] for r in runs), key=lambda x: x[1]) for phase in ("fill", "full")
        }
        print(
            f"  {label}: fill {speed[label]['fill'][1]:.2f}s, full {speed[label]['full'][1]:.2f}s",
            flush=True,
        )
        gc.collect()
    if not args.no_memory:
        for label, make in MAKERS.items():
            if args.only and label != args.only:
                continue
            memory[label] = run_memory(make, args)
            gc.collect()

    labels = list(speed)
    head = f"{'':44}" + "".join(f"{label:>16}" for label in labels)
    if len(labels) == 2:
        head += f"{'ratio':>10}"
    print()
    print(head)
    print("-" * len(head))
    for phase, title in (("fill", "filling"), ("full", "full, evicting")):
        n = speed[labels[0]][phase][0]
        rates = [
            speed[label][phase][0] / speed[label][phase][1] if speed[label][phase][1] else 0.0
            for label in labels
        ]
        row = f"{f'{title} ({n:,} events), events/s':44}" + "".join(f"{r:>16,.0f}" for r in rates)
        if len(rates) == 2 and rates[1]:
            row += f"{rates[0] / rates[1]:>9.1f}x"
        print(row)
    if memory:
        sizes = [memory[label][0] for label in labels if label in memory]
        row = f"{f'retained bytes/task ({memory[labels[0]][1]:,} tasks)':44}" + "".join(
            f"{s:>16,.0f}" for s in sizes
        )
        if len(sizes) == 2 and sizes[0]:
            row += f"{sizes[1] / sizes[0]:>9.1f}x smaller"
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
