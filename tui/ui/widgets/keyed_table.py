"""Rows updated by key and drawn with Textual's Line API: only the rows on screen are drawn.

The panes and the paging screens never ``clear()`` and rebuild: they add, update and
remove rows by key, and :meth:`KeyedTable.set_order` puts the rows in the wanted order in
one step.  When the order changes, the cursor follows the *row* it was on (not the row
number) and the viewport scrolls by the same amount, so the highlighted row does not jump
on screen.

Why not Textual's ``DataTable`` (which this replaced, issue 17): a DataTable keeps a
``Row`` object, a location index and a cell dictionary per row, re-indexes every row on a
removal, and renders every visible cell through Rich's layout on any change (its render
caches are keyed by a table-wide update count).  Under a flood of 5,000 events a tick the
Tasks pane's bookkeeping and repaint cost more than applying the events.  Here a row is a
key in an ordered list plus its cells; a tick that changes 1,000 rows costs list and dict
operations, and a paint renders only the ~30 rows on screen, each from a cached strip
unless its cells changed.

A row's cells can also be *deferred* (:meth:`defer`): the table keeps a function that
builds them and calls it when the row is first drawn or read (``get_row``/``get_cell``).
Most rows that change in a flood tick are never on screen before they change again.

Cells are :class:`rich.text.Text` (a ``str`` is shown literally, never parsed as markup),
cropped to their column with an ellipsis, right-aligned when their ``justify`` says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets.data_table import RowKey

from tui.core.safe_text import data_text

Cells = Sequence[str | Text]
#: builds a deferred row's cells when it is drawn or read; None keeps what the row shows
MakeCells = Callable[[], Cells | None]


def _literal(cell: str | Text) -> Text:
    # A str from data is shown literally (a Text is never parsed as markup).
    return data_text(cell) if isinstance(cell, str) else cell


def _same(old: list[Text], new: list[Text]) -> bool:
    # Text's == compares the characters and spans only: a row whose cell turned from bold to
    # dim (a worker going offline) must be drawn again.
    return len(old) == len(new) and all(
        a is b
        or (
            a.plain == b.plain
            and a.style == b.style
            and a.spans == b.spans
            and a.justify == b.justify
        )
        for a, b in zip(old, new, strict=True)
    )


@dataclass(slots=True)
class Column:
    """A column: its key, header label and width in cells (padding not included)."""

    key: str
    label: Text
    width: int

    def get_render_width(self, table: KeyedTable) -> int:
        """Cells the column takes on screen, its padding included."""
        return self.width + 2 * table.cell_padding


class _RowMessage(Message):
    """A row of a :class:`KeyedTable`: the table, the row's number and its key."""

    def __init__(self, table: KeyedTable, cursor_row: int, row_key: RowKey) -> None:
        self.table = table
        self.cursor_row = cursor_row
        self.row_key = row_key
        super().__init__()

    @property
    def control(self) -> KeyedTable:
        """The table."""
        return self.table


