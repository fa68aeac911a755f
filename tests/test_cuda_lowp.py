"""optkern._cuda.lowp_step (cuda/lowp_step.cu) against optkern._cpu.lowp_step, bit for bit:
every rule x param format x state format x stochastic rounding, over 3 steps, comparing params,
masters, states and 8-bit scales. Device arrays are views inside buffers of a sentinel byte, so a
write outside an array shows up as a changed pad. Also: found_inf (a nonzero flag writes nothing),
the same TypeError / ValueError as the CPU for bad input, and the public optimizers on CuPy params
against the same optimizers on NumPy params.

Skipped without CuPy or without a visible GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from gpu import raised, require_gpu, same_bits
from optkern import _backend, lowp, optim

cp, _cuda = require_gpu()
_cpu = _backend.cpu
SIZES = [0, 1, 7, 1023, 70_001, 5]
LR = 1e-2
SENTINEL = 0xA5
PAD = 16  # bytes of sentinel either side of each device array (keeps its alignment)
STORAGE = {"float32": np.float32, "bfloat16": np.uint16, "float16": np.uint16, "int8": np.uint8}


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    x: tuple
    flags: tuple  # with "first" for SGD's first-step flag (true at t = 1)
    n_states: int

    def flags_at(self, t):
        return [t == 1 if f == "first" else f for f in self.flags]


RULES = [
    Rule("sgd", "sgd", (LR, 0.0, 0.0, 1e-2), (False, False, "first", False), 0),
    Rule("sgd_momentum", "sgd", (LR, 0.9, 0.1, 1e-2), (False, False, "first", False), 1),
    Rule("sgd_nesterov_maximize_textbook", "sgd", (LR, 0.9, 0.0, 0.0), (True, True, "first", True), 1),
    Rule("adam", "adam", (LR, 0.9, 0.999, 1e-8, 0.0), (False, False), 2),
    Rule("adam_l2_maximize", "adam", (LR, 0.9, 0.999, 1e-8, 1e-2), (True, False), 2),
    Rule("adamw", "adam", (LR, 0.9, 0.999, 1e-8, 0.1), (False, True), 2),
    Rule("amsgrad", "adam", (LR, 0.9, 0.999, 1e-8, 0.1), (False, True), 3),
    Rule("rmsprop", "rmsprop", (LR, 0.99, 1e-8, 0.0, 0.0), (False, False, False), 1),
    Rule("rmsprop_centered", "rmsprop", (LR, 0.99, 1e-8, 1e-2, 0.0), (False, False, True), 2),
    Rule("rmsprop_momentum_nesterov", "rmsprop", (LR, 0.99, 1e-8, 0.0, 0.9), (True, False, False), 2),
    Rule("rmsprop_centered_momentum", "rmsprop", (LR, 0.99, 1e-8, 1e-2, 0.9), (False, True, True), 3),
    Rule("adagrad", "adagrad", (LR, 1e-2, 1e-2, 1e-10), (False,), 1),
    Rule("adadelta_maximize", "adadelta", (1.0, 0.9, 1e-6, 1e-2), (True,), 2),
    Rule("nadam", "nadam", (LR, 0.9, 0.999, 1e-8, 1e-2, 4e-3, 0.95), (False, False), 2),
    Rule("nadam_decoupled", "nadam", (LR, 0.9, 0.999, 1e-8, 0.1, 4e-3, 1.0), (False, True), 2),
]
ADAM = RULES[3]


def stored(x, fmt):
    """float32 values in a param format's storage (halves: uint16 bits)."""
    x = x.astype(np.float32)
    return x if fmt == "float32" else lowp.to_half(x, fmt, raw=True)


class Padded:
    """A device copy of a host array, a view inside a buffer of SENTINEL bytes."""

    def __init__(self, h, offset=0):
        self.n, self.lo = h.nbytes, PAD + offset  # offset: bytes past PAD (misaligns the view)
        self.buf = cp.full(self.n + 2 * PAD + offset, SENTINEL, dtype=cp.uint8)
        self.view = self.buf[self.lo : self.lo + self.n].view(h.dtype) if self.n else cp.zeros(0, h.dtype)
        if self.n:
            self.view[...] = cp.asarray(h)

    def pads_intact(self):
        b = cp.asnumpy(self.buf)
        return bool((b[: self.lo] == SENTINEL).all() and (b[self.lo + self.n :] == SENTINEL).all())


