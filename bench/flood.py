"""A flood of Celery events at a fixed rate, in Celery's own wire format, from one process.

    python -m bench.flood --url redis://127.0.0.1:6391/0 --rate 20000 --seconds 60 [--workers 200]

What kombu's Redis transport PUBLISHes for ``app.events.Dispatcher`` (``_put_fanout``:
``PUBLISH /{db}.celeryev/<routing key> <json envelope>``), built from pre-encoded
templates instead of through kombu, so that one process reaches ~30k events/s:

* the envelope is kombu's: ``{"body": <base64 of the JSON body>, "content-encoding":
  "utf-8", "content-type": "application/json", "headers": {"hostname": ...},
  "properties": {"delivery_mode": 1, "delivery_info": {"exchange": "celeryev",
  "routing_key": ...}, "priority": 0, "body_encoding": "base64", "delivery_tag": ...}}``
  (``--body-encoding plain`` puts the JSON body in as a string, as a transport with
  ``body_encoding=None`` does);
* ``task-sent`` goes from the client as one message each (routing key ``task.sent``);
  each worker's ``task-received``/``task-started``/``task-succeeded`` (2 % ``task-failed``
  with a traceback) go as lists of up to ``--group`` events (routing key
  ``task.multi``), as a worker's ``buffer_group=['task']`` dispatcher flushes them;
* every worker sends ``worker-online`` at the start and ``worker-heartbeat`` every 2 s.

A task's four events go out in the same 5 ms slot; ``timestamp`` is the slot's wall
clock, so a consumer measures lag against the time the event was sent.  Each slot is
one pipelined write of RESP commands through one redis-py connection (auth, TLS and db
from the URL), and the publish replies are read back before the next slot.

Prints one JSON line at the end: events published, achieved rate, late slots, bytes.
Run by hand (bench/bench_receiver.py starts it); never in CI.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis  # noqa: E402

SLOT_S = 0.005
TASKS = (
    ("afirgen_tasks.reports.generate_fir_pdf", "reports"),
    ("afirgen_tasks.notify.send_email", "email"),
    ("afirgen_tasks.analytics.aggregate_daily", "analytics"),
    ("afirgen_tasks.cleanup.purge_temp", "cleanup"),
    ("afirgen_tasks.reports.render_summary", "default"),
)
TRACEBACK = (
    'Traceback (most recent call last):\n  File "/srv/afirgen/afirgen_tasks/reports.py", '
    'line 88, in generate_fir_pdf\n    raise ReportError(f"template {name} missing")\n'
    "afirgen_tasks.errors.ReportError: template fir_v2 missing\n"
)
SW = '"sw_ident": "py-celery", "sw_ver": "5.7.0", "sw_sys": "Linux"'


def utcoffset() -> int:
    """What Celery's dispatcher sends as ``utcoffset`` (celery.utils.time.utcoffset)."""
    if time.daylight and time.localtime().tm_isdst:
        return time.altzone // 3600
    return time.timezone // 3600


class Encoder:
    """Pre-encoded pieces of Celery event messages; only ids, clocks and times are filled in."""

    def __init__(self, db: int, prefix: str, body_encoding: str, utcoff: int):
        self.channel_prefix = f"/{db}.celeryev/".encode()
        self.prefix = prefix
        self.base64 = body_encoding == "base64"
        self.pid = os.getpid()
        self.tail = f'"utcoffset": {utcoff}, "pid": {self.pid}'
        self.tag = 0

    def envelope(self, body: str, hostname: str, routing_key: str) -> bytes:
        self.tag += 1
        if self.base64:
            b = base64.b64encode(body.encode()).decode()
            enc = "base64"
        else:
            b = json.dumps(body)
            enc = None
        props = (
            '{"delivery_mode": 1, "delivery_info": {"exchange": "celeryev", "routing_key": "'
            + routing_key
            + '"}, "priority": 0, "body_encoding": '
            + ('"base64"' if enc else "null")
            + ', "delivery_tag": "'
            + f"{self.prefix}flood-{self.pid}-{self.tag}"
            + '"}'
        )
        return ('{"body": "' if self.base64 else '{"body": ').encode() + (
            b
            + ('"' if self.base64 else "")
            + ', "content-encoding": "utf-8", "content-type": "application/json", '
            '"headers": {"hostname": "' + hostname + '"}, "properties": ' + props + "}"
        ).encode()


