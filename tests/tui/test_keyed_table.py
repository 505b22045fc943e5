"""KeyedTable, the Line-API table of the panes: only the rows on screen are drawn, the
cursor stays on its row's key, and what is drawn is the cells as given (cut with an
ellipsis, aligned as the Text says, restyled when only a style changed)."""

from __future__ import annotations

from rich.text import Text
from textual.app import App, ComposeResult

from tui.ui.widgets.keyed_table import KeyedTable

ROWS = 1000


class TableApp(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.selected: list[str] = []
        self.highlighted: list[str] = []

    def compose(self) -> ComposeResult:
        yield KeyedTable(id="t")

    def on_mount(self) -> None:
        table = self.query_one(KeyedTable)
        table.add_column("Key", width=6, key="key")
        table.add_column("Value", width=5, key="value")
        table.focus()

    def on_keyed_table_row_selected(self, event: KeyedTable.RowSelected) -> None:
        self.selected.append(event.row_key.value)

    def on_keyed_table_row_highlighted(self, event: KeyedTable.RowHighlighted) -> None:
        self.highlighted.append(event.row_key.value)


def lines(table: KeyedTable, n: int) -> list[str]:
    return [table.render_line(y).text for y in range(n)]


async def test_a_paint_draws_only_the_rows_on_screen_and_reuses_unchanged_ones():
    app = TableApp()
    async with app.run_test(size=(30, 12)) as pilot:
        table = app.query_one(KeyedTable)
        built: list[str] = []

        def make(key: str):
            def cells():
                built.append(key)
                return [Text(key), Text("1", justify="right")]

            return cells

        table.add_many([(f"r{i}", make(f"r{i}")) for i in range(ROWS)])
        await pilot.pause()
        # 12 lines, one of them the header: about 11 rows were built, not 1,000
        assert 0 < len(built) <= 12, len(built)
        assert table.row_count == ROWS and table.virtual_size.height == ROWS + 1
        drawn = len(built)
        strips = dict(table._strips)
        # a change to a row far below the screen builds nothing and redraws nothing on screen
        table.defer("r900", make("r900"))
        await pilot.pause()
        assert len(built) == drawn
        assert all(table._strips.get(k) is s for k, s in strips.items() if k != "r900")
        table.action_scroll_end()
        await pilot.pause()
        assert "r900" not in built  # r999 is at the bottom, r900 is still out of sight
        assert table.cursor_key() == "r999" and "r999" in built


async def test_the_cursor_stays_on_its_row_when_rows_move_or_go():
    app = TableApp()
    async with app.run_test(size=(30, 12)) as pilot:
        table = app.query_one(KeyedTable)
        for i in range(20):
            table.upsert(f"k{i}", [Text(f"k{i}"), Text(str(i))])
        await pilot.pause()
        assert table.cursor_key() == "k0" and not table.pinned
        await pilot.press("down", "down", "down")
        assert table.cursor_key() == "k3" and table.pinned
        # new rows on top: the cursor follows k3 to its new row number
        for i in range(20, 25):
            table.upsert(f"k{i}", [Text(f"k{i}"), Text(str(i))])
        table.set_order([f"k{i}" for i in range(24, 19, -1)] + [f"k{i}" for i in range(20)])
        assert table.cursor_key() == "k3" and table.cursor_row == 8
        # rows above it removed: still on k3
        table.drop_many(["k24", "k23", "k0"])
        assert table.cursor_key() == "k3" and table.cursor_row == 5
        # its own row removed: the cursor stays at that row number
        table.drop_many(["k3"])
        assert table.cursor_row == 5 and table.cursor_key() == "k4"
        # not pinned (Home): the top row, whatever arrives
        await pilot.press("home")
        table.upsert("new", [Text("new"), Text("")])
        table.set_order(["new", *[k for k in table.ordered_keys if k != "new"]])
        assert table.cursor_key() == "new" and table.cursor_row == 0
        # every key must be listed exactly once
        try:
            table.set_order(["new"])
        except ValueError as exc:
            assert "every shown key" in str(exc)
        else:
            raise AssertionError("set_order accepted a partial order")


async def test_enter_and_a_click_on_the_highlighted_row_select_it():
    app = TableApp()
    async with app.run_test(size=(30, 12)) as pilot:
        table = app.query_one(KeyedTable)
        for i in range(5):
            table.upsert(f"k{i}", [Text(f"k{i}"), Text(str(i))])
        await pilot.pause()
        await pilot.press("down", "enter")
        await pilot.pause()
        assert app.selected == ["k1"]
        assert app.highlighted[-1] == "k1"
        # a click on another row highlights it; a second click selects it (header is line 0)
        await pilot.click(KeyedTable, offset=(2, 4))
        await pilot.pause()
        assert table.cursor_key() == "k3" and app.selected == ["k1"]
        await pilot.click(KeyedTable, offset=(2, 4))
        await pilot.pause()
        assert app.selected == ["k1", "k3"]
        # a click on the header selects nothing
        await pilot.click(KeyedTable, offset=(2, 0))
        await pilot.pause()
        assert app.selected == ["k1", "k3"] and table.cursor_key() == "k3"


async def test_cells_are_cut_with_an_ellipsis_aligned_and_redrawn_on_a_style_change():
    app = TableApp()
    async with app.run_test(size=(30, 6)) as pilot:
        table = app.query_one(KeyedTable)
        table.upsert("a", [Text("abcdefghij"), Text("7", justify="right")])
        table.upsert("b", ["[b]x[/b]", Text("ok")])  # a str is literal, never markup
        table.move_cursor(row=1)
        await pilot.pause()
        header, first, second = lines(table, 3)
        assert header.startswith(" Key     Value ")
        assert first.startswith(" abcde…      7 ")  # 6 cells: five and the ellipsis
        assert second.startswith(" [b]x[…  ok    ")
        # the same characters in another style: the row is drawn again
        table.move_cursor(row=1)
        before = table.render_line(1)
        table.upsert("a", [Text("abcdefghij", style="bold"), Text("7", justify="right")])
        after = table.render_line(1)
        assert after.text == before.text
        assert any(seg.style and seg.style.bold for seg in after) and not any(
            seg.style and seg.style.bold for seg in before
        )


async def test_width_changes_and_scrolling_keep_whole_columns():
    app = TableApp()
    async with app.run_test(size=(30, 6)) as pilot:
        table = app.query_one(KeyedTable)
        table.upsert("a", [Text("abcdefghij"), Text("7", justify="right")])
        table.set_column_width("key", 10)
        await pilot.pause()
        assert table.render_line(1).text.startswith(" abcdefghij      7 ")
        assert table.virtual_size.width == sum(
            c.get_render_width(table) for c in table.ordered_columns
        )
        assert table.get_cell("a", "value") == Text("7")
        assert table.get_row_index("a") == 0 and table.get_row_at(0)[0].plain == "abcdefghij"


async def test_moving_the_cursor_repaints_its_two_lines_only():
    app = TableApp()
    async with app.run_test(size=(30, 12)) as pilot:
        table = app.query_one(KeyedTable)
        table.add_many([(f"r{i}", [Text(f"r{i}"), Text("1")]) for i in range(ROWS)])
        await pilot.pause()
        drawn: list[int] = []
        render_line = table.render_line

        def counting(y: int):
            drawn.append(y)
            return render_line(y)

        table.render_line = counting  # type: ignore[method-assign]
        table.action_cursor_down()  # row 0 -> row 1: lines 1 and 2 (line 0 is the header)
        await pilot.pause()
        assert sorted(set(drawn)) == [1, 2]
        assert table.cursor_key() == "r1"
        assert "r1" in lines(table, 3)[2]
        drawn.clear()
        for _ in range(12):  # past the bottom: the pane scrolls, every line is drawn again
            table.action_cursor_down()
        await pilot.pause()
        assert len(set(drawn)) >= 10
