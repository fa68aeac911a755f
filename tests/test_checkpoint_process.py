"""Checkpoints across processes: a job killed with SIGKILL (mid-write or anywhere) resumes bit-identically
from its last checkpoint, and a reader in another process never sees a half-written file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import optkern

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and rename-over semantics are POSIX")

# The children import the optkern this test imported (installed wheel or src/ build), not the source tree.
SRC = os.path.dirname(os.path.dirname(os.path.abspath(optkern.__file__)))

# A training job: resumes from `ckpt` if present, checkpoints every 2 steps, prints each finished
# step; with KILL_AT=k it stops inside the k-th checkpoint's write (temporary file written, not yet
# renamed) and says so, for the parent to kill it there.
JOB = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    import optkern
    from optkern import optim as O, schedules as S

    ckpt, out, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    kill_at = int(os.environ.get("KILL_AT", "0"))
    rng = np.random.default_rng(0)
    shapes = [(300, 200), (1001,), (3,)]
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    opt = O.Adam([{"params": params[:1]}, {"params": params[1:], "lr": 3e-3}], lr=1e-2, amsgrad=True)
    sched = S.Scheduler(opt, S.warmup_cosine(1.0, warmup_steps=4, total_steps=steps), relative=True)
    start = 0
    if os.path.exists(ckpt):
        start = optkern.load(ckpt, opt=opt, sched=sched, params=params)["step"]
        print("resumed", start, flush=True)
    saves = 0
    if kill_at:
        real = np.savez
        def savez(f, **members):
            global saves
            saves += 1
            real(f, **members)
            if saves == kill_at:
                f.flush()
                print("mid-write", flush=True)
                time.sleep(60)
        np.savez = savez
    for t in range(start, steps):
        g = np.random.default_rng(100 + t)
        opt.step([g.standard_normal(s).astype(np.float32) for s in shapes])
        sched.step()
        if (t + 1) % 2 == 0:
            optkern.save(ckpt, opt=opt, sched=sched, params=params, step=t + 1)
        print("step", t + 1, flush=True)
    optkern.save(out, opt=opt, sched=sched, params=params)
    print("done", flush=True)
""")
STEPS = 24


def _env():
    return {
        **os.environ,
        "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "OMP_NUM_THREADS": "1",
        "OMP_WAIT_POLICY": "PASSIVE",
    }


def _job(tmp, extra_env=None):
    return subprocess.Popen(
        [sys.executable, "-c", JOB, str(tmp / "ckpt.npz"), str(tmp / "out.npz"), str(STEPS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**_env(), **(extra_env or {})},
    )


def _run_to_end(tmp):
    p = _job(tmp)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    return out


def _kill_when(p, predicate):
    """SIGKILL ``p`` as soon as it prints a line satisfying ``predicate``; returns every line it printed."""
    lines = []
    deadline = time.monotonic() + 120
    for line in p.stdout:
        lines.append(line.strip())
        if predicate(line.strip()) or time.monotonic() > deadline:
            break
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    lines += [line.strip() for line in p.stdout]  # printed before the kill landed
    err = p.stderr.read()
    p.stdout.close()
    p.stderr.close()
    assert p.returncode == -signal.SIGKILL, (lines, err)
    return lines


def _final(tmp):
    return optkern.load(tmp / "out.npz")


def _same(a, b):
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("straight")
    _run_to_end(tmp)
    return _final(tmp)


def test_killed_mid_write_resumes_bit_identically(tmp_path, uninterrupted):
    p = _job(tmp_path, {"KILL_AT": "5"})  # inside the write of the step-10 checkpoint
    lines = _kill_when(p, lambda s: s == "mid-write")
    assert lines[-1] == "mid-write" and "step 9" in lines and "step 10" not in lines
    left = [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    assert len(left) == 1  # the killed write's temporary file; ckpt.npz is the step-8 one, whole
    assert optkern.load(tmp_path / "ckpt.npz")["step"] == 8
    out = _run_to_end(tmp_path)
    assert out.startswith("resumed 8\n")
    assert _same(_final(tmp_path), uninterrupted)


def test_killed_anywhere_resumes_bit_identically(tmp_path, uninterrupted):
    p = _job(tmp_path)
    lines = _kill_when(p, lambda s: s == "step 5")
    last = max(int(s.split()[1]) for s in lines if s.startswith("step "))
    assert last < STEPS and "done" not in lines
    resumed_at = optkern.load(tmp_path / "ckpt.npz")["step"]
    # the last checkpoint printed, or the next one if the kill landed between its rename and the print
    assert resumed_at in (last - last % 2, last + 1 - (last + 1) % 2), (last, resumed_at)
    out = _run_to_end(tmp_path)
    assert out.startswith(f"resumed {resumed_at}\n")
    assert _same(_final(tmp_path), uninterrupted)


READER = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    import optkern

    path, stop = sys.argv[1], sys.argv[2]
    reads, seen = 0, set()
    deadline = time.monotonic() + 60
    print("ready", flush=True)
    while not os.path.exists(stop) and time.monotonic() < deadline:
        d = optkern.load(path)  # raises on anything half-written
        i = d["i"]
        assert all(np.all(a == i) for a in d["arrays"]), f"version {i}: arrays of another version"
        assert d["opt"]["state"][0]["step"] == i, "optimizer state of another version"
        reads += 1
        seen.add(i)
    print(reads, len(seen), flush=True)
""")


def test_reader_never_sees_a_half_written_checkpoint(tmp_path):
    """The writer rewrites the file for 2 s while another process loads it in a loop."""
    path, stop = tmp_path / "ck.npz", tmp_path / "stop"
    arrays = [np.zeros(s, np.float32) for s in ((256, 256), (1000,), (1,))]

    def write(i):
        for a in arrays:
            a.fill(i)
        optkern.save(path, arrays=arrays, i=i, opt={"state": {0: {"step": i}}, "param_groups": []})

    write(0)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(path), str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert reader.stdout.readline().strip() == "ready"
        i, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < 2.0:
            i += 1
            write(i)
    finally:
        stop.touch()
        out, err = reader.communicate(timeout=90)
    assert reader.returncode == 0, err
    reads, versions = map(int, out.split())
    assert reads >= 3 and versions >= 2, (reads, versions, i)  # the reads overlapped many rewrites
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
