"""Bad input to the norm and nn calls: a TypeError / ValueError naming the right argument, nothing
written; valid but unusual input accepted (issues 13 and 20, one table per class)."""

import numpy as np
import pytest

import optkern
from optkern import hessian, nn, norm

F32 = np.float32


def _x(n=8, c=3, dtype=F32):
    return np.random.default_rng(0).standard_normal((n, c)).astype(dtype)


# ---- running statistics aliasing x, out, weight or each other ---------------------------------


def _bn_alias_cases():
    x = _x()
    rm, rv = np.zeros(3, F32), np.ones(3, F32)
    both = np.zeros(3, F32)
    out = np.empty_like(x)
    w = np.ones(3, F32)
    return [
        ("rm is a row of x", {"x": x, "running_mean": x[0], "running_var": rv}, "running_mean", "x"),
        ("rv is a row of x", {"x": x, "running_mean": rm, "running_var": x[1]}, "running_var", "x"),
        ("rm is rv", {"x": x, "running_mean": both, "running_var": both}, "running_var", "running_mean"),
        (
            "rm inside out",
            {"x": x, "running_mean": out.reshape(-1)[:3], "running_var": rv, "out": out},
            "running_mean",
            "out",
        ),
        ("rv is weight", {"x": x, "weight": w, "running_mean": rm, "running_var": w}, "running_var", "weight"),
        # x with one value per channel: the aliasing is still what is reported
        ("rm in 1-row x", {"x": x[:1], "running_mean": x[0], "running_var": rv}, "running_mean", "x"),
    ]


@pytest.mark.parametrize("case", _bn_alias_cases(), ids=lambda c: c[0])
@pytest.mark.parametrize("fn", ["batch_norm", "instance_norm"])
def test_running_buffers_must_not_alias(case, fn):
    _, kw, name, other = case
    kw = dict(kw)
    if fn == "instance_norm":
        kw["x"] = np.ascontiguousarray(np.broadcast_to(kw["x"][..., None], kw["x"].shape + (4,)))
        if "out" in kw:
            kw["out"] = np.empty_like(kw["x"])
            kw["running_mean"] = kw["out"].reshape(-1)[:3]
        if name == "running_mean" and other == "x":
            kw["running_mean"] = kw["x"].reshape(-1)[:3]
        if name == "running_var" and other == "x":
            kw["running_var"] = kw["x"].reshape(-1)[4:7]
    before = {k: v.copy() for k, v in kw.items() if isinstance(v, np.ndarray)}
    with pytest.raises(ValueError, match=rf"^{name}: shares memory with {other}\b"):
        getattr(norm, fn)(**kw)
    for k, v in before.items():  # nothing written (`out` may be np.empty: NaN patterns compare equal)
        assert np.array_equal(kw[k], v, equal_nan=True)


def test_strided_running_buffers_are_valid():
    x = _x()
    rm, rv = np.zeros(6, F32)[::2], np.ones(6, F32)[::2]
    ref_m, ref_v = np.zeros(3, F32), np.ones(3, F32)
    norm.batch_norm(x, running_mean=rm, running_var=rv)
    norm.batch_norm(x, running_mean=ref_m, running_var=ref_v)
    assert np.array_equal(rm, ref_m) and np.array_equal(rv, ref_v)


# ---- *_backward with a wrong `saved` ---------------------------------------------------------


def _forwards():
    x = _x()
    x4 = np.random.default_rng(1).standard_normal((2, 4, 5)).astype(F32)
    return {
        "batch_norm": (lambda s: norm.batch_norm_backward(x, x, None, s), norm.batch_norm(x)[1]),
        "layer_norm": (lambda s: norm.layer_norm_backward(x, x, None, s), norm.layer_norm(x, 3)[1]),
        "rms_norm": (lambda s: norm.rms_norm_backward(x, x, None, s), norm.rms_norm(x, 3)[1]),
        "group_norm": (lambda s: norm.group_norm_backward(x4, x4, None, s), norm.group_norm(x4, 2)[1]),
        "instance_norm": (lambda s: norm.instance_norm_backward(x4, x4, None, s), norm.instance_norm(x4)[1]),
        "weight_norm": (
            lambda s: norm.weight_norm_backward(x, x, np.ones(8, F32), s),
            norm.weight_norm(x, np.ones(8, F32))[1],
        ),
    }


