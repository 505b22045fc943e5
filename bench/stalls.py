"""Where the UI thread's long stalls come from: a sampler for benchmarks.

:class:`StallWatch` keeps a heartbeat on the asyncio loop (a callback every ``beat``
seconds) and a sampler thread that, while the heartbeat is later than ``threshold``,
records the UI thread's stack every ``every`` seconds.  Garbage collections are timed
through ``gc.callbacks`` (a collection holds the GIL, so the sampler cannot see inside
it).  :meth:`StallWatch.report` sums the samples by the innermost frames of our code and
Textual's, so a 300 ms stall reads as "the tick's pane update" or "a generation-2
collection", not as a number.

Used by ``bench_e2e --stalls``; never in the console itself.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

#: Path parts that mark a frame as ours or Textual's (what the report names).
_OWN = ("/tui/", "/textual/", "/rich/", "/bench/")


@dataclass
class Stall:
    """One late heartbeat: when it began, how long it lasted, the stacks seen meanwhile."""

    start: float
    length: float = 0.0
    samples: list[tuple[str, ...]] = field(default_factory=list)
    gcs: list[tuple[int, float]] = field(default_factory=list)
    #: the UI thread's /proc schedstat when the stall was first seen: (on CPU, waiting
    #: for a CPU) in ns; with the values at its end, what the stall was made of
    sched0: tuple[int, int] | None = None
    sched: tuple[int, int] | None = None


class StallWatch:
    """Heartbeat on ``loop`` + a sampler thread; see the module docstring."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        threshold: float = 0.06,
        beat: float = 0.01,
        every: float = 0.01,
    ) -> None:
        self.loop = loop
        self.threshold = threshold
        self.beat = beat
        self.every = every
        self.main_ident = threading.get_ident()
        self.main_native = threading.get_native_id()
        self.last_beat = time.perf_counter()
        self.stalls: list[Stall] = []
        self.gc_pauses: list[tuple[float, int, float]] = []  # (end, generation, seconds)
        self._gc_started = 0.0
        self._current: Stall | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="stall-watch", daemon=True)

    def start(self) -> None:
        """Start the heartbeat, the sampler and the GC timing."""
        self.loop.call_soon(self._heartbeat)
        gc.callbacks.append(self._on_gc)
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling (the heartbeat ends with the loop)."""
        self._stop.set()
        self._thread.join(1.0)
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    # ---- the UI thread -------------------------------------------------------------
    def _heartbeat(self) -> None:
        now = time.perf_counter()
        current = self._current
        if current is not None:
            current.length = now - current.start
            end = _schedstat(self.main_native)
            if current.sched0 is not None and end is not None:
                current.sched = (end[0] - current.sched0[0], end[1] - current.sched0[1])
            self.stalls.append(current)
            self._current = None
        self.last_beat = now
        if not self._stop.is_set():
            self.loop.call_later(self.beat, self._heartbeat)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        if threading.get_ident() != self.main_ident:
            return
        took = time.perf_counter() - self._gc_started
        if took >= 0.005:
            self.gc_pauses.append((time.perf_counter(), info.get("generation", -1), took))

    # ---- the sampler thread --------------------------------------------------------
    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            late = time.perf_counter() - self.last_beat - self.beat
            if late < self.threshold:
                continue
            frame = sys._current_frames().get(self.main_ident)
            if frame is None:
                continue
            if self._current is None:
                stall = Stall(self.last_beat + self.beat)
                # from now on: the part of the stall before the first sample is not counted
                stall.sched0 = _schedstat(self.main_native)
                self._current = stall
            self._current.samples.append(_summary(frame))

    # ---- after the run -------------------------------------------------------------
    def report(self, top: int = 12) -> str:
        """The stalls (count, total, worst) and what the UI thread was doing in them."""
        stalls = [s for s in self.stalls if s.length >= self.threshold]
        if not stalls:
            return f"no stall of {self.threshold * 1000:.0f} ms or more"
        lines = [
            f"{len(stalls)} stalls >= {self.threshold * 1000:.0f} ms, "
            f"{sum(s.length for s in stalls):.2f} s in all, longest "
            + ", ".join(
                f"{s.length * 1000:.0f}" for s in sorted(stalls, key=lambda s: -s.length)[:8]
            )
            + " ms"
        ]
        for s in stalls:  # the collections that ended inside each stall
            s.gcs = [(g, t) for end, g, t in self.gc_pauses if s.start <= end <= s.start + s.length]
        measured = [s for s in stalls if s.sched is not None]
        if measured:
            # from the first sample to the end: on CPU, waiting for a CPU (the machine is
            # busy), and the rest: neither (the GIL held by another thread, or I/O)
            span = sum(s.start + s.length - (s.start + self.threshold) for s in measured)
            on_cpu = sum(s.sched[0] for s in measured if s.sched) / 1e9
            runq = sum(s.sched[1] for s in measured if s.sched) / 1e9
            lines.append(
                f"  the UI thread in them (after the first sample, {span:.2f} s): "
                f"on a CPU {on_cpu:.2f} s, waiting for a CPU {runq:.2f} s, "
                f"neither (GIL or I/O) {max(span - on_cpu - runq, 0):.2f} s"
            )
        gc_in: dict[int, float] = collections.defaultdict(float)
        for s in stalls:
            for g, t in s.gcs:
                gc_in[g] += t
        if gc_in:
            lines.append(
                "  garbage collection inside stalls: "
                + ", ".join(f"gen {g} {t * 1000:.0f} ms" for g, t in sorted(gc_in.items()))
            )
        by_gen: dict[int, list[float]] = collections.defaultdict(list)
        for _end, g, t in self.gc_pauses:
            by_gen[g].append(t)
        lines.append(
            "  all collections >= 5 ms: "
            + (
                ", ".join(
                    f"gen {g}: {len(ts)} (max {max(ts) * 1000:.0f} ms)"
                    for g, ts in sorted(by_gen.items())
                )
                or "none"
            )
        )
        # weight each sample by the stall time it stands for
        where: dict[tuple[str, ...], float] = collections.defaultdict(float)
        for s in stalls:
            if s.samples:
                share = s.length / len(s.samples)
                for sample in s.samples:
                    where[sample] += share
        lines.append("  where the UI thread was (ms of stall, innermost of ours last):")
        for stack, t in sorted(where.items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"    {t * 1000:7.0f}  " + " > ".join(stack))
        return "\n".join(lines)


def _schedstat(tid: int) -> tuple[int, int] | None:
    """(ns on a CPU, ns waiting in a run queue) of thread ``tid`` (Linux), else None."""
    try:
        with open(f"/proc/self/task/{tid}/schedstat") as f:
            on_cpu, waiting, _slices = f.read().split()
        return int(on_cpu), int(waiting)
    except (OSError, ValueError):
        return None


def _summary(frame: Any, depth: int = 4) -> tuple[str, ...]:
    """The innermost ``depth`` frames of ours or Textual's, outermost first, and the
    innermost frame of all when that is somewhere else (the stdlib, a C call's caller)."""
    ours: list[str] = []
    innermost = f"{_short(frame.f_code.co_filename)}:{frame.f_code.co_name}"
    f = frame
    while f is not None and len(ours) < depth:
        name = f.f_code.co_filename
        if any(part in name for part in _OWN):
            ours.append(f"{_short(name)}:{f.f_code.co_name}")
        f = f.f_back
    ours.reverse()
    if not ours or ours[-1] != innermost:
        ours.append(f"[{innermost}]")
    return tuple(ours)


def _short(path: str) -> str:
    for part in _OWN:
        i = path.rfind(part)
        if i >= 0:
            return path[i + 1 :].removesuffix(".py")
    return path.rsplit("/", 1)[-1].removesuffix(".py")
