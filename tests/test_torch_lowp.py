"""optkern.torch with low-precision storage: bf16/fp16 params with a float32 master, bf16 and 8-bit
states, stochastic rounding; checkpoints across formats and with torch.optim; bad input."""

import io

import numpy as np
import pytest

from optkern import lowp, optim

torch = pytest.importorskip("torch")
ot = pytest.importorskip("optkern.torch")
ml_dtypes = pytest.importorskip("ml_dtypes")

torch.set_num_threads(1)

SIZES = [1, 7, 1023, 3001]
NP_HALF = {torch.bfloat16: np.dtype(ml_dtypes.bfloat16), torch.float16: np.dtype(np.float16)}
# (name, hyper-parameters, low-precision keywords)
CASES = [
    ("Adam", dict(lr=1e-2), dict(master_weights=True)),
    ("Adam", dict(lr=1e-2, weight_decay=0.1), dict(master_weights=True, state_dtype="int8")),
    ("AdamW", dict(lr=1e-2, amsgrad=True), dict(master_weights=True, stochastic_rounding=True, state_dtype="int8")),
    ("AdamW", dict(lr=1e-2), dict(master_weights=True, state_dtype="bfloat16", block_size=64)),
    ("SGD", dict(lr=0.05, momentum=0.9), dict(master_weights=True, state_dtype="bfloat16")),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True), dict(master_weights=True, stochastic_rounding=True)),
    ("SGD", dict(lr=0.05), dict(master_weights=True, stochastic_rounding=True)),
    ("RMSprop", dict(lr=1e-2, centered=True, momentum=0.5), dict(master_weights=True, stochastic_rounding=True)),
    ("RMSprop", dict(lr=1e-2), dict(master_weights=True, state_dtype="int8", block_size=128)),
    ("Adagrad", dict(lr=0.05, initial_accumulator_value=0.1), dict(master_weights=True, state_dtype="int8")),
    ("Adagrad", dict(lr=0.05, lr_decay=1e-2), dict(master_weights=True, stochastic_rounding=True)),
    ("Adadelta", dict(lr=0.5, weight_decay=1e-3), dict(master_weights=True, state_dtype="bfloat16")),
    ("NAdam", dict(lr=1e-2, weight_decay=1e-2), dict(master_weights=True, state_dtype="int8")),
    ("NAdam", dict(lr=1e-2, decoupled_weight_decay=True), dict(master_weights=True, stochastic_rounding=True)),
    ("AdagradNorm", dict(lr=0.5, b0=0.1, weight_decay=1e-3), dict(master_weights=True, stochastic_rounding=True)),
]
IDS = [f"{n}-{i}" for i, (n, _, _) in enumerate(CASES)]
F32_CASES = [  # compact states on float32 params
    ("Adam", dict(lr=1e-2), dict(state_dtype="int8")),
    ("SGD", dict(lr=0.05, momentum=0.9), dict(state_dtype="int8", block_size=64)),
    ("RMSprop", dict(lr=1e-2), dict(state_dtype="bfloat16")),
]


def params(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g).to(dtype) for n in SIZES]


def grads(ps, g):
    return [torch.randn(p.shape, generator=g).to(p.dtype) for p in ps]


def as_numpy(t: torch.Tensor) -> np.ndarray:
    """A copy of ``t`` as NumPy (bfloat16 as ml_dtypes.bfloat16)."""
    if t.dtype is torch.bfloat16:
        return t.view(torch.int16).numpy().view(NP_HALF[torch.bfloat16]).copy()
    return t.numpy().copy()


def bits(a) -> np.ndarray:
    a = as_numpy(a) if isinstance(a, torch.Tensor) else np.asarray(a)
    return np.ascontiguousarray(a).view(np.uint8)


def assert_same_bits(a, b, what):
    np.testing.assert_array_equal(bits(a), bits(b), err_msg=what)


