"""Hunt 40d: a big-endian ``ml_dtypes.bfloat16`` array (``a.astype(bf16.newbyteorder('>'))``) is
refused, naming it, before anything is written.

Its dtype's ``name`` is "bfloat16" like the native one's, and the Python checks told bfloat16 by
that name: ``lowp.from_half`` / ``lowp.bits``, the clipping functions, the optimizers' half params
(``master_weights``) and GradScaler's half grads took it and read its raw bytes as native bfloat16
bits, byte-swapped (1.5 read as -2.98, grads clipped by a garbage norm, params stepped by
byte-swapped grads), silently. The native checks already refused it (``got >V2``), as every path
refuses a big-endian float16 or float32 array."""

import numpy as np
import pytest

from optkern import clip, lowp, optim
from optkern.amp import GradScaler

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
BIG = BF16.newbyteorder(">" if BF16.byteorder != ">" and np.little_endian else "<")  # the other order


def swapped(values):
    """bfloat16 ``values`` in the non-native byte order (the same numbers)."""
    a = np.asarray(values, np.float32).astype(BF16).astype(BIG)
    assert not a.dtype.isnative and a.dtype.name == "bfloat16"
    return a


def test_the_array_is_the_same_numbers():
    """(what the refusals guard: the array is valid data, just not in the byte order read)"""
    a = swapped([1.5, -2.25, 3.0])
    assert a.astype(np.float32).tolist() == [1.5, -2.25, 3.0]


@pytest.mark.parametrize("fn", [lowp.from_half, lowp.bits])
def test_lowp_views_refuse_it(fn):
    h = swapped([1.5, -2.25, 3.0])
    with pytest.raises(TypeError, match=r"expected a float16, bfloat16 or uint16 array, got >V2"):
        fn(h)


CLIPS = {
    "clip_grad_norm_": lambda gs: clip.clip_grad_norm_(gs, 0.1),
    "clip_grad_value_": lambda gs: clip.clip_grad_value_(gs, 0.1),
    "clip_grads_with_norm_": lambda gs: clip.clip_grads_with_norm_(gs, 0.1, 5.0),
    "get_total_norm": lambda gs: clip.get_total_norm(gs),
}


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_clipping_refuses_it_unwritten(name):
    g = swapped(np.linspace(-3, 3, 16))
    before = g.copy()
    with pytest.raises(TypeError, match=r"grads\[0\]: expected float32.* got >V2"):
        CLIPS[name]([g])
    assert g.tobytes() == before.tobytes()


def test_an_optimizer_refuses_half_params_unwritten():
    p = swapped(np.linspace(-1, 1, 16))
    g = np.linspace(-1, 1, 16).astype(np.float32).astype(BF16)
    before = p.copy()
    with pytest.raises(TypeError, match=r"\['params'\]\[0\]: .*got >V2"):
        optim.Adam([p], lr=0.1, master_weights=True).step([g])
    assert p.tobytes() == before.tobytes()


def test_an_optimizer_refuses_half_grads_unwritten():
    p = np.linspace(-1, 1, 16).astype(np.float32).astype(BF16)
    before = p.copy()
    with pytest.raises(TypeError, match=r"grads\[0\]: .*got >V2"):
        optim.Adam([p], lr=0.1, master_weights=True).step([swapped(np.ones(16))])
    assert p.tobytes() == before.tobytes()


def test_grad_scaler_refuses_half_params_unwritten():
    """(a step through GradScaler moved the two end params by 63 where they should move by 0.1)"""
    p = swapped(np.linspace(-1, 1, 16))
    g = swapped(np.full(16, 2.0))
    before, gbefore = p.copy(), g.copy()
    scaler = GradScaler(init_scale=2.0)
    with pytest.raises(TypeError, match=r"\['params'\]\[0\]: .*got >V2"):
        scaler.step(optim.SGD([p], lr=0.1, master_weights=True), [g])
    assert p.tobytes() == before.tobytes() and g.tobytes() == gbefore.tobytes()


