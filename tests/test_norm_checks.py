"""optkern.norm argument checks (clear errors, nothing written) and bitwise
reproducibility across OpenMP thread counts."""

import os
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest

import optkern
from optkern import norm


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((4, 6, 5)).astype(np.float32)


def test_bad_ranks_and_shapes(data):
    x = data
    with pytest.raises(ValueError, match="x: expected shape"):
        norm.batch_norm(np.ones(5, np.float32))
    with pytest.raises(ValueError, match="weight: expected shape"):
        norm.batch_norm(x, np.ones(5, np.float32))
    with pytest.raises(ValueError, match="running_mean: expected shape"):
        norm.batch_norm(x, running_mean=np.zeros(7, np.float32), running_var=np.ones(6, np.float32))
    with pytest.raises(ValueError, match="give both"):
        norm.batch_norm(x, running_mean=np.zeros(6, np.float32))
    with pytest.raises(ValueError, match="required when training=False"):
        norm.batch_norm(x, training=False)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        norm.batch_norm(np.ones((1, 3), np.float32))
    with pytest.raises(ValueError, match="normalized_shape"):
        norm.layer_norm(x, (6, 4))
    with pytest.raises(ValueError, match="normalized_shape"):
        norm.layer_norm(x, (1, 4, 6, 5))
    with pytest.raises(ValueError, match="bias: expected shape"):
        norm.layer_norm(x, 5, np.ones(5, np.float32), np.ones(4, np.float32))
    with pytest.raises(ValueError, match="num_groups: must divide"):
        norm.group_norm(x, 4)
    with pytest.raises(ValueError, match="num_groups"):
        norm.group_norm(x, 0)
    with pytest.raises(ValueError, match="spatial"):
        norm.instance_norm(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="g: expected 4"):
        norm.weight_norm(x, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="dim"):
        norm.weight_norm(x, np.ones(4, np.float32), dim=3)
    with pytest.raises(ValueError, match="dy: expected shape"):
        y, s = norm.layer_norm(x, 5)
        norm.layer_norm_backward(x[:2].copy(), x, None, s)


def test_bad_hyper_parameters(data):
    x = data
    for eps in (0.0, -1e-5, float("nan")):
        with pytest.raises(ValueError, match="eps"):
            norm.layer_norm(x, 5, eps=eps)
        with pytest.raises(ValueError, match="eps"):
            norm.batch_norm(x, eps=eps)
        with pytest.raises(ValueError, match="eps"):
            norm.rms_norm(x, 5, eps=eps)
    for m in (-0.1, 1.5):
        with pytest.raises(ValueError, match="momentum"):
            norm.batch_norm(x, momentum=m)
        with pytest.raises(ValueError, match="momentum"):
            norm.instance_norm(x, momentum=m)
    for p in (-0.1, 1.0 + 2**-52, 2.0):
        with pytest.raises(ValueError, match="p: must be in"):
            norm.dropout(x, p, seed=1)
        with pytest.raises(ValueError, match="p: must be in"):
            norm.dropout_backward(x, p, seed=1)
    with pytest.raises(TypeError, match="eps"):
        norm.layer_norm(x, 5, eps="small")


def test_dtype_contiguity_and_kind(data):
    x = data
    with pytest.raises(TypeError, match="x: expected float16, bfloat16, float32 or float64, got int32"):
        norm.layer_norm(x.astype(np.int32), 5)  # (float16 is taken since the 34th hunt)
    with pytest.raises(TypeError, match="weight: expected float32, got float64"):
        norm.layer_norm(x, 5, np.ones(5))
    with pytest.raises(TypeError, match="bias: expected float32, got float64"):
        norm.batch_norm(x, np.ones(6, np.float32), np.zeros(6))
    with pytest.raises(TypeError, match="running_var: expected float32"):
        norm.batch_norm(x, running_mean=np.zeros(6, np.float32), running_var=np.ones(6))
    with pytest.raises(ValueError, match="x: array must be C-contiguous"):
        norm.layer_norm(np.asfortranarray(x), 5)
    with pytest.raises(ValueError, match="C-contiguous"):
        norm.batch_norm(x[:, ::2])
    with pytest.raises(TypeError, match="x: expected a numpy or cupy array"):
        norm.layer_norm([1.0, 2.0], 2)
    with pytest.raises(TypeError, match="v: expected float16, bfloat16, float32 or float64"):
        norm.weight_norm(np.ones((2, 2), np.int32), np.ones(2, np.int32))


