"""The reader process's pieces that need no broker: what it imports (it must start fast)
and how its socket thread bounds what waits to be decoded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tui.sources.event_process import _SocketReader
from tui.sources.redis_conn import RedisOptions

ROOT = Path(__file__).resolve().parents[2]


def test_the_reader_process_imports_neither_celery_nor_pydantic_nor_textual():
    # what `python -m tui.sources.event_process` imports before it reads its first message
    probe = (
        "import sys, tui.sources.event_process, tui.sources.redis_conn\n"
        "heavy = ('celery', 'kombu', 'pydantic', 'pydantic_settings', 'textual', 'rich')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_the_socket_thread_drops_and_counts_past_its_byte_limit_and_takes_again_after():
    reader = _SocketReader("redis://127.0.0.1:1/0", RedisOptions(), "/0.celeryev/*", 1000)
    reader._process(b"a" * 600)
    reader._process(b"b" * 600)  # 1200 bytes would wait: dropped, counted
    assert list(reader.raw) == [b"a" * 600] and reader.dropped == 1
    reader.raw.popleft()
    reader.bytes_out += 600  # the main thread decoded it
    reader._process(b"c" * 600)
    assert list(reader.raw) == [b"c" * 600] and reader.dropped == 1
