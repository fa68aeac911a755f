"""CUDA optimizer kernels (optkern._cuda) against the CPU module running the
same rule on NumPy copies, over 20 steps of fresh random data.

Device arrays are views into NaN-filled buffers, offset by 0-4 elements from
the allocation, so the scalar and the 16-byte paths both run and any write
outside an array shows up as a changed pad. Sizes cover 0, 1, 3, 4097, the
kernel's chunk boundary (32768 elements) and a list of 1000 mixed sizes
(several launches: 256 arrays per launch).

Skipped without CuPy or without a visible GPU.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
import pytest

from gpu import require_gpu
from optkern import _backend

cp, _cuda = require_gpu()
_cpu = _backend.cpu
CHUNK = 32768  # multi_tensor.cuh kChunk
SMALL_SIZES = [1, 3, 4097, 0, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 5]
STEPS = 20
B1, B2 = 0.9, 0.999
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-11, atol=1e-13)}


def need_cpu(name):
    assert hasattr(_cpu, name), f"optkern._cpu.{name} is missing"  # a missing function fails, never skips
    return getattr(_cpu, name)


# ---- the native arguments at step t (hyper-parameters, then the step counters) -------


def lr_at(t):
    return 0.01 * (1.0 - 0.02 * t)  # changes every step


def _mu(k):
    return B1 * (1 - 0.5 * 0.96 ** (k * 0.004))


def sgd(mom, damp, wd, nesterov, maximize, textbook):
    return lambda t: (lr_at(t), mom, damp, wd, nesterov, maximize, textbook, t)


def rmsprop(mom, nesterov, maximize):
    return lambda t: (lr_at(t), 0.99, 1e-8, 0.01, mom, nesterov, maximize)


def adagrad(t):
    return (lr_at(t), 0.01, 0.01, 1e-10, False, False, t)  # (maximize, float32_lr)


def adadelta(t):
    return (1.0 - 0.01 * t, 0.9, 1e-6, 0.01, False)


def adam(wd, decoupled, maximize=False):
    return lambda t: (lr_at(t), B1, B2, 1e-8, wd, decoupled, maximize, False, t)  # (float32_lr)


def nadam(wd, decoupled):
    flags = (decoupled, False, False, False)  # decoupled_weight_decay, maximize, float64_product, float32_lr
    return lambda t: (lr_at(t), B1, B2, 1e-8, wd, 0.004, *flags, t, math.prod(_mu(k) for k in range(1, t)))


@dataclass
class Case:
    id: str
    fn: str  # base name: <fn>_ and <fn>_capturable
    states: tuple  # per state argument: None (passed as None) or how to fill it
    args: object  # t -> the hyper-parameter arguments of step t
    counted: int = 1  # trailing arguments the device counters replace: step (NAdam: step, mu_product)


# State fills: "normal" N(0,1); "positive" U(0.5,1.5) (second moments);
# "small" U(-0.1,0.1) (centered RMSprop's mean, below sqrt(v)); "nan" for a
# buffer the first step must overwrite without reading (SGD momentum).
CASES = [
    Case("sgd", "sgd", (None,), sgd(0.0, 0.0, 0.01, False, False, False)),
    Case("sgd_momentum", "sgd", ("nan",), sgd(0.9, 0.1, 0.01, False, False, False)),
    Case("sgd_nesterov_maximize", "sgd", ("nan",), sgd(0.9, 0.0, 0.0, True, True, False)),
    Case("sgd_textbook_nesterov", "sgd", ("nan",), sgd(0.9, 0.0, 0.01, True, False, True)),
    Case("adagrad", "adagrad", ("positive",), adagrad),
    Case("rmsprop", "rmsprop", ("positive", None, None), rmsprop(0.0, False, False), 0),
    Case("rmsprop_centered", "rmsprop", ("positive", "small", None), rmsprop(0.0, False, False), 0),
    Case("rmsprop_momentum", "rmsprop", ("positive", None, "normal"), rmsprop(0.9, False, True), 0),
    Case("rmsprop_centered_nesterov", "rmsprop", ("positive", "small", "normal"), rmsprop(0.9, True, False), 0),
    Case("adadelta", "adadelta", ("positive", "positive"), adadelta, 0),
    Case("adam_l2", "adam", ("normal", "positive", None), adam(0.01, False)),
    Case("adamw", "adam", ("normal", "positive", None), adam(0.1, True)),
    Case("amsgrad_maximize", "adam", ("normal", "positive", "positive"), adam(0.1, True, maximize=True)),
    Case("nadam", "nadam", ("normal", "positive"), nadam(0.01, False), 2),
    Case("nadamw", "nadam", ("normal", "positive"), nadam(0.1, True), 2),
]
CASE_IDS = [c.id for c in CASES]


def fill(rng, kind, n, dtype):
    if kind == "normal":
        x = rng.standard_normal(n)
    elif kind == "positive":
        x = rng.uniform(0.5, 1.5, n)
    elif kind == "small":
        x = rng.uniform(-0.1, 0.1, n)
    else:
        x = np.full(n, np.nan)
    return x.astype(dtype)


# ---- device lists inside NaN pads ---------------------------------------------

PAD = 7


class DeviceList:
    """Copies of host arrays as views at `offsets` into NaN-filled CuPy buffers."""

    def __init__(self, host, offsets):
        self.bufs, self.views, self.offsets = [], [], list(offsets)
        for h, off in zip(host, self.offsets):
            buf = cp.full(off + h.size + PAD, cp.nan, dtype=h.dtype)
            view = buf[off : off + h.size]
            view[...] = cp.asarray(h)
            self.bufs.append(buf)
            self.views.append(view)

    def get(self):
        return [v.get() for v in self.views]

    def flat(self):
        return cp.concatenate([v.ravel() for v in self.views]).get() if self.views else np.zeros(0)

    def set(self, host):
        for v, h in zip(self.views, host):
            v[...] = cp.asarray(h)

    def assert_pads_untouched(self, what):
        pads = [b[:o] for b, o in zip(self.bufs, self.offsets)] + [
            b[o + v.size :] for b, o, v in zip(self.bufs, self.offsets, self.views)
        ]
        pads = [p for p in pads if p.size]
        if pads:
            assert bool(cp.isnan(cp.concatenate(pads)).all()), f"{what}: kernel wrote outside the arrays"


def offsets_for(layout, count, list_index):
    if layout == "aligned":
        return [0] * count
    if layout == "shifted":  # one misalignment per array, shared by its lists
        return [i % 5 for i in range(count)]
    return [(i + list_index) % 5 for i in range(count)]  # "mixed": lists of one array differ


def many_sizes(rng):
    sizes = list(rng.integers(0, 2500, size=994)) + [1, 3, 4097, CHUNK + 1, 3 * CHUNK - 1, 0]
    rng.shuffle(sizes)
    return [int(s) for s in sizes]


class Problem:
    """params, grads and states of one case on the host and on the device."""

    def __init__(self, case, sizes, dtype, layout, seed):
        self.rng = np.random.default_rng(seed)
        self.case, self.sizes, self.dtype = case, sizes, dtype
        self.host_p = [fill(self.rng, "normal", n, dtype) for n in sizes]
        self.host_s = [None if k is None else [fill(self.rng, k, n, dtype) for n in sizes] for k in case.states]
        self.dev_p = DeviceList(self.host_p, offsets_for(layout, len(sizes), 0))
        self.dev_g = DeviceList([np.zeros(n, dtype) for n in sizes], offsets_for(layout, len(sizes), 1))
        self.dev_s = [
            None if s is None else DeviceList(s, offsets_for(layout, len(sizes), 2 + i))
            for i, s in enumerate(self.host_s)
        ]
        self.layout = layout

    def grads(self):
        return [self.rng.standard_normal(n).astype(self.dtype) for n in self.sizes]

    def state_views(self):
        return [None if s is None else s.views for s in self.dev_s]

    def device_lists(self):
        return [("params", self.dev_p)] + [(f"state{i}", s) for i, s in enumerate(self.dev_s) if s is not None]

    def host_lists(self):
        return [self.host_p] + [s for s in self.host_s if s is not None]


def run_steps(prob, steps, compare_each=False):
    cpu_fn = need_cpu(prob.case.fn + "_")
    gpu_fn = getattr(_cuda, prob.case.fn + "_")
    for t in range(1, steps + 1):
        g = prob.grads()
        prob.dev_g.set(g)
        args = prob.case.args(t)
        cpu_fn(prob.host_p, g, *prob.host_s, *args)
        gpu_fn(prob.dev_p.views, prob.dev_g.views, *prob.state_views(), *args)
        if compare_each or t == steps:
            compare(prob, f"step {t}")
    np.testing.assert_array_equal(prob.dev_g.flat(), np.concatenate(g), err_msg="grads must not be written")


def compare(prob, when):
    tol = TOL[prob.dtype]
    for (name, dev), host in zip(prob.device_lists(), prob.host_lists()):
        want = np.concatenate(host) if host else np.zeros(0)
        np.testing.assert_allclose(dev.flat(), want, err_msg=f"{prob.case.id} {name} at {when}", **tol)
        dev.assert_pads_untouched(f"{prob.case.id} {name}")
    prob.dev_g.assert_pads_untouched("grads")


# ---- CUDA == CPU ---------------------------------------------------------------


@pytest.mark.parametrize("layout", ["aligned", "shifted", "mixed"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_matches_cpu_small_and_chunk_edges(case, dtype, layout):
    need_cpu(case.fn + "_")
    prob = Problem(case, SMALL_SIZES, dtype, layout, seed=zlib.crc32(f"{case.id}/{layout}".encode()))
    run_steps(prob, STEPS, compare_each=(layout == "mixed"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_matches_cpu_1000_arrays(case, dtype):
    need_cpu(case.fn + "_")
    rng = np.random.default_rng(7)
    prob = Problem(case, many_sizes(rng), dtype, "shifted", seed=11)
    run_steps(prob, STEPS)


def _junk(args, case):
    """The host arguments a capturable call must ignore (lr, the counted ones) made wrong."""
    n = len(args) - case.counted
    return (args[0] * 0.5 + 7.0,) + args[1:n] + tuple(x + 3 for x in args[n:])


def _float32_mu_product(t):
    """NAdam's float32 mu_product before step t as the kernels keep it: each product of float32
    factors rounded to float32, like torch's float32 mu_product state (rules/optim.hpp)."""
    prod = 1.0
    for k in range(1, t):
        prod = float(np.float32(float(np.float32(prod)) * float(np.float32(_mu(k)))))
    return prod