def test_nothing_half_written(data):
    x = data
    rm, rv = np.zeros(6, np.float32), np.ones(6, np.float32)
    rv.flags.writeable = False
    with pytest.raises(ValueError, match="running_var: array is read-only"):
        norm.batch_norm(x, running_mean=rm, running_var=rv)
    np.testing.assert_array_equal(rm, 0)  # the mean buffer was not touched either
    rv = np.ones(6, np.float32)
    with pytest.raises(TypeError, match="bias"):
        norm.batch_norm(x, np.ones(6, np.float32), np.zeros(6), rm, rv)
    np.testing.assert_array_equal(rm, 0)
    np.testing.assert_array_equal(rv, 1)
    rm2, rv2 = np.zeros(6, np.float32), np.ones(6, np.float32)
    with pytest.raises(ValueError, match="momentum"):
        norm.instance_norm(x, running_mean=rm2, running_var=rv2, momentum=2.0)
    np.testing.assert_array_equal(rm2, 0)


def test_native_checks_outputs():
    from optkern import _backend

    cpu = _backend.cpu
    x = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    y = np.empty_like(x)
    mean, rstd = np.empty(3, np.float32), np.empty(3, np.float32)
    ro = np.empty_like(x)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out: array is read-only"):
        cpu.row_norm_forward(x, None, None, ro, mean, rstd, 3, 1, 8, 1, 1e-5, False)
    with pytest.raises(ValueError, match="out shares memory with x"):
        cpu.row_norm_forward(x, None, None, x, mean, rstd, 3, 1, 8, 1, 1e-5, False)
    with pytest.raises(ValueError, match="rstd: expected 3 elements"):
        cpu.row_norm_forward(x, None, None, y, mean, np.empty(2, np.float32), 3, 1, 8, 1, 1e-5, False)
    with pytest.raises(ValueError, match="rows"):
        cpu.row_norm_forward(x, None, None, y, mean, rstd, 4, 1, 8, 1, 1e-5, False)
    with pytest.raises(ValueError, match="(mean shares memory with rstd|rstd shares memory with mean)"):
        m2 = np.empty(16, np.float32)
        cpu.channel_stats(x, m2[:8], m2[4:12], np.empty(8, np.float32), 3, 8, 1, 1e-5)


# ---- backward argument checks ---------------------------------------------------------


