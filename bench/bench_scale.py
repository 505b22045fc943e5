"""Scale: 200 workers and 100k tasks in history — memory, time to first paint, tick time.

    python -m bench.bench_scale                   # ~1-2 minutes
    python -m bench.bench_scale --ticks 100 --trickle 250 25

Each figure comes from a fresh child process (this script with ``--child``), so nothing
else lives in the process that is measured:

* **first paint**: ``redis-server`` (own, free port) + ``bench/publisher.py`` sending
  1000 events/s from 200 worker hostnames; the child starts the real console
  (``AfirgenApp`` + ``BrokerSources``, headless, 120x40) and reports the time from process
  start (``psutil`` create time) and from ``App.run_test`` entry to the first frame, and to
  the first frame that shows data (a task row and a worker row);
* **RSS and tick**: the headless console with test-fed sources (``StaticSources``) and its
  timers off; the model is filled with the synthetic stream of ``bench/events.py`` widened
  to 200 workers (heart-beating every 2 s) until it holds 100k tasks and evicts, the last
  20k events go through ``tick()`` so the panes fill; whole-process RSS is read after a
  ``gc.collect()``.  Then ``--ticks`` times: feed a trickle of the stream's next events
  (``--trickle`` per tick; the stream's own rate, 200 tasks/s, is ~250 events per 0.25 s
  tick; 1250 is a 5k events/s flood), time ``app.console_screen.tick()`` (wall and UI-thread CPU), then
  ``pilot.pause()`` (idle work such as DataTable's re-measuring, and the screen update, with
  ``render_segments`` as a terminal would need) and take its UI-thread CPU as the paint cost.
  CPU time (``time.thread_time``) is what makes these figures usable on a busy machine.  An empty console
  (no events) gives the baseline RSS.

Run by hand; never in CI.  Needs psutil (``pip install psutil`` in the venv).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.redis_spawn import start_redis  # noqa: E402

WORKERS = 200
MAX_TASKS = 100_000


def set_scale(workers: int, max_tasks: int) -> None:
    """``--workers`` / ``--max-tasks`` (issue 17 asks for 1,000 workers and 200k tasks)."""
    global WORKERS, MAX_TASKS
    WORKERS, MAX_TASKS = workers, max_tasks


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100 * len(s)))] if s else float("nan")


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def settle_heap() -> bool:
    """As ``afirgen-tui`` does (tui/ui/heap.py), unless ``--no-settle-heap``."""
    return not os.environ.get("BENCH_NO_SETTLE_HEAP")


def bench_app_class() -> type:
    import tui.ui.app
    from tui.ui.app import AfirgenApp

    class ProbedApp(AfirgenApp):
        """The real console; records frames (and renders them to terminal bytes, as a terminal would need)."""

        CSS_PATH = str(Path(tui.ui.app.__file__).with_name("app.tcss"))
        frames: list[tuple[float, float]]  # (perf_counter at end, ms)
        first_any: float | None = None
        first_data: float | None = None

        def _display(self, screen: Any, renderable: Any) -> None:
            started = time.perf_counter()
            super()._display(screen, renderable)
            if renderable is None or self._batch_count:
                return
            if hasattr(renderable, "render_segments"):
                renderable.render_segments(self.console)
            now = time.perf_counter()
            self.frames.append((now, (now - started) * 1000))
            if self.first_any is None:
                self.first_any = now
            if self.first_data is None:
                try:
                    if self.query_one("#tasks").row_count and self.query_one("#workers").row_count:
                        self.first_data = now
                except Exception:
                    pass

    return ProbedApp


def env_for(tmp: Path, broker: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "AFIRGEN_"))}
    (tmp / "config.toml").write_text("")
    env.update(
        CELERY_BROKER_URL=broker,
        CELERY_RESULT_BACKEND=broker,
        AFIRGEN_CONFIG=str(tmp / "config.toml"),
        AFIRGEN_PATHS_DATA_DIR=str(tmp / "var"),
        AFIRGEN_PATHS_REPORT_DIR=str(tmp / "var/reports"),
        AFIRGEN_PATHS_OUTBOX_DIR=str(tmp / "var/outbox"),
        AFIRGEN_PATHS_TEMP_DIR=str(tmp / "var/tmp"),
        AFIRGEN_CONSOLE_AUDIT_LOG=str(tmp / "var/audit.log"),
        AFIRGEN_HISTORY_DB=str(tmp / "var/history.sqlite3"),
        PYTHONPATH=str(REPO),
    )
    return env


# ---- child: first paint against a live event stream -------------------------------------
async def child_first_paint(with_history: bool) -> dict[str, Any]:
    from afirgen_tasks.factory import create_app
    from afirgen_tasks.settings import load_settings
    from tui.history import HistoryStore
    from tui.sources.cluster import BrokerSources

    imported = time.perf_counter()
    settings = load_settings(os.environ["AFIRGEN_CONFIG"], console_max_tasks=MAX_TASKS)
    celery_app = create_app(settings, main="afirgen-tui")
    sources = BrokerSources(settings, celery_app)
    history = HistoryStore.from_settings(settings) if with_history else None
    app = bench_app_class()(
        settings,
        sources,
        celery_app=celery_app,
        read_only=True,
        settle_heap=settle_heap(),
        history=history,
    )
    app.frames = []
    entered = time.perf_counter()
    late_max = 0.0

    late_load_max = 0.0
    history_in: float | None = None

    async def heartbeat() -> None:
        # how long the UI loop was held (keys wait that long): before the data showed, and
        # until the history was in
        nonlocal late_max, late_load_max
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            late = time.perf_counter() - t - 0.005
            if app.first_data is None:
                late_max = max(late_max, late)
            late_load_max = max(late_load_max, late)

    async with app.run_test(headless=True, size=(120, 40)) as pilot:
        beat = asyncio.create_task(heartbeat())
        deadline = time.perf_counter() + 60
        while app.first_data is None and time.perf_counter() < deadline:
            await pilot.pause(0.01)
        while with_history and app.console_screen.history.loaded_count == 0:
            if time.perf_counter() > deadline:
                break
            await pilot.pause(0.01)
        if with_history:
            history_in = time.perf_counter()
        rss_in = rss_mb()
        beat.cancel()
        workers = app.query_one("#workers").row_count
        loaded = app.console_screen.history.loaded_count
        sources.stop()
    if history is not None:
        history.close()
    return {
        "imported": imported,
        "entered": entered,
        "first_any": app.first_any,
        "first_data": app.first_data,
        "workers_rows": workers,
        "history_loaded": loaded,
        "loop_late_max_ms": late_max * 1000,
        "loop_late_load_max_ms": late_load_max * 1000,
        "history_in_after_entry_s": (history_in - entered) if history_in else None,
        "rss_history_in": rss_in,
        # the process's high-water mark (Linux: KiB)
        "rss_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def child_build_history(rows: int) -> dict[str, Any]:
    """A history of ``rows`` synthetic tasks for this cluster, at AFIRGEN_HISTORY_DB."""
    from afirgen_tasks.settings import load_settings
    from bench.bench_history import synthetic_rows
    from tui.history import HistoryStore

    settings = load_settings(os.environ["AFIRGEN_CONFIG"])
    store = HistoryStore.from_settings(settings)
    batch: list[dict[str, Any]] = []
    for row in synthetic_rows(rows, end=time.time() - 60):
        batch.append(row)
        if len(batch) >= 50_000:
            store.upsert(batch)
            batch = []
    store.upsert(batch)
    while store.index_pending(budget_s=5.0, chunk=50_000):
        pass
    store.close()
    return {"rows": rows}


# ---- child: memory and tick time with 100k tasks / 200 workers ------------------------------
def stream_200(seed: int) -> Any:
    """The bench/events.py stream (200 tasks/s), widened to 200 worker hostnames."""
    import bench.events as events

    events.WORKERS = tuple(f"celery@afirgen-worker-{i:03d}" for i in range(1, WORKERS + 1))
    return events.iter_events(seed, workers=WORKERS)


def take(stream: Any, n: int, now: bool = False) -> list[dict[str, Any]]:
    """The next ``n`` events, JSON round-tripped; ``now``: their clock moved so the first is 'now'
    (the console judges worker liveness on its own clock)."""
    chunk = [next(stream) for _ in range(n)]
    if now and chunk:
        delta = time.time() - chunk[0]["local_received"]
        for ev in chunk:
            ev["local_received"] += delta
            ev["timestamp"] += delta
    return json.loads(json.dumps(chunk))


async def child_scale(
    ticks: int, trickles: list[int], empty: bool, profile: str | None, slices: int = 0
) -> dict[str, Any]:
    from afirgen_tasks.settings import load_settings
    from tui.sources.cluster import StaticSources

    settings = load_settings(os.environ["AFIRGEN_CONFIG"], console_max_tasks=MAX_TASKS)
    sources = StaticSources(settings)
    app = bench_app_class()(
        settings, sources, read_only=True, autostart=False, settle_heap=settle_heap()
    )
    app.frames = []
    out: dict[str, Any] = {}
    async with app.run_test(headless=True, size=(120, 40)) as pilot:
        sources.start()
        app.console_screen.tick()
        await pilot.pause()
        gc.collect()
        out["rss_empty"] = rss_mb()
        if empty:
            return out
        stream = stream_200(1)
        fill_started = time.perf_counter()
        model = app.model
        # history: straight into the model (as hours of ticks would have), until full and evicting
        while model.tasks_evicted < 5_000:
            model.apply(take(stream, 2000))
        # the last 20k events through the console's own path, so the panes fill by key
        for _ in range(10):
            sources.feed(take(stream, 2000, now=True))
            while sources.buffered:
                app.console_screen.tick()
        await pilot.pause()
        out["fill_s"] = time.perf_counter() - fill_started
        gc.collect()
        await pilot.pause()
        out.update(
            rss_full=rss_mb(),
            tasks=len(model),
            workers=len(model.workers()),
            online=sum(w.online for w in model.workers()),
            task_rows=app.query_one("#tasks").row_count,
            worker_rows=app.query_one("#workers").row_count,
            evicted=model.tasks_evicted,
        )
        # the model's share of the tick, and garbage collection's, without a profiler's
        # distortion: apply() timed in place, collections through gc.callbacks
        applied_cpu = [0.0]
        real_apply = model.apply

        def timed_apply(events: Any) -> Any:
            c0 = time.thread_time()
            try:
                return real_apply(events)
            finally:
                applied_cpu[0] += time.thread_time() - c0

        model.apply = timed_apply  # type: ignore[method-assign]
        gc_cpu = [0.0, 0.0]  # [started, total]
        gc_runs = [0, 0, 0]

        def gc_clock(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                gc_cpu[0] = time.thread_time()
            else:
                gc_cpu[1] += time.thread_time() - gc_cpu[0]
                gc_runs[info["generation"]] += 1

        gc.callbacks.append(gc_clock)
        for trickle in trickles:
            tick_ms: list[float] = []
            tick_cpu: list[float] = []
            paint_cpu: list[float] = []
            apply_cpu: list[float] = []
            gc_tick: list[float] = []
            gc_paint: list[float] = []
            gc_runs[:] = [0, 0, 0]
            prof = None
            if profile:
                import cProfile

                prof = cProfile.Profile()
                prof.enable()
            slice_cpu: list[float] = []
            for _ in range(ticks):
                applied_cpu[0] = gc_cpu[1] = 0.0
                fed = 0
                for n in range(slices):
                    # the events arriving between ticks, applied by the console's 50 ms
                    # slices (ConsoleScreen.absorb) as they come; the tick gets the rest
                    part = trickle * (n + 1) // (slices + 1) - fed
                    sources.feed(take(stream, part, now=True))
                    fed += part
                    c0 = time.thread_time()
                    app.console_screen.absorb()
                    slice_cpu.append((time.thread_time() - c0) * 1000)
                sources.feed(take(stream, trickle - fed, now=True))
                slices_apply = applied_cpu[0]
                applied_cpu[0] = 0.0
                cpu0 = time.thread_time()
                started = time.perf_counter()
                app.console_screen.tick()
                tick_ms.append((time.perf_counter() - started) * 1000)
                cpu1 = time.thread_time()
                apply_cpu.append((applied_cpu[0] + slices_apply) * 1000)
                gc_tick.append(gc_cpu[1] * 1000)
                gc_cpu[1] = 0.0
                await pilot.pause()  # idle work (DataTable re-measures) and the screen update
                paint_cpu.append((time.thread_time() - cpu1) * 1000)
                gc_paint.append(gc_cpu[1] * 1000)
                tick_cpu.append((cpu1 - cpu0) * 1000)
            if prof is not None:
                prof.disable()
                prof.dump_stats(f"{profile}.{trickle}.prof")
            out[f"trickle_{trickle}"] = {
                "tick_p50": statistics.median(tick_ms),
                "tick_p95": pct(tick_ms, 95),
                "tick_max": max(tick_ms),
                "tick_cpu_p50": statistics.median(tick_cpu),
                "paint_cpu_p50": statistics.median(paint_cpu),
                "paint_cpu_p95": pct(paint_cpu, 95),
                "cpu_per_event_us": (sum(tick_cpu) + sum(paint_cpu) + sum(slice_cpu))
                * 1000
                / (ticks * trickle),
                "slice_cpu_p50": statistics.median(slice_cpu) if slice_cpu else None,
                "slice_cpu_max": max(slice_cpu) if slice_cpu else None,
                "slice_cpu_mean_per_tick": sum(slice_cpu) / ticks,
                "apply_cpu_p50": statistics.median(apply_cpu),
                "apply_cpu_mean": statistics.fmean(apply_cpu),
                "tick_cpu_mean": statistics.fmean(tick_cpu),
                "gc_tick_mean": statistics.fmean(gc_tick),
                "gc_paint_mean": statistics.fmean(gc_paint),
                "gc_runs": list(gc_runs),
            }
        gc.callbacks.remove(gc_clock)
        model.apply = real_apply  # type: ignore[method-assign]
        gc.collect()
        out["rss_end"] = rss_mb()
    return out


def child_main(args: argparse.Namespace) -> int:
    # The parent's clock just before it spawned this process: psutil's create_time() counts
    # from /proc/stat's btime, whole seconds, so it read up to ~1 s early (imports "done at
    # 1.4 s" that took 0.5 s).
    t_start = float(os.environ.get("BENCH_SPAWNED_AT") or psutil.Process().create_time())
    offset = time.time() - time.perf_counter()  # perf_counter -> wall clock
    if args.child == "build-history":
        r = child_build_history(args.history_rows)
    elif args.child == "first-paint":
        r = asyncio.run(child_first_paint(bool(args.history_rows)))
        for key in ("imported", "entered", "first_any", "first_data"):
            if r[key] is not None:
                r[key + "_from_start_s"] = r[key] + offset - t_start
        r["data_after_entry_s"] = (r["first_data"] - r["entered"]) if r["first_data"] else None
        r["any_after_entry_s"] = (r["first_any"] - r["entered"]) if r["first_any"] else None
    else:
        r = asyncio.run(
            child_scale(
                args.ticks,
                args.trickle,
                empty=args.child == "empty",
                profile=args.profile,
                slices=args.slices,
            )
        )
    print(json.dumps(r), flush=True)
    return 0


def run_child(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.bench_scale", *argv],
        cwd=REPO,
        env={**env, "BENCH_SPAWNED_AT": repr(time.time())},
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode:
        raise SystemExit(f"child {argv} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--child",
        choices=("first-paint", "scale", "empty", "build-history"),
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--ticks", type=int, default=100, help="timed ticks per trickle size")
    parser.add_argument(
        "--trickle",
        type=int,
        nargs="+",
        default=[1250, 250, 25],
        help="events fed per tick (1250 = a 5k events/s stream at 4 ticks/s)",
    )
    parser.add_argument(
        "--profile", metavar="PREFIX", help="cProfile the timed ticks into PREFIX.<trickle>.prof"
    )
    parser.add_argument("--paints", type=int, default=3, help="first-paint runs (median reported)")
    parser.add_argument("--workers", type=int, default=WORKERS, help="worker hostnames")
    parser.add_argument("--max-tasks", type=int, default=MAX_TASKS, help="console_max_tasks")
    parser.add_argument(
        "--slices",
        type=int,
        default=0,
        help="apply each tick's events in N slices before it, as the console's 50 ms absorb "
        "timer does (4 = a 250 ms tick); 0: the tick applies them all",
    )
    parser.add_argument(
        "--history-rows",
        type=int,
        default=0,
        metavar="N",
        help="first paint with a history of N tasks (SQLite, this cluster's) to load at start",
    )
    parser.add_argument(
        "--no-settle-heap",
        action="store_true",
        help="leave the start-up heap to the garbage collector (tui/ui/heap.py), as before",
    )
    parser.add_argument(
        "--paint-only", action="store_true", help="only the first-paint runs (no RSS or ticks)"
    )
    args = parser.parse_args()
    set_scale(args.workers, args.max_tasks)
    if args.child:
        return child_main(args)
    cmd = "python -m bench.bench_scale " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    tmp = Path(tempfile.mkdtemp(prefix="afirgen-scale-"))
    redis_proc, broker = start_redis(tmp)
    paints: list[dict[str, Any]] = []
    try:
        env = env_for(tmp, broker)
        if args.no_settle_heap:
            env["BENCH_NO_SETTLE_HEAP"] = "1"
        child_args = ["--ticks", str(args.ticks), "--trickle", *map(str, args.trickle)]
        child_args += ["--workers", str(WORKERS), "--max-tasks", str(MAX_TASKS)]
        child_args += ["--slices", str(args.slices), "--history-rows", str(args.history_rows)]
        if args.profile:
            child_args += ["--profile", os.path.abspath(args.profile)]
        if not args.paint_only:
            empty = run_child(["--child", "empty", *child_args], env)
            scale = run_child(["--child", "scale", *child_args], env)
        publisher = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.publisher",
                "--url",
                broker,
                "--rate",
                "1000",
                "--seconds",
                str(20 * args.paints + 10),
                "--workers",
                str(WORKERS),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        try:
            time.sleep(2.5 + WORKERS / 1000)  # every worker has sent worker-online and a heartbeat
            if args.history_rows:
                db = Path(env["AFIRGEN_HISTORY_DB"])
                db.parent.mkdir(parents=True, exist_ok=True)
                template = tmp / "history-template.sqlite3"
                run_child(
                    ["--child", "build-history", *child_args],
                    {**env, "AFIRGEN_HISTORY_DB": str(template)},
                )
            for _ in range(args.paints):
                if args.history_rows:  # each run starts on the same history
                    for suffix in ("-wal", "-shm"):
                        Path(str(db) + suffix).unlink(missing_ok=True)
                    shutil.copy(template, db)
                paints.append(run_child(["--child", "first-paint", *child_args], env))
        finally:
            publisher.terminate()
            publisher.wait(10)
    finally:
        redis_proc.terminate()
        redis_proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)

    def med(key: str) -> float:
        vals = [p[key] for p in paints if p.get(key) is not None]
        return statistics.median(vals) if vals else float("nan")

    print(f"$ {cmd.strip()}")
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
        f"{WORKERS} workers, max_tasks={MAX_TASKS:,}"
    )
    print(
        f"time to first paint with data (median of {len(paints)}, live stream 1000 events/s from "
        f"{WORKERS} workers): {med('first_data_from_start_s'):.2f} s from process start "
        f"(imports done at {med('imported_from_start_s'):.2f} s), {med('data_after_entry_s'):.2f} s from App start; "
        f"first frame of any kind {med('any_after_entry_s'):.2f} s from App start"
    )
    if args.history_rows:
        print(
            f"  with a history of {args.history_rows:,} tasks: {med('history_loaded'):,.0f} loaded; "
            f"all of it in {med('history_in_after_entry_s'):.2f} s from App start; the UI loop "
            f"held at most {med('loop_late_max_ms'):.0f} ms before the data showed, "
            f"{med('loop_late_load_max_ms'):.0f} ms until the history was in (median of the "
            f"runs' longest); RSS then {med('rss_history_in'):.0f} MB, peak {med('rss_peak'):.0f} MB"
        )
    if args.paint_only:
        return 0
    print(f"whole-process RSS, empty console:            {empty['rss_empty']:.0f} MB")
    print(
        f"whole-process RSS, {scale['tasks']:,} tasks / {scale['workers']} workers "
        f"({scale['online']} online, {scale['evicted']:,} evicted; {scale['task_rows']} task rows, "
        f"{scale['worker_rows']} worker rows): {scale['rss_full']:.0f} MB (goal < 300 MB); "
        f"after the timed ticks {scale['rss_end']:.0f} MB"
    )
    for trickle in args.trickle:
        t = scale[f"trickle_{trickle}"]
        print(
            f"tick with {trickle} events fed, {args.ticks} ticks: app.console_screen.tick() p50 {t['tick_p50']:.1f} ms, "
            f"p95 {t['tick_p95']:.1f} ms, max {t['tick_max']:.1f} ms (goal < 20 ms); UI-thread CPU: tick p50 "
            f"{t['tick_cpu_p50']:.1f} ms + paint p50 {t['paint_cpu_p50']:.1f} ms (p95 {t['paint_cpu_p95']:.1f}); "
            f"{t['cpu_per_event_us']:.0f} us CPU per event -> one core paints at most "
            f"~{1e6 / t['cpu_per_event_us']:,.0f} events/s"
        )
        if t.get("slice_cpu_p50") is not None:
            print(
                f"  applied before the tick in {args.slices} slices a tick: slice UI-thread CPU "
                f"p50 {t['slice_cpu_p50']:.1f} ms, max {t['slice_cpu_max']:.1f} ms "
                f"({t['slice_cpu_mean_per_tick']:.1f} ms a tick); model.apply below counts "
                "the slices' and the tick's"
            )
        print(
            f"  of the tick (UI-thread CPU): model.apply p50 {t['apply_cpu_p50']:.1f} ms (mean "
            f"{t['apply_cpu_mean']:.1f} of {t['tick_cpu_mean']:.1f} ms, "
            f"{t['apply_cpu_mean'] * 1000 / trickle:.2f} us/event); garbage collection mean "
            f"{t['gc_tick_mean']:.1f} ms in the tick (and its slices) + {t['gc_paint_mean']:.1f} ms in the paint "
            f"(collections by generation {t['gc_runs']})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
