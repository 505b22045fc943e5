"""The direct Redis event reader in a process of its own (issue 17).

At 20k events/s the reader needs about half a core; as a thread of the console it shares
the GIL with a busy UI thread, falls behind, and Redis disconnects a pub/sub subscriber
whose output buffer passes 32 MB (``client-output-buffer-limit pubsub``): everything
queued for it is lost, silently.  Here the reading, decoding and validating run in a
child process with its own GIL and core, and hand over validated events in pickled
batches.

In the child:

* a **socket thread** (:class:`_SocketReader`) holds the ``PSUBSCRIBE`` (redis-py +
  hiredis: parsing only) and appends each raw message to a deque bounded in bytes; it
  reconnects with backoff and reports the status (RECONNECTING, CONNECTED, ``connects``);
* the **main thread** decodes and validates (:class:`~tui.sources.redis_events.EventDecoder`:
  every event through the trust boundary, a bad one counted and skipped) and sends the
  batch, with the counters, the tally's reasons and the status, to the console.

The split keeps the socket drained when the child is starved of CPU: reading a message
costs the socket thread ~1.3 µs (hiredis on the raw socket), decoding and validating it
~13 µs, so an overload becomes counted drops in our memory (``dropped``) rather than a
disconnect by Redis (a gap nobody counts).  Measured with ``bench/bench_receiver.py
--hogs 2`` at 20k events/s, back to back against the same process decoding in its socket
thread: Redis cut that one off 8 times in 4 runs, this one never, and this one applied
more in 3 of the 4; the price is lag (p99 0.95-1.2 s against 0.54-0.8 s at 20k/s without
the busy loops, load average 5).  docs/performance.md, "20k events/s (issue 17)".

In the console, :class:`ProcessEventReceiver` is a thread with the interface of the other
receivers (``buffer``, ``drain``, ``received``, ``dropped``, ``invalid``, ``cleaned``,
``tally``, ``status``, ``stop``, plus ``buffered``).  It keeps the batches pickled, up
to its buffer's bound, until :meth:`ProcessEventReceiver.drain` unpickles them in the UI
thread, restarts the process with backoff if it dies (``status.connects`` keeps counting,
so the console resyncs), and stops it within a second.  The child never outlives the console:
the pipe's end-of-file, a parent-pid check and (Linux) ``PR_SET_PDEATHSIG`` each end it.
It never writes to the terminal: its stdin, stdout and stderr are ``/dev/null``.

How it starts
-------------

``subprocess.Popen([python, "-P", "-m", "tui.sources.event_process", FD])``: a fresh
interpreter, exec'd at once (``-P``: the console's working directory is not on its
``sys.path``; the broker's ``CELERY_*``/``AFIRGEN_*`` variables are not in its environment).  ``_posixsubprocess`` forks and execs in C, so no Python code runs in a
copy of the console, whose other threads may hold locks: the earlier variant forked the
console with multiprocessing's ``fork`` and hung at start in a full CI run.  Its stdin,
stdout and stderr are ``/dev/null`` and only its end of the pipe (a socketpair) is
passed; its config (the URL with its password, the TLS and sentinel options) comes
through the pipe, never on the command line.  The console unpickles what it sends with an
unpickler that refuses every class but the reader's status (:func:`plain_data`).  It imports the stdlib, redis-py with
hiredis and the trust boundary, not celery, kombu, pydantic or textual
(tests/unit/test_event_process.py), so it is subscribed ~0.2-0.3 s after ``start()``
(load average 5 on the 2-CPU test machine; docs/performance.md has the figures).

Not multiprocessing's ``forkserver``, though each reader after the first would start in
~40 ms instead of ~250 ms (measured): its server and resource tracker are started with
``sys.stderr.fileno()``, which Textual's stand-in answers with -1 (``ValueError: bad
value(s) in fds_to_keep``) unless ``sys.stderr`` is swapped process-wide meanwhile; they
inherit the console's fd 2, the terminal Textual draws on; every reader it forks imports
the console's ``__main__`` again (spawn's preparation data: ``tui.cli``, or pytest); its
readers' parent is the server, not the console, so no parent-death signal ties them to
the console; and the server is one per process, shared with anything else that uses it.
``spawn`` has the same descriptor problems and no speed to offer.

A start costs a few hundred ms (a second or more on a loaded machine), once per console,
per cluster switch and per restart after a crash.  Events published in that window are
not lost to what the console does: :meth:`~tui.sources.readout.ReceiverReadout.wait_connected`
holds the console's first inspect (its resync) and ``enable_events`` until the
subscription is live (``BrokerSources``), and CONNECTED is only reported once Redis has
confirmed the ``PSUBSCRIBE``.
"""

