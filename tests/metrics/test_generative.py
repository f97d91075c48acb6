"""FID/KID in a domain feature space, and GAN-train accuracy."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_synth.metrics.generative import (
    DomainFeatures,
    GenerativeScores,
    classifier_accuracy,
    gan_train_accuracy,
)


def squares(count: int, seed: int = 0, shift: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class ``k`` of 4: a bright square in quadrant ``k`` on noise; ``shift`` brightens all."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 4
    images = torch.rand(count, 1, 16, 16, generator=generator) * 0.3
    for index, label in enumerate(labels.tolist()):
        row, col = divmod(label, 2)
        images[index, 0, 2 + 8 * row : 6 + 8 * row, 2 + 8 * col : 6 + 8 * col] += 0.6
    return (images + shift).clamp(0, 1), labels


class _Pooled(nn.Module):
    """A stand-in feature network: 4x4 average pooling, 16 features at 16x16."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(images, 4).flatten(1)


def _scores(real: torch.Tensor, other: torch.Tensor, subset: int = 50) -> dict[str, float]:
    metric = GenerativeScores(DomainFeatures(_Pooled(), 16, 1), kid_subset_size=subset)
    metric.update(real, real=True)
    metric.update(other, real=False)
    return {key: float(value) for key, value in metric.compute().items()}


def test_fid_and_kid_are_zero_for_the_same_images_and_grow_with_a_shift() -> None:
    real, _ = squares(200)
    same = _scores(real, real)
    assert same["fid"] == pytest.approx(0.0, abs=1e-4)
    small, large = _scores(real, squares(200, 1, 0.05)[0]), _scores(real, squares(200, 1, 0.2)[0])
    # KID's subsets of the two sets are drawn apart: near 0, not exactly 0
    assert abs(same["kid"]) < 0.01 * large["kid"]
    # another draw of the same distribution is close, a brighter one far
    assert small["fid"] < large["fid"]
    assert small["kid"] < large["kid"]
    # 16 features all shifted by ~0.2: the mean term alone is ~16 * 0.2^2
    assert large["fid"] > 0.5
    assert large["fid"] > 10 * _scores(real, squares(200, 1)[0])["fid"]


def test_kid_subset_shrinks_to_the_samples_and_is_repeatable() -> None:
    real, _ = squares(30)
    other, _ = squares(30, 1, 0.1)
    first = _scores(real, other, subset=1000)  # more than the 30 samples: no error
    assert first == _scores(real, other, subset=1000)
    state = torch.random.get_rng_state()
    _scores(real, other)
    assert torch.equal(state, torch.random.get_rng_state())  # the training's stream is untouched


class _Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten())
        self.head = nn.Linear(4 * 14 * 14, 4)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def test_domain_features_use_the_classifier_features_frozen_in_eval_mode() -> None:
    classifier = _Classifier()
    features = DomainFeatures(classifier, image_size=16, channels=1)
    assert features.num_features == 4 * 14 * 14
    parent = nn.Sequential(features).train()  # a parent in training mode...
    assert not classifier.training  # ...leaves batch norm in eval mode
    assert not any(p.requires_grad for p in classifier.parameters())
    images = torch.rand(3, 1, 16, 16)
    assert torch.equal(parent(images), classifier.features(images))
    # colour images at another size are brought to the classifier's format
    assert features(torch.rand(2, 3, 32, 32)).shape == (2, 4 * 14 * 14)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert features(images).dtype == torch.float32
    with pytest.raises(ValueError, match="num_features"):
        GenerativeScores(_Pooled())


def test_gan_train_accuracy_compares_generated_with_real_training_data() -> None:
    train, test = squares(160, 0), squares(200, 9)

    def make() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(256, 4))

    options = {"steps": 60, "batch_size": 32, "lr": 1e-2}
    faithful = gan_train_accuracy(make, train, train, test, **options)
    assert faithful.real_train_acc > 0.95
    # the same data, initial weights and batches: exactly the same accuracy
    assert faithful.gan_train_acc == faithful.real_train_acc and faithful.ratio == 1.0
    wrong_labels = (train[0], (train[1] + 1) % 4)
    bad = gan_train_accuracy(make, wrong_labels, train, test, **options)
    assert bad.gan_train_acc < 0.3 and bad.ratio < 0.3

    def sampler(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return squares(count, int(torch.randint(1000, (), generator=generator)))

    fresh = gan_train_accuracy(make, sampler, train, test, **options)
    assert fresh.gan_train_acc > 0.95


def test_classifier_accuracy_counts_correct_predictions() -> None:
    images = torch.zeros(5, 1, 2, 2)
    network = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        network[1].weight.zero_()
        network[1].bias.copy_(torch.tensor([0.0, 1.0, 0.0]))  # always class 1
    assert classifier_accuracy(network, images, torch.tensor([1, 1, 0, 1, 2])) == 0.6


def test_inception_features_need_torch_fidelity() -> None:
    from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE

    from lightning_synth.metrics.generative import InceptionFeatures

    if _TORCH_FIDELITY_AVAILABLE:
        pytest.skip("torch-fidelity is installed (and Inception weights would be downloaded)")
    with pytest.raises(ModuleNotFoundError, match="pip install torch-fidelity"):
        InceptionFeatures()
