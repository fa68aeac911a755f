"""Hunt 54a: a cgroup v1 CPU quota (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``) bounds the CPUs a
process may use, as the v2 ``cpu.max`` does (tests/test_hunt53i_cpu_quota.py), through the same
``_cgroup_cpus``: the group is the ``cpu`` controller's line of ``/proc/self/cgroup``, under its
mount (``cpu,cpuacct`` or ``cpu``), or the mount itself where a container sees its own group as the
mount's root. Read from fake files here: no real cgroup needed."""

from __future__ import annotations

import pytest

from optkern import threads


def _v1(tmp_path, quota, period="100000\n", *, line="4:cpu,cpuacct:/job/7\n", where="cpu,cpuacct/job/7", v2=""):
    """A fake /proc/self/cgroup (v2 line first, where given) and v1 files at ``root/where``."""
    (tmp_path / "cgroup").write_text(v2 + "3:cpuset:/\n" + line + "2:memory:/job/7\n")
    d = tmp_path / "root" / where
    d.mkdir(parents=True, exist_ok=True)
    if quota is not None:
        (d / "cpu.cfs_quota_us").write_text(quota)
        (d / "cpu.cfs_period_us").write_text(period)
    return str(tmp_path / "cgroup"), str(tmp_path / "root")


@pytest.mark.parametrize(
    "quota,period,want",
    [
        ("150000\n", "100000\n", 2),
        ("100000\n", "100000\n", 1),
        ("50000\n", "100000\n", 1),
        ("300001", "100000", 4),
        ("400000\n", "50000\n", 8),
    ],
)
def test_the_v1_quota_rounded_up(tmp_path, quota, period, want):
    assert threads._cgroup_cpus(*_v1(tmp_path, quota, period)) == want


@pytest.mark.parametrize(
    "line,where",
    [
        ("4:cpu,cpuacct:/job/7\n", "cpu/job/7"),  # (systemd's link named for the one controller)
        ("4:cpuacct,cpu:/job/7\n", "cpuacct,cpu/job/7"),  # (the mount named as the line names them)
        ("4:cpu:/job/7\n", "cpu/job/7"),
        ("4:cpu,cpuacct:/docker/abc\n", "cpu,cpuacct"),  # (a container: its group is the mount's root)
        ("4:cpu,cpuacct:/\n", "cpu,cpuacct"),
    ],
)
def test_the_v1_group_is_found_where_it_is_mounted(tmp_path, line, where):
    assert threads._cgroup_cpus(*_v1(tmp_path, "250000\n", line=line, where=where)) == 3


def test_a_hybrid_host_reads_v1_where_the_v2_group_has_no_cpu_max(tmp_path):
    """Both hierarchies (systemd's hybrid mode): the cpu controller is v1's; the unified group has
    no ``cpu.max``."""
    args = _v1(tmp_path, "150000\n", v2="0::/job/7\n")
    (tmp_path / "root" / "job" / "7").mkdir(parents=True)
    assert threads._cgroup_cpus(*args) == 2


def test_a_v2_cpu_max_is_read_first(tmp_path):
    args = _v1(tmp_path, "150000\n", v2="0::/job/7\n")
    (tmp_path / "root" / "job" / "7").mkdir(parents=True)
    (tmp_path / "root" / "job" / "7" / "cpu.max").write_text("500000 100000\n")
    assert threads._cgroup_cpus(*args) == 5


@pytest.mark.parametrize(
    "case",
    ["unlimited", "no quota files", "garbage quota", "garbage period", "zero period", "negative period", "no cpu line"],
)
def test_no_v1_quota_readable_is_none(tmp_path, case):
    kw = {
        "unlimited": dict(quota="-1\n"),
        "no quota files": dict(quota=None),
        "garbage quota": dict(quota="lots\n"),
        "garbage period": dict(quota="100000\n", period="\n"),
        "zero period": dict(quota="100000\n", period="0\n"),
        "negative period": dict(quota="100000\n", period="-5\n"),
        # (cpuacct alone accounts, it does not limit: a substring match would have taken it)
        "no cpu line": dict(quota="100000\n", line="4:cpuacct:/job/7\n", where="cpuacct/job/7"),
    }[case]
    assert threads._cgroup_cpus(*_v1(tmp_path, **kw)) is None


@pytest.mark.parametrize("cpu_max", ["100000 0\n", "100000 -5\n"])
def test_a_v2_period_that_is_not_positive_is_none_not_an_error(tmp_path, cpu_max):
    """(``int(quota) // 0`` raised ZeroDivisionError, which nothing caught: at import.)"""
    (tmp_path / "cgroup").write_text("0::/job/7\n")
    (tmp_path / "root" / "job" / "7").mkdir(parents=True)
    (tmp_path / "root" / "job" / "7" / "cpu.max").write_text(cpu_max)
    assert threads._cgroup_cpus(str(tmp_path / "cgroup"), str(tmp_path / "root")) is None


def test_the_process_count_is_bounded_by_a_v1_quota(tmp_path, monkeypatch):
    """``_cpus_of_process`` reads the same function: a v1 quota of one CPU gives one."""
    args = _v1(tmp_path, "100000\n")
    original = threads._cgroup_cpus
    monkeypatch.setattr(threads, "_cgroup_cpus", lambda: original(*args))
    assert threads._cpus_of_process() == 1
