"""A symmetric operator that counts its products: what the curvature API's argument checks are
tested with (refused before any product: ``products == 0``)."""

from __future__ import annotations

import numpy as np


class Counting:
    """``diag(1 .. n)`` with ``matvec`` / ``matmat`` and ``shape`` / ``dtype``, counting the products
    (a block of ``k`` vectors: ``k``)."""

    def __init__(self, n: int = 7):
        self.A = np.diag(np.arange(1.0, n + 1))
        self.shape = self.A.shape
        self.dtype = self.A.dtype
        self.products = 0

    def matvec(self, v):
        self.products += 1
        return self.A @ v

    def matmat(self, V):
        self.products += V.shape[1]
        return self.A @ V
