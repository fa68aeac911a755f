"""The 8-bit block scales have one check (``optkern.lowp.check_block_scales``), shared by
``lowp.dequantize_blockwise`` and the optimizers' state loaders.

``dequantize_blockwise`` took scales of any shape holding the right number of elements (a (3, 1)
array for 3 blocks) and decoded NaN / inf scales to NaN values silently, where optkern.optim's
loader refused both naming the entry; optkern.torch's loader compared only the element count.
Negative scales stay valid in the public function: the sign marks the signed map."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from optkern import lowp, optim

BLOCK = 64
N = 2 * BLOCK + 7  # (3 blocks, the last one short)

# (spoil of a (3,) float32 scales array, what the error says after the argument's name)
SPOILS = [
    (
        "column",
        lambda s: s.reshape(3, 1),
        r"expected 3 float32 block scales \(shape \(3,\)\), got float32 of shape \(3, 1\)",
    ),
    (
        "row",
        lambda s: s.reshape(1, 3),
        r"expected 3 float32 block scales \(shape \(3,\)\), got float32 of shape \(1, 3\)",
    ),
    ("short", lambda s: s[:2].copy(), r"expected 3 float32 block scales \(shape \(3,\)\), got 2 of float32"),
    ("nan", lambda s: _with(s, 1, np.nan), r"1 non-finite block scale \(NaN or inf\)"),
    ("inf", lambda s: _with(s, 0, np.inf), r"1 non-finite block scale \(NaN or inf\)"),
    ("-inf", lambda s: _with(s, 2, -np.inf), r"1 non-finite block scale \(NaN or inf\)"),
]


def _with(s: np.ndarray, i: int, v: float) -> np.ndarray:
    s = s.copy()
    s[i] = v
    return s


def _encoded(seed: int = 5509):
    """Data whose middle block is nonnegative (unsigned map, positive scale), the others signed."""
    x = np.random.default_rng(seed).standard_normal(N).astype(np.float32)
    x[BLOCK : 2 * BLOCK] = np.abs(x[BLOCK : 2 * BLOCK])
    return x, *lowp.quantize_blockwise(x, BLOCK)


@pytest.mark.parametrize("name, spoil, text", SPOILS, ids=[s[0] for s in SPOILS])
def test_dequantize_refuses_scales_that_are_not_the_blocks_scales(name, spoil, text):
    _, codes, scales = _encoded()
    with pytest.raises(ValueError, match=rf"^scales: {text}"):
        lowp.dequantize_blockwise(codes, spoil(scales), BLOCK)


def test_dequantize_still_takes_negative_scales_the_signed_map():
    x, codes, scales = _encoded()
    assert scales[0] < 0 < scales[1] and scales[2] < 0  # (this data uses both maps)
    y = lowp.dequantize_blockwise(codes, scales, BLOCK)
    # independent decode: each code's value in its block's map times the block's |scale|
    for b, s in enumerate(scales):
        blk = slice(b * BLOCK, (b + 1) * BLOCK)
        want = lowp.decode_map(bool(s < 0))[codes[blk]].astype(np.float64) * abs(float(s))
        np.testing.assert_allclose(y[blk], want, rtol=1e-6, atol=0)
    np.testing.assert_allclose(y, x, rtol=0, atol=np.abs(x).max() / 32)


@pytest.mark.parametrize("n", [0, 1, 7, 1023])
def test_dequantize_of_odd_sizes_round_trips_its_own_scales(n):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    codes, scales = lowp.quantize_blockwise(x, BLOCK)
    assert scales.shape == (lowp.n_blocks(n, BLOCK),)
    y = lowp.dequantize_blockwise(codes, scales, BLOCK)
    assert y.shape == x.shape
    assert np.allclose(y, x, rtol=0, atol=np.abs(x).max(initial=0) / 64)


def _optim_saved():
    rng = np.random.default_rng(5510)
    p = rng.standard_normal(N).astype(np.float32)
    opt = optim.Adam([p], lr=1e-2, state_dtype="int8", block_size=BLOCK)
    for _ in range(2):
        opt.step([rng.standard_normal(N).astype(np.float32)])
    return opt.state_dict()


@pytest.mark.parametrize("name, spoil, text", SPOILS, ids=[s[0] for s in SPOILS])
def test_optim_loader_refuses_the_same_scales_naming_the_entry(name, spoil, text):
    sd = copy.deepcopy(_optim_saved())
    sd["state"][0]["exp_avg_scale"] = spoil(sd["state"][0]["exp_avg_scale"])
    q = np.zeros(N, np.float32)
    b = optim.Adam([q], lr=1e-2, state_dtype="int8", block_size=BLOCK)
    with pytest.raises(ValueError, match=rf"\['exp_avg_scale'\]: {text}"):
        b.load_state_dict(sd)
    assert not b.state and not q.any()


@pytest.mark.parametrize("name, spoil, text", SPOILS, ids=[s[0] for s in SPOILS])
def test_torch_loader_refuses_the_same_scales_naming_the_entry(name, spoil, text):
    torch = pytest.importorskip("torch")
    ot = pytest.importorskip("optkern.torch")
    torch.manual_seed(5511)
    ps = [torch.randn(N)]
    opt = ot.Adam(ps, lr=1e-2, state_dtype="int8", block_size=BLOCK)
    for _ in range(2):
        ps[0].grad = torch.randn(N)
        opt.step()
    sd = copy.deepcopy(opt.state_dict())
    sd["state"][0]["exp_avg_scale"] = torch.from_numpy(spoil(sd["state"][0]["exp_avg_scale"].numpy()))
    qs = [torch.randn(N)]
    before = qs[0].clone()
    b = ot.Adam(qs, lr=1e-2, state_dtype="int8", block_size=BLOCK)
    with pytest.raises(ValueError, match=rf"\['exp_avg_scale'\]: {text}"):
        b.load_state_dict(sd)
    assert not b.state
    assert torch.equal(qs[0], before)
