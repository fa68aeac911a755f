"""optkern.hessian: curvature without forming the Hessian.

Operators (``from_hvp``, ``from_grad``, ``from_mlp``; ``as_operator`` wraps a dense
or SciPy sparse matrix or a SciPy ``LinearOperator``; ``with_progress`` reports each product) are SciPy
``LinearOperator``-compatible (``from_mlp``'s ``matmat`` pushes a block of
vectors through one forward pass; ``block="layerI"`` restricts it to one
layer); estimators take any operator on NumPy or CuPy vectors: ``trace``
(Hutchinson, Hutch++), ``lanczos``, ``top_eigenvalues``,
``power_iteration``, ``spectral_density`` (stochastic Lanczos quadrature) and
``gradient_concentration``.

What a user's product function returns (``from_hvp``'s ``fn``, ``from_grad``'s
``grad_fn``, a wrapped ``LinearOperator``) is checked where it enters the
operator (an array of shape ``(n,)``, float32 or float64, finite): every
estimator raises the same TypeError / ValueError naming it. NaN or Inf products
of the library's own operators (``from_mlp`` at NaN params, a dense matrix)
raise ValueError naming ``op`` in every estimator (``A`` in ``cg``). An operator that is not symmetric
(a user's ``hvp`` with a bug: ``J v`` for ``J^T J v``) is noticed by the Krylov estimators (``lanczos``,
``top_eigenvalues``, ``spectral_density``) from the products they already have (``_products.CouplingCheck``):
ValueError naming ``op`` past 0.25 of ``||A||`` at two steps (no float32 or finite-difference rounding
reaches it), a RuntimeWarning naming ``op`` past the declared dtype's rounding (float64 ``eps^(1/3)``: float32
products of a float64 operator are warned; float32 1e-3); the library's own operators (``from_mlp``,
matrices) are not checked; ``power_iteration``, ``cg`` and ``trace`` do not check.
"""

from .cg import CGResult, cg
from .density import SpectralDensity, gradient_concentration, spectral_density
from .lanczos import EigenResult, lanczos, top_eigenvalues
from .mlp_operator import from_mlp
from .operators import CurvatureOperator, as_operator, from_grad, from_hvp, with_progress
from .power import PowerResult, power_iteration
from .trace import TraceResult, trace

__all__ = [
    "CGResult",
    "cg",
    "CurvatureOperator",
    "EigenResult",
    "PowerResult",
    "SpectralDensity",
    "TraceResult",
    "as_operator",
    "from_grad",
    "from_hvp",
    "from_mlp",
    "gradient_concentration",
    "lanczos",
    "power_iteration",
    "spectral_density",
    "top_eigenvalues",
    "trace",
    "with_progress",
]
