"""The console's heap, set aside from the garbage collector once it has started.

Why: a full (generation 2) collection walks every tracked object, and a started console
holds ~75k of them that live until it quits (the modules of celery, kombu, textual,
pydantic and rich, the widgets).  Under a flood the model grows and full collections come
every few seconds, each holding the UI thread for ~70-180 ms on the 2-CPU machine: the tail
of key-press latency (``bench/bench_e2e.py --stalls``, docs/performance.md).  Moved to
the permanent generation (``gc.freeze``) they are no longer walked; they are still freed
by reference counting, only a reference cycle among them would now never be collected.
"""

from __future__ import annotations

import gc


def settle_heap() -> int:
    """Collect what start-up left behind, then freeze what remains; returns the objects
    frozen.  Call once the console is up (again after a cluster switch is harmless)."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