from __future__ import annotations

import collections
import io
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui.sources.readout import CONNECTED, CONNECTING, ReceiverReadout, ReceiverStatus
from tui.sources.redis_events import EventDecoder, RedisEventReceiverThread
from tui.sources.validate import Tally

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)

#: How often the child hands over a batch when events trickle in (its latency).
BATCH_S = 0.02
#: Most events in one batch (messages are decoded until a batch holds this many); the
#: console's UI thread unpickles a batch at once: 1,000 events take it ~2 ms.
BATCH_EVENTS = 1_000
#: Raw bytes the socket thread holds before it drops (and counts) messages: as much as
#: Redis' own pub/sub limit (32 MB) would have let wait for us, so no more lag than before,
#: but a counted drop of the newest messages instead of a cut of the subscription.
RAW_LIMIT_BYTES = 32 * 2**20
#: Seconds the child is given to exit after it was asked to, before it is killed.
EXIT_GRACE_S = 0.5


# =====================================================================================
# The child process
# =====================================================================================


class _SocketReader(RedisEventReceiverThread):
    """The child's socket thread: reads messages off the subscription, nothing else.

    ``dropped`` counts messages not kept (the raw deque was full); ``bytes_out`` is written
    by the main thread only, ``bytes_in`` by this one.
    """

    def __init__(self, url: str, options: Any, pattern: str, limit_bytes: int):
        super().__init__(None, 0, url=url, settings=options, pattern=pattern)
        self.raw: collections.deque[bytes] = collections.deque()
        self.limit_bytes = limit_bytes
        self.bytes_in = 0
        self.bytes_out = 0

    # ---- runs in the socket thread -----------------------------------------------------
    def _process(self, data: Any) -> None:
        size = len(data)
        if self.bytes_in - self.bytes_out + size > self.limit_bytes:
            self.dropped += 1
            return
        self.bytes_in += size
        self.raw.append(data)


