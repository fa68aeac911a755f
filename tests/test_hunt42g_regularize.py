"""optkern.regularize: EarlyStopping resumed under another patience, and save_state of a torch
tensor that is a lazy negated / conjugated view.

* ``load_state_dict`` took ``should_stop`` from the state: a run with patience 1 that stopped,
  resumed with patience 10 to train longer, said ``should_stop=True`` (a loop checking it stopped at
  once) until the next bad check set it back to False -- ``step`` sets it as ``num_bad > patience``.
* ``save_state`` of a state holding a tensor with the negative (or conjugate) bit raised torch's
  "Can't call numpy() on Tensor that has negative bit set"; its values are saved now."""

import numpy as np
import pytest

from optkern import regularize as reg


def _after(metrics, patience):
    es = reg.EarlyStopping(patience=patience)
    for m in metrics:
        es.step(m)
    return es


@pytest.mark.parametrize("saved_patience, patience", [(1, 10), (10, 0), (2, 2)])
def test_should_stop_follows_the_loading_stoppers_patience(saved_patience, patience):
    metrics = [1.0, 2.0, 3.0, 4.0]  # best at check 0, then three bad checks
    state = _after(metrics, saved_patience).state_dict()
    es = reg.EarlyStopping(patience=patience)
    es.load_state_dict(state)
    # as a stopper of this patience that saw the same checks
    same = _after(metrics, patience)
    assert es.should_stop == same.should_stop == (3 > patience)
    assert es.state_dict() == same.state_dict()
    assert es.step(5.0) == same.step(5.0)


def test_a_flag_of_the_wrong_kind_is_still_refused():
    state = _after([1.0, 2.0], 1).state_dict()
    with pytest.raises(TypeError, match=r"^state\['should_stop'\]: "):
        reg.EarlyStopping().load_state_dict({**state, "should_stop": "yes"})


def test_save_state_of_lazy_neg_and_conj_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    z = torch.tensor([1 + 2j, 3 - 4j])
    neg = z.conj().imag  # (a real view with the negative bit set)
    assert neg.is_neg()
    conj = z.conj()
    assert conj.is_conj()
    path = tmp_path / "s.npz"
    reg.save_state(path, {"neg": neg, "conj": conj})
    back = reg.load_state(path)
    np.testing.assert_array_equal(back["neg"].numpy(), [-2.0, 4.0])
    assert back["conj"].dtype == torch.complex64
    np.testing.assert_array_equal(back["conj"].numpy(), [1 - 2j, 3 + 4j])
    # through EarlyStopping's path too
    es = reg.EarlyStopping(path=tmp_path / "best.npz")
    es.step(1.0, state={"w": neg})
    np.testing.assert_array_equal(es.restore()["w"].numpy(), [-2.0, 4.0])


@pytest.mark.parametrize("fn", ["mixup", "cutmix"])
def test_bfloat16_batches_are_mixed(fn):
    """A bfloat16 batch (ml_dtypes', a torch bfloat16 tensor's view) is floating: it was refused as
    "x: expected a floating dtype, got bfloat16". Mixed in bfloat16 as float16 is in float16: the
    same draw as float32, the result the float32 mix to bfloat16's rounding, targets in bfloat16."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bf16 = np.dtype(ml_dtypes.bfloat16)
    rng = np.random.default_rng(0)
    x32 = rng.standard_normal((4, 2, 5, 5)).astype(bf16).astype(np.float32)  # (values bfloat16 holds)
    y = np.array([0, 1, 2, 1])
    got = getattr(reg, fn)(x32.astype(bf16), y, num_classes=3, rng=7)
    want = getattr(reg, fn)(x32, y, num_classes=3, rng=7)
    assert got.lam == want.lam and np.array_equal(got.perm, want.perm) and got.box == want.box
    assert got.x.dtype == bf16 and got.y.dtype == bf16
    np.testing.assert_allclose(got.x.astype(np.float32), want.x, rtol=2**-7, atol=2**-7 * np.abs(x32).max())
    np.testing.assert_allclose(got.y.astype(np.float32), want.y, atol=2**-8)
    np.testing.assert_allclose(got.y.astype(np.float64).sum(axis=1), 1.0, atol=2**-7)
    # soft bfloat16 targets, and bfloat16 as soft_targets' dtype
    soft = getattr(reg, fn)(x32.astype(bf16), np.eye(3, dtype=bf16)[y], rng=7)
    assert soft.y.dtype == bf16
    np.testing.assert_array_equal(reg.soft_targets(y, 4, 3, dtype=bf16).astype(np.float32), np.eye(3)[y])


def test_bfloat16_torch_batch_and_the_other_dtypes_still_refused():
    torch = pytest.importorskip("torch")
    x = torch.randn(3, 4, dtype=torch.bfloat16)
    m = reg.mixup(x, torch.tensor([0, 1, 0]), num_classes=2, rng=0)
    assert m.x.dtype.name == "bfloat16"
    with pytest.raises(TypeError, match=r"^x: expected a floating dtype \(float16, bfloat16, float32, float64\), got"):
        reg.mixup(np.ones((3, 4), np.int32), np.array([0, 1, 0]), num_classes=2)


def test_add_penalty_grad_bumps_torch_grads_versions():
    """Torch grads written in place through their NumPy views: the version counters were not bumped
    (clip_grad_norm_ bumps its grads), so a graph that had saved a grad differentiated its new values
    silently; torch's own in-place add makes that backward an error."""
    torch = pytest.importorskip("torch")
    a = torch.randn(3, requires_grad=True)
    g, p = torch.randn(3), torch.ones(3)
    h = (a * g).sum()  # (saves g for the backward)
    before = g._version
    reg.add_penalty_grad_([p], [g], 0.1, 0.2)
    assert g._version > before and p._version == 0  # (params are only read)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        h.backward()
    # a refused call writes nothing and bumps nothing
    with pytest.raises(ValueError, match=r"^l1: "):
        reg.add_penalty_grad_([p], [g], -1.0)
    assert g._version == before + 1
