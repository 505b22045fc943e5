"""How many jobs a SIGKILLed consumer loses: kombu's BRPOP fetch against the atomic fetch.

For each transport (``stock``: ``kombu.transport.redis``; ``atomic``:
``afirgen_tasks.redis_transport``) this publishes ``--jobs`` messages to one queue on its
own ``redis-server``, then ``--kills`` times starts a consumer process and SIGKILLs it
after a random 20-150 ms.  The consumer is kombu's own ``Consumer`` with late ack, the way
a Celery worker consumes: for each job it adds the job id to a Redis set, then acks.  After
the kills one last consumer restores everything left unacknowledged (visibility timeout 0)
and drains the queue.  A job whose id never reached the set is lost.

    python -m bench.bench_fetch_window                 # 150 kills each, ~2 min
    python -m bench.bench_fetch_window --kills 400 --jobs 20000

The kills are the only difference between the runs; ``redelivered`` counts jobs handled
more than once (a kill between the set and the ack), which at-least-once allows.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.redis_spawn import start_redis  # noqa: E402

TRANSPORTS = {
    "stock": "kombu.transport.redis:Transport",
    "atomic": "afirgen_tasks.redis_transport:Transport",
}
OPTIONS = {"priority_steps": list(range(10)), "sep": ":"}


def queue():
    from kombu import Exchange, Queue

    return Queue("jobs", Exchange("jobs", type="direct"), routing_key="jobs")


def publish(url: str, transport: str, jobs: int) -> None:
    from kombu import Connection, Producer

    q = queue()
    with Connection(url, transport=transport, transport_options=OPTIONS) as conn:
        producer = Producer(conn)
        for i in range(jobs):
            producer.publish({"id": i}, exchange=q.exchange, routing_key="jobs", declare=[q])


def consume(url: str, transport: str, visibility: float, until_empty: bool) -> None:
    """Consume until killed, or (``until_empty``) until queue and unacked are both empty."""
    import redis
    from kombu import Connection, Consumer

    client = redis.Redis.from_url(url)

    def on_message(body, message) -> None:
        if client.sadd("done", body["id"]) == 0:
            client.incr("redelivered")
        message.ack()

    options = {**OPTIONS, "visibility_timeout": visibility}
    with Connection(url, transport=transport, transport_options=options) as conn:
        with Consumer(conn, [queue()], callbacks=[on_message], prefetch_count=10):
            if until_empty:
                conn.default_channel.qos.restore_visible(num=100000, interval=1)
            idle_since = None
            while True:
                try:
                    conn.drain_events(timeout=0.2)
                    idle_since = None
                except TimeoutError:
                    pending = sum(client.llen(k) for k in client.keys("jobs*")) + client.hlen(
                        "unacked"
                    )
                    if until_empty and not pending:
                        idle_since = idle_since or time.monotonic()
                        if time.monotonic() - idle_since > 1:
                            return
                    elif until_empty:
                        conn.default_channel.qos.restore_visible(num=100000, interval=1)


def run(url: str, name: str, jobs: int, kills: int, rng: random.Random) -> dict:
    import redis

    transport = TRANSPORTS[name]
    client = redis.Redis.from_url(url)
    client.flushdb()
    publish(url, transport, jobs)
    me = [sys.executable, "-m", "bench.bench_fetch_window", "--consume", url, "--transport", name]
    done_kills = 0
    started = time.monotonic()
    while done_kills < kills and sum(client.llen(k) for k in client.keys("jobs*")):
        proc = subprocess.Popen([*me, "--visibility", "3600"], cwd=REPO)
        # Wait until it is consuming (its first job is done), then let it run a little.
        before = client.scard("done")
        deadline = time.monotonic() + 10
        while (
            client.scard("done") == before and time.monotonic() < deadline and proc.poll() is None
        ):
            time.sleep(0.005)
        time.sleep(rng.uniform(0.02, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done_kills += 1
    killing_s = time.monotonic() - started
    unacked_after_kills = client.hlen("unacked")
    subprocess.run([*me, "--visibility", "0", "--until-empty"], cwd=REPO, check=True, timeout=600)
    done = client.scard("done")
    return {
        "transport": name,
        "jobs": jobs,
        "kills": done_kills,
        "unacked_after_kills": unacked_after_kills,
        "completed": done,
        "lost": jobs - done,
        "redelivered": int(client.get("redelivered") or 0),
        "killing_s": round(killing_s, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40000)
    parser.add_argument("--kills", type=int, default=150)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--transports", nargs="+", default=list(TRANSPORTS), choices=list(TRANSPORTS)
    )
    parser.add_argument("--consume", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--transport", choices=list(TRANSPORTS), help=argparse.SUPPRESS)
    parser.add_argument("--visibility", type=float, default=3600, help=argparse.SUPPRESS)
    parser.add_argument("--until-empty", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.consume:
        consume(args.consume, TRANSPORTS[args.transport], args.visibility, args.until_empty)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_redis(Path(tmp))
        try:
            rows = [
                run(url, name, args.jobs, args.kills, random.Random(args.seed))
                for name in args.transports
            ]
        finally:
            proc.terminate()
            proc.wait(10)
    keys = list(rows[0])
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(str(row[k]) for k in keys))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
