"""Arrays that enter the API in unusual forms (interop hunt): NumPy masked arrays are refused by
name (their mask was ignored: masked entries updated, summed, normalized); torch.Tensor subclasses
defined outside torch take torch's path (a lazily negated one was read as its memory, i.e. with the
wrong sign, and one that requires grad was refused); torch.bfloat16 tensors are viewed in place
where bfloat16 arrays are taken (they were refused)."""

import warnings

import numpy as np
import pytest

import optkern.clip as C
import optkern.norm as N
import optkern.optim as O

torch = pytest.importorskip("torch")


class UserTensor(torch.Tensor):
    """A torch.Tensor subclass whose module is not torch's (torchvision's tv_tensors, user code)."""


def _masked(x, mask):
    return np.ma.MaskedArray(x, mask=mask)


def test_masked_arrays_are_refused_by_name_before_any_write():
    p = np.ones(4, np.float32)
    g = _masked(np.full(4, 100, np.float32), [0, 1, 0, 0])
    msg = "masked array"
    with pytest.raises(TypeError, match=r"^grads\[0\]: .*" + msg):
        O.SGD([p], lr=0.5).step([g])
    assert np.array_equal(p, np.ones(4, np.float32))
    with pytest.raises(TypeError, match=r"^param_groups\[0\]\['params'\]\[0\]: .*" + msg):
        O.Adam([_masked(np.ones(4, np.float32), [0, 1, 0, 0])], lr=0.5)
    with pytest.raises(TypeError, match=r"^grads: .*" + msg):
        C.clip_grad_norm_(_masked(np.array([3.0, 4.0, 1e9]), [0, 0, 1]), 1.0)
    with pytest.raises(TypeError, match=r"^grads\[1\]: .*" + msg):
        C.clip_grad_value_([np.ones(2), _masked(np.ones(2), [1, 0])], 0.5)
    x = np.arange(12.0).reshape(4, 3)
    with pytest.raises(TypeError, match=r"^x: .*" + msg):
        N.layer_norm(_masked(x, np.eye(4, 3)), (3,))
    with pytest.raises(TypeError, match=r"^weight: .*" + msg):
        N.batch_norm(x, _masked(np.ones(3), [0, 1, 0]))
    rm, rv = _masked(np.zeros(3), [0, 1, 0]), np.ones(3)
    with pytest.raises(TypeError, match=r"^running_mean: .*" + msg):
        N.batch_norm(x, None, None, rm, rv)
    assert not rm.data.any() and np.array_equal(rv, np.ones(3))


def test_other_ndarray_subclasses_still_work_in_place(tmp_path):
    path = tmp_path / "p.dat"
    np.ones(6, np.float32).tofile(path)
    m = np.memmap(path, np.float32, mode="r+", shape=(2, 3))
    O.SGD(m, lr=0.5).step(np.memmap(path, np.float32, mode="r", shape=(2, 3)).copy())
    m.flush()
    assert np.array_equal(np.fromfile(path, np.float32), np.full(6, 0.5, np.float32))
    with pytest.raises(ValueError, match=r"^param_groups\[0\]\['params'\]\[0\]: array is read-only"):
        O.SGD([np.memmap(path, np.float32, mode="r", shape=(2, 3))], lr=0.5)


def test_neg_view_of_a_tensor_subclass_is_refused_not_read_with_the_wrong_sign():
    g = torch._neg_view(torch.arange(1.0, 5.0)).as_subclass(UserTensor)
    assert g.is_neg()
    p = torch.zeros(4)
    with pytest.raises(TypeError, match=r"^grads\[0\]: .*negative bit.*resolve_neg"):
        O.SGD([p], lr=1.0).step([g])
    assert not p.any()
    with pytest.raises(TypeError, match=r"^grads\[0\]: .*negative bit"):
        C.clip_grad_norm_([g], 100.0)
    x = torch._neg_view(torch.arange(6.0).reshape(2, 3)).as_subclass(UserTensor)
    with pytest.raises(TypeError, match=r"^x: .*negative bit"):
        N.layer_norm(x, (3,))
    with pytest.raises(TypeError, match=r"^grads\[0\]: .*negative bit"):  # torch's own type: refused alike
        O.SGD([torch.zeros(4)], lr=1.0).step([torch._neg_view(torch.ones(4))])
    # resolved, it is the step of its values
    O.SGD([p], lr=1.0).step([g.resolve_neg()])
    assert torch.equal(p, torch.arange(1.0, 5.0))


