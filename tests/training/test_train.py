"""Training runs end to end on a small slice and exports a model the serving code loads."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import get_args

import numpy as np
import pytest

pytest.importorskip("torch")

import onnx
import torch

from facegender.classify import CLASSIFIER_OUTPUT_NAME, GenderClassifier
from facegender.cli import _parser
from facegender.data import LabeledImage, load_dataset
from facegender.errors import DatasetError, ModelError
from facegender.training.network import GenderNet
from facegender.training.train import (
    Precision,
    TrainConfig,
    _blur_some,
    _erase_some,
    _noise_some,
    _select,
    _soft_cross_entropy,
    _turn_some,
    fit_temperature,
    train,
)


def _one_epoch_on_64_images(shared_data: Path, tmp_path: Path) -> TrainConfig:
    """A run of seconds: one epoch on 64 UTKFace images, from random weights."""
    return TrainConfig(
        data=shared_data / "utkface",
        out=tmp_path / "model",
        epochs=1,
        limit=64,
        cache_dir=tmp_path / "cache",
        pretrained=False,
        batch_size=16,
    )


@pytest.mark.slow
@pytest.mark.parametrize("precision", get_args(Precision))
def test_one_epoch_on_64_images_exports_a_loadable_model(
    shared_data: Path, tmp_path: Path, precision: Precision
) -> None:
    config = replace(_one_epoch_on_64_images(shared_data, tmp_path), precision=precision, frozen_layers=3)
    result = train(config)
    assert result.model_path.is_file()
    # The frozen blocks keep their starting weights (train() seeds torch before it builds the network).
    torch.manual_seed(config.seed)
    start = GenderNet().state_dict()
    trained = torch.load(tmp_path / "model" / "gender.pt")
    for block in range(config.frozen_layers + 1):
        names = [name for name in start if name.startswith(f"features.{block}.") and name.endswith("weight")]
        kept = all(torch.equal(start[name], trained[name]) for name in names)
        assert kept == (block < config.frozen_layers), block
    assert len(result.history) == 1
    summary = json.loads((tmp_path / "model" / "training.json").read_text())
    assert summary["counts"]["train"] + summary["counts"]["test"] > 0
    expected_device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    assert (summary["device"], summary["torch"]) == (expected_device, torch.__version__)
    classifier = GenderClassifier(model_path=result.model_path)
    assert classifier.input_size == config.image_size
    size = config.image_size
    chips = np.random.default_rng(0).integers(0, 255, (3, size, size, 3), dtype=np.uint8)
    probabilities = classifier.predict(chips)
    assert probabilities.shape == (3, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def _start_and_trained(
    config: TrainConfig, *, age_head: bool = False, descriptor_size: int = 0
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The weights a run with those heads started from (train() seeds torch before it builds the network) and
    the weights it saved."""
    torch.manual_seed(config.seed)
    start = GenderNet(age_head=age_head, descriptor_size=descriptor_size).state_dict()
    return start, torch.load(config.out / "gender.pt")


def _exports_gender_alone(model_path: Path, head: str) -> None:
    exported = onnx.load(str(model_path))
    assert [output.name for output in exported.graph.output] == [CLASSIFIER_OUTPUT_NAME]
    assert not any(initializer.name.startswith(f"{head}.") for initializer in exported.graph.initializer)
    assert GenderClassifier(model_path=model_path).predict(np.zeros((1, 128, 128, 3), np.uint8)).shape == (1, 2)


@pytest.mark.slow
def test_age_as_a_second_task_trains_its_own_head_and_exports_gender_alone(shared_data: Path, tmp_path: Path) -> None:
    config = replace(_one_epoch_on_64_images(shared_data, tmp_path), age_weight=0.5)
    result = train(config)
    start, trained = _start_and_trained(config, age_head=True)
    assert trained["age.weight"].shape == (1, 1280)
    assert torch.equal(start["features.0.0.weight"], trained["features.0.0.weight"])  # same start (frozen stem)
    assert not torch.equal(start["age.weight"], trained["age.weight"])  # the age loss reached its head
    _exports_gender_alone(result.model_path, "age")


