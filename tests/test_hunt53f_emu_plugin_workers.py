"""tools/cuda_emu's pytest plugin counts the launches of pytest-xdist's workers (``run ... -n 2``).

Before, the controller reported only its own launches, which are none under ``-n`` (the tests run in
the workers): "0 kernel launches ran; 0 of 68 launch sites in cuda/ ran" and every site listed as
never launched, however much of the suite ran. The emulated module itself is not needed here: a
stand-in library answers the two counters the plugin reads.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from emu_tools import build as emu_build
from emu_tools import plugin as okemu_plugin


@pytest.fixture(autouse=True)
def _build_as_the_plugin_imports_it(monkeypatch):
    """The plugin imports tools/cuda_emu/build.py as ``build`` (on sys.path under tools/cuda_emu/run):
    here for these tests only."""
    monkeypatch.setitem(sys.modules, "build", emu_build)


class _Lib:
    """The runtime's okemu_launch_count / okemu_launch_sites over a dict (site -> launches)."""

    def __init__(self, sites: dict[str, int]):
        text = "".join(f"{k}\t{v}\n" for k, v in sites.items()).encode()
        self.okemu_launch_count = lambda: sum(sites.values())

        def launch_sites(buf, cap):
            if buf is not None:
                buf.value = text[: cap - 1]
            return len(text) + 1

        self.okemu_launch_sites = launch_sites


def _summary(config) -> list[str]:
    lines: list[str] = []
    okemu_plugin.pytest_terminal_summary(SimpleNamespace(write_line=lines.append), 0, config)
    return lines


def _worker(sites: dict[str, int]) -> SimpleNamespace:
    """A worker's config after its session: what it sends to the controller."""
    config = SimpleNamespace(_okemu_lib=_Lib(sites), workeroutput={})
    okemu_plugin.pytest_sessionfinish(SimpleNamespace(config=config), 0)
    return config


def test_the_workers_launches_join_the_controllers_report():
    all_sites = emu_build.launch_sites()
    a, b, c = all_sites[:3]
    controller = SimpleNamespace(_okemu_lib=_Lib({}))
    for sent in ({a: 2, b: 1}, {b: 4, c: 1}):
        node = SimpleNamespace(config=controller, workeroutput=_worker(sent).workeroutput)
        okemu_plugin.pytest_testnodedown(node, None)
    lines = _summary(controller)
    assert lines[0] == (
        f"cuda_emu: 8 kernel launches ran on the emulated device; 3 of {len(all_sites)} launch sites in cuda/ ran"
    )
    never = {ln.removeprefix("cuda_emu: never launched: ") for ln in lines[1:]}
    assert never == set(all_sites) - {a, b, c}


def test_without_workers_the_process_reports_its_own_launches():
    site = emu_build.launch_sites()[-1]
    lines = _summary(SimpleNamespace(_okemu_lib=_Lib({site: 5})))
    assert lines[0].startswith("cuda_emu: 5 kernel launches ran on the emulated device; 1 of ")
    assert f"cuda_emu: never launched: {site}" not in lines


def test_a_crashed_worker_that_sent_nothing_is_left_out():
    controller = SimpleNamespace(_okemu_lib=_Lib({}))
    okemu_plugin.pytest_testnodedown(SimpleNamespace(config=controller), RuntimeError("worker crashed"))
    assert _summary(controller)[0].startswith("cuda_emu: 0 kernel launches ran")
