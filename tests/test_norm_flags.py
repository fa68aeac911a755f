"""The norms' boolean arguments (batch_norm's ``training``, instance_norm's ``use_input_stats``, the
backwards' ``param_grads``, ``BatchNorm.forward``'s ``training``) must be bools, as torch's
functional forms require: a TypeError naming the argument, before anything is written.

Read as truthy, ``training="False"`` ran batch norm in training mode and overwrote the running
buffers, ``None`` meant eval, and ``param_grads="False"`` returned the gradients it declined.
"""

import numpy as np
import pytest

from optkern import norm

NOT_BOOLS = ["False", "True", None, 0, 1, 1.0, [True]]


def _bn_args():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((4, 3, 5))
    return x, rng.standard_normal(3), rng.standard_normal(3), np.zeros(3), np.ones(3)


@pytest.mark.parametrize("value", NOT_BOOLS)
@pytest.mark.parametrize("fn", ["batch_norm", "instance_norm"])
def test_the_mode_flag_must_be_a_bool(fn, value):
    x, w, b, rm, rv = _bn_args()
    out = np.full_like(x, 7.0)
    name = "training" if fn == "batch_norm" else "use_input_stats"
    with pytest.raises(TypeError, match=f"^{name}: expected a bool, got {type(value).__name__}"):
        getattr(norm, fn)(x, w, b, rm, rv, **{name: value}, out=out)
    # nothing written: the buffers (which training mode updates) and out
    np.testing.assert_array_equal(rm, np.zeros(3))
    np.testing.assert_array_equal(rv, np.ones(3))
    assert (out == 7.0).all()


@pytest.mark.parametrize("value", [True, False, np.bool_(True), np.bool_(False)])
@pytest.mark.parametrize("fn", ["batch_norm", "instance_norm"])
def test_a_bool_or_numpy_bool_picks_the_mode(fn, value):
    """The accepted values still choose: training / input statistics update the buffers, eval does not."""
    x, w, b, rm, rv = _bn_args()
    name = "training" if fn == "batch_norm" else "use_input_stats"
    getattr(norm, fn)(x, w, b, rm, rv, **{name: value})
    assert bool((rm != 0).any()) == bool(value)


def _backward_cases():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 4, 5))
    w = rng.standard_normal(4)
    return {
        "layer_norm_backward": lambda p: norm.layer_norm_backward(
            x, x, w[:1].repeat(5), norm.layer_norm(x, 5)[1], param_grads=p
        ),
        "rms_norm_backward": lambda p: norm.rms_norm_backward(x, x, None, norm.rms_norm(x, 5)[1], param_grads=p),
        "group_norm_backward": lambda p: norm.group_norm_backward(x, x, w, norm.group_norm(x, 2)[1], param_grads=p),
        "instance_norm_backward": lambda p: norm.instance_norm_backward(
            x, x, w, norm.instance_norm(x)[1], param_grads=p
        ),
        "instance_norm_backward (running)": lambda p: norm.instance_norm_backward(
            x, x, w, norm.instance_norm(x, None, None, np.zeros(4), np.ones(4), use_input_stats=False)[1], param_grads=p
        ),
    }


@pytest.mark.parametrize("value", NOT_BOOLS)
@pytest.mark.parametrize("case", list(_backward_cases()))
def test_param_grads_must_be_a_bool(case, value):
    call = _backward_cases()[case]
    with pytest.raises(TypeError, match=f"^param_grads: expected a bool, got {type(value).__name__}"):
        call(value)
    assert call(False)[1] is None and call(True)[1] is not None  # the bools still choose


@pytest.mark.parametrize("value", NOT_BOOLS)
def test_batchnorm_module_training_must_be_a_bool(value):
    x = np.random.default_rng(13).standard_normal((4, 3)).astype(np.float32)
    bn = norm.BatchNorm(3)
    with pytest.raises(TypeError, match=f"^training: expected a bool, got {type(value).__name__}"):
        bn.forward(x, training=value)
    with pytest.raises(TypeError, match="^training: expected a bool"):
        bn(x, training=value)
    # nothing changed: running buffers, batch count, the state backward would use
    np.testing.assert_array_equal(bn.running_mean, np.zeros(3, np.float32))
    np.testing.assert_array_equal(bn.running_var, np.ones(3, np.float32))
    assert bn.num_batches_tracked == 0 and bn._saved is None


def test_torch_rejects_the_same_values():
    """torch.nn.functional raises TypeError for each non-bool here too (so the check matches it)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, x3 = torch.zeros(4, 3, dtype=torch.float64), torch.zeros(2, 3, 4, dtype=torch.float64)
    for value in NOT_BOOLS:
        rm, rv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
        with pytest.raises(TypeError, match="training"):
            F.batch_norm(x, rm, rv, training=value)
        with pytest.raises(TypeError, match="use_input_stats"):
            F.instance_norm(x3, rm, rv, use_input_stats=value)
