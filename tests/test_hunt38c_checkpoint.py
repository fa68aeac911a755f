"""optkern.load defects found in hunt 38c: the all-or-nothing undo put a target back through its own
``load_state_dict``, which refuses non-finite state (an optimizer's or an average's of a diverged
run, the usual reason to load a checkpoint): the undo raised that refusal ("state_dict['state'][0]
['exp_avg']: 1 non-finite entries"), in place of the error that made the load fail, and the
target kept the checkpoint's state; and an array target whose elements share memory was "restored"
to other values than the file's, silently."""

import numpy as np
import pytest

import optkern
from optkern.optim import Adam
from optkern.swa import AveragedParams
from optkern.swalp import SWALP


def _adam(grad):
    opt = Adam([np.ones(3, np.float32)], lr=0.1)
    opt.step([np.array(grad, np.float32)])
    return opt


def _average(param):
    avg = AveragedParams([np.ones(3, np.float32)])
    avg.update([np.array(param, np.float32)])
    return avg


def _swalp(grad):
    run = SWALP([np.ones(3, np.float32)], lr=0.1, momentum=0.9)
    run.step([np.array(grad, np.float32)])
    return run


def _arrays(obj):
    """Copies of every array of ``obj``'s state."""
    sd = obj.state_dict()
    if "state" in sd:
        return [v.copy() for v in sd["state"][0].values() if isinstance(v, np.ndarray)]
    if "swa" in sd:
        return [b.copy() for b in sd["buffers"]] + [a.copy() for a in sd["swa"]["averages"]]
    return [a.copy() for a in sd["averages"]]


@pytest.mark.parametrize("make", [_adam, _average, _swalp])
def test_a_refused_load_puts_a_diverged_target_back(make, tmp_path):
    path = tmp_path / "ckpt.npz"
    optkern.save(path, target=make([1, 1, 1]), other=AveragedParams([np.ones(3, np.float32)]))
    target = make([np.nan, 1, 1] if make is not _average else [np.inf, 5, 5])
    before = _arrays(target)
    assert any(not np.isfinite(a).all() for a in before)
    other = AveragedParams([np.ones(4, np.float32)])  # (refused by its own loader, after target's)
    with pytest.raises(ValueError, match=r"\['other'\]: state_dict\['averages'\]\[0\]: expected shape") as e:
        optkern.load(path, target=target, other=other)
    assert "non-finite" not in str(e.value)
    after = _arrays(target)
    assert len(after) == len(before)
    for a, b in zip(after, before):
        np.testing.assert_array_equal(a, b)


def test_a_load_still_refuses_non_finite_state(tmp_path):
    """The undo takes a target's own state back; a checkpoint of a diverged run is still refused."""
    path = tmp_path / "ckpt.npz"
    optkern.save(path, opt=_adam([np.nan, 1, 1]), avg=_average([np.inf, 5, 5]))
    opt, avg = Adam([np.ones(3, np.float32)], lr=0.1), AveragedParams([np.ones(3, np.float32)])
    with pytest.raises(ValueError, match=r"\['opt'\].*non-finite"):
        optkern.load(path, opt=opt)
    with pytest.raises(ValueError, match=r"\['avg'\].*non-finite"):
        optkern.load(path, avg=avg)
    with pytest.raises(ValueError, match="non-finite"):
        _adam([np.nan, 1, 1]).load_state_dict(_adam([np.nan, 1, 1]).state_dict())


def _shared(shape, strides):
    """A writable array of ``shape`` whose elements share memory (``strides`` in elements)."""
    buf = np.zeros(32, np.float32)
    return np.lib.stride_tricks.as_strided(buf, shape=shape, strides=[4 * s for s in strides])


@pytest.mark.parametrize("wrap", [lambda a: a, lambda a: {"w": [a]}], ids=["array", "tree"])
def test_an_array_target_whose_elements_share_memory_is_refused(wrap, tmp_path):
    """Restored into an array whose elements share memory, the last value written stayed in all of
    them: the target held other values than the file's, silently (the arrays written in place
    elsewhere refuse such a view: ``_backend.distinct_elements``)."""
    path = tmp_path / "ckpt.npz"
    saved = np.arange(12, dtype=np.float32).reshape(4, 3)
    optkern.save(path, w=wrap(saved))
    target = _shared((4, 3), (1, 1))
    with pytest.raises(ValueError, match=r"\['w'\].*overlapping elements"):
        optkern.load(path, w=wrap(target))
    assert not target.any()
    distinct = np.zeros((4, 3), np.float32)[:, ::-1]  # (strided, elements distinct: taken)
    optkern.load(path, w=wrap(distinct))
    np.testing.assert_array_equal(distinct, saved)