@pytest.mark.slow
def test_age_weight_leaves_the_age_head_alone_where_the_data_gives_no_ages(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "utkface"
    with (source / "labels.csv").open() as handle:
        rows = list(csv.DictReader(handle))[::400]
    labels = tmp_path / "labels.csv"  # file and gender only, as a CSV may be
    labels.write_text("file,gender\n" + "".join(f"{source / row['file']},{row['gender']}\n" for row in rows))
    config = replace(_one_epoch_on_64_images(shared_data, tmp_path), data=labels, age_weight=0.5)
    result = train(config)
    assert math.isfinite(result.history[0].train_loss)
    start, trained = _start_and_trained(config, age_head=True)
    assert torch.equal(start["age.weight"], trained["age.weight"])
    assert not torch.equal(start["classifier.1.weight"], trained["classifier.1.weight"])


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


def test_blur_softens_only_the_chosen_chips() -> None:
    generator = torch.Generator().manual_seed(0)
    batch = torch.rand(64, 3, 32, 32, generator=generator)
    blurred = _blur_some(batch, generator, share=0.5)
    changed = (blurred - batch).abs().flatten(1).amax(dim=1) > 0
    assert 16 <= int(changed.sum()) <= 48
    # Blur lowers the pixel-to-pixel variation of noise; the untouched chips stay as they were.
    assert blurred[changed].diff(dim=3).abs().mean() < 0.7 * batch[changed].diff(dim=3).abs().mean()
    assert torch.equal(blurred[~changed], batch[~changed])


def test_noise_changes_only_the_chosen_chips_and_none_draws_nothing() -> None:
    generator = torch.Generator().manual_seed(2)
    batch = torch.full((200, 3, 16, 16), 0.5)
    noisy = _noise_some(batch, generator, share=0.3, sigma=16)
    changed = (noisy - batch).abs().flatten(1).amax(dim=1) > 0
    assert 40 <= int(changed.sum()) <= 80
    assert torch.equal(noisy[~changed], batch[~changed])
    spread = (noisy[changed] - batch[changed]).flatten(1).std(dim=1)
    assert float(spread.min()) > 1.5 / 255 and float(spread.max()) < 17 / 255  # sigma of 2 to 16 grey levels
    state = generator.get_state()
    assert _noise_some(batch, generator, share=0.0, sigma=16) is batch
    assert torch.equal(generator.get_state(), state)


def test_erasing_paints_one_flat_patch_and_leaves_the_input_alone() -> None:
    generator = torch.Generator().manual_seed(1)
    batch = torch.rand(32, 3, 40, 40, generator=generator)
    before = batch.clone()
    erased = _erase_some(batch, generator, share=1.0)
    assert torch.equal(batch, before)
    for chip, original in zip(erased, batch, strict=True):
        patch = (chip != original).any(dim=0)
        rows, cols = torch.nonzero(patch, as_tuple=True)
        area = int(patch.sum())
        assert 0.02 * 40 * 40 * 0.5 <= area <= 0.15 * 40 * 40 * 1.1
        box = chip[:, int(rows.min()) : int(rows.max()) + 1, int(cols.min()) : int(cols.max()) + 1]
        assert box.numel() == 3 * area and float(box.max() - box.min()) == 0.0


def test_the_train_command_defaults_to_the_training_config() -> None:
    args = _parser().parse_args(["train", "--data", "data", "--out", "out"])
    defaults = TrainConfig(data=Path("data"), out=Path("out"))
    # The command caches chips where the library, called directly, does not.
    options = [field.name for field in fields(TrainConfig) if hasattr(args, field.name) and field.name != "cache_dir"]
    assert len(options) > 15
    for option in options:
        assert getattr(args, option) == getattr(defaults, option), option


def test_the_train_command_offers_every_precision(capsys: pytest.CaptureFixture[str]) -> None:
    required = ["train", "--data", "data", "--out", "out"]
    for precision in get_args(Precision):
        assert _parser().parse_args([*required, "--precision", precision]).precision == precision
    with pytest.raises(SystemExit):
        _parser().parse_args([*required, "--precision", "float16"])
    assert "invalid choice" in capsys.readouterr().err


def test_the_soft_cross_entropy_is_the_cross_entropy_with_probabilities() -> None:
    logits = torch.tensor([[0.3, -1.2], [2.0, 0.5], [-0.7, 0.9]])
    labels = torch.tensor([1, 0, 1])
    hard = torch.nn.functional.cross_entropy(logits, labels)
    assert torch.allclose(_soft_cross_entropy(logits, labels.float()), hard, atol=1e-6)
    halfway = (hard + torch.nn.functional.cross_entropy(logits, 1 - labels)) / 2
    assert torch.allclose(_soft_cross_entropy(logits, torch.full((3,), 0.5)), halfway, atol=1e-6)


def _train_items(config: TrainConfig) -> list[LabeledImage]:
    """The training images that ``config`` uses."""
    return [item for item in _select(load_dataset(config.data), config.limit) if item.split == "train"]


def _teacher_file(config: TrainConfig, path: Path, *, drop: int = 0) -> Path:
    """A teacher file that is sure of every label of the training images ``config`` uses, less the first ``drop``."""
    train_items = _train_items(config)[drop:]
    np.savez(
        path,
        names=np.array([item.path.name for item in train_items]),
        male=np.array([item.target for item in train_items], dtype=np.float32),
    )
    return path


@pytest.mark.slow
def test_a_teacher_that_repeats_the_labels_trains_as_the_labels_alone(shared_data: Path, tmp_path: Path) -> None:
    labels_alone = _one_epoch_on_64_images(shared_data, tmp_path / "alone")
    train(labels_alone)
    teacher = _teacher_file(labels_alone, tmp_path / "teacher.npz")
    distilled = replace(labels_alone, out=tmp_path / "distilled", teacher=teacher, teacher_weight=0.5)
    train(distilled)
    expected, trained = torch.load(labels_alone.out / "gender.pt"), torch.load(distilled.out / "gender.pt")
    for name, weights in expected.items():
        assert torch.allclose(trained[name].float(), weights.float(), atol=1e-4), name
    summary = json.loads((distilled.out / "training.json").read_text())
    assert summary["config"]["teacher"] == str(teacher) and summary["config"]["teacher_weight"] == 0.5


@pytest.mark.slow
def test_self_distillation_leaves_the_first_epoch_to_the_labels_then_teaches_the_model_its_answers(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    labels_alone = replace(_one_epoch_on_64_images(shared_data, tmp_path / "alone"), epochs=2)
    self_taught = replace(labels_alone, out=tmp_path / "self-taught", self_distillation=0.8)
    plain = train(labels_alone).history
    targets: list[torch.Tensor] = []

    def recording(logits: torch.Tensor, male: torch.Tensor) -> torch.Tensor:
        targets.append(male)  # a new tensor each batch, never changed after
        return _soft_cross_entropy(logits, male)

    monkeypatch.setattr("facegender.training.train._soft_cross_entropy", recording)
    distilled = train(self_taught).history
    assert distilled[0].train_loss == pytest.approx(plain[0].train_loss, abs=1e-5)
    first, second = torch.cat(targets[: len(targets) // 2]), torch.cat(targets[len(targets) // 2 :])
    assert len(first) == len(second) and set(first.tolist()) <= {0.0, 1.0}  # the first epoch: the labels alone
    # The second: 0.2 of the label and 0.8 of the model's answer in the first, which is never quite sure.
    assert bool(((second > 0) & (second < 1)).all())


def _descriptor_file(config: TrainConfig, path: Path, *, drop: int = 0) -> Path:
    """Random 16-number descriptors for the training images ``config`` uses, less the first ``drop``."""
    train_items = _train_items(config)[drop:]
    vectors = np.random.default_rng(0).normal(size=(len(train_items), 16)).astype(np.float32)
    np.savez(path, names=np.array([item.path.name for item in train_items]), descriptors=vectors)
    return path


@pytest.mark.slow
def test_descriptors_as_a_second_task_train_their_own_head_and_export_gender_alone(
    shared_data: Path, tmp_path: Path
) -> None:
    config = _one_epoch_on_64_images(shared_data, tmp_path)
    config = replace(config, descriptors=_descriptor_file(config, tmp_path / "descriptors.npz"), descriptor_weight=0.5)
    result = train(config)
    assert math.isfinite(result.history[0].train_loss)
    start, trained = _start_and_trained(config, descriptor_size=16)
    assert trained["descriptor.weight"].shape == (16, 1280)
    assert not torch.equal(start["descriptor.weight"], trained["descriptor.weight"])  # its loss reached its head
    _exports_gender_alone(result.model_path, "descriptor")


@pytest.mark.parametrize(
    ("weight", "source", "write", "what"),
    [
        ("teacher_weight", "teacher", _teacher_file, "teacher"),
        ("descriptor_weight", "descriptors", _descriptor_file, "descriptor"),
    ],
)
def test_a_weight_needs_its_file_to_cover_every_training_image(
    shared_data: Path,
    tmp_path: Path,
    weight: str,
    source: str,
    write: Callable[..., Path],
    what: str,
) -> None:
    config = replace(_one_epoch_on_64_images(shared_data, tmp_path), **{weight: 0.5})
    with pytest.raises(DatasetError, match=f"needs a {what} file"):
        train(config)
    short = write(config, tmp_path / "short.npz", drop=3)
    with pytest.raises(DatasetError, match="lacks 3 training images"):
        train(replace(config, **{source: short}))


def test_turns_give_each_chosen_chip_a_quarter_half_or_three_quarter_turn_and_none_draws_nothing() -> None:
    generator = torch.Generator().manual_seed(3)
    batch = torch.rand(300, 3, 8, 8, generator=generator)
    turned = _turn_some(batch, generator, share=0.3)
    turns = []
    for chip, original in zip(turned, batch, strict=True):
        matches = [k for k in range(4) if torch.equal(chip, torch.rot90(original, k, dims=(1, 2)))]
        assert len(matches) == 1
        turns.append(matches[0])
    assert 60 <= sum(k > 0 for k in turns) <= 120
    assert {1, 2, 3} <= set(turns)
    state = generator.get_state()
    assert _turn_some(batch, generator, share=0.0) is batch
    assert torch.equal(generator.get_state(), state)


def test_trained_weights_load_with_their_head_and_second_task_heads_start_afresh(tmp_path: Path) -> None:
    torch.manual_seed(0)
    earlier = GenderNet(age_head=True)
    torch.save(earlier.state_dict(), tmp_path / "gender.pt")
    later = GenderNet(descriptor_size=16)
    fresh_descriptor = later.state_dict()["descriptor.weight"].clone()
    later.load_trained(tmp_path / "gender.pt")
    loaded = later.state_dict()
    for key, value in earlier.state_dict().items():
        if not key.startswith("age."):  # the earlier run's age head has no place here
            assert torch.equal(loaded[key], value), key
    assert torch.equal(loaded["descriptor.weight"], fresh_descriptor)

    torch.save(
        {k: v for k, v in earlier.state_dict().items() if not k.startswith("classifier.")}, tmp_path / "no-head.pt"
    )
    with pytest.raises(ValueError, match="do not fit"):
        GenderNet().load_trained(tmp_path / "no-head.pt")


def test_initial_weights_that_cannot_be_read_raise_a_model_error(shared_data: Path, tmp_path: Path) -> None:
    config = _one_epoch_on_64_images(shared_data, tmp_path)
    (tmp_path / "not-weights.pt").write_text("not a checkpoint")
    for path in (tmp_path / "missing.pt", tmp_path / "not-weights.pt"):
        with pytest.raises(ModelError, match="cannot start from"):
            train(replace(config, initial_weights=path))


@pytest.mark.slow
def test_a_run_from_initial_weights_starts_where_they_are_and_keeps_their_statistics(
    shared_data: Path, tmp_path: Path
) -> None:
    first = replace(_one_epoch_on_64_images(shared_data, tmp_path), turned_share=0.5)
    train(first)
    started = torch.load(first.out / "gender.pt", weights_only=True)
    # No step taken, and the batch normalisations keep their statistics: the run ends where it started.
    second = replace(first, out=tmp_path / "again", initial_weights=first.out / "gender.pt", learning_rate=0.0)
    train(second)
    again = torch.load(second.out / "gender.pt", weights_only=True)
    assert json.loads((second.out / "training.json").read_text())["pretrained_weights"] == str(first.out / "gender.pt")
    assert started.keys() == again.keys()
    for key, value in started.items():
        assert torch.equal(again[key], value), key
    # Without them, the same run moves the statistics.
    third = replace(first, out=tmp_path / "third", learning_rate=0.0)
    train(third)
    moved = torch.load(third.out / "gender.pt", weights_only=True)
    assert not torch.equal(moved["features.5.conv.1.1.running_mean"], started["features.5.conv.1.1.running_mean"])
