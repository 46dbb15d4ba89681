"""Logistic regression by Newton's method, in NumPy: probes and stacks of a few inputs need nothing more."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["fit_logistic", "logistic_log_odds"]

Floats = NDArray[np.float64]


def fit_logistic(x: Floats, y: Floats, *, l2: float = 1.0, steps: int = 25) -> Floats:
    """Weights (one per column of ``x``, then the bias) of an L2-penalised logistic regression of ``y`` (0 or 1)
    on ``x``. The penalty acts on standardised features and spares the bias; the weights returned apply to
    ``x`` as it is (:func:`logistic_log_odds`)."""
    mean, spread = x.mean(axis=0), x.std(axis=0) + 1e-12
    design = np.hstack([(x - mean) / spread, np.ones((len(x), 1))])
    penalty = np.diag(np.r_[np.full(x.shape[1], l2), 0.0])
    weights = np.zeros(design.shape[1])
    for _ in range(steps):
        male = 1 / (1 + np.exp(-design @ weights))
        gradient = design.T @ (male - y) + penalty @ weights
        hessian = (design * (male * (1 - male))[:, None]).T @ design + penalty
        weights -= np.linalg.solve(hessian, gradient)
    scale = weights[:-1] / spread
    fitted: Floats = np.r_[scale, weights[-1] - mean @ scale]
    return fitted


def logistic_log_odds(weights: Floats, x: Floats) -> Floats:
    return np.asarray(x @ weights[:-1] + weights[-1])
