"""Defects found in the 31st session's hunt over optkern.nn and hessian.from_mlp."""

import numpy as np
import pytest

from optkern import hessian
from optkern.nn import MLP, softmax_cross_entropy, softmax_cross_entropy_grad


@pytest.mark.parametrize(
    "kw, name",
    [
        ({"norm": np.array("batch")}, "norm"),
        ({"norm": np.array("layer")}, "norm"),
        ({"loss": np.array("mse")}, "loss"),
    ],
)
def test_norm_and_loss_as_0d_string_arrays_are_refused_naming_them(kw, name):
    # np.array("batch") == "batch" is true, so `in` let it through and the model kept the array:
    # the first loss failed with an unnamed "unhashable type: 'numpy.ndarray'"
    with pytest.raises(ValueError, match=f"^{name}: expected"):
        MLP([3, 4, 2], **kw)


def test_numpy_str_names_still_work():
    m = MLP([3, 4, 2], norm=np.str_("batch"), loss=np.str_("mse"), dtype=np.float64)
    p = m.init_params(0)
    x = np.random.default_rng(0).standard_normal((5, 3))
    assert np.isfinite(float(m.loss(p, x, np.zeros((5, 2)))))


def _batches(rng, m, sizes=(4, 7, 2)):
    xs = [rng.standard_normal((n, m.sizes[0])) for n in sizes]
    return [(x, rng.integers(0, m.sizes[-1], len(x))) for x in xs]


@pytest.mark.parametrize("fixed", [False, True])
def test_out_is_left_as_it_was_when_a_later_batch_is_refused(fixed):
    rng = np.random.default_rng(1)
    m = MLP([3, 5, 2], norm="batch", dtype=np.float64)
    p = m.init_params(0)
    (x1, y1), (x2, y2) = _batches(rng, m, (4, 7))
    op = hessian.from_mlp(m, p, batches=[(x1, y1), (x2, y2)], fixed=fixed)
    y2 += 5  # labels out of range, after the operator checked them (its products read them again)
    out = np.full(m.num_params, 7.0)
    with pytest.raises(ValueError, match="^y: values must be in"):
        op.matvec(rng.standard_normal(m.num_params), out=out)
    assert np.all(out == 7.0)  # (it held batch 0's product)


@pytest.mark.parametrize("kind", ["hessian", "ggn"])
def test_out_sharing_memory_with_a_later_batch_is_refused_before_writing(kind):
    rng = np.random.default_rng(2)
    m = MLP([3, 5, 2], dtype=np.float64)  # 32 parameters
    p = m.init_params(0)
    buf = rng.standard_normal(64)
    x1, y1 = rng.standard_normal((4, 3)), rng.integers(0, 2, 4)
    x2, y2 = buf[:24].reshape(8, 3), rng.integers(0, 2, 8)  # batch 1's x lies in `out` below
    before = buf.copy()
    op = hessian.from_mlp(m, p, batches=[(x1, y1), (x2, y2)], kind=kind)
    with pytest.raises(ValueError, match=r"^out shares memory with batches\[1\]'s x"):
        op.matvec(rng.standard_normal(m.num_params), out=buf[:32])
    assert np.array_equal(buf, before)  # (the first batch's product overwrote x2, then x2 was read)


