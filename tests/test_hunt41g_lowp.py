"""Hunt 41g: ``lowp`` edge cases.

``dequantize_blockwise`` read its ``codes`` only as a NumPy / CuPy array: a torch uint8 tensor (the
form an 8-bit state takes in a torch checkpoint) was refused as "expected a uint8 array, got
torch.uint8", while its ``scales`` (and ``quantize_blockwise``'s input) were taken through their
views; and a NumPy masked array passed as an ndarray, its mask ignored (``quantize_blockwise``
refuses one, naming it)."""

import numpy as np
import pytest

from optkern import lowp

X = np.random.default_rng(41).standard_normal(300).astype(np.float32)


def test_dequantize_blockwise_takes_torch_codes():
    torch = pytest.importorskip("torch")
    codes, scales = lowp.quantize_blockwise(X, 64)
    want = lowp.dequantize_blockwise(codes, scales, 64)
    got = lowp.dequantize_blockwise(torch.from_numpy(codes), torch.from_numpy(scales), 64)
    assert isinstance(got, np.ndarray) and np.array_equal(got, want)
    # a non-contiguous tensor's values, not its memory order
    c2 = torch.from_numpy(codes.reshape(20, 15).copy()).t()
    got = lowp.dequantize_blockwise(c2, scales, 64)
    assert np.array_equal(got, lowp.dequantize_blockwise(np.ascontiguousarray(c2.numpy()), scales, 64))


def test_dequantize_blockwise_refuses_masked_codes():
    codes, scales = lowp.quantize_blockwise(X, 64)
    masked = np.ma.masked_array(codes, mask=codes > 128)
    with pytest.raises(TypeError, match="codes"):
        lowp.dequantize_blockwise(masked, scales, 64)


def test_dequantize_blockwise_torch_codes_of_other_dtype_named():
    torch = pytest.importorskip("torch")
    _, scales = lowp.quantize_blockwise(X, 64)
    with pytest.raises(TypeError, match="codes: expected a uint8 array, got int8"):
        lowp.dequantize_blockwise(torch.zeros(300, dtype=torch.int8), scales, 64)


@pytest.mark.parametrize("fn", ["to_half", "from_half"])
def test_torch_dtype_refusal_shows_the_dtype(fn):
    """A torch dtype (not one of the spellings taken) was refused as "got dtype" (its type's name),
    which reads as if a NumPy dtype had been refused: the message shows the torch dtype."""
    torch = pytest.importorskip("torch")
    call = {
        "to_half": lambda d: lowp.to_half(X, d),
        "from_half": lambda d: lowp.from_half(np.zeros(3, np.uint16), d),
    }[fn]
    with pytest.raises(TypeError, match=r"^dtype: .*, got torch\.bfloat16$"):
        call(torch.bfloat16)