def _counters(case, t):
    """The device counters before step t: [steps taken] (NAdam: [steps taken, mu_product])."""
    mu_product = [_float32_mu_product(t)] if case.counted == 2 else []
    return cp.asarray([t - 1.0] + mu_product, dtype=cp.float64)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_capturable_gives_the_same_bits(case):
    """Device counters and a device lr: the same bits as plain steps (float32; the device's
    float64 pow may differ from the host's in the last bit, which float32 does not show)."""
    sizes = SMALL_SIZES + [5] * 300  # > 256 arrays: two launches
    a = Problem(case, sizes, np.float32, "shifted", seed=3)
    b = Problem(case, sizes, np.float32, "shifted", seed=3)
    plain = getattr(_cuda, case.fn + "_")
    capt = getattr(_cuda, case.fn + "_capturable")
    counters = _counters(case, 1) if case.counted else None
    lr = cp.zeros(1, cp.float64)
    for t in range(1, 6):
        g = a.grads()
        a.dev_g.set(g)
        b.dev_g.set(g)
        args = case.args(t)
        lr.fill(args[0])
        plain(a.dev_p.views, a.dev_g.views, *a.state_views(), *args)
        capt(b.dev_p.views, b.dev_g.views, *b.state_views(), *_junk(args, case), counters, lr)
    for (name, da), (_, db) in zip(a.device_lists(), b.device_lists()):
        np.testing.assert_array_equal(da.flat(), db.flat(), err_msg=f"{case.id} {name}")
    if case.counted:
        want = _counters(case, 6).get()
        np.testing.assert_allclose(counters.get(), want, rtol=1e-15)


