"""Hunt 53i: the CPUs a process may use are its affinity mask's logical CPUs, at most its cgroup
v2 CPU quota (``cpu.max``: ``ceil(quota / period)``), counted in one place (``_cpus_of_process``):
optkern's thread count at import, ``blas_threads`` and the study's ``--jobs`` default. Read from
fake cgroup files here; the help text says logical CPUs, not cores."""

from __future__ import annotations

import os

import pytest

from optkern import threads
from optkern.study import pool


def _cgroup(tmp_path, cpu_max: str | None, line: str = "0::/job/7\n"):
    (tmp_path / "cgroup").write_text("12:cpu,cpuacct:/old\n" + line)
    if cpu_max is not None:
        (tmp_path / "root" / "job" / "7").mkdir(parents=True)
        (tmp_path / "root" / "job" / "7" / "cpu.max").write_text(cpu_max)
    return str(tmp_path / "cgroup"), str(tmp_path / "root")


@pytest.mark.parametrize(
    "cpu_max,want",
    [
        ("150000 100000\n", 2),
        ("100000 100000\n", 1),
        ("50000 100000\n", 1),
        ("300001 100000", 4),
        ("max 100000\n", None),
    ],
)
def test_the_quota_rounded_up(tmp_path, cpu_max, want):
    assert threads._cgroup_cpus(*_cgroup(tmp_path, cpu_max)) == want


@pytest.mark.parametrize("case", ["no v2 line", "no cpu.max", "garbage", "no cgroup file"])
def test_no_quota_readable_is_none(tmp_path, case):
    if case == "no v2 line":
        args = _cgroup(tmp_path, "100000 100000", line="")
    elif case == "no cpu.max":
        args = _cgroup(tmp_path, None)
    elif case == "garbage":
        args = _cgroup(tmp_path, "lots\n")
    else:
        args = (str(tmp_path / "absent"), str(tmp_path))
    assert threads._cgroup_cpus(*args) is None


def test_the_count_is_the_mask_at_most_the_quota(monkeypatch):
    mask = len(os.sched_getaffinity(os.getpid())) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    monkeypatch.setattr(threads, "_cgroup_cpus", lambda: None)
    assert threads._cpus_of_process() == mask
    monkeypatch.setattr(threads, "_cgroup_cpus", lambda: mask + 3)
    assert threads._cpus_of_process() == mask
    monkeypatch.setattr(threads, "_cgroup_cpus", lambda: 1)
    assert threads._cpus_of_process() == 1
    assert threads.blas_threads(8) == 1
    cfg = type("Cfg", (), {"threads": 1})()
    assert pool.default_jobs(cfg, 100) == 1  # (the study's --jobs default: the same count)


def test_the_threads_help_says_logical_cpus(capsys):
    from optkern import cli

    with pytest.raises(SystemExit):
        cli.main(["study", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "one per logical CPU this process may use" in text and "per core" not in text
