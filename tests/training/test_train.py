"""Training runs end to end on a small slice and exports a model the serving code loads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from facegender.classify import GenderClassifier
from facegender.training.train import TrainConfig, fit_temperature, train


@pytest.mark.slow
def test_one_epoch_on_64_images_exports_a_loadable_model(shared_data: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        data=shared_data / "utkface",
        out=tmp_path / "model",
        epochs=1,
        limit=64,
        cache_dir=tmp_path / "cache",
        pretrained=False,
        batch_size=16,
    )
    result = train(config)
    assert result.model_path.is_file()
    assert len(result.history) == 1
    summary = json.loads((tmp_path / "model" / "training.json").read_text())
    assert summary["counts"]["train"] + summary["counts"]["test"] > 0
    classifier = GenderClassifier(model_path=result.model_path)
    assert classifier.input_size == config.image_size
    size = config.image_size
    chips = np.random.default_rng(0).integers(0, 255, (3, size, size, 3), dtype=np.uint8)
    probabilities = classifier.predict(chips)
    assert probabilities.shape == (3, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_fit_temperature_recovers_overconfidence() -> None:
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 2, 4000)
    margin = rng.normal(1.0, 1.0, 4000)  # true log-odds
    true_logits = np.stack([-margin / 2, margin / 2], axis=1)
    true_logits[targets == 0] *= -1
    # Draw labels consistent with the calibrated probabilities, then inflate the logits 3x.
    p_male = 1 / (1 + np.exp(-(true_logits[:, 1] - true_logits[:, 0])))
    labels = (rng.random(4000) < p_male).astype(np.int64)
    temperature = fit_temperature((true_logits * 3).astype(np.float32), labels)
    assert 2.4 < temperature < 3.6
