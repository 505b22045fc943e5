"""Broker and result-backend I/O of the console and the metrics exporter, and the trust boundary.

The events receiver, the queue-length poller, inspect, the control commands
(:mod:`tui.sources.control`), the result-backend reads and the validation of everything
that comes back (:mod:`tui.sources.validate`).  Nothing here imports Textual or touches
widgets.  ``tui.check`` reuses these modules headless and adds its own probes (a broker
ping, a heartbeat listener) bounded by ``--timeout``.
"""