def _die_with_parent(parent: int) -> None:
    """Linux: be killed when the thread that started us ends (the console's pump thread,
    or the whole console); then check the parent did not go before that was set."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the pipe and the ppid check remain
        pass
    if os.getppid() != parent:
        os._exit(0)


def serve(conn: Connection) -> None:
    """The child's main loop: read the config from ``conn``, then send batches until the
    console says stop (``None``), closes its end, or goes."""
    config = conn.recv()
    parent = config["parent"]
    _die_with_parent(parent)
    batch_s = config.get("batch_s", BATCH_S)
    reader = _SocketReader(
        config["url"],
        config["options"],
        config["pattern"],
        config.get("raw_limit", RAW_LIMIT_BYTES),
    )
    decoder = EventDecoder()
    tally = decoder.tally
    raw = reader.raw
    reader.start()
    received = 0
    sent: tuple[Any, ...] = ()
    try:
        while True:
            # wait for the console only when nothing waits to be decoded
            if conn.poll(0 if raw else batch_s):
                break  # asked to stop, or the console closed its end
            if os.getppid() != parent:
                break  # the console is gone
            events: list[dict[str, Any]] = []
            taken = 0
            popleft = raw.popleft
            while raw and len(events) < BATCH_EVENTS:
                data = popleft()
                taken += len(data)
                try:
                    events.extend(decoder.events(data))
                except Exception as exc:  # noqa: BLE001 - one message, not the loop
                    tally.skip(f"event handler error: {type(exc).__name__}")
            reader.bytes_out += taken
            received += len(events)
            state = (received, reader.dropped, tally.invalid, tally.cleaned, reader.status)
            if not events and state == sent:
                continue
            reasons = None
            if not sent or (tally.invalid, tally.cleaned) != (sent[2], sent[3]):
                reasons = (dict(tally.reasons), tally.last)
            # Two frames: the counters and status, and the events apart (the console's
            # pump thread unpickles only the first; its UI thread unpickles the events
            # when it applies them, so no second thread holds the console's GIL for long:
            # under a flood that thread, preempted while holding it, stalled the UI for
            # 100-200 ms).  The C pickler, not Connection.send's ForkingPickler (a Python
            # subclass: 15 % of this process at 20k events/s).
            # at most BATCH_EVENTS events a frame, however many one message carried (up to
            # MAX_EVENTS_PER_MESSAGE): the console's UI thread unpickles a frame at once
            for start in range(0, max(len(events), 1), BATCH_EVENTS):
                part = events[start : start + BATCH_EVENTS]
                conn.send_bytes(
                    pickle.dumps(
                        (
                            len(part),
                            # taken off the wire, as the other receivers count it: a
                            # message dropped undecoded counts as one event, in
                            # ``dropped`` too
                            received + reader.dropped,
                            reader.dropped,
                            (tally.invalid, tally.cleaned),
                            reasons,
                            reader.status,
                        ),
                        pickle.HIGHEST_PROTOCOL,
                    )
                )
                if part:
                    conn.send_bytes(pickle.dumps(part, pickle.HIGHEST_PROTOCOL))
            sent = state
    except (OSError, EOFError):
        pass  # the console closed the pipe
    finally:
        reader.stop(0.0)


def main(argv: list[str]) -> int:
    """``python -m tui.sources.event_process FD``: serve the console on the socket ``FD``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the console decides when we stop
    conn = Connection(int(argv[1]))
    try:
        serve(conn)
    except Exception as exc:  # noqa: BLE001 - said to the console, which shows it
        try:
            conn.send(f"{type(exc).__name__}: {exc}")
        except (OSError, ValueError):
            pass
        return 1
    return 0


# =====================================================================================
# In the console
# =====================================================================================


class _ProcessEnded(Exception):
    """The reader process ended (its pipe closed), or said why it failed."""


#: The only classes a reader process's batches may hold besides plain data (dicts, lists,
#: tuples, strings, numbers, None): its status.
_ALLOWED_CLASSES = {("tui.sources.readout", "ReceiverStatus")}


class _PlainDataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_CLASSES:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed")


def plain_data(data: bytes) -> Any:
    """Unpickle a message from the reader process, refusing every class but its status: the
    child's events are plain data, and nothing else has a reason to be there."""
    return _PlainDataUnpickler(io.BytesIO(data)).load()