class KeyedTable(ScrollView, can_focus=True):
    """Ordered rows keyed by a string, a row cursor pinned to its key, drawn line by line."""

    DEFAULT_CSS = """
    KeyedTable {
        height: 1fr;
        background: $surface;
        color: $foreground;
        &:focus { background-tint: $foreground 5%; }
        & > .keyed-table--header { text-style: bold; background: $panel; color: $foreground; }
        &:focus > .keyed-table--header { background-tint: $foreground 5%; }
        &:ansi > .keyed-table--header { background: ansi_bright_blue; color: ansi_default; }
        & > .keyed-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        &:focus > .keyed-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
    }
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {"keyed-table--header", "keyed-table--cursor"}

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Select", show=False),
        Binding("up", "cursor_up", "Cursor up", show=False),
        Binding("down", "cursor_down", "Cursor down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "scroll_home", "Top", show=False),
        Binding("end", "scroll_end", "Bottom", show=False),
        Binding("ctrl+home", "scroll_top", "Top", show=False),
        Binding("ctrl+end", "scroll_bottom", "Bottom", show=False),
        Binding("left", "scroll_left", "Scroll left", show=False),
        Binding("right", "scroll_right", "Scroll right", show=False),
    ]

    class RowHighlighted(_RowMessage):
        """The cursor moved to another row (``row_key.value`` is its key)."""

    class RowSelected(_RowMessage):
        """Enter (or a click on the highlighted row) chose a row (``row_key.value``)."""

    #: spaces on each side of a cell
    cell_padding = 1
    #: lines of the column header (fixed at the top while the rows scroll)
    header_height = 1
    show_header = True

    def __init__(self, *, id: str | None = None, classes: str | None = None):
        super().__init__(id=id, classes=classes)
        self._columns: dict[str, Column] = {}
        self._order: list[str] = []  # the keys, top first
        self._index: dict[str, int] | None = {}  # key -> row; None: rebuilt when asked
        self._keys: set[str] = set()
        self._rows: dict[str, list[Text]] = {}
        #: rows whose cells are built when first drawn or read (:meth:`defer`)
        self._pending: dict[str, MakeCells] = {}
        #: each row's strip as last drawn (without the cursor), until its cells change
        self._strips: dict[str, Strip] = {}
        self._strips_base: Style | None = None  # the widget style they were drawn with
        self._header_strip: Strip | None = None
        self._cursor = 0
        self._highlighted: str | None = None
        #: a repaint was asked for and has not happened yet (see :meth:`_repaint`)
        self._repaint_asked = False
        #: True once the operator moved the cursor; until then it stays on the top row.
        self.pinned = False

    # ---- columns -----------------------------------------------------------------------
    def add_column(self, label: str | Text, *, width: int, key: str) -> str:
        """Add a column of ``width`` cells (its label is literal text); returns its key."""
        self._columns[key] = Column(key, _literal(label), width)
        self._layout_changed()
        return key

    @property
    def columns(self) -> dict[str, Column]:
        """The columns by key, in order (do not mutate; see :meth:`set_column_width`)."""
        return self._columns

    @property
    def ordered_columns(self) -> list[Column]:
        """The columns, left to right."""
        return list(self._columns.values())

    def set_column_width(self, key: str, width: int) -> None:
        """Give column ``key`` a new width."""
        column = self._columns[key]
        if column.width != width:
            column.width = width
            self._layout_changed()

    def _layout_changed(self) -> None:
        self._strips.clear()
        self._header_strip = None
        self._resize_virtual()
        self.refresh()

    def _resize_virtual(self) -> None:
        width = sum(c.width + 2 * self.cell_padding for c in self._columns.values())
        size = Size(width, len(self._order) + (self.header_height if self.show_header else 0))
        if size != self.virtual_size:
            self.virtual_size = size
            self.refresh(layout=True)  # an auto-height pane grows or shrinks with its rows

    # ---- queries -----------------------------------------------------------------------
    def has_key(self, key: str) -> bool:
        """True when a row with ``key`` is shown."""
        return key in self._keys

    @property
    def row_keys(self) -> set[str]:
        """Keys of every row shown (a live view; do not mutate)."""
        return self._keys

    @property
    def row_count(self) -> int:
        """Rows in the table."""
        return len(self._order)

    @property
    def ordered_keys(self) -> list[str]:
        """The keys, top first (a copy)."""
        return list(self._order)

    def get_row_index(self, key: str) -> int:
        """The row number of ``key`` (KeyError when it is not shown)."""
        index = self._index
        if index is None:
            index = self._index = {k: i for i, k in enumerate(self._order)}
        return index[key]

    def _row_cells(self, key: str) -> list[Text]:
        if self._pending:
            self._materialize(key)
        return self._rows[key]

    def get_row(self, key: RowKey | str) -> list[Text]:
        """The cells of row ``key``, built now if they were deferred."""
        name = str(key.value) if isinstance(key, RowKey) else key
        if name not in self._keys:
            raise KeyError(name)
        return list(self._row_cells(name))

    def get_row_at(self, row: int) -> list[Text]:
        """The cells of the row at ``row`` (0 = top)."""
        return self.get_row(self._order[row])

    def get_cell(self, key: RowKey | str, column_key: str) -> Text | None:
        """The cell of row ``key`` in column ``column_key`` (None when the row has none)."""
        cells = self.get_row(key)
        for i, column in enumerate(self._columns):
            if column == column_key:
                return cells[i] if i < len(cells) else None
        raise KeyError(column_key)

    def get_column(self, column_key: str) -> Iterator[Text | None]:
        """The cells of column ``column_key``, top to bottom."""
        i = list(self._columns).index(column_key)
        for key in self._order:
            cells = self._row_cells(key)
            yield cells[i] if i < len(cells) else None

    @property
    def cursor_row(self) -> int:
        """The highlighted row number (0 when the table is empty)."""
        return self._cursor

    def cursor_key(self) -> str | None:
        """The key of the highlighted row, or None when the table is empty."""
        return self._order[self._cursor] if 0 <= self._cursor < len(self._order) else None

    # ---- deferred cells ------------------------------------------------------------------
    def _materialize(self, key: str) -> None:
        make = self._pending.pop(key, None)
        if make is None:
            return
        cells = make()
        if cells is None or key not in self._keys:
            return  # the record is gone: the row keeps what it showed
        self._store(key, cells)

    def _store(self, key: str, cells: Cells) -> bool:
        new = [_literal(c) for c in cells]
        if len(new) > len(self._columns):
            raise ValueError("More values provided than there are columns.")
        old = self._rows.get(key)
        if old is not None and _same(old, new):
            return False
        self._rows[key] = new
        self._strips.pop(key, None)
        return True

    def defer(self, key: str, make: MakeCells) -> bool:
        """Add or update the row ``key``; ``make()`` builds its cells when the row is first
        drawn or read (None: keep the cells shown).  Returns True when the row was new."""
        if key in self._keys:
            self._pending[key] = make
            self._strips.pop(key, None)
            self._repaint()
            return False
        self.add_many([(key, make)])
        return True

    # ---- updates -------------------------------------------------------------------------
    def upsert(self, key: str, cells: Cells) -> bool:
        """Add the row ``key`` or update its changed cells; returns True when it was new."""
        self._pending.pop(key, None)  # these cells are newer than any deferred ones
        if key in self._keys:
            if self._store(key, cells):
                self._repaint()
            return False
        self.add_many([(key, cells)])
        return True

    def add_row(self, *cells: str | Text, key: str) -> str:
        """Append the row ``key`` (DataTable's spelling of :meth:`upsert` for a new row)."""
        if key in self._keys:
            raise ValueError(f"row {key!r} exists")
        self.add_many([(key, cells)])
        return key

    def update_cell(self, key: str, column_key: str, value: str | Text) -> None:
        """Change one cell of row ``key``."""
        cells = list(self._row_cells(key))
        i = list(self._columns).index(column_key)
        cells.extend(Text() for _ in range(i + 1 - len(cells)))
        cells[i] = _literal(value)
        if self._store(key, cells):
            self._repaint()

    def add_many(self, rows: Iterable[tuple[str, Cells | MakeCells]]) -> None:
        """Append rows (keys not shown yet) in one step; cells may be deferred (:meth:`defer`)."""
        order, keys, index = self._order, self._keys, self._index
        start = len(order)
        for key, cells in rows:
            if key in keys:
                continue
            if callable(cells):
                self._pending[key] = cells
                self._rows[key] = []
            else:
                self._rows[key] = []
                self._store(key, cells)
            keys.add(key)
            if index is not None:
                index[key] = len(order)
            order.append(key)
        if len(order) == start:
            return  # nothing new
        self._resize_virtual()
        if start == 0:
            self._set_cursor(0, scroll=False)
        self.refresh()

    def drop_many(self, keys: Iterable[str]) -> None:
        """Remove many rows at once; the cursor stays on its row when that row stays."""
        drop = {k for k in keys if k in self._keys}
        if not drop:
            return
        before = self.cursor_key()
        for key in drop:
            self._keys.discard(key)
            self._rows.pop(key, None)
            self._pending.pop(key, None)
            self._strips.pop(key, None)
        self._order = [k for k in self._order if k not in drop]
        self._index = None
        self._resize_virtual()
        if before is not None and before not in drop:
            self._set_cursor(self.get_row_index(before), scroll=False)
        else:
            self._set_cursor(self._cursor, scroll=False)  # clamped into the rows left
        self.refresh()

    def clear(self) -> None:
        """Remove every row (the columns stay)."""
        self.drop_many(list(self._order))

    def set_order(self, keys: Sequence[str]) -> None:
        """Show rows in the order of ``keys`` (every shown key, once), keeping the cursor's row."""
        keys = list(keys)
        if keys == self._order:
            return
        if len(keys) != len(self._keys) or not self._keys.issuperset(keys):
            raise ValueError(
                f"set_order needs every shown key once: {len(keys)} keys, {len(self._keys)} rows"
            )
        before_key = self.cursor_key()
        before_row = self._cursor
        self._order = list(keys)
        self._index = None
        self.refresh()
        if before_key is None:
            return
        if not self.pinned:
            self._set_cursor(0, scroll=False)
            return
        new_row = self.get_row_index(before_key)
        if new_row != before_row:
            self._set_cursor(new_row, scroll=False)
            # the viewport moves with the row: it stays where the operator's eyes are
            self.scroll_to(
                y=max(0, self.scroll_y + (new_row - before_row)), animate=False, immediate=True
            )

    # ---- the cursor ------------------------------------------------------------------------
    def move_cursor(
        self,
        *,
        row: int | None = None,
        column: int | None = None,
        animate: bool = False,
        scroll: bool = True,
    ) -> None:
        """Highlight row ``row`` (clamped), scrolling it into view."""
        del column, animate  # rows only; no animation
        if row is not None:
            self._set_cursor(row, scroll=scroll)

    def _set_cursor(self, row: int, *, scroll: bool) -> None:
        row = max(0, min(row, len(self._order) - 1))
        if row != self._cursor:
            self._refresh_rows(self._cursor, row)
            self._cursor = row
        if scroll:
            self._scroll_to_cursor()
        key = self.cursor_key()
        if key != self._highlighted:
            self._highlighted = key
            if key is not None:
                self.post_message(self.RowHighlighted(self, row, RowKey(key)))

    def _scroll_to_cursor(self) -> None:
        visible = self.scrollable_content_region.height - (
            self.header_height if self.show_header else 0
        )
        if visible <= 0:
            return
        top = round(self.scroll_y)
        if self._cursor < top:
            self.scroll_to(y=self._cursor, animate=False, immediate=True)
        elif self._cursor >= top + visible:
            self.scroll_to(y=self._cursor - visible + 1, animate=False, immediate=True)

    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height - self.header_height)

    def unpin(self) -> None:
        """Follow the top row again (the operator pressed Home)."""
        self.pinned = False
        if self._order:
            self._set_cursor(0, scroll=True)

    # The operator moving the cursor pins it (the rows may move; the cursor follows its row).
    def action_cursor_down(self) -> None:
        self.pinned = True
        self._set_cursor(self._cursor + 1, scroll=True)

    def action_cursor_up(self) -> None:
        self.pinned = True
        self._set_cursor(self._cursor - 1, scroll=True)

    def action_page_down(self) -> None:
        self.pinned = True
        self._set_cursor(self._cursor + self._page(), scroll=True)

    def action_page_up(self) -> None:
        self.pinned = True
        self._set_cursor(self._cursor - self._page(), scroll=True)

    def action_scroll_end(self) -> None:
        """End: the last row."""
        self.pinned = True
        self._set_cursor(len(self._order) - 1, scroll=True)

    def action_scroll_bottom(self) -> None:
        self.action_scroll_end()

    def action_scroll_home(self) -> None:
        """Home: the top row, and follow it again."""
        self.unpin()
        self.scroll_to(y=0, animate=False, immediate=True)

    def action_scroll_top(self) -> None:
        self.action_scroll_home()

    def action_select_cursor(self) -> None:
        """Enter: the highlighted row is chosen."""
        key = self.cursor_key()
        if key is not None:
            self.post_message(self.RowSelected(self, self._cursor, RowKey(key)))

    async def _on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        header = self.header_height if self.show_header else 0
        if offset is None or offset.y < header:
            return
        row = round(self.scroll_y) + offset.y - header
        if not 0 <= row < len(self._order):
            return
        event.stop()
        if row == self._cursor:
            self.action_select_cursor()
        else:
            self.pinned = True
            self._set_cursor(row, scroll=True)

    def _on_focus(self, event: events.Focus) -> None:
        self.refresh()  # the cursor's style changes with the focus

    def _on_blur(self, event: events.Blur) -> None:
        self.refresh()

    def notify_style_update(self) -> None:
        # the theme or the CSS changed: the header has the old colours
        super().notify_style_update()
        self._header_strip = None

    # ---- drawing ---------------------------------------------------------------------------
    def _refresh_rows(self, *rows: int) -> None:
        """Repaint just these rows' lines (the cursor's old and new row): a key press under a
        flood then redraws two lines, not the whole pane.  A scroll repaints it all anyway."""
        top = round(self.scroll_y)
        header = self.header_height if self.show_header else 0
        height = self.scrollable_content_region.height
        width = max(self.virtual_size.width, self.size.width)
        regions = [
            Region(0, header + row - top, width, 1)
            for row in rows
            if header <= header + row - top < height
        ]
        if regions:
            self.refresh(*regions)

    def _repaint(self) -> None:
        # A flood tick updates ~1,000 rows: Widget.refresh() per row cost more than the rows
        # (it walks the screen's dirty regions each time); once until the next paint is enough.
        if not self._repaint_asked:
            self._repaint_asked = True
            self.refresh()

    def render_lines(self, crop: Region) -> list[Strip]:
        self._repaint_asked = False
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        """Line ``y`` of the widget: the header, or the row that is scrolled there."""
        width = self.scrollable_content_region.width
        base = self.rich_style
        if base != self._strips_base:  # focus tint, theme: the cached rows' colours changed
            self._strips.clear()
            self._header_strip = None
            self._strips_base = base
        scroll_x, scroll_y = self.scroll_offset
        header = self.header_height if self.show_header else 0
        if y < header:
            strip = self._header_strip
            if strip is None:
                style = self.get_component_rich_style("keyed-table--header")
                strip = self._header_strip = self._strip(
                    [c.label for c in self._columns.values()], base + style
                )
            return strip.crop_extend(scroll_x, scroll_x + width, base)
        row = scroll_y + y - header
        if not 0 <= row < len(self._order):
            return Strip.blank(width, base)
        key = self._order[row]
        if row == self._cursor:
            cursor = self.get_component_rich_style("keyed-table--cursor")
            strip = self._strip(self._row_cells(key), base, cursor)
        else:
            cached = self._strips.get(key)
            if cached is None or key in self._pending:
                cached = self._strips[key] = self._strip(self._row_cells(key), base)
            strip = cached
        return strip.crop_extend(scroll_x, scroll_x + width, base)

    def _strip(self, cells: Sequence[Text], base: Style, post: Style | None = None) -> Strip:
        """One row's segments: each cell cropped (with an ellipsis) or padded to its column."""
        console = self.app.console
        pad = self.cell_padding
        segments: list[Segment] = []
        total = 0
        for i, column in enumerate(self._columns.values()):
            width = column.width
            cell = cells[i] if i < len(cells) else None
            text = Text() if cell is None else cell
            length = text.cell_len
            if length > width:
                text = text.copy()
                text.truncate(width, overflow="ellipsis")
                length = text.cell_len
            right = text.justify == "right"
            before = pad + (width - length if right else 0)
            after = pad + (0 if right else width - length)
            segments.append(Segment(" " * before, base))
            if text.spans:  # render() combines the Text's own style with its spans
                segments.extend(Segment.apply_style(text.render(console), base))
            elif text.style:  # ... but leaves it out when there are no spans
                segments.append(Segment(text.plain, base + console.get_style(text.style)))
            else:
                segments.append(Segment(text.plain, base))
            segments.append(Segment(" " * after, base))
            total += width + 2 * pad
        if post is not None:
            segments = list(Segment.apply_style(segments, post_style=post))
        return Strip(segments, total)
