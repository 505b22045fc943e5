"""afirgen-tui: the keyboard-driven console for the AFIRGen Celery + Redis cluster."""

from afirgen_tasks import __version__

__all__ = ["__version__"]
