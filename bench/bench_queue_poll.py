"""Queue-length poller cost: round trips and commands per refresh, and time per refresh.

    python bench/bench_queue_poll.py [--url redis://127.0.0.1:6379] [--db 13] [--polls 200]

Builds kombu-shaped keys (bindings, one list per queue x priority step, an ``unacked`` hash)
in a scratch database that must be empty, measures, and deletes every key it made.
Run by hand; never in CI.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from afirgen_tasks.priority import REDIS_PRIORITY_STEPS, redis_step_key  # noqa: E402
from tui.sources.queue_lengths import QueueLengthPoller  # noqa: E402

SEP = ":"


class CountingClient:
    """Counts single commands and pipeline round trips, and records pipelined command names."""

    def __init__(self, client: redis.Redis) -> None:
        self.round_trips = 0
        self.commands: Counter[str] = Counter()
        execute_command, make_pipeline = client.execute_command, client.pipeline

        def counted_command(*args, **kwargs):
            self.round_trips += 1
            self.commands[str(args[0]).upper()] += 1
            return execute_command(*args, **kwargs)

        def counted_pipeline(*args, **kwargs):
            pipe = make_pipeline(*args, **kwargs)
            execute = pipe.execute

            def counted_execute(*a, **k):
                self.round_trips += 1
                for command_args, _options in pipe.command_stack:
                    self.commands[str(command_args[0]).upper()] += 1
                return execute(*a, **k)

            pipe.execute = counted_execute
            return pipe

        client.execute_command = counted_command
        client.pipeline = counted_pipeline

    def reset(self) -> None:
        self.round_trips = 0
        self.commands.clear()


def populate(client: redis.Redis, queues: list[str]) -> list[str]:
    keys = []
    pipe = client.pipeline(transaction=False)
    for i, queue in enumerate(queues):
        binding = f"_kombu.binding.{queue}"
        pipe.sadd(binding, f"{queue}{SEP}{SEP}{queue}")
        keys.append(binding)
        for step in REDIS_PRIORITY_STEPS:
            key = redis_step_key(queue, step, SEP)
            if (i + step) % 3 == 0:
                pipe.rpush(key, *[b"m"] * (step + 1))
                keys.append(key)
        for j in range(4):
            pipe.hset("unacked", f"{queue}-{j}", json.dumps([{"body": "x" * 200}, queue, queue]))
    keys.append("unacked")
    pipe.execute()
    return keys


def measure(
    client: redis.Redis, counting: CountingClient, n_queues: int, polls: int
) -> dict[str, object]:
    queues = [f"bench-q{i:02d}" for i in range(n_queues)]
    keys = populate(client, queues)
    try:
        poller = QueueLengthPoller(
            client, queues[:5], REDIS_PRIORITY_STEPS, SEP, discover_interval=10.0
        )
        counting.reset()
        poller.poll()  # first refresh: discovery (SCAN + SMEMBERS pipeline) + capped HSCAN
        first = (counting.round_trips, dict(counting.commands))
        poller.poll()  # warm: HVALS from now on
        counting.reset()
        times = []
        for _ in range(polls):
            started = time.perf_counter()
            snap = poller.poll()
            times.append(time.perf_counter() - started)
        assert len(snap.queues) == n_queues, snap.queues.keys()
        round_trips, commands = counting.round_trips, dict(counting.commands)
        # The naive way for comparison: one round trip per list (what a loop of LLENs costs).
        naive = []
        for _ in range(max(1, polls // 10)):
            started = time.perf_counter()
            for queue in queues:
                for step in REDIS_PRIORITY_STEPS:
                    client.llen(redis_step_key(queue, step, SEP))
            client.hlen("unacked")
            naive.append(time.perf_counter() - started)
        return {
            "queues": n_queues,
            "first_round_trips": first[0],
            "first_commands": first[1],
            "round_trips_per_refresh": round_trips / polls,
            "commands_per_refresh": {k: v / polls for k, v in commands.items()},
            "median_ms": statistics.median(times) * 1000,
            "p95_ms": sorted(times)[int(polls * 0.95) - 1] * 1000,
            "naive_ms": statistics.median(naive) * 1000,
            "naive_round_trips": n_queues * len(REDIS_PRIORITY_STEPS) + 1,
        }
    finally:
        client.delete(*keys)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379")
    parser.add_argument("--db", type=int, default=13, help="scratch database (must be empty)")
    parser.add_argument("--polls", type=int, default=200)
    args = parser.parse_args()
    client = redis.Redis.from_url(f"{args.url}/{args.db}", socket_timeout=5)
    if client.dbsize():
        print(f"db {args.db} is not empty; pick an empty scratch db with --db", file=sys.stderr)
        return 2
    counting = CountingClient(client)
    print(
        f"queue poller on {args.url}/{args.db}, {len(REDIS_PRIORITY_STEPS)} priority lists per queue, "
        f"{args.polls} refreshes"
    )
    for n in (5, 50):
        r = measure(client, counting, n, args.polls)
        cmds = ", ".join(f"{k} x{v:g}" for k, v in sorted(r["commands_per_refresh"].items()))
        first = ", ".join(f"{k} x{v}" for k, v in sorted(r["first_commands"].items()))
        print(
            f"\n{n} queues x {len(REDIS_PRIORITY_STEPS)} lists (+ unacked hash, {n * 4} reserved):"
        )
        print(f"  round trips per refresh: {r['round_trips_per_refresh']:g}")
        print(f"  commands per refresh:    {cmds}")
        print(f"  first refresh (discovery): {r['first_round_trips']} round trips: {first}")
        print(f"  time per refresh: median {r['median_ms']:.3f} ms, p95 {r['p95_ms']:.3f} ms")
        print(
            f"  naive LLEN loop ({r['naive_round_trips']} round trips, no reserved): "
            f"median {r['naive_ms']:.3f} ms ({r['naive_ms'] / r['median_ms']:.1f}x the poller)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
