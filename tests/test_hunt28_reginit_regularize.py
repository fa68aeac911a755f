"""optkern.regularize: penalty coefficients past float32, and what EarlyStopping's checkpoints keep."""

from typing import NamedTuple

import numpy as np
import pytest

from optkern.regularize import EarlyStopping, add_penalty_grad_, load_state, save_state

ml_dtypes = pytest.importorskip("ml_dtypes")


@pytest.mark.parametrize("name", ["l1", "l2"])
def test_penalty_coefficient_past_float32_is_refused(name):
    # the kernel rounds l1 / l2 to float32: inf * sign(0) wrote NaN, every other gradient inf
    p = np.array([0.0, 1.0, -2.0], np.float32)
    g = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=f"^{name}: 1e\\+39 is not finite in float32"):
        add_penalty_grad_([p], [g], **{name: 1e39})
    np.testing.assert_array_equal(g, np.ones(3, np.float32))
    np.testing.assert_array_equal(p, [0.0, 1.0, -2.0])
    big = np.finfo(np.float32).max  # the largest float32 coefficient still runs
    add_penalty_grad_([np.array([0.0, 1.0, -1.0], np.float32)], [g], **{name: float(big)})
    np.testing.assert_array_equal(g, [1.0, big, -big])
    g64 = np.ones(3)  # and float64 arrays take 1e39 (sign(0) = 0 kept)
    v = add_penalty_grad_([p.astype(np.float64)], [g64], **{name: 1e39}, return_value=True)
    coef = {"l1": [0.0, 1.0, -1.0], "l2": [0.0, 1.0, -2.0]}[name]
    np.testing.assert_array_equal(g64, 1.0 + 1e39 * np.array(coef))
    assert v == pytest.approx(1e39 * (3.0 if name == "l1" else 2.5), rel=1e-15)


@pytest.mark.parametrize("dtype", ["bfloat16", "float8_e4m3fn"])
def test_save_state_keeps_ml_dtypes_arrays(tmp_path, dtype):
    dt = np.dtype(getattr(ml_dtypes, dtype))
    state = {"w": np.linspace(-3, 3, 7).astype(dt).reshape(7, 1)[::2], "s": np.array(1.5, dt)}
    save_state(tmp_path / "s.npz", state)
    back = load_state(tmp_path / "s.npz")
    for k, a in state.items():  # came back as void bytes ('|V2') before
        assert back[k].dtype == dt and back[k].shape == a.shape
        np.testing.assert_array_equal(back[k].astype(np.float32), a.astype(np.float32))


def test_early_stopping_file_checkpoint_of_bfloat16_restores_bfloat16(tmp_path):
    bf16 = np.dtype(ml_dtypes.bfloat16)
    stopper = EarlyStopping(path=tmp_path / "best.npz")
    stopper.step(1.0, state={"w": np.arange(5).astype(bf16)})
    w = stopper.restore()["w"]
    assert w.dtype == bf16
    np.testing.assert_array_equal(w.astype(np.float32), np.arange(5, dtype=np.float32))


def test_object_arrays_are_refused_before_the_checkpoint_is_replaced(tmp_path):
    # np.savez pickled them and load_state (allow_pickle=False) refused the file: the good
    # checkpoint was replaced by one that could not be restored
    stopper = EarlyStopping(path=tmp_path / "best.npz")
    stopper.step(2.0, state={"w": np.ones(3)})
    before = stopper.state_dict()
    bad = {"w": np.array([{"a": 1}, None], dtype=object)}
    with pytest.raises(TypeError, match=r"^state\['w'\]: cannot save an array of dtype object"):
        stopper.step(1.0, state=bad)
    assert stopper.state_dict() == before
    np.testing.assert_array_equal(stopper.restore()["w"], np.ones(3))
    with pytest.raises(TypeError, match=r"^state\['r'\]: cannot save an array of dtype"):
        save_state(tmp_path / "x.npz", {"r": np.zeros(2, dtype=[("o", object), ("f", "<f4")])})
    assert not list(tmp_path.glob("x.npz*"))


class _Hyper(NamedTuple):
    lr: float
    w: np.ndarray


def test_in_memory_checkpoint_of_named_tuples():
    # the snapshot called _Hyper(<generator>): TypeError, no checkpoint could be kept
    stopper = EarlyStopping()
    w = np.arange(3.0)
    assert not stopper.step(1.0, state={"h": _Hyper(0.1, w), "l": [_Hyper(0.2, w)]})
    w[:] = -1  # the checkpoint is a copy
    back = stopper.restore()
    assert type(back["h"]) is _Hyper and back["h"].lr == 0.1
    np.testing.assert_array_equal(back["h"].w, [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(back["l"][0].w, [0.0, 1.0, 2.0])
    assert stopper.state_dict()["best_step"] == 0
