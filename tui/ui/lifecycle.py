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
            if self.is_running and self.screen_stack and self.screen_stack[0].is_attached:
                raise
            return None

    return wrapper