def test_step_in_a_cuda_graph_replays_like_eager_steps():
    """Norm, clipping and a capturable AdamW step captured once on CuPy's
    current stream and replayed with new grads and lr: the same bits as eager
    steps (this also proves every launch went to the current stream), and the
    device counter counts the replays."""
    s = cp.cuda.Stream(non_blocking=True)
    if not hasattr(s, "begin_capture"):
        pytest.skip("this CuPy has no stream capture")
    case = CASES[CASE_IDS.index("adamw")]
    sizes = [1, 4097, CHUNK + 1, 3, 0]
    eager = Problem(case, sizes, np.float32, "shifted", seed=5)
    graph = Problem(case, sizes, np.float32, "shifted", seed=5)
    counters, lr = cp.zeros(1, cp.float64), cp.zeros(1, cp.float64)
    norm_e, norm_g = cp.zeros(1, cp.float64), cp.zeros(1, cp.float64)
    args0 = case.args(1)
    with s:
        _cuda.grad_norm(graph.dev_g.views, 2.0, norm_g)  # warm-up: scratch pool made outside capture
        s.synchronize()
        s.begin_capture()
        _cuda.grad_norm(graph.dev_g.views, 2.0, norm_g)
        _cuda.clip_scale_(graph.dev_g.views, 1.0, norm_g)
        _cuda.adam_capturable(graph.dev_p.views, graph.dev_g.views, *graph.state_views(), *args0, counters, lr)
        g = s.end_capture()
    for t in range(1, 6):
        grads = eager.grads()
        args = case.args(t)
        with s:
            graph.dev_g.set(grads)
            lr.fill(args[0])
            g.launch(stream=s)
        eager.dev_g.set(grads)
        _cuda.grad_norm(eager.dev_g.views, 2.0, norm_e)
        _cuda.clip_scale_(eager.dev_g.views, 1.0, norm_e)
        _cuda.adam_(eager.dev_p.views, eager.dev_g.views, *eager.state_views(), *args)
    s.synchronize()
    assert norm_e.get()[0] == norm_g.get()[0]
    assert counters.get()[0] == 5.0
    for (name, de), (_, dg) in zip(eager.device_lists(), graph.device_lists()):
        np.testing.assert_array_equal(de.flat(), dg.flat(), err_msg=name)


