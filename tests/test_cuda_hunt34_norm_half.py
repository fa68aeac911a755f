"""CUDA float16 / bfloat16 normalizations and dropout against the CPU's half path (34th hunt): one
table of calls run on NumPy and on CuPy arrays of the same half values. Both backends load each
element to float32, compute float32 statistics and round each result to nearest even, so a result
may differ by one ulp of the storage type (a float32 value near a tie, the statistics' last bits)
plus float32 arithmetic on the magnitudes involved; the statistics (float32) agree to float32
rounding; dropout agrees bit for bit. (test_cuda_norm.py compares the GPU's half path with the CPU's
float32 one; the CPU took no half arrays before this hunt.) Skipped without CuPy / a device; runs on
the CPU under tools/cuda_emu."""

import numpy as np
import pytest

from optkern import _backend, norm

cp = pytest.importorskip("cupy", reason="CuPy is not installed: CUDA norm tests skipped")
if not _backend.cuda_built():
    pytest.skip("optkern was built without the CUDA module", allow_module_level=True)
try:
    if _backend.cuda_module().device_count() == 0:
        pytest.skip("no CUDA device", allow_module_level=True)
except Exception as e:  # pragma: no cover - driver problems
    pytest.skip(f"CUDA unavailable: {e}", allow_module_level=True)
from gpu import half_dtypes  # noqa: E402
from ulps import spacing_lowp  # noqa: E402

LOW = half_dtypes(cp)
IDS = [d.name for d in LOW]
EPS = 1e-5
F32_ERR = 64 * 2.0**-24


def _gpu(a):
    """The same half values on the GPU (through float32: exact)."""
    return cp.asarray(np.asarray(a, np.float32)).astype(a.dtype.name)


def _host(g, dt):
    return cp.asnumpy(g.astype(cp.float32)).astype(dt) if g.dtype.itemsize == 2 else cp.asnumpy(g)


def _agree(name, cpu, gpu, dt):
    if cpu is None:
        assert gpu is None, name
        return
    got = _host(gpu, dt)
    assert got.dtype == cpu.dtype, f"{name}: {got.dtype} on the GPU, {cpu.dtype} on the CPU"
    c, g = cpu.astype(np.float64), got.astype(np.float64)
    if cpu.dtype == np.float32:  # statistics
        np.testing.assert_allclose(g, c, rtol=2e-6, atol=1e-7, err_msg=name)
        return
    scale = np.max(np.abs(c), initial=0.0)
    bad = np.abs(g - c) > spacing_lowp(c, dt) + F32_ERR * scale
    assert not bad.any(), f"{name}: {bad.sum()} of {bad.size} more than an ulp apart"


def _data(rng, shape, dt, loc=0.0):
    return (loc + rng.standard_normal(shape)).astype(dt)


def _flat(res):
    """The arrays of a call's result: y and the saved statistics, or the gradients."""
    out = []
    for r in res if isinstance(res, tuple) else (res,):
        out += [a for a in r if hasattr(a, "dtype")] if isinstance(r, tuple) else [r]
    return out


# (name, shape, forward(xp arrays) -> (y, saved), backward(dy, x, params, saved) -> grads)
CASES = [
    ("layer", (3, 1023), lambda x, w, b: norm.layer_norm(x, x.shape[-1], w, b, eps=EPS), norm.layer_norm_backward),
    ("rms", (5, 7), lambda x, w, b: norm.rms_norm(x, x.shape[-1], w, eps=EPS), norm.rms_norm_backward),
    ("group", (2, 6, 1023), lambda x, w, b: norm.group_norm(x, 3, w, b, eps=EPS), norm.group_norm_backward),
    ("instance", (3, 6, 7), lambda x, w, b: norm.instance_norm(x, w, b, eps=EPS), norm.instance_norm_backward),
    ("batch", (7, 6, 9), lambda x, w, b: norm.batch_norm(x, w, b, eps=EPS), norm.batch_norm_backward),
]


@pytest.mark.parametrize("dt", LOW, ids=IDS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_gpu_half_matches_cpu_half(dt, case):
    name, shape, fwd, bwd = case
    rng = np.random.default_rng(len(name) + dt.itemsize)
    C = shape[-1] if name in ("layer", "rms") else shape[1]
    x, dy = _data(rng, shape, dt, 0.5), _data(rng, shape, dt)
    w, b = _data(rng, C, dt, 1.0), _data(rng, C, dt)
    y, saved = fwd(x, w, b)
    gy, gsaved = fwd(_gpu(x), _gpu(w), _gpu(b))
    for i, (c, g) in enumerate(zip(_flat((y, saved)), _flat((gy, gsaved)))):
        _agree(f"{name} forward[{i}]", c, g, dt)
    grads = bwd(dy, x, w, saved)
    ggrads = bwd(_gpu(dy), _gpu(x), _gpu(w), gsaved)
    for i, (c, g) in enumerate(zip(grads, ggrads)):
        _agree(f"{name} backward[{i}]", c, g, dt)


@pytest.mark.parametrize("dt", LOW, ids=IDS)
def test_gpu_weight_norm_half_matches_cpu(dt):
    rng = np.random.default_rng(5)
    v, dw, g = _data(rng, (7, 1023), dt, 0.25), _data(rng, (7, 1023), dt), _data(rng, (7, 1), dt, 1.0)
    w, saved = norm.weight_norm(v, g)
    gw, gsaved = norm.weight_norm(_gpu(v), _gpu(g))
    _agree("w", w, gw, dt)
    _agree("norm", saved.norm, gsaved.norm, dt)
    for n, c, gg in zip(
        ("dg", "dv"),
        norm.weight_norm_backward(dw, v, g, saved),
        norm.weight_norm_backward(_gpu(dw), _gpu(v), _gpu(g), gsaved),
    ):
        _agree(n, c, gg, dt)


@pytest.mark.parametrize("dt", LOW, ids=IDS)
@pytest.mark.parametrize("n", [1, 7, 1023])
def test_gpu_dropout_half_bits_match_cpu(dt, n):
    x = _data(np.random.default_rng(n), n, dt)
    y, mask = norm.dropout(x, 0.3, seed=77, offset=3, return_mask=True)
    gy, gmask = norm.dropout(_gpu(x), 0.3, seed=77, offset=3, return_mask=True)
    np.testing.assert_array_equal(cp.asnumpy(gmask), mask)
    np.testing.assert_array_equal(_host(gy, dt).view(np.uint16), y.view(np.uint16))
