"""The native optimizer steps check their own hyper-parameters, flags and step counters.

Only the Python layer checked them: a direct call of the public native module,
``_cpu.adam_(..., lr=nan, ...)``, wrote NaN into every param; ``beta2=1`` or ``eps=0`` did the
same a step later; ``step=0`` divided by the bias correction ``1 - beta^0 = 0``; and pybind11's bool
conversion read ``amsgrad=None`` as False and ``nesterov=2`` as True. Each description in
``signatures_optim.hpp`` now carries its hyper-parameters' ranges, checked by both native modules
before anything is read or written, with the Python layer's messages; ``test_ranges_agree_with_the_python_layer``
pins that the native ranges are the Python layer's, value by value at every bound.
"""

import inspect
import math

import numpy as np
import pytest

import optkern.functional as F
from optkern import _cpu

# native base name -> the functional form whose checks are the Python layer's for it
FUNCTIONAL = {
    "sgd": F.sgd_,
    "adagrad": F.adagrad_,
    "rmsprop": F.rmsprop_,
    "adadelta": F.adadelta_,
    "adam": F.adam_,
    "nadam": F.nadam_,
    "adagrad_norm": F.adagrad_norm_,
}
STATES = {  # native state-list arguments (None where a list is optional)
    "sgd": {"momentum_buffers": 0.0},
    "adagrad": {"sums": 0.0},
    "rmsprop": {"square_avgs": 0.0, "grad_avgs": None, "momentum_buffers": 0.0},
    "adadelta": {"square_avgs": 0.0, "acc_deltas": 0.0},
    "adam": {"exp_avgs": 0.0, "exp_avg_sqs": 0.0, "max_exp_avg_sqs": None},
    "adam_given": {"exp_avgs": 0.0, "exp_avg_sqs": 0.0, "max_exp_avg_sqs": None},
    "nadam": {"exp_avgs": 0.0, "exp_avg_sqs": 0.0},
    "nadam_given": {"exp_avgs": 0.0, "exp_avg_sqs": 0.0},
}
GIVEN = {  # valid scalars of the given-scalar steps (torch's Adam / NAdam at step 1)
    "adam_given": dict(
        step_size=1e-3, one_minus_beta1=0.1, beta2=0.999, one_minus_beta2=1e-3, eps=1e-8, weight_decay=0.0
    )
    | dict(decay=1.0, bc2_sqrt=0.0316),
    "nadam_given": dict(c_grad=-1e-3, c_avg=-1e-3, one_minus_beta1=0.1, beta2=0.999, one_minus_beta2=1e-3)
    | dict(eps=1e-8, weight_decay=0.0, decay=1.0, bc2=1e-3),
}
TINY = 5e-324
# mu_product may pass 1 by a float32 ulp natively: optkern.torch's pre-image of torch's float32
# product of 1 for float64 params (torch/adam.py's _rule_mu_product: 1.0000000156)
MU_PRODUCT_MAX = 1.0 + 2.0**-23
PROBES = (-1.0, -TINY, 0.0, TINY, 0.5, 1.0 - 2**-53, 1.0, 1.0 + 2**-52, 2.0, math.inf, -math.inf, math.nan)


def _split(text: str) -> list[str]:
    items, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    return [i.strip() for i in items + [cur] if i.strip()]


def native_params(fn) -> dict:
    """{argument name: its type as pybind11 shows it} of a native function, in order."""
    first = fn.__doc__.splitlines()[0]
    inner = first[first.index("(") + 1 : first.rindex(") ->")]
    return {p.split(":")[0].strip(): p.split(":", 1)[1].split("=")[0].strip() for p in _split(inner)}


def _arrays(base: str, n: int = 3):
    p = np.linspace(-1.0, 1.0, n)
    states = {k: None if v is None else [np.full(n, v)] for k, v in STATES.get(base, {}).items()}
    if base == "adagrad_norm":
        states = {"b_sq": np.array([1.0])}
    return [p], [np.full(n, 0.25)], states


def _snapshot(args: dict) -> list:
    out = []
    for v in args.values():
        for a in v if isinstance(v, list) else [v]:
            if isinstance(a, np.ndarray):
                out.append(a.copy())
    return out


def native_kwargs(base: str, **changed) -> dict:
    """Valid keyword arguments of ``_cpu.<base>_`` (the functional form's defaults), with ``changed``."""
    params, grads, states = _arrays(base)
    kw: dict = {"params": params, "grads": grads, **states}
    defaults = {} if base not in FUNCTIONAL else inspect.signature(FUNCTIONAL[base]).parameters
    for name, kind in native_params(getattr(_cpu, base + "_")).items():
        if name in kw:
            continue
        if name in GIVEN.get(base, {}):
            kw[name] = GIVEN[base][name]
        elif name in ("step", "mu_product"):
            kw[name] = 1.0
        elif kind == "bool":
            kw[name] = False
        else:
            kw[name] = float(defaults[name].default)
    kw.update(changed)
    return kw