@pytest.mark.parametrize("fn", list(_forwards()))
def test_backward_with_saved_none_or_none_field(fn):
    call, saved = _forwards()[fn]
    call(saved)  # the right saved works
    with pytest.raises(TypeError, match=r"^saved: expected the \w+Saved"):
        call(None)
    with pytest.raises(TypeError, match=r"^saved: "):
        call("saved")
    first = type(saved)._fields[0]
    with pytest.raises(TypeError, match=rf"^saved\.{first}: expected an array, got None"):
        call(saved._replace(**{first: None}))
    with pytest.raises(TypeError, match=rf"^saved\.{first}: expected an array"):
        call(tuple(None if i == 0 else v for i, v in enumerate(saved)))  # a plain tuple is accepted otherwise


def test_rms_norm_backward_with_another_forwards_saved_names_saved():
    x = _x()
    _, s = norm.layer_norm(x, 3)
    with pytest.raises(TypeError, match=r"^saved: expected the RMSNormSaved .* got RowNormSaved"):
        norm.rms_norm_backward(x, x, np.ones(3, F32), s)
    with pytest.raises(ValueError, match=r"^saved\.inv_rms: expected 8 elements"):
        norm.rms_norm_backward(x, x, None, norm.RMSNormSaved(np.ones(5, F32)))


@pytest.mark.parametrize("fn, field", [("layer_norm", "rstd"), ("batch_norm", "mean")])
def test_saved_arrays_of_the_wrong_size_name_saved(fn, field):
    call, saved = _forwards()[fn]
    with pytest.raises(ValueError, match=rf"^saved\.{field}: "):
        call(saved._replace(**{field: np.ones(2, F32)}))


# ---- non-array weights / bias -----------------------------------------------------------------


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda x: norm.rms_norm(x, 3, weight=1.0), "weight"),
        (lambda x: norm.layer_norm(x, 3, bias=[0.0, 0.0, 0.0]), "bias"),
        (lambda x: norm.batch_norm(x, weight="w"), "weight"),
        (lambda x: norm.group_norm(x, 1, bias=2), "bias"),
    ],
)
def test_non_array_parameters_are_type_errors_naming_them(call, name):
    with pytest.raises(TypeError, match=rf"^{name}(\[0\])?: expected a numpy or cupy array"):
        call(_x())


# ---- MLP --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sizes, exc, match",
    [
        ([3, None, 2], TypeError, r"^sizes\[1\]: expected an integer"),
        ([3, 2.5, 2], TypeError, r"^sizes\[1\]"),
        ([3, "4", 2], TypeError, r"^sizes\[1\]"),
        (7, TypeError, r"^sizes: expected a sequence"),
        ([3, 0, 2], ValueError, r"^sizes: expected at least two positive"),
    ],
)
def test_mlp_sizes(sizes, exc, match):
    with pytest.raises(exc, match=match):
        nn.MLP(sizes)


@pytest.fixture
def mlp():
    m = nn.MLP([3, 5, 2], norm="batch")
    return m, m.init_params(seed=0), _x(), np.array([0, 1] * 4)


@pytest.mark.parametrize("method", ["loss", "loss_and_grad", "hvp", "ggn_vp"])
@pytest.mark.parametrize("missing", ["x", "y"])
def test_mlp_none_x_or_y_is_a_type_error_naming_it(mlp, method, missing):
    m, p, x, y = mlp
    args = {"x": x, "y": y}
    args[missing] = None
    extra = (p,) if method in ("hvp", "ggn_vp") else ()
    with pytest.raises(TypeError, match=rf"^{missing}: expected a numpy or cupy array, got NoneType"):
        getattr(m, method)(p, args["x"], args["y"], *extra)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128, np.bool_, object])
