"""CUDA normalization and dropout against the CPU kernels (skipped without
CuPy / the CUDA module / a device). float32 / float64 compare tightly with the
CPU; float16 / bfloat16 storage (float32 statistics) against the CPU float32
result on the same rounded inputs. GPU results must repeat bit for bit."""

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


def _bf16_ok():
    """Whether this CuPy makes bfloat16 arrays: gpu.half_dtypes, which imports ml_dtypes before it asks.
    A bare ``cp.empty(1, dtype="bfloat16")`` depended on another module having imported ml_dtypes (NumPy
    knows the name only then): run alone or collected first, the 15 bfloat16 cases here vanished."""
    from gpu import half_dtypes

    return len(half_dtypes(cp)) == 2


LOW = ["float16"] + (["bfloat16"] if _bf16_ok() else [])
TOL = {"float32": (1e-5, 1e-5), "float64": (1e-12, 1e-12), "float16": (2e-2, 2e-2), "bfloat16": (8e-2, 8e-2)}


def to_gpu(a, dtype):
    return cp.asarray(np.asarray(a, np.float32)).astype(dtype) if dtype in LOW else cp.asarray(a.astype(dtype))


def cpu_view(g):
    """The GPU array's values as a CPU float32 / float64 array."""
    a = cp.asnumpy(g.astype(cp.float32) if str(g.dtype) in LOW else g)
    return a


def cpu_dtype(dtype):
    return np.float64 if dtype == "float64" else np.float32


def check(g, c, dtype, scale=1.0):
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(cpu_view(g).astype(np.float64), np.asarray(c, np.float64), rtol=rtol, atol=atol * scale)


def pairs(rng, shape, dtype, loc=0.0, scale=1.0):
    """A GPU array and the CPU array holding exactly its values."""
    g = to_gpu(loc + scale * rng.standard_normal(shape), dtype)
    return g, cpu_view(g).astype(cpu_dtype(dtype))


DTYPES = ["float32", "float64"] + LOW


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,k", [((1, 7), 1), ((37, 1029), 1), ((3, 4, 257), 2), ((64, 4096), 1)])
def test_layer_and_rms_norm(shape, k, dtype):
    rng = np.random.default_rng(0)
    ns = shape[len(shape) - k :]
    xg, xc = pairs(rng, shape, dtype, 0.5, 2.0)
    wg, wc = pairs(rng, ns, dtype)
    bg, bc = pairs(rng, ns, dtype)
    dyg, dyc = pairs(rng, shape, dtype)
    yg, sg = norm.layer_norm(xg, ns, wg, bg)
    yc, sc = norm.layer_norm(xc, ns, wc, bc)
    check(yg, yc, dtype)
    check(sg.rstd, sc.rstd, dtype)
    for a, b in zip(norm.layer_norm_backward(dyg, xg, wg, sg), norm.layer_norm_backward(dyc, xc, wc, sc)):
        check(a, b, dtype, scale=20)
    yg, sg = norm.rms_norm(xg, ns, wg, eps=1e-6)
    yc, sc = norm.rms_norm(xc, ns, wc, eps=1e-6)
    check(yg, yc, dtype)
    for a, b in zip(norm.rms_norm_backward(dyg, xg, wg, sg), norm.rms_norm_backward(dyc, xc, wc, sc)):
        check(a, b, dtype, scale=20)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(16, 5), (300, 64), (4, 3, 7, 9), (8, 16, 1025)])
def test_batch_norm(shape, dtype):
    rng = np.random.default_rng(1)
    C = shape[1]
    xg, xc = pairs(rng, shape, dtype, 3.0, 2.0)
    wg, wc = pairs(rng, C, dtype)
    bg, bc = pairs(rng, C, dtype)
    dyg, dyc = pairs(rng, shape, dtype)
    sdt = cpu_dtype(dtype)
    rmg, rvg = cp.zeros(C, sdt), cp.ones(C, sdt)
    rmc, rvc = np.zeros(C, sdt), np.ones(C, sdt)
    yg, sg = norm.batch_norm(xg, wg, bg, rmg, rvg)
    yc, sc = norm.batch_norm(xc, wc, bc, rmc, rvc)
    check(yg, yc, dtype)
    check(rmg, rmc, "float64" if dtype == "float64" else "float32")
    check(rvg, rvc, "float64" if dtype == "float64" else "float32", scale=10)
    for a, b in zip(norm.batch_norm_backward(dyg, xg, wg, sg), norm.batch_norm_backward(dyc, xc, wc, sc)):
        check(a, b, dtype, scale=50)
    yg, sg = norm.batch_norm(xg, wg, bg, rmg, rvg, training=False)
    yc, sc = norm.batch_norm(xc, wc, bc, rmc, rvc, training=False)
    check(yg, yc, dtype)
    for a, b in zip(norm.batch_norm_backward(dyg, xg, wg, sg), norm.batch_norm_backward(dyc, xc, wc, sc)):
        check(a, b, dtype, scale=50)


