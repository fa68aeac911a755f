"""Hunt 51l: float32_lr's float32 operands are one table (signatures_optim_checks.hpp:
kFloat32Operands), which the native steps use and the Python layer reads (optim/_hyper.py:
_F32_OPERANDS, from FLOAT32_LR_OPERANDS): the lr, and AdamW's weight_decay. The Python check stays
(it names a group's field and runs before GradScaler unscales or a state is made); both must refuse
the same values with the same words, on float64 arrays where float32 is not the arrays' dtype."""

import numpy as np
import pytest

from optkern import _cpu, functional
from optkern.optim import _hyper


def test_the_python_layer_reads_the_native_table():
    assert _cpu.FLOAT32_LR_OPERANDS == {"lr": None, "weight_decay": "decoupled_weight_decay"}
    assert _hyper._F32_OPERANDS is _cpu.FLOAT32_LR_OPERANDS
    assert _hyper._F32_WHOSE == _cpu.FLOAT32_LR_WHOSE == "float32_lr: a float32 lr"


def _arrays(n, k):
    rng = np.random.default_rng(n)
    return [rng.standard_normal(n) for _ in range(k)]


def _adam(native, n, lr, wd, decoupled):
    p, g, m, v = _arrays(n, 4)
    if native:
        return _cpu.adam_([p], [g], [m], [v], None, lr, 0.9, 0.999, 1e-8, wd, decoupled, False, True, 1)
    functional.adam_(
        [p], [g], [m], [v], step=1, lr=lr, weight_decay=wd, decoupled_weight_decay=decoupled, float32_lr=True
    )


def _nadam(native, n, lr, wd, decoupled):
    p, g, m, v = _arrays(n, 4)
    if native:
        return _cpu.nadam_([p], [g], [m], [v], lr, 0.9, 0.999, 1e-8, wd, 4e-3, decoupled, False, False, True, 1, 1.0)
    functional.nadam_(
        [p],
        [g],
        [m],
        [v],
        step=1,
        mu_product=1.0,
        lr=lr,
        weight_decay=wd,
        decoupled_weight_decay=decoupled,
        float32_lr=True,
    )


def _adagrad(native, n, lr, wd, decoupled):
    p, g, s = _arrays(n, 3)
    s = np.abs(s)
    if native:
        return _cpu.adagrad_([p], [g], [s], lr, 0.0, wd, 1e-10, False, True, 1)
    functional.adagrad_([p], [g], [s], step=1, lr=lr, weight_decay=wd, float32_lr=True)


STEPS = {"adam": _adam, "nadam": _nadam, "adagrad": _adagrad}
DECOUPLED = {"adam": True, "nadam": True, "adagrad": False}


@pytest.mark.parametrize("native", [False, True], ids=["python", "native"])
@pytest.mark.parametrize("name", sorted(STEPS))
@pytest.mark.parametrize("n", [1, 7, 1023])
def test_a_float32_operand_past_float32_is_refused_alike(name, native, n):
    step = STEPS[name]
    with pytest.raises(ValueError, match=r"^lr: 1e\+39 is not finite in float32 \(float32_lr: a float32 lr\)$"):
        step(native, n, 1e39, 0.0, DECOUPLED[name])
    if DECOUPLED[name]:
        with pytest.raises(ValueError, match=r"^weight_decay: 1e\+39 is not finite in float32 \(float32_lr: "):
            step(native, n, 1e-3, 1e39, True)
        step(native, n, 1e-3, 1e39, False)  # (L2's weight_decay is no operand: float64's bounds)


@pytest.mark.parametrize("native", [False, True], ids=["python", "native"])
def test_adagrads_weight_decay_is_no_float32_operand(native):
    _adagrad(native, 7, 1e-3, 1e39, False)  # (no decoupled decay: float64's bounds, 1.2e77)
