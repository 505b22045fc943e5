"""Benchmark: ClusterModel vs celery.events.state.State on the same event stream.

Run by hand, never in CI:

    python -m bench.bench_model                 # full run, ~2-3 minutes
    python -m bench.bench_model --quick         # 20k tasks, a few seconds
    # a 20k events/s console (issue 17): 5k tasks/s from 1000 workers, 5000-event ticks
    python -m bench.bench_model --only ClusterModel --no-memory --max-tasks 200000 \
        --rate 5000 --workers 1000 --batch 5000

Both models get the same deterministic stream (bench/events.py), in batches as the
console's tick drains them; only the apply/``State.event`` calls are timed, in wall time
(the events/s table) and in the thread's CPU time (``time.thread_time``, the figure to
trust on a busy host), of which the time inside garbage collections (``gc.callbacks``).
Phases: *filling* (until the model holds ``max_tasks`` tasks) and *full* (every new task
evicts one).  Retained memory: tracemalloc's traced size after building each model
with ``max_tasks`` tasks (the events themselves dropped), divided by the task count.

``--model-file`` times the ``ClusterModel`` of another checkout's ``tui/core/model.py``
(an A/B in separate processes: garbage collection is per process).  ``--interleave``
times this checkout's and another's in one process, alternately batch by batch (which
goes first alternates too), each batch decoded afresh for each: the fair A/B of
``apply`` itself on a busy host, where two runs a minute apart differ by 20 %; the
collections are then shared, so compare garbage collection with ``--model-file``.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import shlex
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from celery.events.state import State

from bench.events import iter_batches
from tui.core.model import ClusterModel

Batch = list[dict[str, Any]]
#: the ClusterModel class timed (``--model-file`` replaces it)
MODEL: type[ClusterModel] = ClusterModel


def load_model_class(path: str) -> type[ClusterModel]:
    """``ClusterModel`` from a ``model.py`` file (another checkout's, for an A/B)."""
    spec = importlib.util.spec_from_file_location("bench_model_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.ClusterModel  # type: ignore[no-any-return]


def phased_batches(
    max_tasks: int,
    full_events: int,
    batch: int,
    seed: int,
    rate: float = 200.0,
    workers: int = 20,
) -> Iterator[tuple[str, Batch]]:
    """("fill"|"full", batch): batches split exactly where task number max_tasks appears."""
    seen: set[str] = set()
    phase = "fill"
    full_left = full_events
    for chunk in iter_batches(10**9, batch, seed, rate=rate, workers=workers):
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
    model = MODEL(max_tasks=max_tasks)
    return model, model.apply, lambda: len(model)


def celery_state(max_tasks: int) -> tuple[object, Callable[[Batch], None], Callable[[], int]]:
    state = State(max_tasks_in_memory=max_tasks)
    event = state.event

    def feed(batch: Batch) -> None:
        for ev in batch:
            event(ev)

    return state, feed, lambda: len(state.tasks)


MAKERS = {"ClusterModel": ours, "celery State": celery_state}


class GcClock:
    """CPU time spent in garbage collections: all of it, and while ``on`` (inside apply)."""

    def __init__(self) -> None:
        self.on = False
        self.spent = 0.0
        self.spent_all = 0.0
        self.collections = [0, 0, 0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.thread_time()
            return
        took = time.thread_time() - self._started
        self.spent_all += took
        self.collections[info["generation"]] += 1
        if self.on:
            self.spent += took


Speed = dict[str, tuple[int, float, float, float, float, list[int]]]


def encoded_stream(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The timed stream, generated once, as (phase, JSON text) per batch: generating it
    while timing would fill the garbage collector's generations with the generator's
    own objects."""
    batches = phased_batches(
        args.max_tasks, args.full_events, args.batch, args.seed, args.rate, args.workers
    )
    return [(phase, json.dumps(batch)) for phase, batch in batches]


def run_speed(
    make: Callable[..., Any], args: argparse.Namespace, stream: list[tuple[str, str]]
) -> Speed:
    """Per phase: (events, wall s, thread CPU s, CPU s in GC inside the timed calls, CPU s
    in GC anywhere (decoding each batch too: the receiver's part in a console),
    collections per generation).  Each batch is decoded just before it is applied (fresh
    strings, as the receiver hands them over), untimed."""
    _model, feed, _count = make(args.max_tasks)
    totals: dict[str, list[Any]] = {p: [0, 0.0, 0.0, 0.0, 0.0, [0, 0, 0]] for p in ("fill", "full")}
    clock, cpu = time.perf_counter, time.thread_time
    gc_clock = GcClock()
    gc.callbacks.append(gc_clock)
    prof = None
    try:
        for phase, text in stream:
            batch = json.loads(text)
            if prof is None and phase == "full" and args.profile and make is ours:
                import cProfile

                prof = cProfile.Profile()
            gc_clock.on = True
            if prof is not None:
                prof.enable()
            t0, c0 = clock(), cpu()
            feed(batch)
            c1, t1 = cpu(), clock()
            if prof is not None:
                prof.disable()
            gc_clock.on = False
            row = totals[phase]
            row[0] += len(batch)
            row[1] += t1 - t0
            row[2] += c1 - c0
            row[3] += gc_clock.spent
            row[4] += gc_clock.spent_all
            row[5] = [a + b for a, b in zip(row[5], gc_clock.collections, strict=True)]
            gc_clock.spent = gc_clock.spent_all = 0.0
            gc_clock.collections = [0, 0, 0]
    finally:
        gc.callbacks.remove(gc_clock)
    if prof is not None:
        prof.dump_stats(args.profile)
    return {k: (v[0], v[1], v[2], v[3], v[4], v[5]) for k, v in totals.items()}


def run_memory(make: Callable[..., Any], args: argparse.Namespace) -> tuple[float, int]:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    model, feed, count = make(args.max_tasks)
    batches = phased_batches(args.max_tasks, 0, args.batch, args.seed, args.rate, args.workers)
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


def run_interleaved(args: argparse.Namespace, stream: list[tuple[str, str]]) -> int:
    """``--interleave``: this ClusterModel and another's, batch by batch, in one process."""
    models = {"this": ClusterModel(max_tasks=args.max_tasks)}
    models["other"] = load_model_class(args.interleave)(max_tasks=args.max_tasks)
    labels = list(models)
    cpu: dict[str, dict[str, list[float]]] = {label: {"fill": [], "full": []} for label in labels}
    sizes: dict[str, list[int]] = {"fill": [], "full": []}
    for i, (phase, text) in enumerate(stream):
        for label in labels[i % 2 :] + labels[: i % 2]:
            batch = json.loads(text)
            c0 = time.thread_time()
            models[label].apply(batch)
            cpu[label][phase].append(time.thread_time() - c0)
        sizes[phase].append(len(batch))
    print(f"  this: {Path(__file__).resolve().parents[1] / 'tui/core/model.py'}")
    print(f"  other: {args.interleave}")
    for phase in ("fill", "full"):
        n = sum(sizes[phase])
        if not n:
            continue
        per = n / len(sizes[phase])
        row = []
        for label in labels:
            times = cpu[label][phase]
            row.append(
                f"{label} {sum(times) / n * 1e6:.2f} us/event (median batch "
                f"{statistics.median(times) / per * 1e6:.2f})"
            )
        ratio = sum(cpu["other"][phase]) / max(sum(cpu["this"][phase]), 1e-9)
        print(f"  {phase} ({n:,} events), thread CPU: {'; '.join(row)}; other/this {ratio:.2f}x")
    return 0


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
        "--rate", type=float, default=200.0, help="tasks/s of the stream (4+ events each)"
    )
    parser.add_argument(
        "--workers", type=int, default=20, help="worker hostnames (heartbeats every 2 s)"
    )
    parser.add_argument(
        "--model-file",
        metavar="PATH",
        help="time the ClusterModel of this model.py (e.g. another checkout's) instead",
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="cProfile ClusterModel's full phase into FILE (its timings then include the profiler)",
    )
    parser.add_argument(
        "--interleave",
        metavar="PATH",
        help="time this ClusterModel and the one of this model.py alternately in one process",
    )
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
    if args.model_file:
        global MODEL
        MODEL = load_model_class(args.model_file)

    cmd = "python -m bench.bench_model " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    print(f"$ {cmd.strip()}")
    print(
        f"python {sys.version.split()[0]}, max_tasks={args.max_tasks:,}, "
        f"batch={args.batch}, seed={args.seed}, {args.rate:g} tasks/s, {args.workers} workers"
        + (f", model {args.model_file}" if args.model_file else "")
        + f", load average {os.getloadavg()[0]:.1f}"
    )
    stream = encoded_stream(args)
    if args.interleave:
        return run_interleaved(args, stream)
    speed: dict[str, Speed] = {}
    memory: dict[str, tuple[float, int]] = {}
    for label, make in MAKERS.items():
        if args.only and label != args.only:
            continue
        runs = [run_speed(make, args, stream) for _ in range(max(1, args.repeat))]
        speed[label] = {
            phase: min((r[phase] for r in runs), key=lambda x: x[2]) for phase in ("fill", "full")
        }
        for phase in ("fill", "full"):
            n, wall, cpu, in_gc, all_gc, collections = speed[label][phase]
            us = 1e6 / max(n, 1)
            print(
                f"  {label} {phase}: {n:,} events, wall {wall:.2f}s, CPU {cpu:.2f}s = "
                f"{cpu * us:.2f} us/event, of which GC {in_gc * us:.2f}; GC anywhere (decoding"
                f" too) {all_gc * us:.2f} us/event, collections by generation {collections}",
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