@pytest.mark.parametrize("name,kw,lp", CASES + F32_CASES, ids=IDS + [f"f32-{n}" for n, _, _ in F32_CASES])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_same_bits_as_optkern_optim(name, kw, lp, dtype):
    """The adapter runs optkern.optim's low-precision step on the tensors: params and every state
    tensor equal those of the optkern.optim optimizer on NumPy copies, bit for bit."""
    dtype = dtype if lp.get("master_weights") else torch.float32
    ps = params(dtype)
    hs = [as_numpy(p) for p in ps]
    a = getattr(ot, name)(ps, **kw, **lp, seed=7)
    b = getattr(optim, name)(hs, **kw, **lp, seed=7)
    g = torch.Generator().manual_seed(1)
    for _ in range(4):
        gs = grads(ps, g)
        for p, x in zip(ps, gs):
            p.grad = x
        a.step()
        b.step([as_numpy(x) for x in gs])
    want = b.state_dict()["state"]
    for i, (p, h) in enumerate(zip(ps, hs)):
        assert_same_bits(p, h, f"params[{i}]")
        st = a.state[p]
        assert float(st["step"]) == 4
        for k, v in want[i].items():
            if k in ("step", "state_dtype", "seed"):  # (optkern.optim's checkpoint keys)
                continue
            if k == "block":
                assert st["block_size"] == v
                continue
            if isinstance(v, float):  # NAdam's mu_product (a float32 tensor here, as torch keeps it)
                assert float(st[k]) == v
                continue
            assert_same_bits(st[k], v, f"state[{i}][{k!r}]")


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdagradNorm"])
def test_groups_and_skipped_params_round_with_optkern_optims_words(name):
    """Stochastic rounding numbers the elements of all params in param_groups order (no two params
    of a step share words): two groups, then a step with a None grad, bit for bit as optkern.optim."""
    ps = params(torch.bfloat16)
    hs = [as_numpy(p) for p in ps]
    lp = dict(master_weights=True, stochastic_rounding=True, seed=3)
    a = getattr(ot, name)([{"params": ps[:2]}, {"params": ps[2:]}], lr=0.05, **lp)
    b = getattr(optim, name)([{"params": hs[:2]}, {"params": hs[2:]}], lr=0.05, **lp)
    g = torch.Generator().manual_seed(2)
    for t in range(3):
        gs = grads(ps, g)
        if t == 2:
            gs[2] = None
        for p, x in zip(ps, gs):
            p.grad = x
        a.step()
        b.step([None if x is None else as_numpy(x) for x in gs])
    for i, (p, h) in enumerate(zip(ps, hs)):
        assert_same_bits(p, h, f"params[{i}]")
    bases = np.cumsum([0] + [p.numel() for p in ps])
    for i in (0, 1, 3):  # stepped at step 3: the words of their elements' global indices
        master = as_numpy(a.state[ps[i]]["master_param"])
        want = lowp.stochastic_round(master, "bfloat16", seed=3, step=3, offset=int(bases[i]))
        assert_same_bits(ps[i], want, f"params[{i}]")