class ProcessEventReceiver(ReceiverReadout, threading.Thread):
    """The direct Redis reader in a process of its own; this thread (in the console) takes
    its counters and keeps its batches of events pickled until :meth:`drain` (the UI
    thread) unpickles them.

    Same interface as the in-process receivers.  If the process dies it is started again
    with the receivers' backoff; ``status.connects`` keeps counting across processes, so
    the console resyncs.
    """

    def __init__(
        self,
        app: Celery | None,
        buffer_size: int = 200_000,
        scrub: Any = None,
        tally: Tally | None = None,
        url: str | None = None,
        settings: Any = None,
        pattern: str | None = None,
        batch_s: float = BATCH_S,
        raw_limit: int = RAW_LIMIT_BYTES,
    ):
        super().__init__(name="afirgen-events-process", daemon=True)
        from tui.sources.redis_conn import RedisOptions
        from tui.sources.redis_events import event_source

        self.url, self.pattern = event_source(app, url, pattern)
        self.options = RedisOptions.from_settings(settings)
        self.buffer: collections.deque[dict[str, Any]] = collections.deque()
        #: batches in arrival order: as the process sent them (pickled), unpickled by
        #: :meth:`drain`, or already a list (the part of a batch a full buffer kept)
        self._raw: collections.deque[tuple[int, bytes | list[dict[str, Any]]]] = collections.deque()
        self._raw_in = 0  # events put in _raw (this thread only)
        self._raw_out = 0  # events taken out of _raw (the UI thread only)
        self._refused = 0  # events in batches drain() could not unpickle (the UI thread only)
        self.buffer_size = buffer_size
        self.batch_s = batch_s
        self.raw_limit = raw_limit
        self.received = 0
        self.dropped = 0
        self._scrub = scrub or (lambda text: text)
        self.tally = tally if tally is not None else Tally()
        self._stop_event = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        #: processes started so far (the first, then one per restart)
        self.starts = 0

    @property
    def pid(self) -> int | None:
        """The reader process's pid (None between processes)."""
        process = self._process
        return process.pid if process is not None else None

    def child_cpu(self) -> float:
        """CPU seconds used by the current reader process so far (for benchmarks)."""
        try:
            import psutil

            t = psutil.Process(self.pid).cpu_times()
            return float(t.user + t.system)
        except Exception:  # noqa: BLE001 - no process, no psutil
            return 0.0

    # ---- called from the UI thread ----------------------------------------------------
    @property
    def buffered(self) -> int:
        """Events waiting to be drained, unpickled or not."""
        return len(self.buffer) + self._raw_in - self._raw_out

    def drain(self, budget: int) -> list[dict[str, Any]]:
        """Pop up to ``budget`` events, oldest first, unpickling the batches they are in."""
        buf, raw = self.buffer, self._raw
        while len(buf) < budget and raw:
            n, data = raw.popleft()
            self._raw_out += n
            if isinstance(data, list):
                buf.extend(data)
                continue
            try:
                buf.extend(plain_data(data))
            except Exception as exc:  # noqa: BLE001 - not plain data: the batch is refused
                # counted as dropped (the pump thread's next counters include it); the
                # child's tally is the child's, so the reason goes to the log
                self._refused += n
                self.dropped += n
                log.warning("event reader batch of %d refused: %s", n, type(exc).__name__)
        return super().drain(budget)

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the process and this thread: the process is asked to exit, and killed if it
        has not within ``timeout`` (about a second in all)."""
        self._stop_event.set()
        conn = self._conn
        if conn is not None:
            try:
                conn.send(None)
            except Exception:  # noqa: BLE001 - already gone
                pass
        if self.is_alive():
            self.join(timeout)
        if self.is_alive():  # the process does not answer: end it, which ends recv()
            self._kill()
            self.join(timeout)
        else:
            self._close_process()

    # ---- runs in this thread ------------------------------------------------------------
    def _kill(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            try:
                process.kill()
            except OSError:
                pass

    def _close_process(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()  # the child sees end-of-file and exits
            except OSError:
                pass
        process, self._process = self._process, None
        if process is not None:
            try:
                process.wait(EXIT_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                try:
                    process.wait(5.0)  # SIGKILL: at once, unless stuck in the kernel
                except subprocess.TimeoutExpired:
                    pass

    def _start_process(self) -> Connection:
        ours, theirs = socket.socketpair()
        try:
            # The configuration (the URL and its password) comes through the pipe: the
            # broker and backend URLs stay out of the child's environment (/proc/PID/environ).
            env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "AFIRGEN_"))}
            # the same tui package as this console's, wherever it is installed
            root = str(Path(__file__).resolve().parents[2])
            env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
            process = subprocess.Popen(
                # -P: not the current directory first on sys.path (a json.py or base64.py
                # where the console was started would run in the reader, whose batches the
                # console unpickles)
                [sys.executable, "-P", "-m", "tui.sources.event_process", str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                close_fds=True,
                env=env,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        conn = Connection(ours.detach())
        self._process, self._conn = process, conn
        self.starts += 1
        # secrets (the URL's password, the sentinels') go through the pipe, never argv
        conn.send(
            {
                "parent": os.getpid(),
                "url": self.url,
                "options": self.options,
                "pattern": self.pattern,
                "batch_s": self.batch_s,
                "raw_limit": self.raw_limit,
            }
        )
        return conn

    def run(self) -> None:
        attempt = 0
        base_received = base_dropped = base_invalid = base_cleaned = base_connects = 0
        dropped_here = child_dropped = 0  # overflow of this buffer; of the process's
        tally = self.tally
        while not self._stop_event.is_set():
            base_reasons = dict(tally.reasons)
            try:
                conn = self._start_process()
                child_seen: tuple[object, ...] = (0, CONNECTING, None, 0)
                while not self._stop_event.is_set():
                    try:
                        message = plain_data(conn.recv_bytes())
                    except (EOFError, OSError) as exc:
                        raise _ProcessEnded(self._ended_why()) from exc
                    except pickle.UnpicklingError as exc:
                        raise _ProcessEnded(f"refused a message: {exc}") from exc
                    if message.__class__ is str:
                        raise _ProcessEnded(message)
                    n, received, dropped, counts, reasons, status = message
                    if n:
                        try:
                            data = conn.recv_bytes()
                        except (EOFError, OSError) as exc:
                            raise _ProcessEnded(self._ended_why()) from exc
                        room = max(self.buffer_size - self.buffered, 0)
                        if n <= room:
                            self._raw.append((n, data))
                            self._raw_in += n
                        else:  # the buffer is full: keep what fits, count the rest
                            try:
                                kept = plain_data(data)[:room]
                            except pickle.UnpicklingError as exc:
                                raise _ProcessEnded(f"refused a message: {exc}") from exc
                            dropped_here += n - len(kept)
                            if kept:  # behind the batches before it, in order
                                self._raw.append((len(kept), kept))
                                self._raw_in += len(kept)
                    self.received = base_received + received
                    child_dropped = base_dropped + dropped
                    self.dropped = child_dropped + dropped_here + self._refused
                    if reasons is not None:
                        tally.invalid = base_invalid + counts[0]
                        tally.cleaned = base_cleaned + counts[1]
                        merged = dict(base_reasons)
                        for reason, n in reasons[0].items():
                            merged[reason] = merged.get(reason, 0) + n
                        tally.reasons = merged  # one reference swap: readers see old or new
                        tally.last = reasons[1]
                    # the next attempt's time too: a RECONNECTING status whose attempt
                    # came and went read "retry in 0s" for as long as the broker was away
                    seen = (status.connects, status.state, status.next_attempt_at, status.attempt)
                    if seen != child_seen:
                        child_seen = seen
                        if status.state == CONNECTED:
                            attempt = 0
                        if status.state != CONNECTING:
                            self._set_status(
                                ReceiverStatus(
                                    status.state,
                                    status.since,
                                    status.next_attempt_at,
                                    self._scrub(status.error)[:200],
                                    status.attempt,
                                    base_connects + status.connects,
                                )
                            )
            except Exception as exc:  # the process died, or could not be started
                if self._stop_event.is_set():
                    break
                why = str(exc) if isinstance(exc, _ProcessEnded) else f"{type(exc).__name__}: {exc}"
                delay = self._set_reconnecting(
                    self._scrub(f"event reader process ended: {why}"), attempt
                )
                attempt += 1
                self._stop_event.wait(delay)
            finally:
                base_received, base_dropped = self.received, child_dropped
                base_invalid, base_cleaned = tally.invalid, tally.cleaned
                base_connects = self._status.connects
                self._close_process()
        self._set_stopped()

    def _ended_why(self) -> str:
        process = self._process
        code = process.poll() if process is not None else None
        if code is None and process is not None:
            try:
                code = process.wait(EXIT_GRACE_S)
            except subprocess.TimeoutExpired:
                return "its pipe closed"
        if code is not None and code < 0:
            return f"killed by signal {-code}"
        return f"exit code {code}"


if __name__ == "__main__":
    # no interpreter shutdown: nothing to flush, and the socket thread may be mid-read
    os._exit(main(sys.argv))