@pytest.mark.parametrize("sdt", [np.float32, np.float64])
@pytest.mark.parametrize("momentum", [0.0, 0.1, 1.0])
def test_running_update_gives_the_cpu_bits(sdt, momentum):
    """rules::running_stat (one fma in double, rounded once) on the GPU, through running_stats_ and
    channel_norm_forward's fused update: the CPU's bits for the same batch statistics."""
    rng = np.random.default_rng(7)
    N, C = 3, 1029  # C over one 256-thread block of the update kernel
    mean, var = rng.standard_normal(C).astype(sdt), rng.uniform(0.1, 5.0, C).astype(sdt)
    rstd = (1 / np.sqrt(var + 1e-5)).astype(sdt)
    rm, rv = rng.standard_normal(C).astype(sdt), rng.uniform(0.5, 2.0, C).astype(sdt)
    x = rng.standard_normal((N, C)).astype(sdt)
    cpu, cuda = _backend.cpu, _backend.cuda_module()
    g = [cp.asarray(a) for a in (mean, var, rstd, x)]
    rmc, rvc, rmg, rvg = rm.copy(), rv.copy(), cp.asarray(rm), cp.asarray(rv)
    cpu.running_stats_(rmc, rvc, mean, var, momentum)
    cuda.running_stats_(rmg, rvg, g[0], g[1], momentum)
    np.testing.assert_array_equal(cp.asnumpy(rmg), rmc)
    np.testing.assert_array_equal(cp.asnumpy(rvg), rvc)
    yc, yg = np.empty_like(x), cp.empty_like(g[3])
    cpu.channel_norm_forward(x, mean, rstd, None, None, yc, N, C, 1, var, rmc, rvc, momentum)
    cuda.channel_norm_forward(g[3], g[0], g[2], None, None, yg, N, C, 1, g[1], rmg, rvg, momentum)
    np.testing.assert_array_equal(cp.asnumpy(rmg), rmc)
    np.testing.assert_array_equal(cp.asnumpy(rvg), rvc)
    check(yg, yc, "float64" if sdt == np.float64 else "float32")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn", ["batch_norm", "instance_norm"])
def test_strided_running_buffers(fn, dtype):
    """Batch and instance norm update strided running buffers (through contiguous copies) as the CPU
    does; the elements between them stay untouched."""
    rng = np.random.default_rng(8)
    shape, C = (5, 6, 7, 3), 6
    sdt = cpu_dtype(dtype)
    xg, xc = pairs(rng, shape, dtype, 1.0, 2.0)
    rm, rv = rng.standard_normal(C).astype(sdt), rng.uniform(0.5, 2.0, C).astype(sdt)
    bufs_c = [np.zeros(2 * C, sdt) for _ in range(2)]
    bufs_g = [cp.zeros(2 * C, sdt) for _ in range(2)]
    for b, v in zip(bufs_c, (rm, rv)):
        b[::2] = v
    for b, v in zip(bufs_g, (rm, rv)):
        b[::2] = cp.asarray(v)
    call = getattr(norm, fn)
    yc, _ = call(xc, running_mean=bufs_c[0][::2], running_var=bufs_c[1][::2], momentum=0.3)
    yg, _ = call(xg, running_mean=bufs_g[0][::2], running_var=bufs_g[1][::2], momentum=0.3)
    check(yg, yc, dtype)
    sname = "float64" if dtype == "float64" else "float32"
    check(bufs_g[0][::2], bufs_c[0][::2], sname)
    check(bufs_g[1][::2], bufs_c[1][::2], sname, scale=10)
    assert not cp.asnumpy(bufs_g[0][1::2]).any() and not cp.asnumpy(bufs_g[1][1::2]).any()
    assert not np.array_equal(bufs_c[0][::2], rm)  # the update happened


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,G", [((1, 6, 13), 3), ((4, 32, 33), 8), ((2, 8, 5, 7), 8)])
def test_group_and_instance_norm(shape, G, dtype):
    rng = np.random.default_rng(2)
    C = shape[1]
    xg, xc = pairs(rng, shape, dtype, -1.0, 1.5)
    wg, wc = pairs(rng, C, dtype)
    bg, bc = pairs(rng, C, dtype)
    dyg, dyc = pairs(rng, shape, dtype)
    yg, sg = norm.group_norm(xg, G, wg, bg)
    yc, sc = norm.group_norm(xc, G, wc, bc)
    check(yg, yc, dtype)
    for a, b in zip(norm.group_norm_backward(dyg, xg, wg, sg), norm.group_norm_backward(dyc, xc, wc, sc)):
        check(a, b, dtype, scale=20)
    yg, sg = norm.instance_norm(xg, wg, bg)
    yc, sc = norm.instance_norm(xc, wc, bc)
    check(yg, yc, dtype)
    for a, b in zip(norm.instance_norm_backward(dyg, xg, wg, sg), norm.instance_norm_backward(dyc, xc, wc, sc)):
        check(a, b, dtype, scale=20)


