"""Hunt 39c: ``GradScaler.update(new_scale)`` with a bfloat16 value. torch's update copies any
1-element floating tensor into its float32 scale (bfloat16 too); a bfloat16 array / tensor was
refused as "expected a number or a 1-element float array, got bfloat16" (NumPy's kind of the
ml_dtypes type is 'V', not 'f'). The device twin (CuPy values checked as host ones) is
tests/test_cuda_hunt39c_amp_scale.py."""

import numpy as np
import pytest

from optkern import amp

ml_dtypes = pytest.importorskip("ml_dtypes")


@pytest.mark.parametrize("shape", [(1,), ()])
def test_a_bfloat16_array_sets_the_scale(shape):
    s = amp.GradScaler(init_scale=8.0)
    s.update(new_scale=np.full(shape, 0.375, ml_dtypes.bfloat16))
    assert s.get_scale() == 0.375


def test_a_bfloat16_torch_tensor_sets_the_scale_as_torch_does():
    torch = pytest.importorskip("torch")
    t = torch.full((), 3.0, dtype=torch.bfloat16)  # (torch 2.x: its scale is 0-d)
    ref = torch.amp.GradScaler("cpu", init_scale=8.0)
    ref.scale(torch.ones(1))  # (torch makes its scale lazily)
    ref.update(new_scale=t)
    s = amp.GradScaler(init_scale=8.0)
    s.update(new_scale=t)
    assert s.get_scale() == ref.get_scale() == 3.0


@pytest.mark.parametrize("bad", [np.nan, -1.0, 0.0])
def test_bad_bfloat16_values_are_refused_by_name_and_keep_the_scale(bad):
    s = amp.GradScaler(init_scale=8.0)
    with pytest.raises(ValueError, match="^new_scale:"):
        s.update(new_scale=np.full(1, bad, ml_dtypes.bfloat16))
    assert s.get_scale() == 8.0


def test_other_void_dtypes_stay_refused():
    s = amp.GradScaler(init_scale=8.0)
    with pytest.raises(TypeError, match="^new_scale:"):
        s.update(new_scale=np.zeros(1, [("a", "f4")]))
    with pytest.raises(TypeError, match="^new_scale:"):
        s.update(new_scale=np.zeros(1, ml_dtypes.float8_e4m3fn))
    assert s.get_scale() == 8.0