def test_tensor_subclass_that_requires_grad_is_updated_in_place():
    p = torch.zeros(4).as_subclass(UserTensor).requires_grad_()
    ptr = p.data_ptr()
    opt = O.SGD([p], lr=1.0)
    opt.step([torch.ones(4)])
    assert p.data_ptr() == ptr and torch.equal(p.detach().as_subclass(torch.Tensor), -torch.ones(4))
    assert np.shares_memory(opt.param_groups[0]["params"][0], p.detach().numpy())


@pytest.mark.parametrize("name", ["Adam", "SGD"])
def test_bfloat16_tensors_are_viewed_in_place_where_bfloat16_arrays_are_taken(name):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bf16 = np.dtype(ml_dtypes.bfloat16)
    rng = np.random.default_rng(0)
    w = rng.standard_normal(37).astype(np.float32)
    grads = [rng.standard_normal(37).astype(np.float32) for _ in range(3)]
    ref = w.astype(bf16)
    t = torch.from_numpy(w).bfloat16()
    ptr = t.data_ptr()
    opt_np = getattr(O, name)([ref], lr=0.1, master_weights=True)
    opt_t = getattr(O, name)([t], lr=0.1, master_weights=True)
    for g in grads:
        opt_np.step([g.astype(bf16)])
        opt_t.step([torch.from_numpy(g).bfloat16()])
    assert t.data_ptr() == ptr
    assert np.array_equal(t.view(torch.int16).numpy(), ref.view(np.int16))  # bitwise the NumPy path
    t = torch.ones(4, dtype=torch.bfloat16)  # (clipped in place, as NumPy bfloat16 grads are)
    assert C.clip_grad_norm_([t], 1.0) == 2.0
    assert torch.equal(t, torch.full((4,), 0.5, dtype=torch.bfloat16))


def test_running_buffers_with_a_zero_stride_are_refused_before_writing():
    """A writable zero-stride running buffer (as_strided, torch's expand): the per-channel updates
    all landed in one element, every channel then holding the last one's statistics."""
    from numpy.lib.stride_tricks import as_strided

    from optkern import norm

    x = np.random.default_rng(0).standard_normal((4, 3))
    base = np.zeros(1)
    rm = as_strided(base, shape=(3,), strides=(0,))
    rv = np.ones(3)
    with pytest.raises(ValueError, match=r"^running_mean: array has overlapping elements"):
        norm.batch_norm(x, running_mean=rm, running_var=rv, training=True)
    assert base[0] == 0.0 and (rv == 1.0).all()
    y, _ = norm.batch_norm(x, running_mean=rm, running_var=rv, training=False)  # (only read: valid)
    assert y.shape == x.shape


def test_lowp_reads_torch_tensors_and_refuses_masked_arrays():
    torch = pytest.importorskip("torch")
    from optkern import lowp

    x = np.linspace(-3.0, 3.0, 11, dtype=np.float32)
    want = lowp.to_bfloat16(x, raw=True)
    np.testing.assert_array_equal(lowp.to_bfloat16(torch.from_numpy(x), raw=True), want)
    np.testing.assert_array_equal(lowp.from_half(torch.from_numpy(x).to(torch.float16)), x.astype(np.float16))
    np.testing.assert_array_equal(
        lowp.from_half(torch.from_numpy(x).to(torch.bfloat16)), lowp.from_half(want, "bfloat16")
    )
    with pytest.raises(TypeError, match=r"^x: expected a numpy.ndarray, got a masked array"):
        lowp.to_bfloat16(np.ma.masked_array(x, mask=x > 0))


def test_as_operator_takes_a_matrix_subclass_and_a_torch_tensor():
    from optkern import hessian

    a = np.diag([3.0, 1.0, 2.0])
    want = hessian.top_eigenvalues(hessian.as_operator(a), k=1).eigenvalues
    with warnings.catch_warnings():  # (NumPy's PendingDeprecationWarning for np.matrix: an error here)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        m = np.asmatrix(a)
    got = hessian.top_eigenvalues(hessian.as_operator(m), k=1).eigenvalues
    np.testing.assert_allclose(got, want)
    torch = pytest.importorskip("torch")
    got = hessian.top_eigenvalues(hessian.as_operator(torch.from_numpy(a)), k=1).eigenvalues
    np.testing.assert_allclose(got, want)