def _backward_case(name, x):
    """(saved, saved_from_another_call, backward(dy, saved)) of one float32 forward of `x`.

    The other call normalizes a tensor of a different size, so its statistics have the wrong length:
    fewer rows (N = 3) for the row norms, fewer channels (C = 5) for the per-channel ones."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    f = lambda *s: rng.standard_normal(s).astype(np.float32)
    C = x.shape[1]
    w, b, w5, b5 = f(C), f(C), f(5), f(5)
    rm, rv = f(C), (1 + rng.random(C)).astype(np.float32)
    fewer_rows = np.ascontiguousarray(x[:3])
    fewer_channels = np.ascontiguousarray(x[:, :5])
    rm5, rv5 = rm[:5].copy(), rv[:5].copy()
    if name == "batch_norm":
        fwd = lambda x, w, b, rm, rv: norm.batch_norm(x, w, b, rm, rv)
        other = fwd(fewer_channels, w5, b5, rm5, rv5)
        bwd = lambda dy, s: norm.batch_norm_backward(dy, x, w, s)
    elif name == "batch_norm_eval":
        fwd = lambda x, w, b, rm, rv: norm.batch_norm(x, w, b, rm, rv, training=False)
        other = fwd(fewer_channels, w5, b5, rm5, rv5)
        bwd = lambda dy, s: norm.batch_norm_backward(dy, x, w, s)
    elif name == "layer_norm":
        fwd = lambda x, w, b, rm, rv: norm.layer_norm(x, 5, w5, b5)
        other = fwd(fewer_rows, w, b, rm, rv)
        bwd = lambda dy, s: norm.layer_norm_backward(dy, x, w5, s)
    elif name == "rms_norm":
        fwd = lambda x, w, b, rm, rv: norm.rms_norm(x, 5, w5)
        other = fwd(fewer_rows, w, b, rm, rv)
        bwd = lambda dy, s: norm.rms_norm_backward(dy, x, w5, s)
    elif name == "group_norm":
        fwd = lambda x, w, b, rm, rv: norm.group_norm(x, 3, w, b)
        other = fwd(fewer_rows, w, b, rm, rv)
        bwd = lambda dy, s: norm.group_norm_backward(dy, x, w, s)
    elif name == "instance_norm":
        fwd = lambda x, w, b, rm, rv: norm.instance_norm(x, w, b, rm, rv)
        other = fwd(fewer_rows, w, b, rm.copy(), rv.copy())
        bwd = lambda dy, s: norm.instance_norm_backward(dy, x, w, s)
    else:  # instance norm with running statistics: per-channel saved statistics
        assert name == "instance_norm_running"
        fwd = lambda x, w, b, rm, rv: norm.instance_norm(x, w, b, rm, rv, use_input_stats=False)
        other = fwd(fewer_channels, w5, b5, rm5, rv5)
        bwd = lambda dy, s: norm.instance_norm_backward(dy, x, w, s)
    _, saved = fwd(x, w, b, rm, rv)
    return saved, other[1], bwd


BACKWARDS = [
    "batch_norm",
    "batch_norm_eval",
    "layer_norm",
    "rms_norm",
    "group_norm",
    "instance_norm",
    "instance_norm_running",
]


def _stat_fields(saved):
    return [f for f in ("mean", "rstd", "inv_rms") if f in saved._fields]


@pytest.mark.parametrize("name", BACKWARDS)
def test_backward_rejects_bad_dy(name, data):
    x = data
    saved, _, bwd = _backward_case(name, x)
    dy = np.random.default_rng(3).standard_normal(x.shape).astype(np.float32)
    bwd(dy, saved)  # the good call works
    with pytest.raises(TypeError, match="dy: expected float32, got float64"):
        bwd(dy.astype(np.float64), saved)
    with pytest.raises(ValueError, match="dy: array must be C-contiguous"):
        bwd(np.asfortranarray(dy), saved)
    with pytest.raises(ValueError, match="dy: array must be C-contiguous"):
        bwd(np.repeat(dy, 2, axis=-1)[..., ::2], saved)


@pytest.mark.parametrize("name", BACKWARDS)
def test_backward_rejects_saved_statistics_of_another_call(name, data):
    x = data
    saved, other, bwd = _backward_case(name, x)
    assert type(saved) is type(other) and hasattr(saved, "_replace")
    dy = np.random.default_rng(4).standard_normal(x.shape).astype(np.float32)
    fields = _stat_fields(saved)
    assert fields
    for field in fields:
        good, bad = getattr(saved, field), getattr(other, field)
        assert bad.size != good.size
        with pytest.raises(ValueError, match=rf"{field}: expected {good.size} elements, got {bad.size}"):
            bwd(dy, saved._replace(**{field: bad}))
        with pytest.raises(TypeError, match=rf"{field}: expected float32, got float64"):
            bwd(dy, saved._replace(**{field: good.astype(np.float64)}))
    # the whole saved tuple of the other call: the first statistic checked is named
    with pytest.raises(ValueError, match=rf"({'|'.join(fields)}): expected \d+ elements, got \d+"):
        bwd(dy, other)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_backward_with_another_channel_count(training, data):
    x = data  # C = 6
    rng = np.random.default_rng(5)
    w, b = rng.standard_normal(6).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    rm, rv = rng.standard_normal(6).astype(np.float32), (1 + rng.random(6)).astype(np.float32)
    _, saved = norm.batch_norm(x, w, b, rm, rv, training=training)
    x5 = rng.standard_normal((4, 5, 5)).astype(np.float32)
    dy5 = rng.standard_normal(x5.shape).astype(np.float32)
    with pytest.raises(ValueError, match="mean: expected 5 elements, got 6"):
        norm.batch_norm_backward(dy5, x5, None, saved)
    with pytest.raises(ValueError, match=r"weight: expected shape \(5,\), got \(6,\)"):
        norm.batch_norm_backward(dy5, x5, w, saved)
    with pytest.raises(ValueError, match=r"dy: expected shape \(4, 6, 5\), got \(4, 5, 5\)"):
        norm.batch_norm_backward(dy5, x, w, saved)


def test_weight_norm_rejects_bad_input():
    rng = np.random.default_rng(6)
    v = rng.standard_normal((4, 6)).astype(np.float32)
    g = rng.standard_normal((4, 1)).astype(np.float32)
    dw = rng.standard_normal(v.shape).astype(np.float32)
    with pytest.raises(TypeError, match="g: expected float32, got float64"):
        norm.weight_norm(v, g.astype(np.float64))
    with pytest.raises(ValueError, match="v: array must be C-contiguous"):
        norm.weight_norm(rng.standard_normal((4, 12)).astype(np.float32)[:, ::2], g)
    with pytest.raises(ValueError, match="v: array must be C-contiguous"):
        norm.weight_norm(np.asfortranarray(v), g)
    _, saved = norm.weight_norm(v, g)
    norm.weight_norm_backward(dw, v, g, saved)  # the good call works
    with pytest.raises(TypeError, match="dw: expected float32, got float64"):
        norm.weight_norm_backward(dw.astype(np.float64), v, g, saved)
    with pytest.raises(ValueError, match="dw: array must be C-contiguous"):
        norm.weight_norm_backward(np.asfortranarray(dw), v, g, saved)
    with pytest.raises(TypeError, match="g: expected float32, got float64"):
        norm.weight_norm_backward(dw, v, g.astype(np.float64), saved)
    with pytest.raises(ValueError, match="dw: expected shape"):
        norm.weight_norm_backward(dw[:3].copy(), v, g, saved)
    # saved.norm of another call (3 rows) or of the wrong dtype
    _, other = norm.weight_norm(v[:3].copy(), g[:3].copy())
    with pytest.raises(ValueError, match="norm: expected 4 elements, got 3"):
        norm.weight_norm_backward(dw, v, g, other)
    with pytest.raises(TypeError, match="norm: expected float32, got float64"):
        norm.weight_norm_backward(dw, v, g, saved._replace(norm=saved.norm.astype(np.float64)))
    # dim != 0: dw of the wrong dtype is still caught after the axis move
    g1 = rng.standard_normal(6).astype(np.float32)
    _, saved1 = norm.weight_norm(v, g1, dim=1)
    with pytest.raises(TypeError, match="dw: expected float32, got float64"):
        norm.weight_norm_backward(dw.astype(np.float64), v, g1, saved1)


def test_non_finite_hyper_parameters(data):
    x = data
    rng = np.random.default_rng(7)
    for m in (float("nan"), float("inf")):
        rm, rv = rng.standard_normal(6).astype(np.float32), (1 + rng.random(6)).astype(np.float32)
        rm0, rv0 = rm.copy(), rv.copy()
        with pytest.raises(ValueError, match="momentum: must be finite"):
            norm.batch_norm(x, running_mean=rm, running_var=rv, momentum=m)
        with pytest.raises(ValueError, match="momentum: must be finite"):
            norm.instance_norm(x, running_mean=rm, running_var=rv, momentum=m)
        np.testing.assert_array_equal(rm, rm0)  # nothing written
        np.testing.assert_array_equal(rv, rv0)
    for p in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="p: must be finite"):
            norm.dropout(x, p, seed=1)
        with pytest.raises(ValueError, match="p: must be finite"):
            norm.dropout_backward(x, p, seed=1)


def test_dropout_rejects_non_contiguous_x():
    x = np.random.default_rng(8).standard_normal((4, 10)).astype(np.float32)
    with pytest.raises(ValueError, match="x: array must be C-contiguous"):
        norm.dropout(x[:, ::2], 0.5, seed=1)
    with pytest.raises(ValueError, match="x: array must be C-contiguous"):
        norm.dropout(np.asfortranarray(x), 0.5, seed=1)


def test_dropout_backward_names_dy():
    dy = np.random.default_rng(9).standard_normal((4, 10)).astype(np.float32)
    with pytest.raises(ValueError, match="^dy: array must be C-contiguous"):
        norm.dropout_backward(dy[:, ::2], 0.5, seed=1)
    with pytest.raises(TypeError, match="^dy: expected float16, bfloat16, float32 or float64"):
        norm.dropout_backward(dy.astype(np.int32), 0.5, seed=1)


def test_dropout_arguments(data):
    with pytest.raises(ValueError, match="seed"):
        norm.dropout(data, 0.5, seed=-1)
    with pytest.raises(ValueError, match="offset"):
        norm.dropout(data, 0.5, seed=1, offset=2**64 - 3)
    with pytest.raises(TypeError, match="x: expected float16, bfloat16, float32 or float64"):
        norm.dropout(data.astype(np.int32), 0.5, seed=1)


SCRIPT = textwrap.dedent("""
    import hashlib, numpy as np
    from optkern import norm
    rng = np.random.default_rng(42)
    h = hashlib.sha256()
    def add(*arrays):
        for a in arrays:
            if a is not None:
                h.update(np.ascontiguousarray(a).tobytes())
    for dt in (np.float32, np.float64):
        x = rng.standard_normal((96, 1000)).astype(dt) + 3
        dy = rng.standard_normal(x.shape).astype(dt)
        w, b = rng.standard_normal(1000).astype(dt), rng.standard_normal(1000).astype(dt)
        y, s = norm.layer_norm(x, 1000, w, b); add(y, *s[:2], *norm.layer_norm_backward(dy, x, w, s))
        y, s = norm.rms_norm(x, 1000, w); add(y, s.inv_rms, *norm.rms_norm_backward(dy, x, w, s))
        for shape in [(96, 1000), (8, 12, 1000), (200, 3, 7)]:
            xb = np.ascontiguousarray(x.reshape(-1)[: int(np.prod(shape))].reshape(shape))
            dyb = np.ascontiguousarray(dy.reshape(-1)[: xb.size].reshape(shape))
            C = shape[1]
            wc, bc = w[:C].copy(), b[:C].copy()
            rm, rv = np.zeros(C, dt), np.ones(C, dt)
            y, s = norm.batch_norm(xb, wc, bc, rm, rv); add(y, rm, rv, *norm.batch_norm_backward(dyb, xb, wc, s))
        xg = np.ascontiguousarray(x.reshape(8, 12, 1000))
        dyg = np.ascontiguousarray(dy.reshape(8, 12, 1000))
        y, s = norm.group_norm(xg, 4, w[:12].copy(), b[:12].copy())
        add(y, *s[:2], *norm.group_norm_backward(dyg, xg, w[:12].copy(), s))
        y, s = norm.weight_norm(x, w[:96].copy()); add(y, *norm.weight_norm_backward(dy, x, w[:96].copy(), s))
        add(norm.dropout(x, 0.3, seed=5, offset=7))
    print(h.hexdigest())
""")


def test_bitwise_identical_across_thread_counts():
    # the optkern under test (installed or in-tree), not necessarily ../src
    root = os.path.dirname(os.path.dirname(os.path.abspath(optkern.__file__)))
    out = []
    for threads in ("1", "2", "3"):
        env = dict(
            os.environ, OMP_NUM_THREADS=threads, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])
        )
        r = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        out.append(r.stdout.strip())
    assert out[0] == out[1] == out[2]


def test_out_argument(data):
    x = data
    out = np.empty_like(x)
    y, _ = norm.layer_norm(x, 5, out=out)
    assert y is out
    np.testing.assert_array_equal(out, norm.layer_norm(x, 5)[0])
    y, _ = norm.batch_norm(x, out=out)
    assert y is out
    np.testing.assert_array_equal(out, norm.batch_norm(x)[0])
    with pytest.raises(ValueError, match="out: expected shape"):
        norm.group_norm(x, 3, out=np.empty((4, 6), np.float32))
    with pytest.raises(TypeError, match="out: expected float32, got float64"):
        norm.rms_norm(x, 5, out=np.empty(x.shape))
    with pytest.raises(ValueError, match="out shares memory with x"):
        norm.instance_norm(x, out=x)
