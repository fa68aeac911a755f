"""The generic low-precision step (_cpu.lowp_step): bf16/fp16 params with fp32
masters, bf16 and 8-bit states, against the fp32 optimizer and PyTorch."""

import math

import numpy as np
import pytest

from optkern import _cpu, functional, lowp

ml_dtypes = pytest.importorskip("ml_dtypes")
SIZES = [1, 7, 1023, 70_001]
LR, B1, B2, EPS = 1e-2, 0.9, 0.999, 1e-8


def adam_scalars(t, lr=LR, wd=0.0):
    # the hyper-parameters; the native step computes the step's scalars (Adam::at) from t
    return [lr, B1, B2, EPS, wd]


def lowp_adam(t, params, grads, masters, states, scales=None, pf="bfloat16", sf="float32", sr=False, seed=0, block=256):
    _cpu.lowp_step("adam", adam_scalars(t), [False], params, grads, masters, states, scales, pf, sf, sr, seed, t, block)


def half_of(x, fmt):
    return lowp.to_half(x, fmt, raw=True)


def rand_sizes(rng, sizes):
    return [rng.standard_normal(n).astype(np.float32) for n in sizes]


@pytest.mark.parametrize("fmt", ["bfloat16", "float16"])
@pytest.mark.parametrize("sr", [False, True])
def test_adam_master_equals_fp32_optimizer_and_param_is_its_rounding(fmt, sr):
    rng = np.random.default_rng(1001)
    p0 = rand_sizes(rng, SIZES)
    ps = [half_of(p, fmt) for p in p0]
    masters = [lowp.from_half(p, fmt) for p in ps]
    ref = [m.copy() for m in masters]
    st = [[np.zeros_like(m) for m in masters] for _ in range(2)]
    rst = [[np.zeros_like(m) for m in masters] for _ in range(2)]
    for t in range(1, 5):
        gs = [half_of(rng.standard_normal(m.size).astype(np.float32), fmt) for m in masters]
        lowp_adam(t, ps, gs, masters, st, pf=fmt, sr=sr, seed=9)
        functional.adam_(ref, [lowp.from_half(g, fmt) for g in gs], rst[0], rst[1], step=t, lr=LR)
        base = 0
        for i, m in enumerate(masters):
            np.testing.assert_array_equal(m, ref[i])  # bit for bit the fp32 optimizer
            np.testing.assert_array_equal(st[0][i], rst[0][i])
            np.testing.assert_array_equal(st[1][i], rst[1][i])
            want = lowp.stochastic_round(m, fmt, seed=9, step=t, offset=base, raw=True) if sr else half_of(m, fmt)
            np.testing.assert_array_equal(ps[i], want)
            base += m.size