class Call:
    """One call's lists on the host and (padded) on the device; `sizes` elements per tensor."""

    def __init__(self, rng, rule, pf, sf, sizes, block=256, state_offset=0):
        self.rule, self.pf, self.sf, self.block = rule, pf, sf, block
        self.rng, self.sizes = rng, sizes
        p = [stored(rng.standard_normal(n), pf) for n in sizes]
        self.host = {"params": p, "masters": [lowp.from_half(x, pf) for x in p] if pf != "float32" else None}
        self.host["states"] = [[np.zeros(n, STORAGE[sf]) for n in sizes] for _ in range(rule.n_states)]
        nb = [lowp.n_blocks(n, block) for n in sizes]
        self.host["scales"] = [[np.zeros(b, np.float32) for b in nb] for _ in range(rule.n_states)]
        if sf != "int8":
            self.host["scales"] = None
        self.dev = {k: self._to_dev(v, state_offset if k == "states" else 0) for k, v in self.host.items()}

    @staticmethod
    def _to_dev(v, offset=0):
        if v is None:
            return None
        if isinstance(v, np.ndarray):
            return Padded(v, offset)
        return [Call._to_dev(x, offset) for x in v]

    @staticmethod
    def _views(v):
        if v is None:
            return None
        return v.view if isinstance(v, Padded) else [Call._views(x) for x in v]

    def grads(self):
        return [stored(self.rng.standard_normal(n), self.pf) for n in self.sizes]

    def args(self, lists, grads, t, sr, seed):
        r = self.rule
        return (r.name, list(r.x), r.flags_at(t), lists["params"], grads, lists["masters"], lists["states"],
                lists["scales"], self.pf, self.sf, sr, seed, t, self.block)  # fmt: skip

    def step(self, t, sr=False, seed=7, cpu=True, **kw):
        """Step t on the device (and on the host when `cpu`) with the same grads."""
        g = self.grads()
        gd = [Padded(x).view for x in g]
        got = _cuda.lowp_step(*self.args({k: self._views(v) for k, v in self.dev.items()}, gd, t, sr, seed), **kw)
        if cpu:
            assert got == _cpu.lowp_step(*self.args(self.host, g, t, sr, seed))  # (NAdam's mu_product; else None)

    def pairs(self):
        """(name, host array, device Padded) for every array of the call."""
        out = []
        for key, v in self.host.items():
            if v is None:
                continue
            flat = [(f"{key}[{i}]", h, d) for i, (h, d) in enumerate(zip(v, self.dev[key]))]
            for name, h, d in flat:
                if isinstance(h, list):
                    out += [(f"{name}[{j}]", hh, dd) for j, (hh, dd) in enumerate(zip(h, d))]
                else:
                    out.append((name, h, d))
        return out

    def assert_equal(self):
        for name, h, d in self.pairs():
            same_bits(cp.asnumpy(d.view), h, f"{name} differs from the CPU")
            assert d.pads_intact(), f"{name}: written outside the array"

    def snapshot(self):
        return {name: cp.asnumpy(d.buf) for name, _, d in self.pairs()}