def resp(channel: bytes, payload: bytes) -> bytes:
    """One ``PUBLISH channel payload`` in the Redis protocol."""
    return b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
        len(channel),
        channel,
        len(payload),
        payload,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="broker URL, e.g. redis://127.0.0.1:6391/0")
    parser.add_argument("--rate", type=float, required=True, help="events per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=200, help="worker hostnames")
    parser.add_argument("--group", type=int, default=24, help="most events per task.multi message")
    parser.add_argument("--prefix", default="", help="uuid prefix (tells runs apart)")
    parser.add_argument("--body-encoding", choices=("base64", "plain"), default="base64")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rnd = random.Random(args.seed)

    client = redis.Redis.from_url(args.url)
    db = int(client.connection_pool.connection_kwargs.get("db", 0) or 0)
    conn = client.connection_pool.get_connection()
    enc = Encoder(db, args.prefix, args.body_encoding, utcoffset())
    hosts = [f"celery@flood-w{i:04d}" for i in range(args.workers)]
    clocks = [0] * len(hosts)
    processed = [0] * len(hosts)
    ch_sent = enc.channel_prefix + b"task.sent"
    ch_multi = enc.channel_prefix + b"task.multi"
    ch_hb = enc.channel_prefix + b"worker.heartbeat"
    ch_online = enc.channel_prefix + b"worker.online"
    tail = enc.tail
    published = messages = sent_bytes = 0

    def flush(chunks: list[bytes]) -> None:
        nonlocal sent_bytes
        if not chunks:
            return
        data = b"".join(chunks)
        sent_bytes += len(data)
        conn.send_packed_command([data], check_health=False)
        for _ in chunks:
            conn.read_response()

    def worker_event(w: int, ts: float, kind: str, fields: str) -> str:
        clocks[w] += 1
        return (
            '{"hostname": "' + hosts[w] + '", ' + tail + f', "clock": {clocks[w]}, '
            f'"timestamp": {ts!r}, "type": "{kind}"' + fields + "}"
        )

    def worker_message(w: int, ts: float, kind: str, fields: str, channel: bytes) -> bytes:
        return resp(channel, enc.envelope(worker_event(w, ts, kind, fields), hosts[w], kind))

    online = ', "freq": 2.0, ' + SW
    flush(
        [
            worker_message(w, time.time(), "worker-online", online, ch_online)
            for w in range(len(hosts))
        ]
    )
    published += len(hosts)
    messages += len(hosts)

    seq = 0
    started = time.perf_counter()
    wall_started = time.time()
    hb_next = [started + 2.0 * (w + 1) / len(hosts) for w in range(len(hosts))]
    hb_order = 0
    late_slots = slots = 0
    target_tasks = int(args.rate * args.seconds) // 4
    tasks = 0
    while True:
        now = time.perf_counter()
        elapsed = now - started
        if elapsed >= args.seconds or tasks >= target_tasks:
            break
        ts = time.time()
        due = min(int(elapsed * args.rate / 4) + 1, target_tasks) - tasks
        chunks: list[bytes] = []
        per_worker: dict[int, list[str]] = {}
        for _ in range(max(0, due)):
            seq += 1
            h = f"{rnd.getrandbits(128):032x}"
            task_id = f"{args.prefix}{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"
            name, queue = TASKS[seq % len(TASKS)]
            w = rnd.randrange(len(hosts))
            body = (
                '{"hostname": "gen-client@flood", ' + tail + ', "clock": 0, '
                f'"timestamp": {ts!r}, "type": "task-sent", "uuid": "{task_id}", '
                f'"root_id": "{task_id}", "parent_id": null, "name": "{name}", '
                f'"args": "({seq}, \'FIR-{seq % 100000:05d}\')", '
                '"kwargs": "{\'lang\': \'en\', \'notify\': True}", "retries": 0, "eta": null, '
                f'"expires": null, "queue": "{queue}", "exchange": "", "routing_key": '
                f'"{queue}", "priority": {seq % 10}' + "}"
            )
            chunks.append(resp(ch_sent, enc.envelope(body, "gen-client@flood", "task.sent")))
            evs = per_worker.setdefault(w, [])
            evs.append(
                worker_event(
                    w,
                    ts,
                    "task-received",
                    f', "uuid": "{task_id}", "name": "{name}", "args": "(...)", '
                    f'"kwargs": "{{...}}", "root_id": "{task_id}", "parent_id": null, '
                    '"retries": 0, "eta": null, "expires": null',
                )
            )
            evs.append(worker_event(w, ts, "task-started", f', "uuid": "{task_id}"'))
            if seq % 50 == 0:
                evs.append(
                    worker_event(
                        w,
                        ts,
                        "task-failed",
                        f', "uuid": "{task_id}", "exception": '
                        f"\"ReportError('template fir_v2 missing')\", "
                        f'"traceback": {json.dumps(TRACEBACK)}',
                    )
                )
            else:
                evs.append(
                    worker_event(
                        w,
                        ts,
                        "task-succeeded",
                        f', "uuid": "{task_id}", "result": '
                        f"\"'/srv/afirgen/out/{task_id[:8]}.pdf'\", "
                        f'"runtime": {0.01 + (seq % 300) / 100}',
                    )
                )
            tasks += 1
            published += 4
            messages += 1
        for w, evs in per_worker.items():
            for i in range(0, len(evs), args.group):
                group = evs[i : i + args.group]
                chunks.append(
                    resp(
                        ch_multi, enc.envelope("[" + ", ".join(group) + "]", hosts[w], "task.multi")
                    )
                )
                messages += 1
        while hb_next[hb_order] <= now:
            w = hb_order
            chunks.append(
                worker_message(
                    w,
                    ts,
                    "worker-heartbeat",
                    f', "freq": 2.0, "active": {w % 4}, "processed": {processed[w]}, '
                    '"loadavg": [1.2, 1.1, 0.9], ' + SW,
                    ch_hb,
                )
            )
            hb_next[w] += 2.0
            hb_order = (hb_order + 1) % len(hosts)
            published += 1
            messages += 1
        flush(chunks)
        slots += 1
        if (time.perf_counter() - started) * args.rate / 4 - tasks > args.rate / 4 * SLOT_S * 2:
            late_slots += 1
        sleep = SLOT_S - (time.perf_counter() - now)
        if sleep > 0:
            time.sleep(sleep)
    elapsed = time.perf_counter() - started
    client.connection_pool.release(conn)
    result: dict[str, Any] = {
        "rate_target": args.rate,
        "seconds": round(elapsed, 3),
        "task_events": tasks * 4,
        "published": published,
        "messages": messages,
        "bytes": sent_bytes,
        "achieved_rate": round(tasks * 4 / elapsed, 1),
        "late_slots": late_slots,
        "slots": slots,
        "wall_started": wall_started,
        "cpu_s": round(time.process_time(), 2),
        "pid": os.getpid(),
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
