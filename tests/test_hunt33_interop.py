"""Arrays from other libraries across the public API (interop hunt 33): exporters of NumPy's
``__array_interface__`` alone were refused as "not an array" everywhere; the MLP's methods,
``regularize.mixup`` / ``cutmix`` / ``soft_targets``, ``hessian.from_mlp``'s batches and
``GradScaler.scale`` refused torch tensors or DLPack exporters that every optimizer takes; the
``out=`` of ``CurvatureOperator.matvec``, ``MLP.hvp`` and ``clip_grad_norm_`` refused a torch tensor;
an operator read a DLPack-only vector as an array of objects; ``AveragedParams.copy_to`` wrote into
a zero-stride view (one element, holding the last value written)."""

import numpy as np
import pytest

import optkern.clip as C
from dlpack_exporters import Plain as DLPackOnly
from optkern import _backend, hessian, regularize, swa
from optkern import functional as F
from optkern import optim as O
from optkern.amp import GradScaler
from optkern.nn import MLP

torch = pytest.importorskip("torch")


class Interface:
    """Exports only NumPy's ``__array_interface__`` (as PIL images and buffers of other libraries do)."""

    def __init__(self, a):
        self.base = a
        self.__array_interface__ = a.__array_interface__


def _rand(shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def test_array_interface_exporters_are_updated_in_place():
    p0, g, m = _rand(7), _rand(7, seed=1), _rand(7, seed=2)
    want_p, want_m = p0.copy(), m.copy()
    F.sgd_([want_p], [g], [want_m], lr=0.1, momentum=0.9)

    p, mm = p0.copy(), m.copy()
    F.sgd_([Interface(p)], [Interface(g)], [Interface(mm)], lr=0.1, momentum=0.9)
    np.testing.assert_array_equal(p, want_p)
    np.testing.assert_array_equal(mm, want_m)

    p = p0.copy()
    opt = O.Adam([Interface(p)], lr=0.1)
    opt.step([Interface(g)])
    ref = p0.copy()
    O.Adam([ref], lr=0.1).step([g])
    np.testing.assert_array_equal(p, ref)

    gg = np.full(5, 3.0, np.float32)
    assert C.clip_grad_norm_(Interface(gg), 1.0) == pytest.approx(np.sqrt(45.0))
    np.testing.assert_allclose(np.linalg.norm(gg), 1.0, rtol=1e-5)


def test_read_only_array_interface_exporter_is_refused_before_writing():
    p, g = _rand(6), _rand(6, seed=1)
    ro = p.copy()
    ro.setflags(write=False)
    with pytest.raises(ValueError, match=r"^params\[0\]: array is read-only"):
        F.sgd_([Interface(ro)], [g], lr=0.1)
    np.testing.assert_array_equal(ro, p)


def test_mlp_methods_take_torch_and_dlpack_arrays_and_out():
    m = MLP([3, 5, 2], activation="tanh")
    params = m.init_params(1)
    x, y, v = _rand((6, 3), seed=2), np.array([0, 1, 1, 0, 1, 0]), _rand(m.num_params, seed=3)
    loss, grad = m.loss_and_grad(params, x, y)
    hv = m.hvp(params, x, y, v)

    loss_t, grad_t = m.loss_and_grad(torch.from_numpy(params.copy()), DLPackOnly(x), Interface(y))
    assert loss_t == loss
    np.testing.assert_array_equal(grad_t, grad)
    out = torch.zeros(m.num_params)
    m.hvp(DLPackOnly(params), torch.from_numpy(x), y, Interface(v), out=out)
    np.testing.assert_array_equal(out.numpy(), hv)
    np.testing.assert_array_equal(m.predict(torch.from_numpy(params), DLPackOnly(x)), m.predict(params, x))


def test_operator_matvec_takes_a_dlpack_vector_and_a_torch_out():
    a = np.diag(np.arange(1.0, 6.0))
    op = hessian.as_operator(a)
    v = np.linspace(-1.0, 1.0, 5)
    out = torch.zeros(5, dtype=torch.float64)
    op.matvec(DLPackOnly(v), out=out)
    np.testing.assert_array_equal(out.numpy(), a @ v)
    np.testing.assert_array_equal(op.matvec(Interface(v)), a @ v)
    ro = np.zeros(5)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="^out: array is read-only"):
        op.matvec(v, out=DLPackOnly(ro))


