"""AFIRGen background jobs: settings, the Celery app and the tasks workers run."""

__version__ = "0.1.0"