def test_mlp_rejects_non_real_x(mlp, dtype):
    m, p, x, y = mlp
    with pytest.raises(TypeError, match=r"^x: expected real numbers"):
        m.loss(p, x.astype(dtype), y)


def test_mlp_accepts_integer_x(mlp):
    m, p, _, y = mlp
    xi = np.arange(24).reshape(8, 3) % 5
    assert m.loss(p, xi, y) == m.loss(p, xi.astype(F32), y)


@pytest.mark.parametrize("method", ["hvp", "ggn_vp"])
@pytest.mark.parametrize("kind", ["strided", "negative", "broadcast"])
def test_mlp_products_with_a_non_contiguous_direction(mlp, method, kind):
    m, p, x, y = mlp
    v = np.random.default_rng(2).standard_normal(p.size).astype(F32)
    if kind == "strided":
        vv = np.repeat(v, 2)[::2]
    elif kind == "negative":
        vv = v[::-1].copy()[::-1]
    else:
        v = np.full(p.size, 0.5, F32)
        vv = np.broadcast_to(F32(0.5), p.shape)
    assert not vv.flags.c_contiguous or kind == "negative"
    got = getattr(m, method)(p, x, y, vv)
    assert np.array_equal(got, getattr(m, method)(p, x, y, v))


def test_mlp_jvp_with_a_broadcast_direction(mlp):
    m, p, x, _ = mlp
    got = m.jvp(p, x, np.broadcast_to(F32(0.25), p.shape))
    assert np.array_equal(got, m.jvp(p, x, np.full(p.size, 0.25, F32)))


# ---- hessian.from_hvp -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw, exc, match",
    [
        ({"fn": object(), "n": 3}, TypeError, r"^fn: expected a callable, got object"),
        ({"fn": np.eye(3), "n": 3}, TypeError, r"^fn: expected a callable, got ndarray"),
        ({"fn": lambda v: v, "n": object()}, TypeError, r"^n: "),
        ({"fn": lambda v: v, "n": 3, "dtype": object}, TypeError, r"^dtype: expected float32 or float64"),
        ({"fn": lambda v: v, "n": 3, "dtype": "int64"}, TypeError, r"^dtype: "),
    ],
)
def test_from_hvp_reports_the_bad_argument(kw, exc, match):
    with pytest.raises(exc, match=match):
        hessian.from_hvp(**kw)


# ---- clip_grad_norm_ with an empty list -------------------------------------------------------


@pytest.mark.parametrize(
    "kw, exc, match",
    [
        ({"max_norm": -1.0}, ValueError, r"^max_norm"),
        ({"max_norm": float("nan")}, ValueError, r"^max_norm"),
        ({"max_norm": "1"}, TypeError, r"^max_norm"),
        ({"max_norm": 1.0, "norm_type": 0.5}, ValueError, r"^norm_type"),
        ({"max_norm": 1.0, "norm_type": None}, TypeError, r"^norm_type"),
        ({"max_norm": 1.0, "out": "junk"}, TypeError, r"^out"),
        ({"max_norm": 1.0, "out": np.zeros(2)}, ValueError, r"^out"),
        ({"max_norm": 1.0, "out": np.zeros(1, F32)}, ValueError, r"^out"),
    ],
)
def test_clip_grad_norm_of_an_empty_list_validates(kw, exc, match):
    with pytest.raises(exc, match=match):
        optkern.clip_grad_norm_([], **kw)


def test_clip_grad_norm_of_an_empty_list_writes_out():
    out = np.full(1, 7.0)
    assert optkern.clip_grad_norm_([], 1.0, out=out) == 0.0
    assert out[0] == 0.0
    ro = np.full(1, 7.0)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="^out: array is read-only"):
        optkern.clip_grad_norm_([], 1.0, out=ro)
