"""Regressions of the bad-input sweep over the modules the fuzz harness did not reach (amp, lowp,
hessian's density / cg / lanczos / operators, nn losses and activations, norm modules, penalty,
checkpoint paths, distributed on one rank): each call below once crashed with an error naming
nothing (AttributeError, NumPy's "truth value of an array is ambiguous", os's path errors), read
a wrong-typed flag ("no") as True, or silently computed from a dropped or overflowed value. Each
must raise TypeError / ValueError naming the argument, having written nothing."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import optkern
from optkern import hessian, lowp, optim
from optkern.amp import GradScaler
from optkern.nn import activation, softmax_cross_entropy
from optkern.nn.losses import mse_forward
from optkern.norm import BatchNorm, GroupNorm, LayerNorm, RMSNorm

penalty = importlib.import_module("optkern.regularize.penalty")  # (the package shadows the module)

NOT_A_FLAG = ["no", None, 1, np.array([1, 2])]


def _spd(n=6, seed=0):
    a = np.random.default_rng(seed).standard_normal((n, n))
    return a @ a.T + np.eye(n)


# ---- flags: a string, None or an int must not read as a choice --------------------------------


@pytest.mark.parametrize("value", NOT_A_FLAG, ids=repr)
def test_flags_refuse_non_bools(value):
    x = np.ones(4, np.float32)
    with pytest.raises(TypeError, match=r"^enabled: expected a bool"):
        GradScaler(enabled=value)
    with pytest.raises(TypeError, match=r"^raw: expected a bool"):
        lowp.to_half(x, raw=value)
    with pytest.raises(TypeError, match=r"^signed: expected a bool"):
        lowp.decode_map(value)
    with pytest.raises(TypeError, match=r"^return_value: expected a bool"):
        penalty.add_penalty_grad_([np.ones(3)], [np.zeros(3)], l2=1.0, return_value=value)
    A, b = _spd(), np.ones(6)
    with pytest.raises(TypeError, match=r"^stop_on_negative_curvature: expected a bool"):
        hessian.cg(A, b, stop_on_negative_curvature=value)
    with pytest.raises(TypeError, match=r"^return_vectors: expected a bool"):
        hessian.lanczos(A, 3, return_vectors=value)
    with pytest.raises(TypeError, match=r"^return_ritz: expected a bool"):
        hessian.lanczos(A, 3, return_ritz=value)
    with pytest.raises(TypeError, match=r"^return_eigenvectors: expected a bool"):
        hessian.top_eigenvalues(A, 1, return_eigenvectors=value)


@pytest.mark.parametrize("value", NOT_A_FLAG, ids=repr)
@pytest.mark.parametrize(
    "make, name",
    [
        (lambda v: BatchNorm(3, affine=v), "affine"),
        (lambda v: BatchNorm(3, track_running_stats=v), "track_running_stats"),
        (lambda v: LayerNorm(3, elementwise_affine=v), "elementwise_affine"),
        (lambda v: LayerNorm(3, bias=v), "bias"),
        (lambda v: GroupNorm(1, 3, affine=v), "affine"),
        (lambda v: RMSNorm(3, elementwise_affine=v), "elementwise_affine"),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_norm_module_flags_refuse_non_bools(make, name, value):
    with pytest.raises(TypeError, match=rf"^{name}: expected a bool"):
        make(value)


def test_add_penalty_grad_without_return_value_writes_nothing_on_a_bad_flag():
    g = [np.zeros(3)]
    with pytest.raises(TypeError, match="^return_value"):
        penalty.add_penalty_grad_([np.ones(3)], g, l2=1.0, return_value="no")
    np.testing.assert_array_equal(g[0], 0.0)


# ---- options given as arrays: NumPy's "truth value is ambiguous" named nothing ----------------


def test_string_options_given_as_arrays_name_the_argument():
    z = np.linspace(-1, 1, 6).reshape(2, 3)
    two = np.array(["tanh", "relu"])
    with pytest.raises(ValueError, match="^activation:"):
        activation(two, z)
    with pytest.raises(ValueError, match="^reduction:"):
        softmax_cross_entropy(z, np.array([0, 1]), reduction=two)
    A = _spd()
    with pytest.raises(ValueError, match="^which:"):
        hessian.top_eigenvalues(A, 1, which=two)
    with pytest.raises(ValueError, match="^reorthogonalize:"):
        hessian.lanczos(A, 3, reorthogonalize=two)
    with pytest.raises(ValueError, match="^basis:"):
        hessian.lanczos(A, 3, basis=two)


def test_distributed_options_given_as_arrays_name_the_argument():
    pytest.importorskip("mpi4py")
    from optkern.distributed import Communicator, DistributedOptimizer, ShardedOptimizer

    two = np.array(["sum", "max"])
    with pytest.raises(ValueError, match="^backend:"):
        Communicator(backend=two)
    comm = Communicator(backend="mpi")
    x = np.ones(3)
    with pytest.raises(ValueError, match="^op:"):
        comm.allreduce(x, two)
    p = [np.ones(3, np.float32)]
    with pytest.raises(ValueError, match="^op:"):
        DistributedOptimizer(optim.SGD(p, lr=0.1), comm, op=two)
    with pytest.raises(ValueError, match="^op:"):
        ShardedOptimizer(optim.SGD, p, comm, op=two, lr=0.1)


# ---- hessian ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [[[1.0, 0.0]] * 6, "x", 3.0], ids=["list", "str", "float"])
def test_gradient_concentration_eigenvectors_not_an_array(bad):
    with pytest.raises(TypeError, match="^eigenvectors:"):  # was AttributeError: no attribute 'ndim'
        hessian.gradient_concentration(_spd(), np.ones(6), 1, eigenvectors=bad)


def test_gradient_concentration_eigenvectors_values():
    A, g = _spd(), np.ones(6)
    with pytest.raises(TypeError, match="^eigenvectors:"):  # the imaginary part was dropped
        hessian.gradient_concentration(A, g, 1, eigenvectors=np.ones((6, 1), complex))
    with pytest.raises(TypeError, match="^eigenvectors:"):
        hessian.gradient_concentration(A, g, 1, eigenvectors=np.ones((6, 1), object))
    with pytest.raises(ValueError, match="^eigenvectors:"):  # the fraction was NaN
        hessian.gradient_concentration(A, g, 1, eigenvectors=np.full((6, 1), np.nan))
    vecs = hessian.top_eigenvalues(A, 2, return_eigenvectors=True).eigenvectors
    assert hessian.gradient_concentration(A, g, 2, eigenvectors=vecs) == pytest.approx(
        hessian.gradient_concentration(A, g, 2), rel=1e-6
    )


@pytest.mark.parametrize("pad", ["x", None, float("nan"), -1.0, True], ids=repr)
def test_spectral_density_pad(pad):
    # a string / None raised Python's TypeError, NaN / negative gave a NaN or inverted grid
    with pytest.raises((TypeError, ValueError), match="^pad:"):
        hessian.spectral_density(_spd(), steps=3, grid=20, pad=pad)


def test_spectral_density_grid_margin_and_sigma_overflow():
    with pytest.raises(ValueError, match="^pad, sigma:"):  # the grid was NaN
        hessian.spectral_density(_spd(), steps=3, grid=20, pad=1e308)
    with pytest.raises(ValueError, match="^sigma, pad:"):
        hessian.spectral_density(_spd(), steps=3, grid=20, sigma=1e308)
    with pytest.raises(ValueError, match="^sigma:"):  # 1 / (sigma sqrt(2 pi)) was inf: a NaN density
        hessian.spectral_density(_spd(), steps=3, grid=20, sigma=1e-320)


@pytest.mark.parametrize(
    "grid",
    [np.array(["a"]), [1.0, None], np.ones(3, complex), np.ones(3, object)],
    ids=["str", "none", "complex", "object"],
)
def test_spectral_density_grid_array(grid):
    with pytest.raises(TypeError, match="^grid:"):  # refused unnamed, or silently NaN / real part
        hessian.spectral_density(_spd(), steps=3, grid=grid)


def test_spectral_density_num_probes_beyond_an_array():
    with pytest.raises(ValueError, match="^num_probes:"):  # NumPy's "maximum allowed dimension"
        hessian.spectral_density(_spd(), steps=3, num_probes=2**70)


def test_density_cdf_and_basis_dtype_name_the_argument():
    d = hessian.spectral_density(_spd(), steps=3, grid=20)
    with pytest.raises(TypeError, match="^t:"):
        d.cdf("x")
    with pytest.raises(TypeError, match="^t:"):
        d.cdf(None)  # (was 0.0: None read as NaN)
    for fn in (
        lambda: hessian.lanczos(_spd(), 3, basis_dtype="x"),
        lambda: hessian.spectral_density(_spd(), steps=3, basis_dtype="x"),
    ):
        with pytest.raises(TypeError, match="^basis_dtype:"):  # NumPy's "data type 'x' not understood"
            fn()


def test_operator_products_name_the_operand():
    op = hessian.as_operator(_spd())
    with pytest.raises(TypeError, match="^x:"):  # was an operator of dtype <U32
        op.dot("x")
    with pytest.raises(ValueError, match="^x:"):
        op @ None
    with pytest.raises(ValueError, match="^x:"):
        op @ 2.0
    assert np.allclose((op.dot(2.0) @ np.ones(6)), 2 * (_spd() @ np.ones(6)))


def test_trace_method_array_and_misaligned_vectors():
    with pytest.raises(ValueError, match="^method:"):  # NumPy's "truth value is ambiguous"
        hessian.trace(_spd(), method=np.array(["hutchinson", "hutch++"]))
    buf = np.zeros(6 * 8 + 1, np.uint8)
    b = buf[1:].view(np.float64)  # misaligned: refused naming cg's internal "p" before
    b[...] = 1.0
    x = hessian.cg(_spd(), b).x
    np.testing.assert_allclose(_spd() @ x, np.ones(6), rtol=1e-4)


def test_gradient_concentration_grad_values():
    A = _spd()
    with pytest.raises(ValueError, match="^grad:"):  # a NaN fraction before
        hessian.gradient_concentration(A, np.full(6, np.nan), 1)
    g = np.arange(1.0, 7.0)
    # ||g||^2 of 1e200 g overflowed: 0 / inf = 0.0 before; the fraction is scale-free
    assert hessian.gradient_concentration(A, 1e200 * g, 2) == pytest.approx(hessian.gradient_concentration(A, g, 2))


# ---- nn ---------------------------------------------------------------------------------------


def test_mse_forward_checks_its_arrays():
    out = np.ones((2, 3))
    for bad in ([[1.0] * 3] * 2, None, "x"):  # was AttributeError: no attribute 'shape'
        with pytest.raises(TypeError, match="^y:"):
            mse_forward(out, bad)
    with pytest.raises(TypeError, match="^out:"):
        mse_forward(out.tolist(), out)
    with pytest.raises(TypeError, match="^y:"):  # an object result before
        mse_forward(out, out.astype(object))


# ---- amp --------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", [None, "x", [None], ("x",)], ids=repr)
def test_grad_scaler_scale_names_loss(loss):
    with pytest.raises(TypeError, match=r"^loss(\[0\])?:"):
        GradScaler().scale(loss)


def test_grad_scaler_scale_still_takes_numbers_and_arrays():
    s = GradScaler(init_scale=4.0)
    assert s.scale(2.0) == 8.0
    np.testing.assert_array_equal(s.scale(np.ones(2)), [4.0, 4.0])
    assert GradScaler(enabled=False).scale("anything") == "anything"  # disabled: the loss as it is


# ---- checkpoint paths -------------------------------------------------------------------------


@pytest.mark.parametrize("path", [None, 3, ["a"]], ids=repr)
def test_checkpoint_path_type(path):
    with pytest.raises(TypeError, match="^path:"):
        optkern.save(path, x=np.ones(2))
    with pytest.raises(TypeError, match="^path:"):
        optkern.load(path)


def test_checkpoint_path_values(tmp_path):
    with pytest.raises(ValueError, match="^path:"):  # os's FileNotFoundError after encoding
        optkern.save("", x=np.ones(2))
    with pytest.raises(ValueError, match="^path:"):  # IsADirectoryError at the rename
        optkern.save(tmp_path, x=np.ones(2))
    with pytest.raises(ValueError, match="^path:"):
        optkern.load(tmp_path)
    assert not list(tmp_path.iterdir())  # no temporary file left behind
    f = bytes(tmp_path / "c.npz")  # bytes paths: "Can't mix strings and bytes" before
    optkern.save(f, x=np.arange(3.0))
    np.testing.assert_array_equal(optkern.load(f)["x"], np.arange(3.0))


# ---- distributed: a weight that overflows the gradients' dtype --------------------------------


def test_grad_weight_beyond_the_gradients_dtype():
    pytest.importorskip("mpi4py")
    from optkern.distributed import Communicator, DistributedOptimizer, ShardedOptimizer

    comm = Communicator(backend="mpi")
    p = [np.ones(3, np.float32)]
    g = [np.zeros(3, np.float32)]  # zero rows: 0 * float32(1e300) = 0 * inf = NaN params before
    d = DistributedOptimizer(optim.SGD(p, lr=0.1), comm, grad_weight=1e300)
    with pytest.raises(ValueError, match="^grad_weight:"):
        d.step(g)
    np.testing.assert_array_equal(p[0], 1.0)
    np.testing.assert_array_equal(g[0], 0.0)
    s = ShardedOptimizer(optim.SGD, p, comm, lr=0.1, grad_weight=1e300)
    with pytest.raises(ValueError, match="^grad_weight:"):
        s.step(g)
    np.testing.assert_array_equal(p[0], 1.0)
    d.grad_weight = 0.5  # representable: taken
    d.step([np.full(3, 2.0, np.float32)])
    np.testing.assert_allclose(p[0], 0.9)
