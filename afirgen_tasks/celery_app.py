"""The ``celery -A afirgen_tasks.celery_app`` target: the workers' app, built on first use.

``celery -A afirgen_tasks.celery_app worker -l info`` consumes all five queues;
``-Q email -c 4`` or ``--autoscale=8,2`` work as usual.  Importing this module has no side
effects: ``app`` (and the ``settings`` it was built from) are made when Celery asks for
them, from ``AFIRGEN_CONFIG`` / ./config.toml and the environment.  Everything else (the
console, ``--check``, the tests) builds its own app with
:func:`afirgen_tasks.factory.create_app` from the settings it chose.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    """``app`` and ``settings``, built once, on first use (a config mistake exits 2, one line each)."""
    if name in ("app", "settings"):
        from afirgen_tasks.factory import create_app
        from afirgen_tasks.settings import load_settings_or_exit

        settings = load_settings_or_exit()
        app = create_app(settings)
        globals().update(settings=settings, app=app)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
