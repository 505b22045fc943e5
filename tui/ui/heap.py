"""The console's heap, set aside from the garbage collector once it has started.

Why: a full (generation 2) collection walks every tracked object, and a started console
holds ~75k of them that live until it quits (the modules of celery, kombu, textual,
pydantic and rich, the widgets).  Under a flood the model grows and full collections come
every few seconds, each holding the UI thread for ~70-180 ms on the 2-CPU machine: the tail
of key-press latency (``bench/bench_e2e.py --stalls``, docs/performance.md).  Moved to
the permanent generation (``gc.freeze``) they are no longer walked; they are still freed
by reference counting, only a reference cycle among them would now never be collected.

The thresholds then let 20,000 new objects (not 700) pass between young collections: at
20k events/s most are gone by then, so fewer survive into the older generations whose
collections were the long ones (bench_e2e --stalls at 20k/s, 30 s: 19 full collections
of up to 106 ms before, none of 5 ms or more after; stalls over 60 ms 98 -> 69).
"""

from __future__ import annotations

import gc

#: The collector's thresholds once the console is up (CPython's are 700, 10, 10).
GC_THRESHOLDS = (20_000, 20, 50)


def settle_heap() -> int:
    """Collect what start-up left behind, then freeze what remains; returns the objects
    frozen.  Call once the console is up (again after a cluster switch is harmless)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return gc.get_freeze_count()
