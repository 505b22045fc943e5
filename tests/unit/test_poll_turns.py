"""Queue polls take turns: the AMQP poller holds one channel that is not thread-safe, and a
poll after an action or a reconnect can start while the periodic one is still running
(two threads on one channel read each other's replies: a poll that never returned was one
cause of a flaky RabbitMQ test)."""

from __future__ import annotations

import threading
import time

from afirgen_tasks.factory import create_app
from afirgen_tasks.settings import load_settings
from tui.sources.cluster import BrokerSources
from tui.sources.queue_lengths import QueueSnapshot


class OneAtATimePoller:
    """A poller that notes when two polls overlap."""

    def __init__(self) -> None:
        self.inside = 0
        self.overlaps = 0
        self.polls = 0
        self.guard = threading.Lock()

    def poll(self) -> QueueSnapshot:
        with self.guard:
            self.inside += 1
            self.overlaps += self.inside > 1
        time.sleep(0.02)  # a broker round trip, long enough for the other thread to come in
        with self.guard:
            self.inside -= 1
            self.polls += 1
        return QueueSnapshot(taken_at=time.time())


def test_polls_from_several_threads_never_overlap(tmp_path):
    (tmp_path / "config.toml").write_text("")
    settings = load_settings(
        tmp_path / "config.toml", celery_broker_url="memory://", console_event_reader="kombu"
    )
    sources = BrokerSources(settings, create_app(settings, main="t"))
    poller = sources._poller = OneAtATimePoller()
    threads = [threading.Thread(target=sources.poll_queues) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert poller.polls == 6
    assert poller.overlaps == 0
