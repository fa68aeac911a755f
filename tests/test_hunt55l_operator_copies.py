"""Copies of ``hessian.from_mlp`` operators keep what a copy kept before pickling came (55th hunt, l).

The pickling recipe was bound to the operator it was made for, and ``copy.copy`` shares it: a pickle
or deep copy of a SHALLOW copy took the original's ``num_matvecs`` (1 where the copy had counted 6),
and a deep copy or pickle of any from_mlp operator came back named 'mlp-hessian' whatever ``name`` the
user had set (a deep copy kept it before). Now a recipe describes the functions only; the copy's
own attributes (``name``, ``num_matvecs``, ``trusted_symmetric``, a user's own) travel with it."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from optkern import hessian
from optkern.nn import MLP

rng = np.random.default_rng(55)
MODEL = MLP((5, 7, 3))
X = rng.standard_normal((9, 5)).astype(np.float32)
Y = rng.integers(0, 3, 9)

COPIES = {
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
    "pickle": lambda op: pickle.loads(pickle.dumps(op)),
}


@pytest.mark.parametrize("fixed", [False, True])
@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize("of_copy", [False, True], ids=["of-original", "of-shallow-copy"])
def test_a_copy_keeps_its_own_counter_name_and_products(how, of_copy, fixed):
    params = MODEL.init_params(7)
    op = hessian.from_mlp(MODEL, params, X, Y, kind="ggn", fixed=fixed)
    v = rng.standard_normal(op.shape[0]).astype(np.float32)
    want = op.matvec(v)  # (op counts 1)
    src = copy.copy(op) if of_copy else op
    for _ in range(5 if of_copy else 2):
        src.matvec(v)
    src.name = "mine"
    src.trusted_symmetric = False
    src.note = {"epoch": 3}  # (an attribute of the user's own)
    count = src.num_matvecs
    assert count == (6 if of_copy else 3) and op.num_matvecs == (1 if of_copy else 3)
    c = COPIES[how](src)
    assert type(c) is type(op)
    assert (c.num_matvecs, c.name, c.trusted_symmetric, c.note) == (count, "mine", False, {"epoch": 3})
    np.testing.assert_array_equal(c.matvec(v), want)  # (bit for bit)
    np.testing.assert_array_equal(c.matmat(v[:, None])[:, 0], want)
    assert c.num_matvecs == count + 2 and src.num_matvecs == count  # (counters apart)
    # and a copy of the copy (its recipe is its own, not the first operator's)
    cc = COPIES[how](c)
    assert (cc.num_matvecs, cc.name) == (count + 2, "mine")
    np.testing.assert_array_equal(cc.matvec(v), want)


def test_a_deep_copy_of_the_user_attributes_is_deep():
    op = hessian.from_mlp(MODEL, MODEL.init_params(8), X, Y)
    op.note = {"epoch": 3}
    d = copy.deepcopy(op)
    d.note["epoch"] = 4
    assert op.note == {"epoch": 3}
    # (and a shallow copy shares them, as Python's copy does)
    assert copy.copy(op).note is op.note


def test_a_self_reference_is_the_copy():
    op = hessian.from_mlp(MODEL, MODEL.init_params(9), X, Y)
    op.me = op
    for how in ("deepcopy", "pickle"):
        c = COPIES[how](op)
        assert c.me is c


def test_the_original_counts_alone_after_its_copies_are_pickled():
    op = hessian.from_mlp(MODEL, MODEL.init_params(10), X, Y)
    v = rng.standard_normal(op.shape[0]).astype(np.float32)
    c = copy.copy(op)
    c.matvec(v)
    pickle.loads(pickle.dumps(c)).matvec(v)
    copy.deepcopy(c).matvec(v)
    assert (op.num_matvecs, c.num_matvecs) == (0, 1)
