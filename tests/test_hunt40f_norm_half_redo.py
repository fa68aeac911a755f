"""Batch norm's backward with float16 / bfloat16 storage on the CPU redoes the channels whose dx (or
dweight / dbias) came out non-finite at a power-of-two scale. That redo gathers a channel across the
batch, and it made float32 copies of the whole dy, x and dx for it -- 12 bytes an element, six times
the half x, for one bad channel of a large batch. Now it copies only the channels it redoes (one at a
time), with the same bits: the float32 call's on float32 copies, cast by NumPy / ml_dtypes."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import optkern
from optkern import norm

ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 host arrays are ml_dtypes arrays")
HALF = {"float16": np.dtype(np.float16), "bfloat16": np.dtype(ml_dtypes.bfloat16)}

# Peak memory of one backward call in a fresh process: the resident-set high-water mark (VmHWM, reset
# to the resident set just before; pages the call touched: std::vector zero-fills what it allocates)
# above the resident set before the call.
_CHILD = textwrap.dedent(
    """
    import sys
    import ml_dtypes, numpy as np
    from optkern import norm

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    dt = np.dtype(ml_dtypes.bfloat16 if sys.argv[1] == "bfloat16" else np.float16)
    shape = tuple(int(s) for s in sys.argv[2].split(","))
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dt)
    dy = rng.standard_normal(shape).astype(dt)
    dy[(0, 3) + (0,) * (len(shape) - 2)] = np.inf  # one element: one channel (3) redone
    w = np.ones(shape[1], dt)
    saved = norm.batch_norm(x, w, None, training=True)[1]
    out = np.ones_like(x)  # (dx, its pages touched before; dweight, dbias: C values)
    cut = tuple(slice(0, min(s, 4)) for s in shape)  # (warm: the code and first-call allocations)
    xs, dys, ws = x[cut].copy(), dy[cut].copy(), w[cut[1]].copy()
    norm.batch_norm_backward(dys, xs, ws, norm.batch_norm(xs, ws, None, training=True)[1])
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # (the high-water mark set back to the resident set: the setup's peak forgotten)
    before = status("VmRSS:")
    dx = norm.batch_norm_backward(dy, x, w, saved, out=out)[0]
    extra = status("VmHWM:") - before
    assert not np.isfinite(dx.astype(np.float32)[0, 3]).all()  # (the redo ran: dx non-finite there)
    print(extra, x.nbytes)
    """
)


def _peak(dt_name, shape):
    env = dict(os.environ, OPTKERN_NUM_THREADS="1", OMP_NUM_THREADS="1")
    pkg = os.path.dirname(os.path.dirname(optkern.__file__))  # (the optkern under test, not an installed one)
    env["PYTHONPATH"] = pkg + os.pathsep + env.get("PYTHONPATH", "")
    run = subprocess.run(
        [sys.executable, "-c", _CHILD, dt_name, ",".join(map(str, shape))],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    extra, nbytes = map(int, run.stdout.split())
    return extra, nbytes


# (spawns: a fresh process per case, and under ASan its allocator and shadow memory are what the
# resident set measures; the redo itself runs in-process below, under the sanitizer too)
@pytest.mark.spawns
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="VmHWM reset: Linux's /proc")
@pytest.mark.parametrize("dt_name", list(HALF))
@pytest.mark.parametrize("shape", [(32, 64, 2048), (1 << 16, 64)], ids=["NCS", "NC"])
def test_one_bad_channel_copies_that_channel_only(dt_name, shape):
    # the whole-array copies were 6x x.nbytes (48 MiB here); one channel's are 1/64 of that
    extra, nbytes = _peak(dt_name, shape)
    assert extra < nbytes // 2, f"{extra / nbytes:.2f} x.nbytes touched by the backward call"


def _f32_cast_equal(name, got, want32, dt):
    want = np.asarray(want32, np.float32).astype(dt)
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16), err_msg=name)


@pytest.mark.parametrize("shape", [(5, 6, 7), (3, 4, 1), (9, 5), (2, 3, 4, 5)])
# (float16 holds no value whose float32 sums overflow: its "huge" case is not one)
@pytest.mark.parametrize(("dt_name", "case"), [("float16", "inf"), ("bfloat16", "inf"), ("bfloat16", "huge")])
def test_redone_channels_have_the_float32_calls_bits(dt_name, shape, case):
    dt = HALF[dt_name]
    rng = np.random.default_rng(sum(shape))
    x = (0.5 + 2 * rng.standard_normal(shape)).astype(dt)
    dy = rng.standard_normal(shape).astype(dt)
    w = rng.uniform(0.5, 2, shape[1]).astype(dt)
    flat = dy.reshape(shape[0], shape[1], -1)
    if case == "inf":  # channels 1 and 3 (not 0, 2): dx non-finite there, redone, still non-finite
        flat[0, 1, 0], flat[-1, 3 % shape[1], -1] = np.inf, -np.inf
    else:  # channels 0 and 2 of dy ~1e38: their sums overflow float32, dx finite only by the redo
        for c in (0, 2 % shape[1]):
            flat[:, c, :] = np.abs(flat[:, c, :].astype(np.float32)) * 1e38
            flat[0, c, 0] = 3e38
            w[c] = 0.125
    x32, dy32, w32 = (a.astype(np.float32) for a in (x, dy, w))
    s, s32 = norm.batch_norm(x, w, None, training=True)[1], norm.batch_norm(x32, w32, None, training=True)[1]
    got, want = norm.batch_norm_backward(dy, x, w, s), norm.batch_norm_backward(dy32, x32, w32, s32)
    if case == "huge":  # (the case is one: dx finite where the plain sums overflowed)
        assert np.isfinite(want[0]).all() and not np.isfinite(want[2][0])
    for name, a, a32 in zip(["dx", "dweight", "dbias"], got, want):
        _f32_cast_equal(name, a, a32, dt)