def _outcome(fn, **kw):
    try:
        fn(**kw)
    except (TypeError, ValueError) as e:
        return type(e), str(e)
    return None


def _real_names(base: str) -> list[str]:
    arrays = {"params", "grads", *STATES.get(base, {}), "b_sq"}
    return [n for n, k in native_params(getattr(_cpu, base + "_")).items() if k != "bool" and n not in arrays]


@pytest.mark.parametrize("base", sorted(FUNCTIONAL))
def test_ranges_agree_with_the_python_layer(base):
    """Every real hyper-parameter the functional form takes too, at every probe: the native call and
    the functional one accept the same values and refuse the others with the same message."""
    fn = FUNCTIONAL[base]
    python_names = inspect.signature(fn).parameters
    checked = 0
    for name in _real_names(base):
        if name not in python_names or name == "step":
            continue  # (step: an integer in Python, TypeError for a float; its bounds: test_step_counters)
        for v in PROBES:
            if name == "mu_product" and 1.0 < v <= MU_PRODUCT_MAX:
                continue  # (the torch adapter's pre-image: test_step_counters)
            kw = native_kwargs(base, **{name: v})
            before = _snapshot(kw)
            native = _outcome(getattr(_cpu, base + "_"), **kw)
            if native is not None:  # nothing written before the error
                assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(before, _snapshot(kw)))
            fkw = {k: v for k, v in native_kwargs(base, **{name: v}).items() if k in python_names}
            if "step" in fkw:
                fkw["step"] = 1  # (an int in Python)
            python = _outcome(fn, **fkw)
            if name == "mu_product" and native and python:  # (the native bound says 1.0000001192092896)
                native, python = native[0], python[0]
            assert native == python, (base, name, v, native, python)
            checked += 1
    assert checked >= 2 * len(PROBES)


@pytest.mark.parametrize("base", sorted(STATES))
def test_nan_and_inf_hyper_parameters_are_refused_before_writing(base):
    for name in _real_names(base):
        if name in ("step", "mu_product"):
            continue
        for v in (math.nan, math.inf, -math.inf):
            kw = native_kwargs(base, **{name: v})
            before = _snapshot(kw)
            with pytest.raises(ValueError, match=f"^{name}: must be finite, got "):
                getattr(_cpu, base + "_")(**kw)
            assert all(np.array_equal(a, b) for a, b in zip(before, _snapshot(kw)))


@pytest.mark.parametrize(
    ("base", "name", "value", "message"),
    [
        ("adam", "beta2", 1.0, r"beta2: must be in \[0.0, 1.0\), got 1.0"),
        ("adam", "eps", 0.0, r"eps: must be in \(0.0, inf\), got 0.0"),
        ("adam", "lr", -1e-3, r"lr: must be in \[0.0, inf\), got -0.001"),
        ("adam_given", "one_minus_beta2", 0.0, r"one_minus_beta2: must be in \(0.0, 1.0\], got 0.0"),
        ("adam_given", "bc2_sqrt", 0.0, r"bc2_sqrt: must be in \(0.0, 1.0\], got 0.0"),
        ("nadam_given", "bc2", 0.0, r"bc2: must be in \(0.0, 1.0\], got 0.0"),
        ("nadam_given", "eps", -1e-8, r"eps: must be in \(0.0, inf\), got -1e-08"),
        ("rmsprop", "alpha", 1.5, r"alpha: must be in \[0.0, 1.0\], got 1.5"),
        ("sgd", "dampening", -0.5, r"dampening: must be in \[0.0, 1.0\], got -0.5"),
    ],
)
def test_out_of_range_hyper_parameters_are_named(base, name, value, message):
    kw = native_kwargs(base, **{name: value})
    before = _snapshot(kw)
    with pytest.raises(ValueError, match="^" + message + "$"):
        getattr(_cpu, base + "_")(**kw)
    assert all(np.array_equal(a, b) for a, b in zip(before, _snapshot(kw)))
    getattr(_cpu, base + "_")(**native_kwargs(base))  # (the same call in range runs)