def test_self_advancing_graph_reads_lr_from_a_schedule_table():
    """A graph that needs no host work per replay: the device counters advance by
    themselves and the captured step copies row `step` of an lr table into the lr
    buffer (cupy.take with a device index)."""
    s = cp.cuda.Stream(non_blocking=True)
    if not hasattr(s, "begin_capture"):
        pytest.skip("this CuPy has no stream capture")
    case = CASES[CASE_IDS.index("nadamw")]
    sizes = [3, 4097, 2 * CHUNK + 1]
    eager = Problem(case, sizes, np.float32, "aligned", seed=8)
    graph = Problem(case, sizes, np.float32, "aligned", seed=8)
    steps = 6
    table = cp.asarray([[case.args(t)[0]] for t in range(1, steps + 1)], dtype=cp.float64)
    step = cp.zeros((), cp.int64)
    lr = cp.zeros(1, cp.float64)
    counters = _counters(case, 1)
    grads = eager.grads()
    graph.dev_g.set(grads)
    eager.dev_g.set(grads)
    args0 = case.args(1)
    with s:
        cp.take(table, step, axis=0, out=lr)  # warm-up outside capture (kernel compilation)
        step += 1
        step[...] = 0
        s.synchronize()
        s.begin_capture()
        try:
            cp.take(table, step, axis=0, out=lr)
        except Exception as e:  # CuPy-version dependent, not optkern's
            s.end_capture()
            pytest.skip(f"cupy.take cannot be captured by this CuPy: {e}")
        step += 1
        _cuda.nadam_capturable(graph.dev_p.views, graph.dev_g.views, *graph.state_views(), *args0, counters, lr)
        g = s.end_capture()
        for _ in range(steps):
            g.launch(stream=s)
    for t in range(1, steps + 1):
        _cuda.nadam_(eager.dev_p.views, eager.dev_g.views, *eager.state_views(), *case.args(t))
    s.synchronize()
    assert int(step.get()) == steps
    for (name, de), (_, dg) in zip(eager.device_lists(), graph.device_lists()):
        np.testing.assert_array_equal(de.flat(), dg.flat(), err_msg=name)


# ---- reductions ------------------------------------------------------------------


def _host_and_device(dtype, sizes, seed):
    rng = np.random.default_rng(seed)
    host = [rng.standard_normal(n).astype(dtype) for n in sizes]
    return host, DeviceList(host, offsets_for("shifted", len(sizes), 0))


def _ref_norm(host, p):
    flat = np.concatenate([h.astype(np.float64) for h in host])
    if math.isinf(p):
        return float(np.abs(flat).max(initial=0.0))
    return float((np.abs(flat) ** p).sum() ** (1.0 / p))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [1.0, 2.0, 3.5, math.inf])