def test_clip_grad_norm_writes_the_norm_into_a_torch_out():
    g = np.full(4, 3.0, np.float32)
    out = torch.zeros(1, dtype=torch.float64)
    assert C.clip_grad_norm_([g], 1.0, out=out) == 6.0
    assert out.item() == 6.0
    empty = torch.full((1,), 5.0, dtype=torch.float64)
    assert C.clip_grad_norm_([], 1.0, out=empty) == 0.0  # (a float, as with a NumPy out)
    assert empty.item() == 0.0
    with pytest.raises(ValueError, match=r"^out: expected a contiguous 1-element float64"):
        C.clip_grad_norm_([g], 1.0, out=torch.zeros(1))


def test_swa_copy_to_refuses_a_zero_stride_view_before_writing():
    avg = swa.AveragedParams([np.arange(4, dtype=np.float32)])
    base = np.zeros(4, np.float32)
    shared = np.lib.stride_tricks.as_strided(base, (4,), (0,))
    with pytest.raises(ValueError, match=r"^params\[0\]: array has overlapping elements"):
        avg.copy_to([shared])
    np.testing.assert_array_equal(base, 0.0)
    strided = np.zeros(8, np.float32)
    avg.copy_to([strided[::2]])  # (distinct elements: written)
    np.testing.assert_array_equal(strided[::2], np.arange(4))


def test_mixup_cutmix_soft_targets_take_foreign_arrays():
    x, y = _rand((4, 2, 3, 3), seed=4), np.array([0, 2, 1, 0])
    for fn in (regularize.mixup, regularize.cutmix):
        want = fn(x, y, num_classes=3, rng=7)
        got = fn(torch.from_numpy(x.copy()), DLPackOnly(y), num_classes=3, rng=7)
        np.testing.assert_array_equal(got.x, want.x)
        np.testing.assert_array_equal(got.y, want.y)
    np.testing.assert_array_equal(regularize.soft_targets(Interface(y), 4, 3), regularize.soft_targets(y, 4, 3))


def test_from_mlp_takes_dlpack_batches_and_arguments():
    m = MLP([3, 4, 3])
    params, x, y = m.init_params(0), _rand((5, 3), seed=5), np.array([0, 1, 2, 0, 1])
    v = _rand(m.num_params, seed=6)
    want = hessian.from_mlp(m, params, x, y).matvec(v)
    np.testing.assert_array_equal(hessian.from_mlp(m, params, DLPackOnly(x), Interface(y)).matvec(v), want)
    np.testing.assert_array_equal(hessian.from_mlp(m, params, batches=[(DLPackOnly(x), Interface(y))]).matvec(v), want)


def test_grad_scaler_scales_a_dlpack_loss():
    s = GradScaler(init_scale=8.0)
    loss = np.array([1.5], np.float32)
    np.testing.assert_array_equal(s.scale(DLPackOnly(loss)), [12.0])
    np.testing.assert_array_equal(s.scale(Interface(loss)), [12.0])


def test_numpy_scalars_and_types_are_not_foreign_arrays():
    # (both export ``__array_interface__``: a scalar type passed as dtype= was viewed as an object array)
    assert not _backend.is_foreign(np.float32(1.0))
    assert not _backend.is_foreign(np.float16)
    y = np.array([0, 2, 1])
    t = regularize.soft_targets(Interface(y), 3, 3, dtype=np.float16)
    assert t.dtype == np.float16
    np.testing.assert_array_equal(t, np.eye(3, dtype=np.float16)[y])
