"""PyHessian's SLQ density next to optkern's, same model, data and budget (a row of ``optkern bench hvp``).

PyHessian (Yao et al. 2020; ``pip install pyhessian``, version 0.1) is the reference
implementation of the seed paper's density: Lanczos with full reorthogonalization in
Python over lists of tensors, products by double backward through one retained graph.
The row times one ``hessian(...)`` construction (forward + backward with ``create_graph``)
plus ``density(iter=steps, n_v=1)`` against optkern's ``spectral_density`` with one
probe and the same number of steps (partial reorthogonalization, its default), and
notes both largest Ritz values (both runs converge to the top eigenvalue in 80 steps).

PyHessian 0.1 calls ``torch.eig``, removed in torch 1.9; the call runs with a stand-in
built on ``torch.linalg.eigh`` (its T is symmetric), installed for the call only.
PyHessian puts the model in eval mode, so it is only compared on the model without
batch norm (with batch norm it measures a different, eval-mode operator).
"""

from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np


@contextlib.contextmanager
def _torch_eig(torch):
    """``torch.eig(T, eigenvectors=True)`` as PyHessian 0.1 uses it (torch >= 1.9 keeps only a stub
    that raises), for the duration of the block."""
    old = getattr(torch, "eig", None)

    def eig(T, eigenvectors=False):
        vals, vecs = torch.linalg.eigh(T)
        return torch.stack([vals, torch.zeros_like(vals)], dim=1), vecs

    torch.eig = eig
    try:
        yield
    finally:
        if old is None:
            del torch.eig
        else:
            torch.eig = old


def torch_model(torch, model, params):
    """``model`` (an optkern tanh MLP without normalization) as a ``torch.nn.Sequential`` with its weights."""
    layers = []
    for i, layer in enumerate(model.layout):
        (w_off, w_shape), (b_off, b_shape) = layer["W"], layer["b"]
        lin = torch.nn.Linear(w_shape[1], w_shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.as_tensor(params[w_off : w_off + math.prod(w_shape)].reshape(w_shape)))
            lin.bias.copy_(torch.as_tensor(params[b_off : b_off + math.prod(b_shape)].reshape(b_shape)))
        layers.append(lin)
        if i < len(model.layout) - 1:
            layers.append(torch.nn.Tanh())
    return torch.nn.Sequential(*layers)


def factory(torch, model, params, x, y, steps, result):
    """The zero-argument PyHessian call (None when PyHessian is not installed); the last run's
    largest Ritz value goes to ``result["top"]``."""
    try:
        from pyhessian import hessian as pyh
    except ImportError:
        return None
    net = torch_model(torch, model, np.asarray(params))
    xt, yt = torch.as_tensor(np.asarray(x)), torch.as_tensor(np.asarray(y))
    crit = torch.nn.CrossEntropyLoss()

    def call():
        with _torch_eig(torch), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # backward(create_graph=True): PyHessian's own choice
            h = pyh(net, crit, data=(xt, yt), cuda=False)
            eig, _ = h.density(iter=steps, n_v=1)
        for p in net.parameters():  # break the grad <-> graph cycle between repeats
            p.grad = None
        result["top"] = float(max(eig[0]))

    return call
