"""Hunt 55h: DESIGN §3's "any ``__dlpack__`` exporter, zero-copy, everywhere", audited over the public
entry points that take arrays (optimizer steps, norms, dropout, penalties, mixing, low precision,
clipping, activations and losses, AMP, SWA / SWALP, datasets, curvature operators and estimators).

Each runs on CPU torch tensors, contiguous and transposed (strided), and on NumPy arrays of the same
values: a contiguous tensor must give the NumPy path's result bit for bit, written into the tensor's
own memory where the call writes in place; a strided one either the same, or a refusal naming its
argument ("...: array must be C-contiguous", as the optimizers refuse one) that wrote nothing.
(The in-place initializers, collectives, BatchLoader and the norm modules' ``like``, which refused
tensors until this hunt: test_hunt55h_init_dlpack.py, _dist_dlpack.py, _loader_like_dlpack.py.)
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import optkern
from optkern import clip as C
from optkern import functional as F
from optkern import hessian as H
from optkern import lowp as L
from optkern import nn as NN
from optkern import norm as N
from optkern import optim as O
from optkern import regularize as R

torch = pytest.importorskip("torch")


def _make(shape, kind, seed, dtype=np.float32):
    """NumPy values of ``shape``, as NumPy ("np"), a contiguous tensor ("t") or a transposed one ("T")."""
    a = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    if kind == "np":
        return a
    if kind == "t":
        return torch.from_numpy(a.copy())
    if len(shape) < 2:  # every other element of a longer tensor
        return torch.from_numpy(np.repeat(a, 2))[::2]
    return torch.from_numpy(np.ascontiguousarray(np.swapaxes(a, -1, -2))).transpose(-1, -2)


def _values(x):
    if isinstance(x, torch.Tensor):
        return x.detach().numpy().copy()
    if isinstance(x, (tuple, list)):
        return [_values(v) for v in x]
    return x.copy() if isinstance(x, np.ndarray) else x


def _bits_equal(a, b) -> None:
    if isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b):
            _bits_equal(x, y)
    elif isinstance(a, np.ndarray):
        b = np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(np.ascontiguousarray(a).view(np.uint8), np.ascontiguousarray(b).view(np.uint8))
    elif isinstance(a, float):
        assert a == b or (a != a and b != b)


def _opt(fn, nstate, **kw):
    def call(p, g, *state):
        fn([p], [g], *[[s] for s in state], **kw)

    return (
        lambda k: (_make((5, 7), k, 1), _make((5, 7), k, 2)) + tuple(_make((5, 7), k, 9) * 0 for _ in range(nstate)),
        call,
    )


def _cls(cls, **kw):
    def call(p, g):
        o = cls([p], **kw)
        o.step([g])
        o.step([g])

    return (lambda k: (_make((5, 7), k, 1), _make((5, 7), k, 2)), call)


def _one(shape, call, dtype=np.float32):
    return (lambda k: (_make(shape, k, 3, dtype),), call)


def _two(shape, call):
    return (lambda k: (_make(shape, k, 3), _make(shape, k, 4)), call)


def _lnb(x, dy):
    _, s = N.layer_norm(x, (5,))
    return N.layer_norm_backward(dy, x, None, s)


def _bnb(x, dy):
    _, s = N.batch_norm(x)
    return N.batch_norm_backward(dy, x, None, s)


def _unscale(g):
    s = optkern.amp.GradScaler(init_scale=4.0)
    s.unscale_(O.SGD([np.zeros(g.shape, np.float32)], lr=0.1), [g])
    return s.get_scale()


def _swa(p):
    av = optkern.swa.AveragedParams([p])
    av.update([p])
    out = [np.zeros(tuple(p.shape), np.float32)]
    av.copy_to(out)
    return out[0]


def _swalp(p, g):
    optkern.swalp.SWALP([p], lr=0.1).step([g])


def _diag(v0, fn):
    return fn(H.as_operator(np.diag(np.arange(1.0, 6.0))), v0)


def _mlp_loss(x):
    m = NN.MLP([5, 4, 3])
    return m.loss(m.init_params(0), x, np.arange(6) % 3)


def _mlp_hvp(x):
    m = NN.MLP([5, 4, 3])
    op = H.from_mlp(m, m.init_params(0), x, np.arange(6) % 3)
    return op.matvec(np.ones(op.shape[0], np.float32))


CASES = {
    "functional.sgd_": _opt(F.sgd_, 1, lr=0.1, momentum=0.9),
    "functional.adam_": _opt(F.adam_, 2, step=1),
    "functional.adamw_": _opt(F.adamw_, 2, step=1),
    "functional.nadam_": _opt(F.nadam_, 2, step=1),
    "functional.adagrad_": _opt(F.adagrad_, 1, step=1),
    "functional.rmsprop_": _opt(F.rmsprop_, 1),
    "functional.adadelta_": _opt(F.adadelta_, 2),
    **{f"optim.{c.__name__}": _cls(c) for c in (O.Adam, O.AdamW, O.NAdam, O.Adagrad, O.RMSprop, O.Adadelta)},
    "optim.SGD": _cls(O.SGD, lr=0.1, momentum=0.9),
    "optim.AdagradNorm": _cls(O.AdagradNorm),
    "norm.layer_norm": _one((6, 5), lambda x: N.layer_norm(x, (5,))[0]),
    "norm.layer_norm out": _two((6, 5), lambda x, o: N.layer_norm(x, (5,), out=o)[0]),
    "norm.rms_norm": _one((6, 5), lambda x: N.rms_norm(x, (5,))[0]),
    "norm.batch_norm": _one((6, 5), lambda x: N.batch_norm(x)[0]),
    "norm.group_norm": _one((4, 6, 3), lambda x: N.group_norm(x, 2)[0]),
    "norm.instance_norm": _one((4, 6, 3), lambda x: N.instance_norm(x)[0]),
    "norm.layer_norm_backward": _two((6, 5), _lnb),
    "norm.batch_norm_backward": _two((6, 5), _bnb),
    "norm.weight_norm": _one((6, 5), lambda v: N.weight_norm(v, np.ones((6, 1), np.float32))[0]),
    "norm.dropout": _one((6, 5), lambda x: N.dropout(x, 0.3, 5)[0]),
    "norm.dropout_backward": _one((6, 5), lambda dy: N.dropout_backward(dy, 0.3, 5)),
    "regularize.add_penalty_grad_": _two((6, 5), lambda p, g: R.add_penalty_grad_([p], [g], l1=0.1, l2=0.1)),
    "regularize.penalty": _one((6, 5), lambda p: R.penalty([p], l1=0.1, l2=0.1)),
    "regularize.mixup": _one((6, 5), lambda x: R.mixup(x, np.arange(6) % 3, num_classes=3, rng=0).x),
    "regularize.cutmix": _one((6, 1, 4, 5), lambda x: R.cutmix(x, np.arange(6) % 3, num_classes=3, rng=0).x),
    "random.uniform like": _one((6, 5), lambda x: optkern.random.uniform((3,), 1, like=x)),
    "lowp.to_bfloat16": _one((6, 5), lambda x: L.to_bfloat16(x, raw=True)),
    "lowp.to_float16": _one((6, 5), L.to_float16),
    "lowp.stochastic_round": _one((6, 5), lambda x: L.stochastic_round(x, seed=3, raw=True)),
    "lowp.from_half": _one((6, 5), L.from_half, np.float16),
    "lowp.quantize_blockwise": _one((8, 32), lambda x: L.quantize_blockwise(x, 64)),
    "lowp.quantize_block_fp": _one((6, 5), lambda x: L.quantize_block_fp(x, seed=1)),
    "lowp.quantize_block_fp out": _two((6, 5), lambda x, o: L.quantize_block_fp(x, seed=1, out=o)),
    "lowp.quantize_fixed_point": _one((6, 5), lambda x: L.quantize_fixed_point(x, seed=1)),
    "clip.clip_grad_norm_": _one((6, 5), lambda g: C.clip_grad_norm_([g], 0.5)),
    "clip.clip_grad_value_": _one((6, 5), lambda g: C.clip_grad_value_([g], 0.5)),
    "clip.get_total_norm": _one((6, 5), lambda g: C.get_total_norm([g])),
    "clip.clip_grads_with_norm_": _one((6, 5), lambda g: C.clip_grads_with_norm_([g], 0.5, 3.0)),
    "nn.activation": _one((6, 5), lambda z: NN.activation("tanh", z, order=1)),
    "nn.softmax_cross_entropy": _one((6, 5), lambda z: NN.softmax_cross_entropy(z, np.arange(6) % 5)),
    "nn.softmax_cross_entropy_grad": _one((6, 5), lambda z: NN.softmax_cross_entropy_grad(z, np.arange(6) % 5)),
    "nn.MLP.loss": _one((6, 5), _mlp_loss),
    "hessian.from_mlp": _one((6, 5), _mlp_hvp),
    "amp.GradScaler.unscale_": _one((6, 5), _unscale),
    "swa.AveragedParams": _one((6, 5), _swa),
    "swalp.SWALP": _two((6, 5), _swalp),
    "datasets.Dataset": _one((6, 5), lambda x: optkern.datasets.Dataset(x, np.arange(6) % 3, 3, "t").x),
    "hessian.as_operator": _one((5, 5), lambda m: H.as_operator(m).matvec(np.ones(5, np.float32))),
    "hessian matvec": _one((5,), lambda v: H.as_operator(np.eye(5, dtype=np.float32) * 2).matvec(v)),
    "hessian.cg": _one((5,), lambda b: _diag(b, lambda op, b: H.cg(op, b).x), np.float64),
    "hessian.lanczos v0": _one((5,), lambda v: _diag(v, lambda op, v: H.lanczos(op, 3, v0=v)), np.float64),
    "hessian.power_iteration v0": _one(
        (5,), lambda v: _diag(v, lambda op, v: H.power_iteration(op, 5, v0=v).eigenvalue), np.float64
    ),
}


def _run(name, kind):
    make, call = CASES[name]
    args = make(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = call(*args)
    return args, _values(got), [_values(a) for a in args]


@pytest.mark.parametrize("name", sorted(CASES))
def test_contiguous_tensor_gives_numpy_bits_in_its_own_memory(name):
    _, ref, ref_args = _run(name, "np")
    args, got, after = _run(name, "t")
    ptrs = [a.data_ptr() for a in args]
    _bits_equal(ref, got)
    _bits_equal(ref_args, after)  # (the in-place writes landed in the tensors' memory)
    assert [a.data_ptr() for a in args] == ptrs


@pytest.mark.parametrize("name", sorted(CASES))
def test_strided_tensor_is_handled_or_refused_by_name(name):
    _, ref, ref_args = _run(name, "np")
    make, call = CASES[name]
    args = make("T")
    before = [_values(a) for a in args]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = _values(call(*args))
    except (TypeError, ValueError) as e:
        assert re.match(r"^[\w\[\]' ]+: .*C-contiguous", str(e)), str(e)
        _bits_equal(before, [_values(a) for a in args])  # nothing written
        return
    _bits_equal(ref, got)
    _bits_equal(ref_args, [_values(a) for a in args])
