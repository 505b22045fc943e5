"""A RabbitMQ the tests may use: a vhost of their own, created for the run and removed after.

The RabbitMQ on 127.0.0.1:5672 may carry somebody's queues on vhost ``/``: the tests
never declare, purge or consume there.  In order:

1. ``$AFIRGEN_TEST_AMQP_URL`` -- used as given (the caller vouches that the tests may
   create and purge queues on it);
2. a fresh vhost ``afirgen-test-<hex>`` on the local broker, made with ``rabbitmqctl``
   (as root, or as a user allowed to), with guest granted on it, deleted at the end.

If neither works the caller skips, saying why.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from dataclasses import dataclass, field
from urllib.parse import quote


class RabbitUnavailable(RuntimeError):
    """No RabbitMQ vhost could be had for the tests."""


@dataclass
class RabbitVhost:
    """An AMQP URL on a vhost the tests own; :meth:`remove` deletes the vhost if they made it."""

    url: str
    vhost: str
    created: bool
    _ctl: str | None = field(default=None, repr=False)

    def remove(self) -> None:
        """Delete the vhost (and every queue in it) if this run created it."""
        if self.created and self._ctl:
            subprocess.run(
                [self._ctl, "delete_vhost", self.vhost],
                capture_output=True,
                timeout=60,
                check=False,
            )
            self.created = False


def _answers(host: str = "127.0.0.1", port: int = 5672, timeout: float = 1.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def make_vhost(user: str = "guest", password: str = "guest") -> RabbitVhost:
    """A vhost of the tests' own (see the module docstring); raises :class:`RabbitUnavailable`."""
    url = os.environ.get("AFIRGEN_TEST_AMQP_URL", "").strip()
    if url:
        return RabbitVhost(url, url.rsplit("/", 1)[-1], created=False)
    if not _answers():
        raise RabbitUnavailable("RabbitMQ does not answer on 127.0.0.1:5672 within 1 s")
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        raise RabbitUnavailable(
            "rabbitmqctl is not on PATH (set AFIRGEN_TEST_AMQP_URL to a vhost the tests may use)"
        )
    vhost = f"afirgen-test-{uuid.uuid4().hex[:10]}"
    steps = (["add_vhost", vhost], ["set_permissions", "-p", vhost, user, ".*", ".*", ".*"])
    for step in steps:
        try:
            done = subprocess.run(
                [ctl, *step], capture_output=True, text=True, timeout=60, check=False
            )
        except subprocess.TimeoutExpired:
            done = None
        if done is None or done.returncode != 0:
            subprocess.run(
                [ctl, "delete_vhost", vhost], capture_output=True, timeout=60, check=False
            )
            why = (
                "timed out"
                if done is None
                else (done.stderr or done.stdout).strip().splitlines()[-1:]
            )
            raise RabbitUnavailable(f"rabbitmqctl {step[0]} failed: {why}")
    return RabbitVhost(
        f"amqp://{user}:{password}@127.0.0.1:5672/{quote(vhost, safe='')}", vhost, True, ctl
    )
