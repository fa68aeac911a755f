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
