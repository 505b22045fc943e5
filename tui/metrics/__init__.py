"""``afirgen-tui --serve-metrics HOST:PORT``: the cluster as Prometheus metrics, headless.

:mod:`tui.metrics.exporter` turns what the sources read (events, queue polls, inspect
replies) into metric families; :mod:`tui.metrics.serve` runs the loop and the HTTP
server.  Neither imports Textual; every broker read goes through :mod:`tui.sources`.
"""