@pytest.mark.parametrize("fixed", [False, True])
@pytest.mark.parametrize("kind", ["hessian", "ggn"])
def test_product_into_out_over_batches_equals_the_sum_of_the_batches(kind, fixed):
    rng = np.random.default_rng(3)
    m = MLP([3, 5, 2], norm="layer", activation="gelu", dtype=np.float64)
    p = m.init_params(0)
    batches = _batches(rng, m)
    v = rng.standard_normal(m.num_params)
    product = m.hvp if kind == "hessian" else m.ggn_vp
    n = sum(len(x) for x, _ in batches)
    want = sum(product(p, x, y, v) * (len(x) / n) for x, y in batches)
    op = hessian.from_mlp(m, p, batches=batches, kind=kind, fixed=fixed)
    buf = np.empty(m.num_params)
    assert op.matvec(v, out=buf) is buf
    np.testing.assert_allclose(buf, want, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(buf, op.matvec(v))
    if fixed:  # (the copies taken at the first product: a later in-place change is not seen)
        batches[1][0][...] = 0.0
        np.testing.assert_array_equal(op.matvec(v), buf)


@pytest.mark.parametrize(
    "name",
    ["layer\u00b2", "layer\u2460", "layer" + "9" * 5000, "layer" + "0" * 5000],
    ids=["superscript", "circled", "5000 nines", "5000 zeros"],
)
def test_block_names_int_cannot_read_are_refused_naming_block(name):
    # ("²".isdigit() is true, int("²") raises; int() refuses more than 4300 digits: an unnamed ValueError)
    m = MLP([3, 4, 2], dtype=np.float64)
    x, y = np.ones((5, 3)), np.zeros(5, dtype=np.int64)
    with pytest.raises(ValueError, match=r"^block: expected 'layer1' \.\.\. 'layer2'"):
        hessian.from_mlp(m, m.init_params(0), x, y, block=name)


def test_block_names_with_leading_zeros_still_name_their_layer():
    m = MLP([3, 4, 2], dtype=np.float64)
    x, y = np.ones((5, 3)), np.zeros(5, dtype=np.int64)
    op = hessian.from_mlp(m, m.init_params(0), x, y, block="layer" + "0" * 30 + "2")
    assert op.shape == (10, 10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_mean_of_no_rows_is_nan_without_a_warning_like_torch(dtype):
    torch = pytest.importorskip("torch")
    z, y = np.zeros((0, 3), dtype), np.zeros(0, dtype=np.int64)
    want = torch.nn.functional.cross_entropy(torch.from_numpy(z), torch.from_numpy(y))
    assert np.isnan(float(want))
    # (NumPy's "Mean of empty slice" RuntimeWarning: an error under the tests' -W error)
    loss = softmax_cross_entropy(z, y)
    assert np.isnan(loss) and loss.dtype == dtype
    loss, grad = softmax_cross_entropy_grad(z, y)
    assert np.isnan(loss) and loss.dtype == dtype and grad.shape == (0, 3)
    assert softmax_cross_entropy(z, y, reduction="sum") == 0
    assert softmax_cross_entropy(z, y, reduction="none").shape == (0,)


@pytest.mark.parametrize("fixed", [False, True])
def test_float64_inputs_past_float32_range_give_the_mlps_product_without_warnings(fixed):
    # (a float32 model casts x to float32: 1e300 is inf there, and MLP.hvp propagates it; a fixed
    # operator's first product warned "overflow encountered in cast" instead -- an error under -W error)
    m = MLP([3, 4, 2])
    p = m.init_params(0)
    x = np.ones((5, 3))
    x[0, 0] = 1e300
    y = np.zeros(5, dtype=np.int64)
    v = np.linspace(-1, 1, m.num_params, dtype=np.float32)
    want = m.hvp(p, x, y, v)
    op = hessian.from_mlp(m, p, x, y, fixed=fixed)
    np.testing.assert_array_equal(op.matvec(v), want)
    np.testing.assert_array_equal(op.matmat(v[:, None])[:, 0], m.hvp_block(p, x, y, v[None])[0])
    two = hessian.from_mlp(m, p, batches=[(x, y), (x, y)], fixed=fixed)
    np.testing.assert_array_equal(two.matvec(v, out=np.empty_like(v)), want)


@pytest.mark.parametrize("rows", [3, 6])
def test_mse_targets_of_another_length_are_refused_naming_y(rows):
    m = MLP([3, 1], loss="mse", dtype=np.float64)
    p, x = m.init_params(0), np.ones((5, 3))
    with pytest.raises(ValueError, match=r"^y: expected targets of shape \(5, 1\), got \(" + str(rows)):
        m.loss(p, x, np.zeros(rows))
    # (N,) targets are the (N, 1) column
    y = np.linspace(-1, 1, 5)
    assert m.loss(p, x, y) == m.loss(p, x, y[:, None])


def _misaligned(a):
    """A copy of ``a`` in a buffer one byte off its dtype's alignment (np.frombuffer at an odd offset)."""
    b = np.zeros(a.nbytes + 1, np.uint8)[1:].view(a.dtype).reshape(a.shape)
    b[...] = a
    assert not b.flags.aligned and b.flags.c_contiguous
    return b


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_misaligned_params_and_directions_give_the_aligned_results(norm):
    # (the normalization kernels refused them, naming their own `weight` / `vweight`)
    rng = np.random.default_rng(4)
    m = MLP([3, 4, 2], norm=norm, dtype=np.float64)
    p, x, y = m.init_params(0), rng.standard_normal((5, 3)), rng.integers(0, 2, 5)
    v = rng.standard_normal(m.num_params)
    mp, mv = _misaligned(p), _misaligned(v)
    np.testing.assert_array_equal(m.loss_and_grad(mp, x, y)[1], m.loss_and_grad(p, x, y)[1])
    np.testing.assert_array_equal(m.predict(mp, x), m.predict(p, x))
    for method in (m.hvp, m.ggn_vp):
        np.testing.assert_array_equal(method(mp, x, y, mv), method(p, x, y, v))
    np.testing.assert_array_equal(m.jvp(mp, x, mv), m.jvp(p, x, v))
    for method in (m.hvp_block, m.ggn_block):
        np.testing.assert_array_equal(method(mp, x, y, _misaligned(v[None])), method(p, x, y, v[None]))
    op = hessian.from_mlp(m, mp, x, y, fixed=True)
    np.testing.assert_array_equal(op.matmat(_misaligned(v[:, None]))[:, 0], m.hvp_block(p, x, y, v[None])[0])


@pytest.mark.parametrize("method", ["hvp", "ggn_vp"])
def test_out_sharing_memory_with_a_strided_x_is_refused(method):
    # (compared with the contiguous copy of x, not x: accepted, and the caller's x overwritten)
    m = MLP([3, 5, 2], dtype=np.float64)  # 32 parameters
    rng = np.random.default_rng(5)
    buf = rng.standard_normal(64)
    x = buf[:60].reshape(10, 6)[:, ::2]  # a (10, 3) strided view of buf
    before = buf.copy()
    with pytest.raises(ValueError, match="^out shares memory with x"):
        getattr(m, method)(m.init_params(0), x, rng.integers(0, 2, 10), rng.standard_normal(32), out=buf[:32])
    assert np.array_equal(buf, before)


@pytest.mark.parametrize("which", ["x", "y"])
@pytest.mark.parametrize("fixed", [False, True])
def test_from_mlp_names_a_non_array_x_or_y_as_given(which, fixed):
    # (the one batch (x, y) was refused as "batches[0]", an argument the caller did not pass)
    m = MLP([3, 4, 2], dtype=np.float64)
    batch = {"x": np.ones((5, 3)), "y": np.zeros(5, dtype=np.int64)}
    batch[which] = batch[which].tolist()
    with pytest.raises(TypeError, match=f"^{which}: expected an array, got list"):
        hessian.from_mlp(m, m.init_params(0), batch["x"], batch["y"], fixed=fixed)


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_float32_norm_eps_past_float32_range_is_refused_naming_norm_eps(norm):
    # (the constructor's rounding check cast it to float32 and NumPy warned "overflow encountered in
    # cast": an error under -W error; accepted, the first loss was refused naming optkern.norm's
    # `eps`, which the caller never passed). A float64 model takes it.
    with pytest.raises(ValueError, match=r"norm_eps: 1e\+39 overflows float32 \(the statistics' dtype\)"):
        MLP([3, 4, 2], norm=norm, norm_eps=1e39)
    MLP([3, 4, 2], norm=norm, norm_eps=float(np.finfo(np.float32).max))
    m64 = MLP([3, 4, 2], norm=norm, norm_eps=1e39, dtype=np.float64)
    assert np.isfinite(m64.loss(m64.init_params(0), np.ones((2, 3)), np.array([0, 1])))
