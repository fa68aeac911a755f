"""``hessian.cg``'s result is SciPy's ``(x, info)`` as a sequence, not only when unpacked: SciPy code
reads ``cg(A, b)[0]`` (and ``len``, ``[-1]``, slices), which raised "'CGResult' object is not
subscriptable" though the README lists ``maxiter=0`` as the one difference from SciPy's ``cg``."""

import numpy as np
import pytest

from optkern import hessian

sla = pytest.importorskip("scipy.sparse.linalg")


def _system():
    rng = np.random.default_rng(0)
    B = rng.standard_normal((6, 6))
    return B @ B.T + 6 * np.eye(6), rng.standard_normal(6)


def test_the_result_indexes_as_scipys_tuple():
    A, b = _system()
    res = hessian.cg(A, b, rtol=1e-12)
    ref = sla.cg(A, b, rtol=1e-12)
    assert len(res) == len(ref) == 2
    np.testing.assert_allclose(res[0], ref[0], rtol=1e-10)
    np.testing.assert_allclose(res[0], np.linalg.solve(A, b), rtol=1e-10)
    assert res[1] == ref[1] == 0
    assert res[0] is res.x and res[-1] == res.info and res[-2] is res.x
    assert res[:1] == (res.x,) and res[::-1] == (res.info, res.x)
    x, info = res  # (unpacking, as before)
    assert x is res.x and info == res.info


def test_an_index_past_the_pair_raises_as_a_tuple_does():
    A, b = _system()
    res = hessian.cg(A, b)
    with pytest.raises(IndexError):
        res[2]
    with pytest.raises(TypeError):
        res["x"]
