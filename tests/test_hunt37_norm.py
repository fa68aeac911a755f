"""A backward's ``out=`` sharing memory with the forward's saved statistics: the error named the
native field (``out shares memory with mean``), an array the caller never passed by that name,
where every other error about them says ``saved.mean`` / ``saved.rstd`` / ``saved.inv_rms``."""

import numpy as np
import pytest

from optkern import norm

RNG = np.random.default_rng(37)
X = RNG.standard_normal((2, 4, 3)).astype(np.float32)
DY = RNG.standard_normal((2, 4, 3)).astype(np.float32)


def _forward(kind):
    """(saved, backward(saved, out)) of one normalization of X."""
    if kind == "layer":
        return norm.layer_norm(X, 3)[1], lambda s, out: norm.layer_norm_backward(DY, X, None, s, out=out)
    if kind == "rms":
        return norm.rms_norm(X, 3)[1], lambda s, out: norm.rms_norm_backward(DY, X, None, s, out=out)
    if kind == "group":
        return norm.group_norm(X, 2)[1], lambda s, out: norm.group_norm_backward(DY, X, None, s, out=out)
    if kind == "instance":
        return norm.instance_norm(X)[1], lambda s, out: norm.instance_norm_backward(DY, X, None, s, out=out)
    if kind == "instance_running":
        rm, rv = np.zeros(4, np.float32), np.ones(4, np.float32)
        saved = norm.instance_norm(X, None, None, rm, rv, use_input_stats=False)[1]
        return saved, lambda s, out: norm.instance_norm_backward(DY, X, None, s, out=out)
    saved = norm.batch_norm(X)[1]
    return saved, lambda s, out: norm.batch_norm_backward(DY, X, None, s, out=out)


CASES = [
    ("layer", 0, "mean"),
    ("layer", 1, "rstd"),
    ("rms", 0, "inv_rms"),
    ("group", 0, "mean"),
    ("group", 1, "rstd"),
    ("instance", 0, "mean"),
    ("instance", 1, "rstd"),
    ("instance_running", 0, "mean"),
    ("batch", 0, "mean"),
    ("batch", 1, "rstd"),
]


@pytest.mark.parametrize("kind, field, name", CASES)
def test_backward_out_sharing_a_saved_statistic_names_it_saved_dot_field(kind, field, name):
    saved, backward = _forward(kind)
    stat = saved[field]
    buf = np.zeros(X.size + stat.size, np.float32)  # out overlaps the statistic's copy at its start
    buf[: stat.size] = stat.ravel()
    parts = list(saved)
    parts[field] = buf[: stat.size].reshape(stat.shape)
    aliased = type(saved)(*parts)
    out = buf[: X.size].reshape(X.shape)
    before = buf.copy()
    with pytest.raises(ValueError, match=rf"^out shares memory with saved\.{name} \("):
        backward(aliased, out)
    np.testing.assert_array_equal(buf, before)  # nothing written
    # the same statistics in their own memory: the call runs, and gives the unaliased result
    dx = backward(type(saved)(*[p.copy() if hasattr(p, "copy") else p for p in parts]), None)[0]
    np.testing.assert_array_equal(dx, backward(saved, None)[0])


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize(
    "bad, err", [(None, TypeError), ("3", TypeError), (2.5, TypeError), (True, TypeError), (-1, ValueError)]
)
def test_batchnorm_num_batches_tracked_assigned_a_bad_value_is_refused_before_anything_is_written(momentum, bad, err):
    # with a momentum the count was not checked: None or "3" raised Python's unnamed TypeError after the
    # running statistics were updated, 2.5 went on as 3.5, -1 as 0 (momentum=None checked it first)
    bn = norm.BatchNorm(4, momentum=momentum)
    bn.num_batches_tracked = bad
    mean, var = bn.running_mean.copy(), bn.running_var.copy()
    with pytest.raises(err, match=r"^num_batches_tracked: "):
        bn(X)
    np.testing.assert_array_equal(bn.running_mean, mean)
    np.testing.assert_array_equal(bn.running_var, var)
    assert bn.num_batches_tracked is bad
    bn.num_batches_tracked = 3  # fixed: counted on
    bn(X)
    assert bn.num_batches_tracked == 4
    bn(X, training=False)  # (eval neither reads nor counts it)
    assert bn.num_batches_tracked == 4


def test_batchnorm_eval_and_untracked_ignore_the_count():
    bn = norm.BatchNorm(4)
    bn.num_batches_tracked = None
    bn(X, training=False)  # eval: the count is neither read nor written
    untracked = norm.BatchNorm(4, track_running_stats=False)
    untracked.num_batches_tracked = None
    untracked(X)  # no running statistics: nothing counts batches (as before)


@pytest.mark.parametrize("bad, err", [(None, TypeError), ("3", TypeError), (2.5, TypeError), (-1, ValueError)])
def test_batchnorm_state_dict_of_a_bad_count_is_refused_by_name(bad, err):
    # saved as given: 2.5 as 2, "3" as 3, -1 as -1 (a checkpoint its own load_state_dict refuses), None
    # as NumPy's unnamed TypeError
    bn = norm.BatchNorm(4)
    bn.num_batches_tracked = bad
    with pytest.raises(err, match=r"^num_batches_tracked: "):
        bn.state_dict()
    bn.num_batches_tracked = np.int64(5)  # (an integer of NumPy's: saved as the 0-d int64 torch holds)
    sd = bn.state_dict()
    assert sd["num_batches_tracked"].dtype == np.int64 and sd["num_batches_tracked"] == 5
