"""Hunt 55h: optkern.init's in-place initializers take a torch tensor (or any DLPack exporter) as
DESIGN §3 promises, writing through to the caller's memory, zero-copy.

They refused one ("w: expected a numpy or cupy array, got Tensor"). Now each fills the tensor's own
memory (same data pointer) with the bits the NumPy path gives the same logical array and seed, a
transposed (strided) tensor included, and returns the caller's object, as torch.nn.init does; a
read-only export is refused naming ``w``, the memory untouched. ``lsuv_mlp_``'s flat ``params``, refused
too, is written through the same way.
"""

from __future__ import annotations

import numpy as np
import pytest

import optkern
from dlpack_exporters import HINT, Old, Plain
from optkern import init

torch = pytest.importorskip("torch")

# (initializer, extra args) for a 2-D weight; each random one gets rng=seed
RANDOM = [
    ("xavier_uniform_", ()),
    ("xavier_normal_", (0.7,)),
    ("kaiming_uniform_", ()),
    ("kaiming_normal_", ()),
    ("lecun_uniform_", ()),
    ("lecun_normal_", ()),
    ("geometric_uniform_", ()),
    ("geometric_normal_", ()),
    ("normal_", (0.5, 2.0)),
    ("uniform_", (-3.0, 1.0)),
    ("orthogonal_", ()),
    ("trunc_normal_", ()),
    ("sparse_", (0.3,)),
]
FIXED = [("constant_", (2.5,)), ("ones_", ()), ("zeros_", ()), ("eye_", ())]
SHAPES = [(1, 1), (7, 3), (3, 7), (1023, 2)]


def _call(name, w, args, seed):
    fn = getattr(init, name)
    return fn(w, *args, rng=seed) if (name, args) in RANDOM else fn(w, *args)


def _tensors(shape, dtype):
    """A contiguous tensor and a transposed (strided) one of logical ``shape``, NaN-filled."""
    t = torch.full(shape, float("nan"), dtype=dtype)
    tt = torch.full(shape[::-1], float("nan"), dtype=dtype).T
    assert min(shape) == 1 or not tt.is_contiguous()
    return {"contiguous": t, "transposed": tt}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name,args", RANDOM + FIXED)
def test_fills_torch_tensor_in_place_bit_equal_to_numpy(name, args, shape, dtype):
    seed = 1234 + sum(shape)
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    ref = _call(name, np.full(shape, np.nan, np_dtype), args, seed)
    for layout, t in _tensors(shape, dtype).items():
        ptr, strides = t.data_ptr(), t.stride()
        got = _call(name, t, args, seed)
        assert got is t, layout  # the caller's object, as torch.nn.init returns it
        assert (t.data_ptr(), t.stride()) == (ptr, strides), layout  # its own memory: no copy
        bits = np.ascontiguousarray(t.numpy()).view(np.uint8)  # bit-equal (NaN, -0.0 told apart)
        np.testing.assert_array_equal(bits, np.ascontiguousarray(ref).view(np.uint8), err_msg=layout)


@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_dirac_and_empty_tensors(layout):
    """dirac_ on a 3-D tensor; a zero-element tensor is filled as NumPy's (a no-op) and returned."""
    w = torch.full((4, 2, 3), 7.0) if layout == "contiguous" else torch.full((3, 2, 4), 7.0).permute(2, 1, 0)
    assert init.dirac_(w, groups=2) is w
    np.testing.assert_array_equal(w.numpy(), init.dirac_(np.full((4, 2, 3), 7.0, np.float32), groups=2))
    e = torch.empty(0, 5) if layout == "contiguous" else torch.empty(5, 0).T
    assert init.xavier_uniform_(e, rng=0) is e
    assert init.constant_(e, 1.0) is e


def test_plain_dlpack_exporter_is_filled_through():
    """An exporter of nothing but ``__dlpack__`` (no shape of its own, JAX-like) over writable
    memory: filled in place, the exporter returned."""
    base = np.full((5, 4), np.nan, np.float32)
    e = Plain(base)
    assert init.orthogonal_(e, rng=3) is e
    np.testing.assert_array_equal(base, init.orthogonal_(np.empty((5, 4), np.float32), rng=3))
    assert init.eye_(e) is e
    np.testing.assert_array_equal(base, np.eye(5, 4, dtype=np.float32))


@pytest.mark.parametrize("name,args", RANDOM + FIXED)
def test_read_only_exports_refused_by_name_untouched(name, args):
    ro = np.full((6, 4), 5.0, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"^w: array is read-only$"):
        _call(name, Plain(ro), args, 0)  # (DLPack 1.0: the export carries its read-only flag)
    back = np.full((6, 4), 5.0, np.float32)  # writable memory, but exported without max_version
    with pytest.raises(ValueError, match="^w: " + HINT):
        _call(name, Old(back), args, 0)
    np.testing.assert_array_equal(back, 5.0)


def test_bad_tensors_refused_by_name_before_writing():
    t = torch.full((4, 3), 5.0)
    with pytest.raises(TypeError, match="^w: expected a floating dtype, got int64"):
        init.uniform_(torch.zeros(4, 3, dtype=torch.int64), rng=0)
    with pytest.raises(ValueError, match="^w:"):  # (shared elements: an expanded tensor)
        init.normal_(torch.zeros(1, 3).expand(4, 3), rng=0)
    with pytest.raises(TypeError, match="^w: cannot view this torch.Tensor"):  # a lazy negated view
        init.ones_(t.neg().conj() if t.is_complex() else torch._neg_view(t))
    np.testing.assert_array_equal(t.numpy(), 5.0)


def test_tensor_requiring_grad_is_filled_outside_autograd():
    """As torch.nn.init (under no_grad): a leaf that requires grad is filled in place, still a leaf."""
    w = torch.empty(5, 3, requires_grad=True)
    assert init.kaiming_uniform_(w, rng=9) is w
    assert w.requires_grad and w.is_leaf and w.grad_fn is None
    np.testing.assert_array_equal(w.detach().numpy(), init.kaiming_uniform_(np.empty((5, 3), np.float32), rng=9))


def test_lsuv_mlp_on_torch_params_matches_numpy():
    mlp = optkern.nn.MLP([5, 7, 3])
    x = np.random.default_rng(0).standard_normal((64, 5)).astype(np.float32)
    p_np = mlp.init_params(0)
    p_t = torch.from_numpy(p_np.copy())
    ptr = p_t.data_ptr()
    v_np = init.lsuv_mlp_(mlp, p_np, x, rng=4)
    v_t = init.lsuv_mlp_(mlp, p_t, x, rng=4)
    assert v_t == v_np and p_t.data_ptr() == ptr
    np.testing.assert_array_equal(p_t.numpy(), p_np)