@pytest.mark.parametrize("native", [np.float32, BF16])
def test_native_bfloat16_still_works(native):
    """(the refusals above are of the byte order only)"""
    g = np.linspace(-3, 3, 16).astype(np.float32).astype(native)
    total = clip.clip_grad_norm_([g], 0.1)
    assert total == pytest.approx(float(np.linalg.norm(np.linspace(-3, 3, 16).astype(native).astype(np.float64))))
    assert float(np.linalg.norm(g.astype(np.float64))) == pytest.approx(0.1, rel=1e-2)
    assert lowp.from_half(np.array([1.5], BF16)).tolist() == [1.5]


@pytest.mark.parametrize("spelling", ["bfloat16", "uint16 bits"])
def test_a_bfloat16_state_of_the_other_byte_order_loads_its_values(spelling):
    """A state_dtype='bfloat16' checkpoint's states in the other byte order (saved on a machine of
    that order) are the same numbers: they load as such. (The ml_dtypes spelling loaded its
    byte-swapped bits, exp_avg_sq then refused as negative; the uint16 one was refused.)"""
    p = np.linspace(-1, 1, 8).astype(np.float32)
    opt = optim.Adam([p], lr=0.1, state_dtype="bfloat16")
    opt.step([np.linspace(0.5, 2, 8).astype(np.float32)])
    sd = opt.state_dict()
    for k in ("exp_avg", "exp_avg_sq"):
        bits = sd["state"][0][k].view(np.uint16)
        sd["state"][0][k] = bits.view(BF16).astype(BIG) if spelling == "bfloat16" else bits.astype(">u2")
    other = optim.Adam([p.copy()], lr=0.1, state_dtype="bfloat16")
    other.load_state_dict(sd)
    for k in ("exp_avg", "exp_avg_sq"):
        got, want = other.state_dict()["state"][0][k], opt.state_dict()["state"][0][k]
        assert got.view(np.uint16).tolist() == want.view(np.uint16).tolist()


def test_a_norm_module_refuses_the_dtype():
    """(a module of that dtype was made, and no input could run through it: a native bfloat16 x was
    "expected >V2", a swapped one refused by the kernels)"""
    from optkern import norm

    for make in (
        lambda: norm.BatchNorm(4, dtype=BIG),
        lambda: norm.GroupNorm(2, 4, dtype=BIG),
        lambda: norm.LayerNorm(4, dtype=BIG),
        lambda: norm.RMSNorm(4, dtype=BIG),
    ):
        with pytest.raises(TypeError, match=r"^dtype: expected float32, float64, float16 or 'bfloat16', got >V2"):
            make()
    assert norm.LayerNorm(4, dtype=BF16).weight.dtype == BF16


class _Holder:
    def __init__(self, v):
        self.v = v

    def state_dict(self):
        return {"v": self.v}

    def load_state_dict(self, state):
        self.v = state["v"]


def test_a_checkpoint_keeps_the_values(tmp_path):
    """optkern.save stored a swapped array's bytes as bfloat16 bits: 1.5 came back -2.98."""
    import optkern

    a = swapped([1.5, -2.25, 3.0])
    optkern.save(str(tmp_path / "c.ok"), h=_Holder(a))
    back = _Holder(None)
    optkern.load(str(tmp_path / "c.ok"), h=back)
    assert back.v.dtype == BF16 and back.v.astype(np.float32).tolist() == [1.5, -2.25, 3.0]


def test_early_stopping_snapshots_keep_the_values(tmp_path):
    from optkern.regularize.early_stopping import load_state, save_state

    save_state(str(tmp_path / "s.npz"), {"w": swapped([1.5, -2.25, 3.0])})
    back = load_state(str(tmp_path / "s.npz"))["w"]
    assert back.astype(np.float32).tolist() == [1.5, -2.25, 3.0]
