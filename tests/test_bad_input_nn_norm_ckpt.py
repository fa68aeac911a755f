"""Bad input to optkern.nn, optkern.norm and optkern.save / load: a TypeError / ValueError naming
the offending argument, raised before anything is written (arrays, module buffers and load
targets unchanged after the error); the torch optimizers' checkpoint round trip."""

import copy

import numpy as np
import pytest

import optkern
from optkern import nn
from optkern import norm as N

F32 = np.float32


# ---- checkpoint: load targets, save entries ----------------------------------------------------


def test_load_refuses_overlapping_targets_before_writing(tmp_path):
    path = tmp_path / "c.npz"
    optkern.save(path, lst=[np.ones(2), np.zeros(2)], other=np.full(2, 7.0))
    base = np.zeros(3)
    with pytest.raises(ValueError, match=r"\['lst'\]\[0\] and \['lst'\]\[1\] share memory"):
        optkern.load(path, lst=[base[0:2], base[1:3]])
    np.testing.assert_array_equal(base, np.zeros(3))
    # across entries, and the very same array twice
    base = np.zeros(4)
    with pytest.raises(ValueError, match=r"\['lst'\]\[1\] and \['other'\] share memory"):
        optkern.load(path, lst=[np.zeros(2), base[:2]], other=base[1:3])
    np.testing.assert_array_equal(base, np.zeros(4))
    a = np.zeros(2)
    with pytest.raises(ValueError, match="share memory"):
        optkern.load(path, lst=[a, a])
    np.testing.assert_array_equal(a, np.zeros(2))


def test_load_accepts_disjoint_views_of_one_buffer(tmp_path):
    path = tmp_path / "c.npz"
    optkern.save(path, lst=[np.ones(2), np.full(2, 2.0)])
    base = np.zeros(4)
    optkern.load(path, lst=[base[0::2], base[1::2]])  # interleaved: bounds overlap, memory does not
    np.testing.assert_array_equal(base, [1, 2, 1, 2])
    base = np.zeros(4)
    optkern.load(path, lst=[base[:2], base[2:]])
    np.testing.assert_array_equal(base, [1, 1, 2, 2])


def test_save_refuses_a_reference_cycle_naming_the_entry(tmp_path):
    path = tmp_path / "c.npz"
    optkern.save(path, keep=1)
    cyc: list = [1]
    cyc.append(cyc)
    with pytest.raises(ValueError, match=r"x\[1\]: contains itself"):
        optkern.save(path, x=cyc)
    d: dict = {"a": {}}
    d["a"]["b"] = d
    with pytest.raises(ValueError, match=r"y\['a'\]\['b'\]: contains itself"):
        optkern.save(path, y=d)
    assert optkern.load(path) == {"keep": 1}  # the old file is intact
    shared = [1, 2]
    optkern.save(path, z=[shared, shared, (shared,)])  # shared, not cyclic: fine
    assert optkern.load(path)["z"] == [[1, 2], [1, 2], ([1, 2],)]


def test_save_refuses_too_deep_nesting_naming_the_entry(tmp_path):
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ValueError, match="deep: nested too deeply"):
        optkern.save(tmp_path / "c.npz", deep=deep)