def test_adam_bf16_params_match_torch_master_recipe():
    """torch: fp32 master updated by torch.optim.Adam in float32, then cast to bf16."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1002)
    n = 4099
    p = half_of(rng.standard_normal(n).astype(np.float32), "bfloat16")
    master = lowp.from_half(p, "bfloat16")
    tm = torch.tensor(master.copy(), requires_grad=True)
    opt = torch.optim.Adam([tm], lr=LR, betas=(B1, B2), eps=EPS)
    st = [[np.zeros(n, np.float32)], [np.zeros(n, np.float32)]]
    for t in range(1, 11):
        g = half_of(rng.standard_normal(n).astype(np.float32), "bfloat16")
        lowp_adam(t, [p], [g], [master], st)
        tm.grad = torch.tensor(lowp.from_half(g, "bfloat16"))
        opt.step()
    tw = tm.detach().numpy()
    # float32 rounding of the same formula, order of operations differing: a few ulps of |p| over 10 steps
    np.testing.assert_allclose(master, tw, rtol=1e-6, atol=5e-6)
    tp = tm.detach().to(torch.bfloat16).float().numpy()
    got = lowp.from_half(p, "bfloat16")
    ulp = np.abs(np.spacing(tp.astype(ml_dtypes.bfloat16)).astype(np.float32))
    assert np.all(np.abs(got - tp) <= ulp)  # equal up to the rounding of bf16
    assert np.mean(got == tp) > 0.98


def test_sgd_momentum_bf16_state_tracks_fp32():
    """fp32 params, bf16 momentum (stochastic rounding): after 20 steps the momentum is the fp32
    one to a few bf16 ulps and the params agree closely."""
    rng = np.random.default_rng(1003)
    n = 5003
    p = rng.standard_normal(n).astype(np.float32)
    ref = p.copy()
    buf = np.zeros(n, np.uint16)
    rbuf = np.zeros(n, np.float32)
    for t in range(1, 21):
        g = rng.standard_normal(n).astype(np.float32)
        _cpu.lowp_step(
            "sgd",
            [0.01, 0.9, 0.0, 0.0],
            [False, False, t == 1, False],
            [p],
            [g],
            None,
            [[buf]],
            None,
            "float32",
            "bfloat16",
            False,
            3,
            t,
            256,
        )
        functional.sgd_([ref], [g], [rbuf], lr=0.01, momentum=0.9, first=(t == 1))
    b = lowp.from_half(buf, "bfloat16")
    np.testing.assert_allclose(b, rbuf, rtol=0, atol=4 * 2.0**-8 * np.abs(rbuf).max())
    # each step's momentum error (<= 1 bf16 ulp) is carried on by 1 / (1 - 0.9) = 10 steps of lr
    np.testing.assert_allclose(p, ref, rtol=0, atol=20 * 0.01 * 10 * 2.0**-8 * np.abs(rbuf).max())
    assert not np.array_equal(p, ref)  # the state really was stored in bf16


def test_sr_of_bf16_state_is_unbiased():
    """One SGD-momentum step from b = 0: b = g exactly in fp32, stored by stochastic rounding."""
    n = 200_000
    g = np.full(n, 1.0 + 2.0**-10, np.float32)
    p = np.zeros(n, np.float32)
    buf = np.zeros(n, np.uint16)
    _cpu.lowp_step(
        "sgd",
        [0.0, 0.9, 0.0, 0.0],
        [False, False, True, False],
        [p],
        [g],
        None,
        [[buf]],
        None,
        "float32",
        "bfloat16",
        False,
        5,
        1,
        256,
    )
    b = lowp.from_half(buf, "bfloat16").astype(np.float64)
    lo, hi = 1.0, 1.0 + 2.0**-7
    assert set(np.unique(b)) <= {lo, hi}
    pr = 2.0**-10 / 2.0**-7
    assert abs(b.mean() - (1 + 2.0**-10)) <= 3 * 2.0**-7 * math.sqrt(pr * (1 - pr) / n)


@pytest.mark.parametrize("pf", ["float32", "bfloat16"])
def test_bf16_states_are_stochastic_roundings_of_the_fp32_step(pf):
    """States 0 and 1 of the tensor starting at global index `base` share the Philox words of key
    seed + 1 in stream `step` (cpp/include/optkern/lowp_storage.hpp): state 0 is
    stochastic_round(seed + 1, step, offset=base), bit for bit, state 1 adds the words' low 16 bits
    before truncating -- whatever the stage and block boundaries (odd sizes: tensors start at any
    word of a Philox block)."""
    rng = np.random.default_rng(20261201)
    sizes = [1, 7, 1023, 4097, 3]
    seed, t = 11, 4
    p32 = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    g32 = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    s32 = [[np.abs(rng.standard_normal(n)).astype(np.float32) for n in sizes] for _ in range(2)]
    half = pf != "float32"
    ps = [half_of(p, pf) if half else p.copy() for p in p32]
    gs = [half_of(g, pf) if half else g for g in g32]
    masters = [p.copy() for p in p32] if half else None
    x, flags = [1e-2, 0.9, 0.999, 1e-8, 0.0], [False, False]

    def run(states, fmt):
        ps_ = [p.copy() for p in ps]
        ms_ = [m.copy() for m in masters] if masters is not None else None
        _cpu.lowp_step("adam", x, flags, ps_, gs, ms_, states, None, pf, fmt, False, seed, t, 256)
        return states

    # both runs start from the same bf16 state values (the fp32 run from their float32 values)
    s16 = [[half_of(s, "bfloat16") for s in sk] for sk in s32]
    ref = run([[lowp.from_half(s, "bfloat16") for s in sk] for sk in s16], "float32")
    got = run(s16, "bfloat16")
    base = np.cumsum([0] + sizes[:-1])
    for i in range(len(sizes)):
        want = lowp.stochastic_round(ref[0][i], "bfloat16", seed=seed + 1, step=t, offset=int(base[i]))
        np.testing.assert_array_equal(got[0][i], lowp.bits(want), err_msg=f"state 0, tensor {i}")
        words = philox_words(int(base[i]), sizes[i], key=seed + 1, stream=t)
        u = ref[1][i].view(np.uint32).astype(np.uint64)  # finite and far below bf16's largest value
        want1 = ((u + (words & 0xFFFF)) >> 16).astype(np.uint16)
        np.testing.assert_array_equal(got[1][i], want1, err_msg=f"state 1, tensor {i}")


def philox_words(offset, n, key, stream):
    """Philox4x32-10 words offset .. offset + n - 1 of `stream` (optkern/philox.hpp's mapping: word
    g is lane g % 4 of block g / 4), from the known-answer-tested single-block function."""
    out = np.empty(n, dtype=np.uint64)
    for j, g in enumerate(range(offset, offset + n)):
        ctr = [(g >> 2) & 0xFFFFFFFF, g >> 34, stream & 0xFFFFFFFF, stream >> 32]
        out[j] = _cpu.philox4x32_10(ctr, [key & 0xFFFFFFFF, key >> 32])[g & 3]
    return out


@pytest.mark.parametrize("block", [256, 2048])
def test_int8_states_are_the_quantized_fp32_update(block):
    """Each step equals: dequantize the old states, run the fp32 optimizer, quantize the new states."""
    rng = np.random.default_rng(1004)
    sizes = [7, 3000, 70_001]
    ps = [half_of(x, "bfloat16") for x in rand_sizes(rng, sizes)]
    masters = [lowp.from_half(p, "bfloat16") for p in ps]
    codes = [[np.zeros(n, np.uint8) for n in sizes] for _ in range(2)]
    scales = [[np.zeros(-(-n // block), np.float32) for n in sizes] for _ in range(2)]
    for t in range(1, 4):
        gs = [half_of(rng.standard_normal(n).astype(np.float32), "bfloat16") for n in sizes]
        old = [[lowp.dequantize_blockwise(codes[k][i], scales[k][i], block) for i in range(3)] for k in range(2)]
        ref_w = [m.copy() for m in masters]
        functional.adam_(ref_w, [lowp.from_half(g, "bfloat16") for g in gs], old[0], old[1], step=t, lr=LR)
        lowp_adam(t, ps, gs, masters, codes, scales, sf="int8", block=block)
        for i in range(3):
            np.testing.assert_array_equal(masters[i], ref_w[i])
            np.testing.assert_array_equal(ps[i], half_of(ref_w[i], "bfloat16"))
            for k in range(2):
                c, s = lowp.quantize_blockwise(old[k][i], block)
                np.testing.assert_array_equal(scales[k][i], s)
                np.testing.assert_array_equal(codes[k][i], c)
        # second moments are >= 0: their blocks use the unsigned map (positive scale)
        assert all((s >= 0).all() for s in scales[1])


def test_bad_input_is_named():
    n = 10
    p = np.zeros(n, np.uint16)
    g32 = np.zeros(n, np.float32)
    m = np.zeros(n, np.float32)
    st = [[np.zeros(n, np.float32)], [np.zeros(n, np.float32)]]
    with pytest.raises(TypeError, match=r"grads\[0\]: expected uint16"):
        lowp_adam(1, [p], [g32], [m], st)
    with pytest.raises(ValueError, match="masters"):
        lowp_adam(1, [p], [p.copy()], None, st)
    with pytest.raises(ValueError, match=r"masters\[0\]: expected 10 elements"):
        lowp_adam(1, [p], [p.copy()], [np.zeros(3, np.float32)], st)
    with pytest.raises(ValueError, match="scales"):
        lowp_adam(1, [p], [p.copy()], [m], [[np.zeros(n, np.uint8)], [np.zeros(n, np.uint8)]], sf="int8")
    with pytest.raises(ValueError, match=r"shares memory"):
        lowp_adam(1, [p], [p], [m], st)
    with pytest.raises(ValueError, match=r"shares memory"):
        lowp_adam(1, [p], [p.copy()], [st[0][0]], st)
    # the shared aliasing check (call_args.hpp) names both arrays, with their item sizes
    with pytest.raises(ValueError, match=r"^states\[0\]\[0\] shares memory with masters\[0\]"):
        lowp_adam(1, [p], [p.copy()], [m], [[m], [np.zeros(n, np.float32)]])
    with pytest.raises(ValueError, match="state_dtype"):
        lowp_adam(1, [p], [p.copy()], [m], st, sf="float16")
    with pytest.raises(ValueError, match="block"):
        lowp_adam(1, [p], [p.copy()], [m], st, block=100)