@pytest.mark.parametrize("sr", [False, True], ids=["nearest", "stochastic"])
@pytest.mark.parametrize("sf", ["float32", "bfloat16", "int8"])
@pytest.mark.parametrize("pf", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_equals_the_cpu_step_bit_for_bit(rule, pf, sf, sr):
    c = Call(np.random.default_rng(501), rule, pf, sf, SIZES)
    for t in range(1, 4):
        c.step(t, sr=sr, seed=t + 40)
        c.assert_equal()


@pytest.mark.parametrize("block", [64, 256, 1024, 2048, 4096])
def test_chunk_tile_and_block_boundaries(block):
    """Sizes around the kernel's 1024-element batches and tiles (8-bit tiles: max(block, 1024)),
    its 32768-element chunks, 8-bit blocks of 64..4096; AMSGrad's three states fill the largest
    tile's shared memory (3 x 4096 floats: with the static tables past the 48 KB a launch gets
    without the kernel's opt-in)."""
    sizes = [1023, 1024, 1025, 2047, 2049, 4095, 4096, 4097, 32_767, 32_768, 32_769, 65_536 + 3, 63, 65]
    c = Call(np.random.default_rng(502), RULES[6], "bfloat16", "int8", sizes, block)
    for t in range(1, 4):
        c.step(t, sr=True)
        c.assert_equal()


@pytest.mark.parametrize("offset", [1, 2, 3])
def test_8bit_states_at_any_byte_offset(offset):
    """Codes are stored four to a 32-bit word where the state array is 4-byte aligned, else one
    byte at a time: states at every misalignment, full and partial blocks, against the CPU."""
    sizes = [1023, 4096, 4097, 300, 64, 65, 1]
    c = Call(np.random.default_rng(503), RULES[3], "float16", "int8", sizes, 256, state_offset=offset)
    assert all(int(a.data.ptr) % 4 == offset % 4 for a in c._views(c.dev["states"])[0])
    for t in range(1, 4):
        c.step(t)
        c.assert_equal()


def test_many_tensors_take_several_launches():
    """300 tensors (256 per launch), empty ones among them."""
    rng = np.random.default_rng(503)
    sizes = [int(n) for n in rng.integers(0, 700, 300)]
    c = Call(rng, ADAM, "float16", "int8", sizes, 64)
    for t in range(1, 4):
        c.step(t, sr=True)
        c.assert_equal()


@pytest.mark.parametrize("sizes", [[], [0], [0, 0, 0]])
def test_empty_lists_launch_nothing(sizes):
    c = Call(np.random.default_rng(504), ADAM, "bfloat16", "int8", sizes)
    c.step(1, found_inf=cp.zeros(1, cp.float32))
    c.assert_equal()


@pytest.mark.parametrize("flag", [1.0, float("inf"), float("nan"), -2.0])
@pytest.mark.parametrize("sf", ["bfloat16", "int8"])
def test_nonzero_found_inf_writes_nothing(flag, sf):
    c = Call(np.random.default_rng(505), RULES[6], "bfloat16", sf, SIZES)
    c.step(1, sr=True)  # a real step first: nonzero states and scales
    before = c.snapshot()
    c.step(2, sr=True, cpu=False, found_inf=cp.full(1, flag, cp.float32))
    for name, b in c.snapshot().items():
        np.testing.assert_array_equal(b, before[name], err_msg=f"{name} written by a skipped step")


def test_zero_found_inf_steps():
    c = Call(np.random.default_rng(506), RULES[10], "float16", "int8", SIZES)
    for t in range(1, 4):
        c.step(t, sr=True, found_inf=cp.zeros(1, cp.float32))
        c.assert_equal()


# ---- bad input: the CPU's errors, nothing written ---------------------------------------


def _bad_cases():
    """(id, change(lists, grads, xp) -> (lists, grads, block, state_dtype)) of a bf16 / int8 Adam call."""

    def grads_f32(L, g, xp):
        return L, [xp.zeros(x.size, xp.float32) for x in g], 256, "int8"

    def no_masters(L, g, xp):
        return {**L, "masters": None}, g, 256, "int8"

    def short_master(L, g, xp):
        return {**L, "masters": [xp.zeros(3, xp.float32)] + L["masters"][1:]}, g, 256, "int8"

    def no_scales(L, g, xp):
        return {**L, "scales": None}, g, 256, "int8"

    def few_scales(L, g, xp):
        return {**L, "scales": L["scales"][:1]}, g, 256, "int8"

    def short_scales(L, g, xp):
        return {**L, "scales": [[xp.zeros(5, xp.float32)] + L["scales"][0][1:], L["scales"][1]]}, g, 256, "int8"

    # (one aliasing pair each: with several, which is named first follows the address order)
    def grads_are_params(L, g, xp):
        return L, [g[0], L["params"][1]], 256, "int8"

    def state_twice(L, g, xp):
        return {**L, "states": [L["states"][0], [L["states"][1][0], L["states"][0][1]]]}, g, 256, "int8"

    def scales_twice(L, g, xp):
        return {**L, "scales": [[L["scales"][1][0], L["scales"][0][1]], L["scales"][1]]}, g, 256, "int8"

    def state_is_master(L, g, xp):
        return (
            {**L, "states": [[L["masters"][0].view(xp.uint8)[:10], L["states"][0][1]], L["states"][1]]},
            g,
            256,
            "int8",
        )

    def int8_states_said_float32(L, g, xp):
        return L, g, 256, "float32"

    def one_state(L, g, xp):
        return {**L, "states": L["states"][:1], "scales": L["scales"][:1]}, g, 256, "int8"

    def bad_block(L, g, xp):
        return L, g, 100, "int8"

    def bad_format(L, g, xp):
        return L, g, 256, "float16"

    fns = [grads_f32, no_masters, short_master, no_scales, few_scales, short_scales, grads_are_params, state_twice,
           scales_twice, state_is_master, int8_states_said_float32, one_state, bad_block, bad_format]  # fmt: skip
    return [(f.__name__, f) for f in fns]


@pytest.mark.parametrize("case", _bad_cases(), ids=lambda c: c[0])
def test_bad_input_raises_the_cpu_error_and_writes_nothing(case):
    _, change = case
    c = Call(np.random.default_rng(507), ADAM, "bfloat16", "int8", [10, 3000])
    c.step(1)
    before = c.snapshot()
    g = c.grads()
    host = c.host
    dev = {k: Call._views(v) for k, v in c.dev.items()}
    hl, hg, block, sf = change(host, g, np)
    dl, dg, _, _ = change(dev, [cp.asarray(x) for x in g], cp)
    args = (ADAM.name, list(ADAM.x), ADAM.flags_at(2))
    tail = ("bfloat16", sf, False, 0, 2, block)
    want = raised(lambda: _cpu.lowp_step(*args, hl["params"], hg, hl["masters"], hl["states"], hl["scales"], *tail))
    got = raised(lambda: _cuda.lowp_step(*args, dl["params"], dg, dl["masters"], dl["states"], dl["scales"], *tail))
    assert got == want
    for name, b in c.snapshot().items():
        np.testing.assert_array_equal(b, before[name], err_msg=f"{name} written by a failing call")


def _adam_step(L, g, found_inf=None):
    # found_inf by name: it follows grad_scale (both modules' signature) in _cuda.lowp_step
    x = (ADAM.name, list(ADAM.x), ADAM.flags_at(1), L["params"], g, L["masters"], L["states"], L["scales"])
    return _cuda.lowp_step(*x, "bfloat16", "int8", False, 0, 1, 256, found_inf=found_inf)


def test_host_arrays_and_bad_found_inf_are_named():
    c = Call(np.random.default_rng(508), ADAM, "bfloat16", "int8", [10, 20])
    dev = {k: Call._views(v) for k, v in c.dev.items()}
    g = [cp.asarray(x) for x in c.grads()]
    with pytest.raises(TypeError, match=r"^grads\[1\]: expected a cupy.ndarray, got numpy.ndarray"):
        _adam_step(dev, [g[0], cp.asnumpy(g[1])])
    with pytest.raises(TypeError, match=r"^found_inf: expected float32, got float64"):
        _adam_step(dev, g, cp.zeros(1, cp.float64))
    with pytest.raises(ValueError, match=r"^found_inf: expected 1 element, got 2"):
        _adam_step(dev, g, cp.zeros(2, cp.float32))
    with pytest.raises(ValueError, match=r"^found_inf shares memory with masters\[0\]"):
        _adam_step(dev, g, dev["masters"][0][:1])


def test_arrays_on_another_device_are_named():
    if _cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    c = Call(np.random.default_rng(509), ADAM, "bfloat16", "int8", [10, 20])
    dev = {k: Call._views(v) for k, v in c.dev.items()}
    with cp.cuda.Device(1):
        g1 = cp.asarray(stored(np.ones(20), "bfloat16"))
    g = [cp.asarray(c.grads()[0]), g1]
    with pytest.raises(ValueError, match=r"^grads\[1\]: is on device 1 but other arrays are on device 0"):
        _adam_step(dev, g)


# ---- the public optimizers on CuPy params ------------------------------------------------


def _host_of(v):
    return cp.asnumpy(v) if _backend.is_cupy(v) else np.asarray(v)


def _assert_same_state(a, b):
    sa, sb = a.state_dict()["state"], b.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        assert sa[i].keys() == sb[i].keys()
        for k, v in sa[i].items():
            if k == "b_sq":  # a float64 sum over every element: the GPU's two-stage tree and the
                # CPU's 16 lanes associate differently, so the last bits may differ (seen: 1 ulp)
                assert v == pytest.approx(sb[i][k], rel=1e-14), (i, k)
                continue
            if isinstance(v, (int, float, str)):
                assert v == sb[i][k], (i, k)
                continue
            x, y = _host_of(v), _host_of(sb[i][k])
            np.testing.assert_array_equal(x.view(np.uint8), y.view(np.uint8), err_msg=f"state[{i}][{k!r}]")


CLASSES = [
    ("AdagradNorm", dict(lr=0.5, b0=0.1), dict(master_weights=True, stochastic_rounding=True)),
    ("Adagrad", dict(lr=1e-2, initial_accumulator_value=0.1), dict(master_weights=True, state_dtype="int8")),
    ("Adadelta", dict(lr=1.0), dict(master_weights=True, stochastic_rounding=True, state_dtype="bfloat16")),
    ("NAdam", dict(lr=1e-2), dict(master_weights=True, stochastic_rounding=True, state_dtype="int8")),
    ("Adam", dict(lr=1e-2), dict(master_weights=True, state_dtype="int8")),
    ("AdamW", dict(lr=1e-2, amsgrad=True), dict(master_weights=True, stochastic_rounding=True, state_dtype="int8")),
    ("SGD", dict(lr=0.05, momentum=0.9), dict(master_weights=True, state_dtype="bfloat16")),
    ("RMSprop", dict(lr=1e-2, centered=True), dict(master_weights=True, stochastic_rounding=True)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True), dict(state_dtype="int8", block_size=64)),  # float32 params
]


