"""optkern._malloc: the command line pins glibc's thresholds before running a command."""

import os
import subprocess
import sys

import optkern
from optkern import _malloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(optkern.__file__)))

# A 24 MiB block freed and allocated again: below the pinned mmap threshold it comes back from
# the heap (same address, no new mapping); with glibc's start-up threshold it is mapped afresh.
PROBE = """
import ctypes, sys
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
{setup}
maps = lambda: sum(1 for _ in open("/proc/self/maps"))
before = maps()
p = libc.malloc(24 << 20)
mapped = maps() > before
libc.free(ctypes.c_void_p(p))
print(mapped)
"""


def _run(setup):
    env = dict(os.environ, PYTHONPATH=ROOT)
    code = PROBE.format(setup=setup)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return r.stdout.strip()


def test_pinned_thresholds_serve_24_mib_from_the_heap():
    if not sys.platform.startswith("linux"):
        assert _malloc.pin_glibc_thresholds() is False
        return
    assert _run("") == "True"  # glibc's start-up threshold (128 KiB): a fresh mapping
    assert _run("import optkern; assert optkern.pin_glibc_thresholds()") == "False"


def test_cli_pins_before_running_a_command(monkeypatch):
    from optkern import cli

    calls = []
    monkeypatch.setattr(_malloc, "pin_glibc_thresholds", lambda: calls.append(1) or True)
    assert cli.main(["info"]) == 0
    assert calls == [1]


# populate: a large fresh array's pages are resident after the call (one madvise), its contents
# untouched; anything else is returned as is.
POPULATE_PROBE = """
import ctypes, errno, mmap, numpy as np
from optkern import _malloc
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * mmap.PAGESIZE
buf = mmap.mmap(-1, 1 << 20)  # does this kernel know MADV_POPULATE_WRITE (Linux 5.14+)?
addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
ok = _malloc._libc_madvise()(addr, 1 << 20, _malloc.MADV_POPULATE_WRITE) == 0
a = np.empty(64 << 20, np.uint8)
before = rss()
assert _malloc.populate(a) is a
grew = rss() - before
a[::4096] = 7
print(ok, grew >= (60 << 20), int(a[4096]))
"""


def test_populate_faults_a_large_array_in():
    if not sys.platform.startswith("linux"):
        return
    env = dict(os.environ, PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-c", POPULATE_PROBE], env=env, capture_output=True, text=True, check=True)
    supported, grew, value = r.stdout.split()
    assert value == "7"
    assert grew == supported  # resident at once where the kernel has the call; untouched otherwise


def test_populate_leaves_other_arrays_alone():
    import numpy as np

    small = np.zeros(10)
    assert _malloc.populate(small) is small
    ro = np.zeros(1 << 20)
    ro.flags.writeable = False
    assert _malloc.populate(ro) is ro
    lst = [1.0]
    assert _malloc.populate(lst) is lst
    big = np.full(1 << 20, 3.0)  # 8 MiB: contents kept
    assert _malloc.populate(big) is big and float(big.min()) == float(big.max()) == 3.0
