"""A DataTable updated by row key, whose cursor stays on the operator's row.

Panes never ``clear()`` and rebuild: they add, update and remove rows by key, and
:meth:`KeyedTable.set_order` puts the rows in the wanted order in one step.  When the
order changes, the cursor follows the *row* it was on (not the row number) and the
viewport scrolls by the same amount, so the highlighted row does not jump on screen.

A row's cells can also be *deferred* (:meth:`defer`): the table keeps a function that
builds them and calls it when the row is first drawn or read (``get_row``/``get_cell``).
Under an event flood most rows that change in a tick are never on screen before they
change again (issue 17: 5,000 events a tick, ~30 rows visible), so a tick's cost no longer
grows with the cells of rows nobody sees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import zip_longest
from typing import Any

from rich.text import Text
from textual.geometry import Size
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, CellKey, ColumnKey, Row, RowKey

from tui.core.safe_text import data_text


def _literal(cell: str | Text) -> Text:
    # DataTable parses a str cell as markup (default_cell_formatter): a str from data
    # would be styled, made clickable, or crash the render on "[/]". Panes pass Text; a
    # str that slips through is shown literally.
    return data_text(cell) if isinstance(cell, str) else cell


class KeyedTable(DataTable):
    """DataTable with keyed upserts, ordered rows and a cursor pinned to its row key."""

    DEFAULT_CSS = """
    KeyedTable { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None):
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=False)
        self._keys: set[str] = set()
        #: True once the operator moved the cursor; until then it stays on the top row.
        self.pinned = False
        self._column_keys_cache: list[ColumnKey] | None = None
        #: rows whose cells are built when first drawn or read (:meth:`defer`)
        self._pending: dict[str, Callable[[], Sequence[str | Text] | None]] = {}

    # ---- queries -----------------------------------------------------------------------
    def has_key(self, key: str) -> bool:
        """True when a row with ``key`` is shown."""
        return key in self._keys

    @property
    def row_keys(self) -> set[str]:
        """Keys of every row shown (a live view; do not mutate)."""
        return self._keys

    def cursor_key(self) -> str | None:
        """The key of the highlighted row, or None when the table is empty."""
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except CellDoesNotExist:  # the cursor sits past the last row while rows are removed
            return None

    # ---- deferred cells --------------------------------------------------------------------
    def _materialize(self, key: str) -> None:
        make = self._pending.pop(key, None)
        if make is None:
            return
        cells = make()
        data = self._data.get(RowKey(key))
        if cells is None or data is None:
            return  # the record is gone: the row keeps what it showed
        for column_key, new in zip(self._ordered_column_keys(), map(_literal, cells), strict=False):
            data[column_key] = new

    def get_row(self, row_key: RowKey | str) -> list[Any]:
        if self._pending:
            self._materialize(row_key.value if isinstance(row_key, RowKey) else row_key)  # type: ignore[arg-type]
        return super().get_row(row_key)

    def get_cell(self, row_key: RowKey | str, column_key: ColumnKey | str) -> Any:
        if self._pending:
            self._materialize(row_key.value if isinstance(row_key, RowKey) else row_key)  # type: ignore[arg-type]
        return super().get_cell(row_key, column_key)

    def get_column(self, column_key: ColumnKey | str) -> Iterable[Any]:
        for key in list(self._pending):
            self._materialize(key)
        return super().get_column(column_key)

    def defer(self, key: str, make: Callable[[], Sequence[str | Text] | None]) -> bool:
        """Add or update the row ``key``; ``make()`` builds its cells when the row is first
        drawn or read (None: keep the cells shown).  Returns True when the row was new."""
        if key in self._keys:
            self._pending[key] = make
            self._update_count += 1
            self.refresh()
            return False
        self.add_many([(key, make)])
        return True

    # ---- updates -------------------------------------------------------------------------
    def upsert(self, key: str, cells: Sequence[str | Text]) -> bool:
        """Add the row ``key`` or update its changed cells; returns True when it was new."""
        self._pending.pop(key, None)  # these cells are newer than any deferred ones
        if key in self._keys:
            # What DataTable.update_cell does per cell (store, bump the render caches'
            # generation, refresh), once per row: get_row, ordered_columns and update_cell
            # rebuilt lists per call, the largest cost of a tick under a flood.
            data = self._data[RowKey(key)]
            changed = False
            for column_key, new in zip(
                self._ordered_column_keys(), map(_literal, cells), strict=False
            ):
                old = data.get(column_key)
                if old is not new and old != new:
                    data[column_key] = new
                    changed = True
            if changed:
                self._update_count += 1
                self.refresh()
            return False
        self.add_row(*map(_literal, cells), key=key)
        self._keys.add(key)
        return True

    def add_many(
        self,
        rows: Sequence[
            tuple[str, Sequence[str | Text] | Callable[[], Sequence[str | Text] | None]]
        ],
    ) -> None:
        """Append rows (keys not shown yet) in one step; cells may be deferred (:meth:`defer`).

        DataTable.add_row, per row: rebuilds the ordered column list twice, sets the
        cursor reactive (watchers and all) and checks idle; a flood adds ~250 rows per tick.
        This does its bookkeeping per row and the rest once.
        """
        columns = self._ordered_column_keys()
        start = index = self.row_count
        for key, cells in rows:
            if key in self._keys:
                continue
            if callable(cells):
                self._pending[key] = cells
                cells = ()
            if len(cells) > len(columns):
                raise ValueError("More values provided than there are columns.")
            row_key = RowKey(key)
            self._row_locations[row_key] = index
            index += 1
            self._data[row_key] = dict(zip_longest(columns, map(_literal, cells)))
            self.rows[row_key] = Row(row_key, 1, None, False)
            self._new_rows.add(row_key)
            self._keys.add(key)
        if index == start:
            return  # nothing new
        self._require_update_dimensions = True
        self.cursor_coordinate = self.cursor_coordinate
        if start == 0 and len(self.columns) > 0 and self.show_cursor and self.cursor_type != "none":
            self._highlight_cursor()
        self._update_count += 1
        self.check_idle()

    def _ordered_column_keys(self) -> list[ColumnKey]:
        # Columns are added once, at mount; rebuild only when their number changes.
        keys = self._column_keys_cache
        if keys is None or len(keys) != len(self.columns):
            keys = self._column_keys_cache = [column.key for column in self.ordered_columns]
        return keys

    def drop_many(self, keys: Iterable[str]) -> None:
        """Remove many rows with one re-index.

        ``DataTable.remove_row`` rebuilds the whole row index per call (O(rows)); a full
        Tasks pane drops a row for every new task, which made removal the main cost of a
        tick under load (bench/bench_e2e.py, docs/performance.md).
        """
        drop = [k for k in dict.fromkeys(keys) if k in self._keys]
        if not drop:
            return
        gone = [RowKey(k) for k in drop]
        for key, row_key in zip(drop, gone, strict=True):
            self._keys.discard(key)
            self._pending.pop(key, None)
            for column_key in self._data.get(row_key, ()):
                self._updated_cells.discard(CellKey(row_key, column_key))
            del self.rows[row_key]
            del self._data[row_key]
        from textual._two_way_dict import TwoWayDict

        locations = self._row_locations
        kept = sorted((rk for rk in locations if rk in self.rows), key=locations.get)  # type: ignore[arg-type]
        self._row_locations = TwoWayDict({rk: i for i, rk in enumerate(kept)})
        self._require_update_dimensions = True
        self._update_count += 1
        self.cursor_coordinate = self.cursor_coordinate  # clamp into the remaining rows
        self.hover_coordinate = self.hover_coordinate
        self.refresh(layout=True)

    def set_order(self, keys: Sequence[str]) -> None:
        """Show rows in the order of ``keys`` (every shown key must be listed), keeping the cursor's row."""
        before_key = self.cursor_key()
        before_row = self.cursor_row
        current = [rk.value for rk in sorted(self._row_locations, key=self._row_locations.get)]  # type: ignore[arg-type]
        if current == list(keys):
            return
        # No public API reorders rows by key; sort() does exactly this assignment internally.
        from textual._two_way_dict import TwoWayDict

        self._row_locations = TwoWayDict({RowKey(k): i for i, k in enumerate(keys)})
        self._update_count += 1
        self.refresh()
        if before_key is None:
            return
        if not self.pinned:
            self.move_cursor(row=0, animate=False, scroll=False)
            return
        new_row = self.get_row_index(before_key)
        if new_row != before_row:
            self.move_cursor(row=new_row, animate=False, scroll=False)
            self.scroll_to(
                y=max(0, self.scroll_y + (new_row - before_row)), animate=False, immediate=True
            )

    def unpin(self) -> None:
        """Follow the top row again (the operator pressed Home)."""
        self.pinned = False
        if self.row_count:
            self.move_cursor(row=0, animate=False)

    # ---- fixed widths: nothing to measure -------------------------------------------------
    # Every pane declares its column widths. DataTable still measures each cell of every new
    # row when idle (a Rich render per cell), which changes nothing for fixed widths and was
    # the largest UI cost under an event flood (docs/performance.md, "B"). These two
    # overrides of DataTable internals skip it; textual is pinned below 9 in pyproject.toml
    # and tests/tui cover the rendering.
    def _update_column_widths(self, updated_cells) -> None:
        if any(column.auto_width for column in self.columns.values()):
            super()._update_column_widths(updated_cells)

    def _update_dimensions(self, new_rows) -> None:
        if any(column.auto_width for column in self.columns.values()) or any(
            row.auto_height or row.label is not None for row in self.rows.values()
        ):
            super()._update_dimensions(new_rows)
            return
        width = sum(column.get_render_width(self) for column in self.columns.values())
        header = self.header_height if self.show_header else 0
        self.virtual_size = Size(
            width + self._row_label_column_width, self._total_row_height + header
        )

    # ---- the operator moving the cursor pins it ---------------------------------------
    def action_cursor_down(self) -> None:
        self.pinned = True
        super().action_cursor_down()

    def action_cursor_up(self) -> None:
        self.pinned = True
        super().action_cursor_up()

    def action_page_down(self) -> None:
        self.pinned = True
        super().action_page_down()

    def action_page_up(self) -> None:
        self.pinned = True
        super().action_page_up()

    def action_scroll_end(self) -> None:
        """End: the last row (DataTable's End only scrolls sideways in a row-cursor table)."""
        self.pinned = True
        if self.row_count:
            self.move_cursor(row=self.row_count - 1, animate=False)
        super().action_scroll_end()

    def action_scroll_home(self) -> None:
        self.unpin()
        super().action_scroll_home()

    def action_scroll_top(self) -> None:
        self.unpin()
        super().action_scroll_top()

    def action_scroll_bottom(self) -> None:
        self.pinned = True
        super().action_scroll_bottom()