@pytest.mark.parametrize("base", sorted(STATES) + ["adagrad_norm"])
def test_flags_are_bools(base):
    """None read as False and any int as True; a bool and a NumPy bool are taken."""
    flags = [n for n, k in native_params(getattr(_cpu, base + "_")).items() if k == "bool"]
    assert flags
    for name in flags:
        for bad in (None, 2, 1, 0, "yes", 1.0):
            kw = native_kwargs(base, **{name: bad})
            before = _snapshot(kw)
            with pytest.raises(TypeError, match=f"^{name}: expected a bool, got {type(bad).__name__}$"):
                getattr(_cpu, base + "_")(**kw)
            assert all(np.array_equal(a, b) for a, b in zip(before, _snapshot(kw)))
        for good in (np.bool_(False), False):
            getattr(_cpu, base + "_")(**native_kwargs(base, **{name: good}))


def test_a_numpy_bool_reads_as_its_value():
    a = native_kwargs("sgd", maximize=np.bool_(True))
    b = native_kwargs("sgd", maximize=True)
    _cpu.sgd_(**a)
    _cpu.sgd_(**b)
    np.testing.assert_array_equal(a["params"][0], b["params"][0])
    assert not np.array_equal(a["params"][0], np.linspace(-1.0, 1.0, 3))


@pytest.mark.parametrize("base", ["sgd", "adagrad", "adam", "nadam"])
def test_step_counters(base):
    for step in (0.0, -1.0, 1.5, math.nan, math.inf, 2.0**53 + 2):
        kw = native_kwargs(base, step=step)
        before = _snapshot(kw)
        with pytest.raises(ValueError, match=r"^step: must be an integer in \[1, 2\*\*53\], got "):
            getattr(_cpu, base + "_")(**kw)
        assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(before, _snapshot(kw)))
    getattr(_cpu, base + "_")(**native_kwargs(base, step=2.0**53))
    if base == "nadam":
        for mu in (-0.5, 1.5, math.nan, 1.0 + 2.0**-22):
            with pytest.raises(ValueError, match="^mu_product: must be"):
                _cpu.nadam_(**native_kwargs(base, mu_product=mu))
        assert _cpu.nadam_(**native_kwargs(base, mu_product=0.0)) == 0.0
        kw = native_kwargs(base, mu_product=MU_PRODUCT_MAX)
        p0 = kw["params"][0].copy()
        new_product = _cpu.nadam_(**kw)
        want, want_product = _nadam_float64(kw, p0)
        assert new_product == pytest.approx(want_product, rel=1e-15)
        np.testing.assert_allclose(kw["params"][0], want, rtol=1e-13, atol=0.0)


def _nadam_float64(kw: dict, p):
    """One NAdam step from zero moments in float64 (torch.optim.NAdam's formula): params, new product."""
    g, t, mp = kw["grads"][0] + kw["weight_decay"] * p, kw["step"], kw["mu_product"]
    b1, b2, lr, eps, psi = kw["beta1"], kw["beta2"], kw["lr"], kw["eps"], kw["momentum_decay"]
    mu, mu_next = (b1 * (1.0 - 0.5 * 0.96 ** (s * psi)) for s in (t, t + 1.0))
    prod = mp * mu
    m, v = (1.0 - b1) * g, (1.0 - b2) * g * g
    denom = np.sqrt(v / (1.0 - b2**t)) + eps
    return p - lr * (1.0 - mu) / (1.0 - prod) * g / denom - lr * mu_next / (1.0 - prod * mu_next) * m / denom, prod


def test_capturable_calls_check_too_and_read_their_step_from_the_counters():
    kw = native_kwargs("adam", step=0.0)  # (ignored: the counters hold the step)
    counters, lr = np.zeros(1), np.array([1e-3])
    p0 = kw["params"][0].copy()
    _cpu.adam_capturable(**kw, counters=counters, lr_buffer=lr)
    assert counters[0] == 1.0 and not np.array_equal(kw["params"][0], p0)
    kw = native_kwargs("adam", beta1=math.nan)
    p0 = kw["params"][0].copy()
    with pytest.raises(ValueError, match="^beta1: must be finite, got nan$"):
        _cpu.adam_capturable(**kw, counters=counters, lr_buffer=None)
    with pytest.raises(TypeError, match="^maximize: expected a bool, got NoneType$"):
        _cpu.adam_capturable(**native_kwargs("adam", maximize=None), counters=counters, lr_buffer=None)
    assert counters[0] == 1.0 and np.array_equal(kw["params"][0], p0)
    # lr_buffer alone: the host step counts, and is checked
    with pytest.raises(ValueError, match="^step: "):
        _cpu.adam_capturable(**native_kwargs("adam", step=0.0), counters=None, lr_buffer=lr)