@pytest.mark.parametrize("name,kw,lp", CLASSES)
def test_optimizers_on_cupy_equal_numpy_bit_for_bit(name, kw, lp):
    rng = np.random.default_rng(510)
    dt = np.float32 if not lp.get("master_weights") else np.float16
    host = [rng.standard_normal(n).astype(dt) for n in (1, 7, 1023, 5000)]
    dev = [cp.asarray(p) for p in host]
    a = getattr(optim, name)(host, **kw, **lp, seed=5)
    b = getattr(optim, name)(dev, **kw, **lp, seed=5)
    for _ in range(3):
        g = [rng.standard_normal(p.size).astype(dt) for p in host]
        a.step(g)
        b.step([cp.asarray(x) for x in g])
        for p, q in zip(host, dev):
            np.testing.assert_array_equal(cp.asnumpy(q).view(np.uint8), p.view(np.uint8))
        _assert_same_state(b, a)


def test_state_dicts_move_between_numpy_and_cupy():
    rng = np.random.default_rng(511)
    host = [rng.standard_normal(n).astype(np.float16) for n in (7, 3000)]
    dev = [cp.asarray(p) for p in host]
    lp = dict(master_weights=True, state_dtype="int8", block_size=128)
    a, b = optim.Adam(host, lr=1e-2, **lp), optim.Adam(dev, lr=1e-2, **lp)
    for _ in range(2):
        g = [rng.standard_normal(p.size).astype(np.float16) for p in host]
        a.step(g)
        b.step([cp.asarray(x) for x in g])
    # the device optimizer's state into a fresh host one and the reverse: identical from here on
    a2, b2 = optim.Adam([p.copy() for p in host], lr=1e-2, **lp), optim.Adam([q.copy() for q in dev], lr=1e-2, **lp)
    a2.load_state_dict(b.state_dict())
    b2.load_state_dict(a.state_dict())
    _assert_same_state(a2, a)
    _assert_same_state(b2, b)
    for e in b2.state_dict()["state"].values():
        assert all(_backend.is_cupy(v) for v in e.values() if not isinstance(v, (int, str)))