@pytest.mark.parametrize("name,kw", [("Adam", dict(lr=1e-2, weight_decay=1e-2)), ("SGD", dict(lr=0.1, momentum=0.9))])
def test_bf16_model_with_master_is_torch_fp32_recipe(name, kw):
    """A bfloat16 MLP trained with master_weights: the master follows torch.optim's float32 step on
    float32 copies (same bf16 grads) to float32 rounding, and the params are the master rounded
    to nearest even."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(9, 33), torch.nn.Tanh(), torch.nn.Linear(33, 3)).to(torch.bfloat16)
    ref = [p.detach().float().clone() for p in model.parameters()]
    opt = getattr(ot, name)(model.parameters(), **kw, master_weights=True)
    ref_opt = getattr(torch.optim, name)(ref, **kw)
    x, y = torch.randn(64, 9).to(torch.bfloat16), torch.randint(0, 3, (64,))
    for _ in range(20):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x).float(), y).backward()
        for r, p in zip(ref, model.parameters()):
            r.grad = p.grad.float()
        opt.step()
        ref_opt.step()
    for r, p in zip(ref, model.parameters()):
        master = opt.state[p]["master_param"]
        torch.testing.assert_close(master, r, rtol=2e-5, atol=1e-6)
        assert torch.equal(p.detach(), master.to(torch.bfloat16))


def test_param_without_grad_is_untouched():
    ps = params(torch.bfloat16)
    opt = ot.AdamW(ps, lr=1e-2, master_weights=True, state_dtype="int8")
    before = [p.clone() for p in ps]
    ps[0].grad = torch.ones_like(ps[0])
    ps[2].grad = torch.ones_like(ps[2])
    opt.step()
    assert torch.equal(ps[1], before[1]) and torch.equal(ps[3], before[3])
    assert not opt.state[ps[1]] and not opt.state[ps[3]]
    assert not torch.equal(ps[2], before[2])


def _run(opt, ps, g, n):
    for _ in range(n):
        for p, x in zip(ps, grads(ps, g)):
            p.grad = x
        opt.step()


@pytest.mark.parametrize("name,kw,lp", CASES, ids=IDS)
def test_state_dict_round_trip_continues_bit_for_bit(name, kw, lp):
    ps = params(torch.bfloat16)
    a = getattr(ot, name)(ps, **kw, **lp, seed=3)
    _run(a, ps, torch.Generator().manual_seed(2), 3)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    qs = [p.clone() for p in ps]
    b = getattr(ot, name)(qs, **kw, **lp, seed=3)
    b.load_state_dict(torch.load(io.BytesIO(buf.getvalue())))
    for opt, xs in ((a, ps), (b, qs)):
        _run(opt, xs, torch.Generator().manual_seed(5), 3)
    for i, (p, q) in enumerate(zip(ps, qs)):
        assert_same_bits(p, q, f"params[{i}]")
        assert a.state[p].keys() == b.state[q].keys()
        for k, v in a.state[p].items():
            if isinstance(v, torch.Tensor):
                assert v.dtype == b.state[q][k].dtype, k
                assert_same_bits(v, b.state[q][k], f"state[{i}][{k!r}]")


def test_torch_checkpoint_into_8bit_and_back():
    """torch.optim.AdamW's checkpoint loads into an 8-bit optkern.torch.AdamW (moments quantized
    blockwise: each within its block's absmax / 127 of the saved value), and its checkpoint,
    through to_torch_state_dict, into torch.optim.AdamW (moments decoded)."""
    ps = params(torch.float32)
    t = torch.optim.AdamW(ps, lr=1e-2)
    _run(t, ps, torch.Generator().manual_seed(2), 3)
    saved = t.state_dict()
    q = ot.AdamW([p.clone() for p in ps], lr=1e-2, state_dtype="int8", block_size=64)
    q.load_state_dict(saved)
    for i, p in enumerate(q.param_groups[0]["params"]):
        st = q.state[p]
        assert st["exp_avg"].dtype is torch.uint8 and st["block_size"] == 64
        for k in ("exp_avg", "exp_avg_sq"):
            x = saved["state"][i][k].numpy()
            back = lowp.dequantize_blockwise(st[k].numpy(), st[f"{k}_scale"].numpy(), 64)
            bound = np.abs(np.repeat(st[f"{k}_scale"].numpy(), 64)[: x.size]) / 127
            assert np.all(np.abs(back - x) <= bound + 1e-12), (i, k)
        assert float(st["step"]) == 3
    # and back: torch.optim.AdamW continues from the decoded moments
    sd = ot.to_torch_state_dict(q.state_dict())
    assert all(set(e) == {"step", "exp_avg", "exp_avg_sq"} for e in sd["state"].values())
    t2 = torch.optim.AdamW([p.clone() for p in ps], lr=1e-2)
    t2.load_state_dict(sd)
    for i, p in enumerate(t2.param_groups[0]["params"]):
        st, src = t2.state[p], q.state[q.param_groups[0]["params"][i]]
        for k in ("exp_avg", "exp_avg_sq"):
            want = lowp.dequantize_blockwise(src[k].numpy(), src[f"{k}_scale"].numpy(), 64)
            assert st[k].dtype is torch.float32
            np.testing.assert_array_equal(st[k].numpy(), want)


@pytest.mark.parametrize("src", [dict(state_dtype="int8"), dict(state_dtype="bfloat16"), {}])
@pytest.mark.parametrize("dst", [dict(state_dtype="int8", block_size=128), dict(state_dtype="bfloat16"), {}])
def test_checkpoints_convert_between_storage_formats(src, dst):
    """Any optkern.torch Adam checkpoint loads into any other's storage: the moments' values as
    the source decodes them, stored the destination's way (8-bit to 8-bit of the same block
    exactly; bfloat16 to nearest even; else blockwise quantization)."""
    ps = params(torch.float32)
    a = ot.Adam(ps, lr=1e-2, **src)
    _run(a, ps, torch.Generator().manual_seed(2), 2)
    b = ot.Adam([p.clone() for p in ps], lr=1e-2, **dst)
    b.load_state_dict(a.state_dict())
    for p, q in zip(ps, b.param_groups[0]["params"]):
        for k in ("exp_avg", "exp_avg_sq"):
            x = _decoded(a.state[p], k)
            y = _decoded(b.state[q], k)
            if dst.get("state_dtype") == "int8":
                assert b.state[q][k].dtype is torch.uint8
                if src == dst:
                    assert torch.equal(b.state[q][k], a.state[p][k])
                bound = np.abs(np.repeat(b.state[q][f"{k}_scale"].numpy(), 128)[: x.size]) / 127
                assert np.all(np.abs(y - x) <= bound + 1e-12)
            elif dst.get("state_dtype") == "bfloat16":
                assert b.state[q][k].dtype is torch.bfloat16
                np.testing.assert_array_equal(y, torch.from_numpy(x).to(torch.bfloat16).float().numpy())
            else:
                assert b.state[q][k].dtype is torch.float32
                np.testing.assert_array_equal(y, x)


def _decoded(st, k):
    v = st[k]
    if v.dtype is torch.uint8:
        return lowp.dequantize_blockwise(v.numpy(), st[f"{k}_scale"].numpy(), st["block_size"])
    return v.float().numpy()


def test_fp32_master_checkpoint_into_plain_optimizer_and_missing_master():
    ps = params(torch.bfloat16)
    a = ot.SGD(ps, lr=0.1, momentum=0.9, master_weights=True)
    _run(a, ps, torch.Generator().manual_seed(2), 2)
    # a plain float32 optimizer: the master copy is dropped, the buffers loaded
    ps32 = [p.float() for p in ps]
    b = ot.SGD(ps32, lr=0.1, momentum=0.9)
    b.load_state_dict(a.state_dict())
    assert "master_param" not in b.state[ps32[0]]
    assert torch.equal(b.state[ps32[0]]["momentum_buffer"], a.state[ps[0]]["momentum_buffer"])
    # torch's SGD checkpoint (no master) into a master optimizer: the master starts from the param
    t = torch.optim.SGD([p.clone() for p in ps], lr=0.1, momentum=0.9)
    _run(t, t.param_groups[0]["params"], torch.Generator().manual_seed(2), 1)
    qs = [p.clone() for p in ps]
    c = ot.SGD(qs, lr=0.1, momentum=0.9, master_weights=True)
    c.load_state_dict(t.state_dict())
    assert torch.equal(c.state[qs[1]]["master_param"], qs[1].float())
    assert c.state[qs[1]]["momentum_buffer"].dtype is torch.float32


def test_8bit_state_memory_under_30_percent():
    ps = [torch.zeros(1 << 16), torch.zeros(3, 1 << 14)]
    sizes = {}
    for key, lp in (("fp32", {}), ("int8", dict(state_dtype="int8"))):
        opt = ot.Adam(ps, lr=1e-3, **lp)
        for p in ps:
            p.grad = torch.ones_like(p)
        opt.step()
        tensors = [v for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
        sizes[key] = sum(v.numel() * v.element_size() for v in tensors if v.dim())
    assert sizes["int8"] <= 0.30 * sizes["fp32"]


def test_stochastic_rounding_is_seeded():
    out = []
    for seed in (1, 1, 2):
        ps = params(torch.bfloat16)
        opt = ot.Adam(ps, lr=1e-3, master_weights=True, stochastic_rounding=True, seed=seed)
        _run(opt, ps, torch.Generator().manual_seed(2), 2)
        out.append(torch.cat([p.float() for p in ps]))
    assert torch.equal(out[0], out[1])
    assert not torch.equal(out[0], out[2])


def test_signature_lists_the_keywords():
    import inspect

    for cls in (ot.SGD, ot.Adagrad, ot.AdagradNorm, ot.RMSprop, ot.Adadelta, ot.Adam, ot.AdamW, ot.NAdam):
        sig = inspect.signature(cls)
        assert {"master_weights", "stochastic_rounding", "state_dtype", "seed", "block_size"} <= set(sig.parameters)


# ---- bad input: an error naming the argument, nothing written -----------------------------


@pytest.mark.parametrize(
    "dtype,lp,err,match",
    [
        (torch.bfloat16, {}, TypeError, r"param_groups\[0\]\['params'\]\[0\]: expected float32 or float64"),
        (torch.float64, dict(master_weights=True), TypeError, r"\[.params.\]\[0\]: expected float16 or bfloat16"),
        (torch.float16, dict(state_dtype="int8"), TypeError, r"\['params'\]\[0\]: expected float32, got"),
        (torch.float32, dict(stochastic_rounding=True), ValueError, "stochastic_rounding"),
        (torch.float32, dict(state_dtype="int4"), ValueError, "state_dtype"),
        (torch.float32, dict(block_size=100), ValueError, "block_size"),
        (torch.float32, dict(master_weight=True), TypeError, "master_weight"),
    ],
)
def test_bad_construction(dtype, lp, err, match):
    with pytest.raises(err, match=match):
        ot.Adam(params(dtype), **lp)


def test_bad_grads_write_nothing():
    ps = params(torch.bfloat16)
    opt = ot.Adam(ps, lr=1e-2, master_weights=True, state_dtype="int8")
    _run(opt, ps, torch.Generator().manual_seed(2), 1)
    before = [p.clone() for p in ps]
    state = {k: v.clone() for k, v in opt.state[ps[0]].items() if isinstance(v, torch.Tensor)}
    for p in ps:
        p.grad = torch.ones_like(p)
    ps[2].grad_dtype = None  # (torch >= 2.10 refuses a grad of another dtype unless told)
    ps[2].grad = torch.ones(ps[2].shape)  # a float32 grad of a bfloat16 param
    with pytest.raises((TypeError, ValueError), match=r"\['params'\]\[2\]\.grad"):
        opt.step()
    ps[2].grad = torch.ones(2 * ps[2].numel()).to(torch.bfloat16)[::2]  # not contiguous
    with pytest.raises((TypeError, ValueError), match=r"\['params'\]\[2\]\.grad"):
        opt.step()
    for p, b in zip(ps, before):
        assert torch.equal(p, b)
    for k, v in state.items():
        assert torch.equal(opt.state[ps[0]][k], v)


def test_bad_checkpoints_raise_naming_the_entry_and_load_nothing():
    ps = params(torch.float32)
    a = ot.Adam(ps, lr=1e-2, state_dtype="int8")
    _run(a, ps, torch.Generator().manual_seed(2), 1)
    b = ot.Adam([p.clone() for p in ps], lr=1e-2, state_dtype="int8")
    good = a.state_dict()
    for change, err, match in [
        (lambda e: e.pop("exp_avg_scale"), ValueError, r"\['state'\]\[1\]\['exp_avg_scale'\]"),
        (
            lambda e: e.update(exp_avg_scale=e["exp_avg_scale"][:-1]),
            ValueError,
            r"\['exp_avg_scale'\]: expected \d+ float32 block scales? \(shape",
        ),
        (lambda e: e.pop("block_size"), ValueError, "block_size"),
        (lambda e: e.update(exp_avg=torch.zeros(3)), ValueError, r"\['exp_avg'\]: has 3 values"),
        (lambda e: e.update(exp_avg="x"), TypeError, r"\['exp_avg'\]: expected a tensor"),
        (lambda e: e.update(exp_avg_sq=torch.zeros(e["exp_avg_sq"].shape, dtype=torch.int32)), TypeError, "int32"),
    ]:
        sd = {**good, "state": {k: dict(v) for k, v in good["state"].items()}}
        change(sd["state"][1])
        with pytest.raises(err, match=match):
            b.load_state_dict(sd)
        assert not b.state


def test_sgd_momentum_switched_on_later_keeps_the_step_count():
    """Low-precision SGD counts steps (its stochastic-rounding stream): momentum switched on after
    some steps makes the buffers from the next gradient, the count goes on."""
    ps = params(torch.bfloat16)
    opt = ot.SGD(ps, lr=0.1, master_weights=True, stochastic_rounding=True)
    g = torch.Generator().manual_seed(1)
    _run(opt, ps, g, 2)
    opt.param_groups[0]["momentum"] = 0.9
    _run(opt, ps, g, 1)
    st = opt.state[ps[2]]
    assert float(st["step"]) == 3
    assert torch.equal(st["momentum_buffer"], ps[2].grad.float())  # (torch's first buffer: the gradient)
