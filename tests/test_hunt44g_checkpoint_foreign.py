"""optkern.save / optkern.load with foreign arrays (torch tensors, DLPack exporters) as array targets.

optkern's optimizers take torch tensors as params and write them in place; the checkpoint's own
example (``save(..., opt=opt, params=params)``, then ``load(..., opt=opt, params=params)``) refused
such params on load: "cannot restore a Tensor in place", and a DLPack-only array could not be saved.
A foreign array target is restored through its NumPy view, as every other optkern call writes it:
checked first (shape, dtype, read-only), all or nothing, its torch version counter bumped."""

from __future__ import annotations

import re

import numpy as np
import pytest

import optkern
from dlpack_exporters import HINT, Old, Plain
from optkern import optim

torch = pytest.importorskip("torch")


def _step(opt, params, k: int) -> None:
    opt.step([torch.full_like(p, 0.25 * (k + 1)) - p * 0.1 for p in params])


def test_an_optimizer_over_torch_params_resumes_from_its_checkpoint(tmp_path):
    """Save after 2 steps, run 2 more, load, run the same 2 again: the same bits as before the load."""
    path = tmp_path / "ck.npz"
    params = [torch.linspace(-1, 1, 7), torch.arange(6, dtype=torch.float32).reshape(2, 3)]
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    for k in range(2):
        _step(opt, params, k)
    optkern.save(path, opt=opt, params=params)
    for k in range(2, 4):
        _step(opt, params, k)
    expected = [p.clone() for p in params]
    optkern.load(path, opt=opt, params=params)
    for k in range(2, 4):
        _step(opt, params, k)
    for p, e in zip(params, expected):
        assert torch.equal(p, e)


def test_torch_tensor_targets_get_the_saved_values_in_their_own_memory(tmp_path):
    path = tmp_path / "ck.npz"
    saved = {
        "w": torch.tensor([1.5, -0.0, float("inf")]),
        "b": torch.tensor([3.0, 4.0], dtype=torch.bfloat16),
        "s": torch.tensor(7.0, dtype=torch.float64),
    }
    optkern.save(path, tree=saved, one=torch.tensor([9.0, 8.0]))
    w = torch.nn.Parameter(torch.zeros(3))  # (requires grad: written as the optimizers write it)
    target = {"w": w, "b": torch.zeros(2, dtype=torch.bfloat16), "s": torch.zeros((), dtype=torch.float64)}
    one = torch.zeros(2)
    ptr, version = w.data_ptr(), w._version
    optkern.load(path, tree=target, one=one)
    assert w.data_ptr() == ptr
    for k, v in saved.items():
        assert torch.equal(target[k].detach(), v), k
    assert torch.equal(one, torch.tensor([9.0, 8.0]))
    assert torch.signbit(w.detach()[1])  # (bit for bit: -0.0)
    assert w._version > version  # (a graph saved before the load refuses its backward)


def test_a_dlpack_only_array_saves_and_restores(tmp_path):
    path = tmp_path / "ck.npz"
    optkern.save(path, x=Plain(np.array([1.0, 2.0, 3.0], np.float32)))
    assert np.array_equal(optkern.load(path)["x"], [1, 2, 3])
    base = np.zeros(3, np.float32)
    optkern.load(path, x=Plain(base))
    assert np.array_equal(base, [1, 2, 3])


def test_foreign_targets_that_cannot_take_the_data_are_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "ck.npz"
    optkern.save(path, a=np.ones(3, np.float32), b=np.ones(3, np.float32))
    a = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=re.escape("['b']") + ".*" + HINT):
        optkern.load(path, a=a, b=Old(np.zeros(3, np.float32)))
    with pytest.raises(ValueError, match=re.escape("['b']: saved array is float32 (3,), the target is float64 (3,)")):
        optkern.load(path, a=a, b=torch.zeros(3, dtype=torch.float64))
    with pytest.raises(TypeError, match=re.escape("['b']") + ".*negative bit set"):
        optkern.load(path, a=a, b=torch.zeros(3)._neg_view())
    with pytest.raises(ValueError, match=re.escape("['b']") + ".*overlapping elements"):
        optkern.load(path, a=a, b=torch.zeros(1).expand(3))  # (3 elements, one float)
    assert not a.any()  # (all or nothing: the first target untouched)


def test_foreign_targets_sharing_memory_are_refused(tmp_path):
    path = tmp_path / "ck.npz"
    optkern.save(path, a=np.ones(4, np.float32), b=np.ones(2, np.float32))
    t = torch.zeros(4)
    with pytest.raises(ValueError, match="share memory"):
        optkern.load(path, a=t, b=t[1:3])
    assert not t.any()


def test_a_tensor_saved_as_a_tree_by_an_earlier_optkern_loads_into_a_tensor(tmp_path):
    """Files of earlier optkern versions hold a lone tensor as kind "tree" (it was no array target)."""
    import hashlib
    import json

    path = tmp_path / "ck.npz"
    optkern.save(path, w=torch.tensor([1.0, 2.0]))
    z = dict(np.load(path))
    meta = json.loads(z["meta"].tobytes())
    assert meta["objects"]["w"]["kind"] == "array"
    meta["objects"]["w"]["kind"] = "tree"
    raw = json.dumps(meta).encode()
    z["meta"] = np.frombuffer(raw, np.uint8)
    z["meta_sha256"] = np.frombuffer(hashlib.sha256(raw).hexdigest().encode(), np.uint8)
    np.savez(path, **z)
    w = torch.zeros(2)
    optkern.load(path, w=w)
    assert w.tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="expected a saved sequence of 1 items, found an ndarray"):
        optkern.load(path, w=[torch.zeros(2)])


class _FailsOnLoad:
    """A target whose own loader refuses what no check before it could see."""

    def state_dict(self) -> dict:
        return {"n": 1}

    def load_state_dict(self, state) -> None:
        raise ValueError("refused late")


def test_a_tensor_target_is_put_back_when_a_later_target_fails(tmp_path):
    path = tmp_path / "ck.npz"
    optkern.save(path, w=torch.tensor([1.0, 2.0]), p=Plain(np.array([3.0, 4.0])), late=_FailsOnLoad())
    w, base = torch.tensor([-1.0, -0.0]), np.array([5.0, 6.0])
    with pytest.raises(ValueError, match=re.escape("['late']: refused late")):
        optkern.load(path, w=w, p=Plain(base), late=_FailsOnLoad())
    assert w.tolist() == [-1.0, -0.0] and torch.signbit(w[1])
    assert base.tolist() == [5.0, 6.0]
