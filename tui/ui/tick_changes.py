"""What the model's applies changed since the panes were last updated.

Under a flood the console applies buffered events in short slices between its ticks
(:meth:`tui.ui.console.ConsoleScreen.absorb`, every :data:`ABSORB_INTERVAL_S`, and one
after another with a short gap while a backlog lasts), so no single callback holds the
UI thread for long and a key press is served between slices;
the tick then updates the panes once from everything the slices changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Seconds between the slices that apply buffered events between ticks.
ABSORB_INTERVAL_S = 0.05
#: Longest a slice applies events (the UI thread is free between slices).
ABSORB_BUDGET_S = 0.008
#: Events per model call in a slice (the budget is checked between calls).
ABSORB_CHUNK = 500
#: While a backlog remains after a slice, the next one follows this soon instead of at the
#: next interval: the loop serves what is ready (a key, a frame) in the gap, and at most
#: ABSORB_BUDGET_S / (ABSORB_BUDGET_S + ABSORB_GAP_S) of the UI thread goes to applying.
#: With slices only every ABSORB_INTERVAL_S, a third of the UI thread at most applied
#: events and a 20k/s flood overflowed the buffer with the thread half idle.
ABSORB_GAP_S = 0.002


@dataclass(slots=True)
class PendingChanges:
    """Task and worker keys changed, and each queue's in/out flow, since the last tick."""

    new: list[str] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)
    evicted: set[str] = field(default_factory=set)
    workers: set[str] = field(default_factory=set)
    #: queue -> [tasks sent into it, tasks received from it]
    flow: dict[str, list[int]] = field(default_factory=dict)

    def add(self, changes: Any) -> None:
        """Fold in one :class:`tui.core.model.Changes`."""
        self.new.extend(changes.new_tasks)
        self.changed |= changes.tasks
        self.evicted |= changes.evicted
        self.workers |= changes.workers
        flow = self.flow
        for queue, (n_in, n_out) in changes.flow.items():
            if (counts := flow.get(queue)) is None:
                flow[queue] = [n_in, n_out]
            else:
                counts[0] += n_in
                counts[1] += n_out
