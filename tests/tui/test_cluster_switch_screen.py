"""The ``c`` switcher on static sources: the registry entry, the one-cluster notice, the
states as each probe answers, and a switch that rebuilds the console on the chosen cluster."""

from __future__ import annotations

from afirgen_tasks.settings import Settings, load_settings
from tui.check import ClusterProbe
from tui.sources.cluster import StaticSources
from tui.ui.app import AfirgenApp
from tui.ui.commands import COMMANDS, command_for_key
from tui.ui.screens.cluster_switch import ClusterSwitchScreen


def test_c_is_the_console_switcher_and_the_worker_detail_keeps_its_own():
    assert command_for_key("c", None).action == "switch_cluster"
    assert command_for_key("c", "tasks").action == "switch_cluster"
    scopes = sorted(c.scope for c in COMMANDS if "c" in c.key.split(","))
    assert scopes == ["console", "worker_detail"]


async def test_c_with_one_cluster_says_how_to_add_one(console):
    async with console.run_test(size=(120, 36)) as pilot:
        await pilot.press("c")
        await pilot.pause()
        assert not isinstance(console.screen, ClusterSwitchScreen)
        assert any("[clusters.NAME]" in n.message for n in console._notifications)


async def test_c_lists_states_and_switches_to_a_fresh_console(
    tmp_path, screen_settings, monkeypatch
):
    config = tmp_path / "config.toml"
    config.write_text(
        '[console]\ncluster_name = "a"\n[clusters.b]\nbroker = "redis://:pw@b-host:6379/2"\n'
    )
    answers = {
        "a": ClusterProbe(True, 2, "up (1 ms), 2 worker(s) answering"),
        "b": ClusterProbe(False, None, "unreachable: connection refused"),
    }
    # no broker is asked here (the live test asks real ones)
    monkeypatch.setattr("tui.check.probe_cluster", lambda s: answers[s.cluster_name])
    settings = load_settings(
        config,
        paths_data_dir=tmp_path / "var",
        console_audit_log=tmp_path / "audit.log",
    )
    built: list[StaticSources] = []

    def connect(cluster: Settings):
        built.append(StaticSources(cluster))
        return built[-1], None

    app = AfirgenApp(settings, StaticSources(settings), autostart=False, connect=connect)

    async with app.run_test(size=(120, 36)) as pilot:
        first = app.console_screen
        status = str(first.query_one("#status").render())
        assert status.startswith("a: redis://127.0.0.1:6379/0")
        await pilot.press("c")
        await pilot.pause()
        switcher = app.screen
        assert isinstance(switcher, ClusterSwitchScreen)
        for _ in range(50):
            await pilot.pause(0.05)
            if all(switcher.states.get(n) is not None for n in answers):
                break
        table = switcher.query_one("#clusters")
        assert "2 worker(s)" in str(table.get_cell("a", "state"))
        assert "unreachable" in str(table.get_cell("b", "state"))
        assert "pw" not in str(table.get_cell("b", "broker"))
        table.move_cursor(row=1, animate=False)
        await pilot.press("enter")
        for _ in range(50):
            await pilot.pause(0.05)
            if app.screen is app.console_screen and app.console_screen is not first:
                break
        assert app.settings.cluster_name == "b" and app.sources is built[-1]
        assert not first.is_attached
        status = str(app.console_screen.query_one("#status").render())
        assert status.startswith("b: redis://:***@b-host:6379/2")
        assert app.actions.audit.cluster_name == "b"


async def test_c_typed_in_the_filter_is_a_letter(tmp_path, monkeypatch, screen_settings):
    config = tmp_path / "config.toml"
    config.write_text('[clusters.b]\nbroker = "redis://127.0.0.1:1/2"\n')
    settings = load_settings(config, console_audit_log=tmp_path / "audit.log")
    monkeypatch.setattr("tui.check.probe_cluster", lambda s: ClusterProbe(False, None, "-"))
    app = AfirgenApp(settings, StaticSources(settings), autostart=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("slash", "c", "e")
        await pilot.pause()
        assert not isinstance(app.screen, ClusterSwitchScreen)
        assert app.console_screen.query_one("#filter").value == "ce"
