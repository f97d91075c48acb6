"""Label-free validators on synthetic predictions: they rank models as published."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lightning_synth.metrics.selection import (
    VALIDATORS,
    control_variate_risk,
    deep_embedded_validation,
    domain_importance_weights,
    information_maximization,
    selection_metric,
    soft_neighborhood_density,
)

NUM_CLASSES = 5


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _clustered(count: int, scale: float = 8.0, noise: float = 0.5) -> torch.Tensor:
    """Confident logits, classes balanced, each sample close to its class's one-hot."""
    labels = torch.arange(count) % NUM_CLASSES
    onehot = F.one_hot(labels, NUM_CLASSES).float()
    return scale * onehot + noise * torch.randn(count, NUM_CLASSES, generator=_generator())


def test_snd_prefers_dense_confident_clusters_to_scattered_predictions() -> None:
    clustered = _clustered(100)
    scattered = 3.0 * torch.randn(100, NUM_CLASSES, generator=_generator())
    # 20 near-identical neighbours per sample: entropy ~log(19) over the 19 others.
    assert soft_neighborhood_density(clustered) == pytest.approx(math.log(19), abs=0.05)
    assert soft_neighborhood_density(clustered) > soft_neighborhood_density(scattered) + 0.3
    # Invariant to the order of samples (DDP gathers them interleaved).
    shuffled = clustered[torch.randperm(100, generator=_generator())]
    assert soft_neighborhood_density(shuffled) == pytest.approx(
        soft_neighborhood_density(clustered)
    )


def test_im_is_maximal_for_confident_balanced_predictions() -> None:
    confident = information_maximization(_clustered(100, scale=20.0, noise=0.0))
    assert confident == pytest.approx(math.log(NUM_CLASSES), abs=1e-3)
    uniform = information_maximization(torch.zeros(100, NUM_CLASSES))
    collapsed = information_maximization(torch.tensor([[20.0, 0, 0, 0, 0]]).repeat(100, 1))
    unbalanced = _clustered(100, scale=20.0, noise=0.0)
    unbalanced[:80] = unbalanced[0]  # 84 % of samples in one class
    assert uniform == pytest.approx(0.0, abs=1e-9) and collapsed == pytest.approx(0.0, abs=1e-6)
    assert 0.0 < information_maximization(unbalanced) < confident - 0.5
    # SND alone cannot tell a collapsed model from a good one; IM can.
    assert soft_neighborhood_density(torch.tensor([[20.0, 0, 0, 0, 0]]).repeat(100, 1)) > 4.0


def _rendered_task(count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features, logits and labels of rendered samples; the classifier is wrong where
    the first feature is above 0.8 (a region the real domain may or may not favour)."""
    generator = _generator()
    features = torch.randn(count, 8, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (count,), generator=generator)
    predicted = torch.where(features[:, 0] > 0.8, (labels + 1) % NUM_CLASSES, labels)
    logits = 4.0 * F.one_hot(predicted, NUM_CLASSES).float()
    return features, logits, labels


def test_dev_is_the_plain_rendered_loss_when_the_domains_are_alike() -> None:
    features, logits, labels = _rendered_task(400)
    real = torch.randn(400, 8, generator=torch.Generator().manual_seed(1))
    plain = float(F.cross_entropy(logits, labels))
    assert deep_embedded_validation(features, logits, labels, real) == pytest.approx(
        plain, rel=0.05
    )
    weights = domain_importance_weights(features, real)
    assert weights.mean() == pytest.approx(1.0, abs=0.1)


def test_dev_rises_when_the_real_domain_sits_where_the_model_errs() -> None:
    features, logits, labels = _rendered_task(400)
    real = torch.randn(400, 8, generator=torch.Generator().manual_seed(1))
    real[:, 0] += 1.5  # real samples mostly where the classifier is wrong
    plain = float(F.cross_entropy(logits, labels))
    risk = deep_embedded_validation(features, logits, labels, real)
    wrong = features[:, 0] > 0.8
    loss_wrong = float(F.cross_entropy(logits[wrong], labels[wrong]))
    assert plain * 1.5 < risk < loss_wrong * 1.2
    # The samples' order does not matter (rows are sorted by value before the folds).
    order = torch.randperm(400, generator=_generator())
    assert deep_embedded_validation(
        features[order], logits[order], labels[order], real.flip(0)
    ) == pytest.approx(risk)


def test_control_variate_is_unbiased_and_removes_the_weights_variance() -> None:
    losses = torch.rand(1000, generator=_generator()).double()
    assert control_variate_risk(torch.ones(1000), losses) == pytest.approx(float(losses.mean()))
    # Weights that ride the loss: the plain weighted mean overshoots, the corrected one
    # is exact when the weighted losses are linear in the weights.
    weights = 1.0 + 0.5 * torch.randn(1000, generator=torch.Generator().manual_seed(2)).double()
    constant = torch.full((1000,), 0.3).double()
    assert control_variate_risk(weights, constant) == pytest.approx(0.3)


def test_every_validator_is_logged_under_its_name() -> None:
    assert [selection_metric(name) for name in VALIDATORS] == [
        "val/select_snd",
        "val/select_dev",
        "val/select_im",
        "val/select_rendered_acc",
    ]
    with pytest.raises(ValueError, match="unknown validator"):
        selection_metric("accuracy")