def test_grad_norm(dtype, p):
    rng = np.random.default_rng(1)
    host, dev = _host_and_device(dtype, SMALL_SIZES + many_sizes(rng), 2)
    out = cp.full(1, cp.nan)
    assert _cuda.grad_norm(dev.views, p, out) is None
    got = out.get()[0]
    np.testing.assert_allclose(got, _ref_norm(host, p), rtol=1e-12)
    out2 = cp.full(1, cp.nan)
    _cuda.grad_norm(dev.views, p, out2)
    assert out2.get()[0] == got  # deterministic: same bits
    if hasattr(_cpu, "grad_norm"):
        cpu_out = np.zeros(1)
        _cpu.grad_norm(host, p, cpu_out)
        np.testing.assert_allclose(got, cpu_out[0], rtol=1e-12)
    dev.assert_pads_untouched("arrays")


def test_grad_norm_empty_and_nonfinite():
    out = cp.full(1, cp.nan)
    _cuda.grad_norm([], 2.0, out)
    assert out.get()[0] == 0.0
    _cuda.grad_norm([cp.zeros(0, cp.float32)], math.inf, out)
    assert out.get()[0] == 0.0
    a = [cp.ones(5000, cp.float32), cp.ones(3, cp.float32)]
    a[0][1234] = cp.inf
    _cuda.grad_norm(a, 2.0, out)
    assert out.get()[0] == np.inf
    a[1][2] = cp.nan
    for p in (2.0, math.inf, 1.0):
        _cuda.grad_norm(a, p, out)
        assert np.isnan(out.get()[0]), p


def test_all_finite():
    rng = np.random.default_rng(4)
    sizes = many_sizes(rng)
    arrays = [cp.asarray(rng.standard_normal(n).astype(np.float32)) for n in sizes]
    out = cp.full(1, cp.nan)
    _cuda.all_finite(arrays, out)
    assert out.get()[0] == 1.0
    last = max(i for i, n in enumerate(sizes) if n > 0)
    for bad in (cp.inf, -cp.inf, cp.nan):
        arrays[last][-1] = bad
        _cuda.all_finite(arrays, out)
        assert out.get()[0] == 0.0
        arrays[last][-1] = 0.0
    _cuda.all_finite([], out)
    assert out.get()[0] == 1.0


@pytest.mark.parametrize("max_norm", [0.5, 1e9])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_scale(dtype, max_norm):
    host, dev = _host_and_device(dtype, SMALL_SIZES, 6)
    norm = cp.zeros(1, cp.float64)
    _cuda.grad_norm(dev.views, 2.0, norm)
    _cuda.clip_scale_(dev.views, max_norm, norm)
    c = min(1.0, max_norm / (_ref_norm(host, 2.0) + 1e-6))
    want = np.concatenate(host) * dtype(c)
    np.testing.assert_allclose(dev.flat(), want, rtol=4 * np.finfo(dtype).eps, atol=0)
    if max_norm > 1e6:
        np.testing.assert_array_equal(dev.flat(), np.concatenate(host))
    dev.assert_pads_untouched("arrays")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clamp(dtype):
    host, dev = _host_and_device(dtype, SMALL_SIZES, 8)
    _cuda.clamp_(dev.views, 0.7)
    np.testing.assert_array_equal(dev.flat(), np.clip(np.concatenate(host), -0.7, 0.7))
    dev.assert_pads_untouched("arrays")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("maximize", [False, True])
