"""optkern.nn: a built-in MLP with exact gradients, Hessian-vector and Gauss-Newton products.

Elementwise parts (activations with f' and f'', softmax cross-entropy forward /
backward / R-forward) run as fused native kernels on NumPy (CPU) or CuPy (GPU).
"""

from .activations import ACTIVATIONS, activation
from .losses import softmax_cross_entropy, softmax_cross_entropy_grad
from .mlp import MLP

__all__ = ["ACTIVATIONS", "MLP", "activation", "softmax_cross_entropy", "softmax_cross_entropy_grad"]
