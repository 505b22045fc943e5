"""The ``--demo`` sandbox: a broker of its own, two real workers and a steady mix of jobs."""

from tui.demo.sandbox import Sandbox, SMTPSink, free_port

__all__ = ["SMTPSink", "Sandbox", "free_port"]
