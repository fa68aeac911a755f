"""Hunt 46g: SAM checks its params at each step before the closure runs.

The constructor refused params of mixed dtypes or read-only ones, but a group the wrapped optimizer
took later (``base.add_param_group``), a param made read-only, or params of two groups sharing memory
were first met by the ascent kernel -- after ``step`` had run the closure (a forward and backward
pass) -- whose error named ``params[1]``, an argument SAM does not have. Now they are refused before
the closure runs, naming the param by its place in ``param_groups``, nothing written. So are a bad
``rho`` / ``eps`` / ``adaptive`` set between steps and a ``step`` begun after ``first_step`` (each
refused after the closure's first call before)."""

import numpy as np
import pytest

from optkern import optim


def _calls():
    calls = []

    def closure(grads):
        def f():
            calls.append(1)
            return 1.0, grads

        return f

    return calls, closure


def test_a_group_of_another_dtype_added_later_is_refused_before_the_closure():
    p = np.ones(3)
    base = optim.SGD([p], lr=0.1)
    sam = optim.SAM(base, rho=0.1)
    q = np.ones(2, np.float32)
    base.add_param_group({"params": [q]})
    calls, closure = _calls()
    with pytest.raises(TypeError, match=r"^param_groups\[1\]\['params'\]\[0\]: expected float64, got float32"):
        sam.step(closure([np.ones(3), np.ones(2, np.float32)]))
    assert not calls
    with pytest.raises(TypeError, match=r"^param_groups\[1\]\['params'\]\[0\]: expected float64, got float32"):
        sam.first_step([np.ones(3), np.ones(2, np.float32)])
    assert (p == 1).all() and (q == 1).all() and not sam._perturbed


def test_a_param_made_read_only_is_refused_before_the_closure():
    p, r = np.ones(3), np.ones(4)
    sam = optim.SAM(optim.Adam([p, r], lr=0.1), rho=0.1)
    r.flags.writeable = False
    calls, closure = _calls()
    with pytest.raises(ValueError, match=r"^param_groups\[0\]\['params'\]\[1\]: array is read-only"):
        sam.step(closure([np.ones(3), np.ones(4)]))
    assert not calls and (p == 1).all()


def test_params_of_two_groups_sharing_memory_are_refused_before_the_closure():
    w = np.ones(6)
    sam = optim.SAM(optim.SGD([{"params": [w[:4]]}, {"params": [w[2:]]}], lr=0.1), rho=0.1)
    calls, closure = _calls()
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['params'\]\[0\] shares memory with param_groups\[0\]"):
        sam.step(closure([np.ones(4), np.ones(4)]))
    assert not calls and (w == 1).all()


def test_good_params_still_step_as_the_reference():
    # (the check passes params it should: the two-step update against a float64 NumPy reference)
    w0, t = np.array([0.5, -1.0, 2.0]), np.array([1.0, 0.0, -1.0])
    p = w0.copy()
    sam = optim.SAM(optim.SGD([p], lr=0.1), rho=0.2)
    sam.step(lambda: (float(((p - t) ** 2).sum()), 2 * (p - t)))
    g = 2 * (w0 - t)
    e = 0.2 * g / (np.linalg.norm(g) + 1e-12)
    np.testing.assert_allclose(p, w0 - 0.1 * 2 * (w0 + e - t), rtol=1e-15, atol=1e-16)


@pytest.mark.parametrize(
    "attr, value, error, match",
    [
        ("rho", -1.0, ValueError, r"^rho: must be in \[0.0, inf\)"),
        ("eps", float("nan"), ValueError, r"^eps: must be finite"),
        ("adaptive", "yes", TypeError, r"^adaptive: expected a bool"),
    ],
)
def test_a_bad_hyper_parameter_set_between_steps_is_refused_before_the_closure(attr, value, error, match):
    p = np.ones(3)
    sam = optim.SAM(optim.SGD([p], lr=0.1), rho=0.1)
    setattr(sam, attr, value)
    calls, closure = _calls()
    with pytest.raises(error, match=match):
        sam.step(closure(np.ones(3)))
    assert not calls and (p == 1).all()


def test_a_step_begun_after_first_step_is_refused_before_the_closure():
    p = np.ones(3)
    sam = optim.SAM(optim.SGD([p], lr=0.1), rho=0.1)
    sam.first_step(np.ones(3))
    moved = p.copy()
    calls, closure = _calls()
    with pytest.raises(RuntimeError, match="already perturbed"):
        sam.step(closure(np.ones(3)))
    assert not calls and (p == moved).all() and sam._perturbed
    sam.second_step(np.ones(3))  # (the pending step still completes)
    np.testing.assert_array_equal(p, np.full(3, 0.9))
