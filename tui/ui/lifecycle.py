"""Helpers for callbacks that may outlive the app's widgets."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from textual.css.query import NoMatches


def while_panes_exist(method: Callable[..., Any]) -> Callable[..., Any]:
    """Timer and message callbacks can fire while the app shuts down and its panes are gone."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except NoMatches:
            # ``self`` is the console screen: while it and the app are up, a missing pane is a bug
            app = self.app
            if app.is_running and self.is_attached:
                raise
            return None

    return wrapper
