"""Logistic regression in NumPy: the descriptor probe and the second opinion's stack."""

from __future__ import annotations

import numpy as np

from facegender.training.logistic import fit_logistic, logistic_log_odds


def test_the_probe_recovers_a_logistic_model() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(20_000, 4))  # off-centre and wide: the standardisation must fold back
    true = np.array([0.8, -0.5, 0.0, 0.3, -1.0])
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-(x @ true[:-1] + true[-1])))).astype(np.float64)
    np.testing.assert_allclose(fit_logistic(x, y), true, atol=0.08)


def test_log_odds_apply_the_weights_to_features_as_given() -> None:
    x = np.array([[1.0, 2.0], [0.0, -1.0]])
    np.testing.assert_allclose(logistic_log_odds(np.array([0.5, -1.0, 2.0]), x), [0.5, 3.0])