@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_norm(dtype):
    rng = np.random.default_rng(3)
    vg, vc = pairs(rng, (17, 33), dtype)
    gg, gc = pairs(rng, (17, 1), dtype)
    dwg, dwc = pairs(rng, (17, 33), dtype)
    wg, sg = norm.weight_norm(vg, gg)
    wc, sc = norm.weight_norm(vc, gc)
    check(wg, wc, dtype)
    for a, b in zip(norm.weight_norm_backward(dwg, vg, gg, sg), norm.weight_norm_backward(dwc, vc, gc, sc)):
        check(a, b, dtype, scale=10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_same_mask_as_cpu(dtype):
    rng = np.random.default_rng(4)
    xg, xc = pairs(rng, (333, 77), dtype)
    yg, mg = norm.dropout(xg, 0.35, seed=2**40 + 3, offset=11, return_mask=True)
    yc, mc = norm.dropout(xc, 0.35, seed=2**40 + 3, offset=11, return_mask=True)
    np.testing.assert_array_equal(cp.asnumpy(mg), mc)
    check(yg, yc, dtype)
    check(norm.dropout_backward(xg, 0.35, seed=2**40 + 3, offset=11), yc, dtype)


def test_large_offset_float32():
    rng = np.random.default_rng(5)
    xc = (1e4 + rng.standard_normal((8, 4, 2000))).astype(np.float32)
    xg = cp.asarray(xc)
    for fn in (
        lambda x: norm.layer_norm(x, (4, 2000))[0],
        lambda x: norm.batch_norm(x)[0],
        lambda x: norm.group_norm(x, 2)[0],
    ):
        np.testing.assert_allclose(cp.asnumpy(fn(xg)), fn(xc), atol=5e-3)


def test_bitwise_repeatable():
    rng = np.random.default_rng(6)
    x = cp.asarray(rng.standard_normal((512, 64, 9)).astype(np.float32))
    dy = cp.asarray(rng.standard_normal(x.shape).astype(np.float32))
    w = cp.asarray(rng.standard_normal(64).astype(np.float32))

    def run():
        y, s = norm.batch_norm(x, w)
        out = [y, *s[:2], *norm.batch_norm_backward(dy, x, w, s)]
        y, s = norm.layer_norm(x, (64, 9))
        out += [y, *norm.layer_norm_backward(dy, x, None, s)]
        y, s = norm.group_norm(x, 8, w)
        out += [y, *norm.group_norm_backward(dy, x, w, s)]
        return [cp.asnumpy(a) for a in out]

    first = run()
    for _ in range(2):
        for a, b in zip(first, run()):
            np.testing.assert_array_equal(a, b)


def test_errors():
    x = cp.ones((4, 6), cp.float32)
    with pytest.raises(TypeError, match="is a numpy array"):
        norm.layer_norm(x, 6, np.ones(6, np.float32))
    with pytest.raises(TypeError, match="weight: expected float32, got float64"):
        norm.layer_norm(x, 6, cp.ones(6))
    with pytest.raises(ValueError, match="C-contiguous"):
        norm.layer_norm(cp.ones((6, 4), cp.float32).T, 6)
    with pytest.raises(ValueError, match="out shares memory with x"):
        _backend.cuda_module().row_norm_forward(
            x, None, None, x, cp.empty(4, cp.float32), cp.empty(4, cp.float32), 4, 1, 6, 1, 1e-5, False
        )