def test_save_torch_tensors_detached_and_bfloat16_as_tagged_bits(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "c.npz"
    g = torch.arange(3.0, requires_grad=True)
    b = torch.tensor([1.5, -2.0, 3.0], dtype=torch.bfloat16)
    optkern.save(path, g=g, b=b, t=torch.ones(3, 2).t())
    out = optkern.load(path)
    np.testing.assert_array_equal(out["g"], [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(out["t"], np.ones((2, 3)))
    bits = out["b"].view(np.uint16) if out["b"].dtype != np.uint16 else out["b"]
    np.testing.assert_array_equal(bits, b.view(torch.uint16).numpy())
    if optkern.lowp.bfloat16_dtype() is not None:
        assert out["b"].dtype.name == "bfloat16"
        np.testing.assert_array_equal(out["b"].astype(np.float32), [1.5, -2.0, 3.0])


def test_save_refuses_an_unsaveable_torch_tensor_naming_the_entry(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "c.npz"
    optkern.save(path, keep=1)
    bad = torch.ones(3).to_sparse()  # (float8 was the example: saved as its tagged bits now)
    with pytest.raises(TypeError, match=r"x\['w'\]: cannot save"):
        optkern.save(path, x={"w": bad})
    assert optkern.load(path) == {"keep": 1}


def _torch_opts():
    torch = pytest.importorskip("torch")
    import optkern.torch as ot

    return torch, [torch.optim.Adam, ot.Adam]


@pytest.mark.parametrize("which", [0, 1], ids=["torch.optim.Adam", "optkern.torch.Adam"])
def test_torch_optimizer_round_trip_continues_identically(which, tmp_path):
    torch, classes = _torch_opts()
    cls = classes[which]
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(5))
    opt = cls([p], lr=0.1, betas=(0.8, 0.99))
    for _ in range(3):
        p.grad = torch.randn(5)
        opt.step()
    path = tmp_path / "c.npz"
    optkern.save(path, opt=opt, p=p)
    q = torch.nn.Parameter(torch.zeros(5))
    opt2 = cls([q], lr=0.5)
    got = optkern.load(path, opt=opt2)
    assert isinstance(got["opt"]["state"][0]["exp_avg"], np.ndarray)  # the result stays plain data
    with torch.no_grad():
        q.copy_(torch.from_numpy(got["p"]))
    assert opt2.param_groups[0]["lr"] == 0.1 and opt2.param_groups[0]["betas"] == (0.8, 0.99)
    for _ in range(4):
        grad = torch.randn(5)
        p.grad, q.grad = grad.clone(), grad.clone()
        opt.step()
        opt2.step()
    assert torch.equal(p, q)
    for k, v in opt.state[p].items():
        assert torch.equal(v, opt2.state[q][k]), k


def test_torch_optimizer_load_mismatch_is_refused_and_changes_nothing(tmp_path):
    torch, classes = _torch_opts()
    path = tmp_path / "c.npz"
    for cls in classes:
        p = torch.nn.Parameter(torch.ones(3))
        opt = cls([p], lr=0.1)
        p.grad = torch.ones(3)
        opt.step()
        optkern.save(path, opt=opt, lst=[np.ones(2)])
        a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
        two = cls([a, b], lr=0.5)
        before = copy.deepcopy(two.state_dict())
        with pytest.raises(ValueError, match=r"\['opt'\].*1 params, the optimizer's group has 2"):
            optkern.load(path, opt=two)
        assert two.state_dict() == before
        # a later target fails its check: the optimizer is not touched
        one = cls([torch.nn.Parameter(torch.ones(3))], lr=0.5)
        with pytest.raises(ValueError, match=r"\['lst'\]\[0\]"):
            optkern.load(path, opt=one, lst=[np.zeros(3)])
        assert one.param_groups[0]["lr"] == 0.5 and not one.state


def test_torch_module_round_trip(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    m = torch.nn.Linear(3, 2)
    optkern.save(tmp_path / "c.npz", m=m)
    m2 = torch.nn.Linear(3, 2)
    optkern.load(tmp_path / "c.npz", m=m2)
    assert torch.equal(m.weight, m2.weight) and torch.equal(m.bias, m2.bias)


# ---- nn: MLP.accuracy labels, sizes, dtype, xp, seed, views, activation order --------------------


def _mlp(norm="batch"):
    m = nn.MLP([4, 5, 3], norm=norm)
    p = m.init_params(0)
    x = np.random.default_rng(0).standard_normal((6, 4)).astype(F32)
    y = np.array([0, 1, 2, 0, 1, 2])
    return m, p, x, y


@pytest.mark.parametrize(
    "make,exc,match",
    [
        (lambda y: y[:, None], ValueError, r"y: expected shape \(6,\)"),
        (lambda y: y[:3], ValueError, r"y: expected shape \(6,\)"),
        (lambda y: np.array(1), ValueError, r"y: expected shape"),
        (lambda y: None, TypeError, "y: expected an integer array"),
        (lambda y: y.tolist(), TypeError, "y: expected an integer array"),
        (lambda y: np.array(list("abcdef")), TypeError, "y: expected an integer array"),
        (lambda y: y.astype(float), TypeError, "y: expected an integer array"),
        (lambda y: y.astype(bool), TypeError, "y: expected an integer array"),
        (lambda y: y.astype(complex), TypeError, "y: expected an integer array"),
        (lambda y: np.array([0, -1, 2, 0, 1, 2]), ValueError, r"y: values must be in \[0, 3\)"),
        (lambda y: np.array([0, 3, 2, 0, 1, 2]), ValueError, r"y: values must be in \[0, 3\)"),
        (lambda y: np.array([0, 2**64 - 1, 2, 0, 1, 2], np.uint64), ValueError, r"y: values must be in \[0, 3\)"),
    ],
)
def test_accuracy_checks_labels_as_loss_does(make, exc, match):
    m, p, x, y = _mlp()
    yy = make(y)
    before = [p.copy(), x.copy()]
    with pytest.raises(exc, match=match):
        m.accuracy(p, x, yy)
    np.testing.assert_array_equal(p, before[0])
    np.testing.assert_array_equal(x, before[1])


def test_accuracy_of_valid_labels_unchanged():
    m, p, x, y = _mlp()
    pred = m.predict(p, x).argmax(axis=1)
    assert m.accuracy(p, x, y) == float((pred == y).mean())
    assert m.accuracy(p, x, y.astype(np.int8)) == m.accuracy(p, x, np.repeat(y, 2)[::2])
    assert m.accuracy(p, x, pred) == 1.0


@pytest.mark.parametrize(
    "kw,exc,match",
    [
        (dict(sizes=[4, 2**64]), ValueError, r"sizes\[1\]: must be <="),
        (dict(sizes=[4, 10**400]), ValueError, r"sizes\[1\]: must be <="),
        (dict(sizes=[2**40, 2**40, 2**40]), ValueError, r"sizes\[1\]: .*at most \d+ float32 parameters"),
        (dict(sizes=np.array(4)), TypeError, "sizes: expected a sequence"),
        (dict(sizes=[4, 3], dtype="foo"), TypeError, "dtype: expected float32 or float64"),
        (dict(sizes=[4, 3], dtype=[1]), TypeError, "dtype: expected float32 or float64"),
        (dict(sizes=[4, 3], dtype=None), TypeError, "dtype: expected float32 or float64, got None"),
        (dict(sizes=[4, 3], dtype=np.float16), TypeError, "dtype: expected float32 or float64, got float16"),
        (dict(sizes=[4, 3], xp=None), TypeError, "xp: expected the numpy or cupy module"),
        (dict(sizes=[4, 3], xp="numpy"), TypeError, "xp: expected the numpy or cupy module"),
    ],
)
def test_mlp_constructor_refuses(kw, exc, match):
    with pytest.raises(exc, match=match):
        nn.MLP(**kw)


def test_mlp_big_but_representable_sizes_are_accepted():
    m = nn.MLP([2**20, 2**20])  # no allocation at construction
    assert m.num_params == 2**40 + 2**20


@pytest.mark.parametrize(
    "seed,exc,match",
    [
        ("a", TypeError, "seed: expected an integer"),
        (1.5, TypeError, "seed: expected an integer"),
        (True, TypeError, "seed: expected an integer"),
        (-1, ValueError, "seed: must be >= 0"),
    ],
)
def test_init_params_checks_seed(seed, exc, match):
    with pytest.raises(exc, match=match):
        nn.MLP([4, 3]).init_params(seed)


def test_init_params_valid_seeds():
    m = nn.MLP([4, 3])
    np.testing.assert_array_equal(m.init_params(np.int64(3)), m.init_params(3))
    assert m.init_params(None).shape == (m.num_params,)


def test_views_checks_flat():
    m = nn.MLP([4, 3])
    with pytest.raises(TypeError, match="flat: expected a 1-D array, got list"):
        m.views([1, 2])
    with pytest.raises(ValueError, match=r"flat: expected shape \(15,\), got \(3,\)"):
        m.views(np.zeros(3, F32))


def test_softmax_cross_entropy_grad_names_a_non_array_logits():
    with pytest.raises(TypeError, match="logits: expected a numpy or cupy array, got list"):
        nn.softmax_cross_entropy_grad([[1.0, 2.0]], np.array([0]))
    with pytest.raises(TypeError, match="logits: expected a numpy or cupy array, got list"):
        nn.softmax_cross_entropy([[1.0, 2.0]], np.array([0]))
    with pytest.raises(TypeError, match="labels: expected an integer array, got list"):
        nn.softmax_cross_entropy(np.zeros((1, 2), F32), [0])


@pytest.mark.parametrize("order", [True, 1.0, np.array(2), "1", None])
def test_activation_order_must_be_an_integer(order):
    z = np.zeros((2, 3), F32)
    with pytest.raises(TypeError, match="order: expected an integer"):
        nn.activation("tanh", z, order=order)
    assert len(nn.activation("tanh", z, order=np.int64(2))) == 3


@pytest.mark.parametrize("norm", ["batch", "layer", None])
def test_mlp_strided_params_are_read_like_contiguous_ones(norm):
    m, p, x, y = _mlp(norm)
    v = np.random.default_rng(1).standard_normal(m.num_params).astype(F32)
    big = np.zeros(2 * p.size, F32)
    big[::2] = p
    ps = big[::2]
    keep = big.copy()
    assert m.loss(ps, x, y) == m.loss(p, x, y)
    np.testing.assert_array_equal(m.loss_and_grad(ps, x, y)[1], m.loss_and_grad(p, x, y)[1])
    np.testing.assert_array_equal(m.hvp(ps, x, y, v), m.hvp(p, x, y, v))
    np.testing.assert_array_equal(m.ggn_block(ps, x, y, v[None]), m.ggn_block(p, x, y, v[None]))
    assert m.accuracy(ps, x, y) == m.accuracy(p, x, y)
    np.testing.assert_array_equal(big, keep)


# ---- norm: normalized_shape, module dtypes and sizes, saved fields, C = 0 ------------------------


@pytest.mark.parametrize(
    "ns,exc,match",
    [
        (None, TypeError, "normalized_shape: expected an int or a tuple"),
        (3.0, TypeError, "normalized_shape: expected an int or a tuple"),
        (np.array(6), TypeError, "normalized_shape: expected an int or a tuple"),
        ("6", TypeError, "normalized_shape: expected an int or a tuple"),
        (("6",), TypeError, r"normalized_shape\[0\]: expected an integer"),
        ((6.0,), TypeError, r"normalized_shape\[0\]: expected an integer"),
        ((True,), TypeError, r"normalized_shape\[0\]: expected an integer"),
        ((2**64,), ValueError, r"normalized_shape\[0\]: must be <="),
        ((-6,), ValueError, r"normalized_shape\[0\]: must be >= 0"),
    ],
)
def test_layer_and_rms_norm_check_normalized_shape(ns, exc, match):
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(F32)
    keep = x.copy()
    for f in (N.layer_norm, N.rms_norm):
        with pytest.raises(exc, match=match):
            f(x, ns)
    for cls in (N.LayerNorm, N.RMSNorm):
        if ns is None or not isinstance(ns, np.ndarray):
            with pytest.raises(exc, match=match):
                cls(ns)
    np.testing.assert_array_equal(x, keep)


def test_valid_normalized_shapes_still_work():
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(F32)
    for ns in (6, np.int64(6), [6], (6,), np.array([6]), (np.int64(6),)):
        assert N.layer_norm(x, ns)[0].shape == x.shape
        assert N.RMSNorm(ns).normalized_shape == (6,)
    with pytest.raises(ValueError, match="normalized_shape: .* holds more than"):
        N.LayerNorm((2**40, 2**40))


@pytest.mark.parametrize("dtype", [np.int64, np.float128, object, np.complex64, None, "foo"])
@pytest.mark.parametrize(
    "make",
    [
        lambda d: N.BatchNorm(3, dtype=d),
        lambda d: N.LayerNorm(3, dtype=d),
        lambda d: N.GroupNorm(1, 3, dtype=d),
        lambda d: N.RMSNorm(3, dtype=d),
    ],
)
def test_norm_modules_refuse_other_dtypes(make, dtype):
    with pytest.raises(TypeError, match="dtype: expected float32, float64, float16 or 'bfloat16'"):
        make(dtype)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: N.BatchNorm(2**64), "num_features: must be <="),
        (lambda: N.BatchNorm(10**400), "num_features: must be <="),
        (lambda: N.GroupNorm(2, 2**64), "num_channels: must be <="),
        (lambda: N.GroupNorm(2**64, 2**64), "num_groups: must be <="),
        (lambda: N.LayerNorm((2**64,)), r"normalized_shape\[0\]: must be <="),
        (lambda: N.RMSNorm((10**400,)), r"normalized_shape\[0\]: must be <="),
    ],
)
def test_norm_module_sizes_bounded_to_int64(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_batchnorm_blames_x_for_a_dtype_mismatch_and_changes_nothing():
    bn = N.BatchNorm(6)
    x = np.random.default_rng(0).standard_normal((4, 6))
    rm, rv = bn.running_mean.copy(), bn.running_var.copy()
    with pytest.raises(TypeError, match=r"x: expected float32 \(this BatchNorm's dtype\), got float64"):
        bn(x)
    np.testing.assert_array_equal(bn.running_mean, rm)
    np.testing.assert_array_equal(bn.running_var, rv)
    assert bn.num_batches_tracked == 0
    for m in (N.LayerNorm(6), N.GroupNorm(2, 6), N.RMSNorm(6)):
        with pytest.raises(TypeError, match=r"x: expected float32"):
            m(x)
    assert N.LayerNorm(6, elementwise_affine=False)(x)[0].dtype == np.float64  # holds nothing of its dtype


@pytest.mark.parametrize("nbt,exc", [(-1, ValueError), (10**400, ValueError), ("a", TypeError), (1.5, TypeError)])
def test_cumulative_batchnorm_checks_num_batches_tracked(nbt, exc):
    bn = N.BatchNorm(6, momentum=None)
    bn.num_batches_tracked = nbt
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(F32)
    rm, rv = bn.running_mean.copy(), bn.running_var.copy()
    with pytest.raises(exc, match="num_batches_tracked"):
        bn(x)
    np.testing.assert_array_equal(bn.running_mean, rm)
    np.testing.assert_array_equal(bn.running_var, rv)
    assert bn.num_batches_tracked == nbt


def _row_saved():
    xg = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(F32)
    return xg, N.group_norm(xg, 2)[1], N.instance_norm(xg)[1]


@pytest.mark.parametrize(
    "groups,exc,match",
    [
        (None, TypeError, "saved.groups: expected an integer"),
        ("a", TypeError, "saved.groups: expected an integer"),
        (1.5, TypeError, "saved.groups: expected an integer"),
        (np.array([1, 2]), TypeError, "saved.groups: expected an integer"),
        (-1, ValueError, "saved.groups: must be >="),
        (10**400, ValueError, "saved.groups: must be <="),
    ],
)
def test_row_norm_backwards_check_saved_groups(groups, exc, match):
    xg, sg, si = _row_saved()
    dy = np.ones_like(xg)
    with pytest.raises(exc, match=match):
        N.group_norm_backward(dy, xg, None, N.RowNormSaved(sg.mean, sg.rstd, groups))
    with pytest.raises(exc, match=match):
        N.instance_norm_backward(dy, xg, None, N.RowNormSaved(si.mean, si.rstd, groups))


def test_batch_norm_backward_checks_saved_training():
    x = np.random.default_rng(0).standard_normal((6, 4)).astype(F32)
    s = N.batch_norm(x)[1]
    for bad in ("no", np.array([True, False]), None):
        with pytest.raises(TypeError, match="saved.training: expected a bool"):
            N.batch_norm_backward(np.ones_like(x), x, None, N.BatchNormSaved(s.mean, s.rstd, bad))
    N.batch_norm_backward(np.ones_like(x), x, None, N.BatchNormSaved(s.mean, s.rstd, np.bool_(True)))


def test_weight_norm_backward_names_saved_dim():
    v = np.random.default_rng(0).standard_normal((4, 3)).astype(F32)
    g = np.ones(4, F32)
    s = N.weight_norm(v, g, 0)[1]
    dw = np.ones_like(v)
    for dim, exc, match in [
        (5, ValueError, "saved.dim: out of range"),
        ("x", TypeError, "saved.dim: expected an integer"),
        (1, ValueError, "saved.dim: 1 gives 3 slices"),
        (None, ValueError, "saved.dim: None gives 1"),
    ]:
        with pytest.raises(exc, match=match):
            N.weight_norm_backward(dw, v, g, N.WeightNormSaved(s.norm, dim))
    with pytest.raises(ValueError, match="g: expected 4 elements"):  # g itself wrong: still g
        N.weight_norm_backward(dw, v, g[:3], s)


def test_zero_channels_name_x():
    for f in (lambda x: N.batch_norm(x), lambda x: N.group_norm(x, 2), lambda x: N.instance_norm(x)):
        with pytest.raises(ValueError, match=r"x: expected at least one channel"):
            f(np.zeros((2, 0, 2), F32))
    with pytest.raises(ValueError, match=r"x: expected at least one channel"):
        N.batch_norm(np.zeros((4, 0), F32))
