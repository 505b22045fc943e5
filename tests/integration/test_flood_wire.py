"""bench/flood.py speaks Celery's wire format: a real Celery ``EventReceiver`` (kombu's Redis
transport, our app's transport options) decodes every message it publishes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("encoding", ["base64", "plain"])
def test_celery_receiver_decodes_every_flood_event(afirgen_app, redis_server, redis_db, encoding):
    seen: Counter[str] = Counter()
    bad: list[Any] = []
    ready = threading.Event()

    def on_event(event: dict[str, Any]) -> None:
        if not (isinstance(event.get("timestamp"), float) and event.get("hostname")):
            bad.append(event)
        seen[event["type"]] += 1

    with afirgen_app.connection_for_read() as conn:
        receiver = afirgen_app.events.Receiver(conn, handlers={"*": on_event})
        orig = receiver.on_consume_ready

        def on_ready(*args: Any, **kwargs: Any) -> None:
            orig(*args, **kwargs)
            ready.set()

        receiver.on_consume_ready = on_ready  # type: ignore[method-assign]
        thread = threading.Thread(target=lambda: receiver.capture(limit=None), daemon=True)
        thread.start()
        try:
            wait_until(ready.is_set, 20, message="Celery receiver consuming")
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.flood",
                    "--url",
                    redis_server.url(redis_db),
                    "--rate",
                    "2000",
                    "--seconds",
                    "1",
                    "--workers",
                    "5",
                    "--body-encoding",
                    encoding,
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            report = json.loads(out.stdout)
            wait_until(
                lambda: sum(seen.values()) >= report["published"],
                20,
                message=f"{report['published']} events received (got {sum(seen.values())})",
            )
        finally:
            receiver.should_stop = True
            thread.join(5)
    assert sum(seen.values()) == report["published"]
    assert report["task_events"] >= 1000
    assert seen["task-sent"] == report["task_events"] // 4
    assert seen["worker-online"] == 5
    assert seen["task-received"] == seen["task-started"] == seen["task-sent"]
    assert seen["task-succeeded"] + seen["task-failed"] == seen["task-sent"]
    assert seen["task-failed"] > 0
    assert not bad