def test_adagrad_norm(dtype, maximize):
    rng = np.random.default_rng(12)
    sizes = SMALL_SIZES + many_sizes(rng)[:300]
    host_p = [rng.standard_normal(n).astype(dtype) for n in sizes]
    ref_p = [h.astype(np.float64) for h in host_p]
    dev_p = DeviceList(host_p, offsets_for("mixed", len(sizes), 0))
    dev_g = DeviceList([np.zeros(n, dtype) for n in sizes], offsets_for("mixed", len(sizes), 1))
    b_sq = cp.full(1, 0.25)
    ref_b, lr, wd = 0.25, 0.1, 0.01
    cpu_p = [h.copy() for h in host_p]
    cpu_b = np.full(1, 0.25)
    for _ in range(5):
        g = [rng.standard_normal(n).astype(dtype) for n in sizes]
        dev_g.set(g)
        _cuda.adagrad_norm_(dev_p.views, dev_g.views, b_sq, lr, wd, maximize)
        g_eff = [(-gi if maximize else gi).astype(np.float64) + wd * pi for gi, pi in zip(g, ref_p)]
        ref_b += sum(float((x * x).sum()) for x in g_eff)
        ref_p = [pi - lr / math.sqrt(ref_b) * x for pi, x in zip(ref_p, g_eff)]
        _cpu.adagrad_norm_(cpu_p, g, cpu_b, lr, wd, maximize)
    tol = TOL[dtype]
    np.testing.assert_allclose(b_sq.get()[0], ref_b, rtol=1e-5 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(dev_p.flat(), np.concatenate(ref_p), rtol=tol["rtol"] * 5, atol=tol["atol"] * 5)
    np.testing.assert_allclose(dev_p.flat(), np.concatenate(cpu_p), **tol)
    np.testing.assert_allclose(b_sq.get()[0], cpu_b[0], rtol=1e-10)  # float64 sums of ~1e5 squares, other order
    dev_p.assert_pads_untouched("params")


# ---- bad inputs (all raise before anything is written) ------------------------------


def _adam_lists(n=10, k=3, dtype=cp.float32):
    return [[cp.asarray(np.random.default_rng(i).standard_normal(n).astype(dtype)) for _ in range(k)] for i in range(4)]


def _adam(p, g, m, v, **kw):
    _cuda.adam_(p, g, m, v, None, 1e-3, B1, B2, 1e-8, 0.0, False, False, False, 1)


def _unchanged(lists, before):
    for lst, b in zip(lists, before):
        for x, y in zip(lst, b):
            np.testing.assert_array_equal(x.get(), y)


def test_bad_inputs_raise_and_write_nothing():
    p, g, m, v = _adam_lists()
    before = [[x.get() for x in lst] for lst in (p, g, m, v)]
    with pytest.raises(TypeError, match=r"grads\[2\]: expected a cupy.ndarray, got numpy.ndarray"):
        _adam(p, g[:2] + [g[2].get()], m, v)
    with pytest.raises(TypeError, match=r"exp_avgs\[1\]: expected float32, got float64"):
        _adam(p, g, [m[0], m[1].astype(cp.float64), m[2]], v)
    with pytest.raises(ValueError, match=r"grads\[0\]: array must be C-contiguous"):
        _adam(p, [cp.zeros(20, cp.float32)[::2]] + g[1:], m, v)
    with pytest.raises(ValueError, match=r"exp_avg_sqs\[2\]: expected 10 elements, got 11"):
        _adam(p, g, m, v[:2] + [cp.zeros(11, cp.float32)])
    with pytest.raises(ValueError, match="shares memory"):
        _adam(p, p, m, v)
    with pytest.raises(ValueError, match="shares memory"):
        _adam(p, g, m, m)
    buf = cp.zeros(25, cp.float32)
    with pytest.raises(ValueError, match="shares memory"):  # overlapping views of one buffer
        _adam([buf[0:10], buf[5:15], p[2]], g, m, v)
    with pytest.raises(ValueError, match=r"counters: expected 1 element,"):
        _cuda.adam_capturable(p, g, m, v, None, 1e-3, B1, B2, 1e-8, 0.0, False, False, False, 1, cp.zeros(2), None)
    with pytest.raises(ValueError, match="shares memory"):
        _cuda.adam_capturable(
            p, g, m, v, None, 1e-3, B1, B2, 1e-8, 0.0, False, False, False, 1, None, m[0].view(cp.float64)[:1]
        )
    with pytest.raises(TypeError, match=r"out: expected float64, got float32"):
        _cuda.grad_norm(g, 2.0, cp.zeros(1, cp.float32))
    _unchanged((p, g, m, v), before)
    # through the backend dispatcher
    with pytest.raises(TypeError, match=r"grads\[0\]: is a numpy array but params\[0\] is a cupy array"):
        _backend.backend(("params", p), ("grads", [x.get() for x in g]))


def test_views_of_one_buffer_that_do_not_overlap_are_fine():
    buf = cp.asarray(np.random.default_rng(0).uniform(0.1, 1.0, 40).astype(np.float32))
    p, g, m, v = [buf[0:10]], [buf[10:20]], [buf[20:30]], [buf[30:40]]
    ref = buf.get()
    _adam(p, g, m, v)
    assert not np.array_equal(buf.get()[0:10], ref[0:10])
    np.testing.assert_array_equal(buf.get()[10:20], ref[10:20])  # grads untouched


@pytest.mark.skipif(cp.cuda.runtime.getDeviceCount() < 2, reason="needs two GPUs")
def test_arrays_on_two_devices_or_not_on_the_current_one():
    with cp.cuda.Device(1):
        other = _adam_lists()
    p, g, m, v = _adam_lists()
    with pytest.raises(ValueError, match=r"grads\[0\]: is on device 1 but other arrays are on device 0"):
        _adam(p, [other[1][0]] + g[1:], m, v)
    with pytest.raises(ValueError, match="current CUDA device is 0"):
        _adam(*other)


# ---- the optimizer classes on CuPy arrays -------------------------------------------

CLASSES = [
    ("SGD", dict(lr=0.01, momentum=0.9, weight_decay=0.01)),
    ("SGD", dict(lr=0.01, momentum=0.9, nesterov=True)),
    ("Adagrad", dict(lr=0.01, weight_decay=0.01)),
    ("RMSprop", dict(lr=0.001, momentum=0.9, centered=True)),
    ("Adadelta", dict(lr=1.0)),
    ("Adam", dict(lr=0.001, weight_decay=0.01)),
    ("Adam", dict(lr=0.001, amsgrad=True)),
    ("AdamW", dict(lr=0.001, weight_decay=0.1)),
    ("NAdam", dict(lr=0.002)),
]


def _optim_class(name):
    from optkern import optim

    return getattr(optim, name)  # a missing class fails, never skips


@pytest.mark.parametrize("name,kw", CLASSES, ids=[f"{n}-{'-'.join(k)}" for n, k in CLASSES])
def test_optimizer_class_on_gpu_matches_cpu(name, kw):
    cls = _optim_class(name)
    rng = np.random.default_rng(21)
    sizes = [1, 3, 4097, CHUNK + 3]
    host = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    dev = DeviceList(host, offsets_for("shifted", len(sizes), 0))
    o_cpu, o_gpu = cls([h.copy() for h in host], **kw), cls(dev.views, **kw)
    host_params = o_cpu.param_groups[0]["params"]
    for _ in range(STEPS):
        g = [rng.standard_normal(n).astype(np.float32) for n in sizes]
        o_cpu.step(g)
        o_gpu.step([cp.asarray(x) for x in g])
    np.testing.assert_allclose(dev.flat(), np.concatenate(host_params), **TOL[np.float32])
    dev.assert_pads_untouched("params")


def _tree_map(obj, f):
    if isinstance(obj, dict):
        return {k: _tree_map(v, f) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_tree_map(v, f) for v in obj)
    return f(obj)


def _leaves(obj):
    out = []
    _tree_map(obj, out.append)
    return out


@pytest.mark.parametrize("from_host", [False, True])
def test_state_dict_round_trip(from_host):
    cls = _optim_class("AdamW")
    rng = np.random.default_rng(30)
    sizes = [5, 4097, 2]
    params = [cp.asarray(rng.standard_normal(n).astype(np.float32)) for n in sizes]
    grads = [[cp.asarray(rng.standard_normal(n).astype(np.float32)) for n in sizes] for _ in range(6)]
    a = cls(params, lr=1e-3, weight_decay=0.1)
    for g in grads[:3]:
        a.step(g)
    sd = a.state_dict()
    arrays = [x for x in _leaves(sd["state"]) if hasattr(x, "dtype") and getattr(x, "size", 1) > 1]
    assert arrays and all(_backend.is_cupy(x) for x in arrays), "GPU optimizer state must stay on the GPU"
    if from_host:
        sd = _tree_map(sd, lambda x: x.get() if _backend.is_cupy(x) else x)
    b = cls([p.copy() for p in params], lr=1e-3, weight_decay=0.1)
    b.load_state_dict(sd)
    restored = [x for x in _leaves(b.state_dict()["state"]) if hasattr(x, "dtype") and getattr(x, "size", 1) > 1]
    assert all(_backend.is_cupy(x) for x in restored), "load_state_dict must place state on the params' device"
    for g in grads[3:]:
        a.step(g)
        b.step(g)
    for pa, pb in zip(a.param_groups[0]["params"], b.param_groups[0]["params"]):
        np.testing.assert_array_equal(pa.get(), pb.get())
