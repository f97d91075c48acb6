"""Adaptation methods: each loss is near zero for one distribution and grows with a shift;
gradients reach the features; dense maps, masks and subsampling."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lightning_synth.adaptation import (
    CDAN,
    CORAL,
    MMD,
    AdaptationInputs,
    DomainAdversarial,
    MinimumClassConfusion,
    RealSampleTerms,
    balanced_domain_loss,
    class_confusion,
    domain_samples,
    marginal_entropy,
    mean_entropy,
    multilinear_map,
)
from lightning_synth.batch import REAL, RENDERED

DIM, CLASSES = 8, 4


def _two_domains(shift: float, count: int = 256, seed: int = 0) -> AdaptationInputs:
    """Rendered and real features from the same Gaussian, the real ones moved by ``shift``
    (along every axis) and stretched by ``1 + shift`` along the first half."""
    generator = torch.Generator().manual_seed(seed)
    rendered = torch.randn(count, DIM, generator=generator)
    real = torch.randn(count, DIM, generator=generator)
    real = real + shift
    real[:, : DIM // 2] *= 1 + shift
    features = torch.cat([rendered, real])
    domains = torch.tensor([RENDERED] * count + [REAL] * count)
    logits = torch.randn(2 * count, CLASSES, generator=generator)
    return AdaptationInputs(features=features, domains=domains, logits=logits)


def _trained_adversary(method: DomainAdversarial, shift: float) -> float:
    """The discriminator's balanced accuracy on fresh samples after it has learnt."""
    method.bind(DIM, CLASSES)
    optimizer = torch.optim.Adam(method.parameters(), lr=0.01)
    training = _two_domains(shift, seed=0)
    for _ in range(100):
        optimizer.zero_grad()
        method(training, progress=1.0).loss.backward()
        optimizer.step()
    return float(method(_two_domains(shift, count=1024, seed=1), progress=1.0).logs["domain_acc"])


@pytest.mark.parametrize("method", [CORAL(schedule="constant"), MMD(schedule="constant")])
def test_statistical_distances_are_near_zero_for_one_distribution_and_grow_with_the_shift(
    method,
) -> None:
    method.bind(DIM, CLASSES)
    losses = [float(method(_two_domains(shift), 1.0).loss) for shift in (0.0, 0.5, 1.5)]
    assert losses[0] < 0.1 * losses[1], losses
    assert losses[0] < losses[1] < losses[2], losses


@pytest.mark.parametrize("kind", [DomainAdversarial, CDAN])
def test_adversaries_cannot_tell_one_distribution_apart_and_can_tell_a_shift(kind) -> None:
    torch.manual_seed(0)
    same = _trained_adversary(kind(schedule="constant"), 0.0)
    torch.manual_seed(0)
    shifted = _trained_adversary(kind(schedule="constant"), 1.5)
    assert same < 0.62, same
    assert shifted > 0.9, shifted


def test_mcc_and_real_terms_are_near_zero_for_confident_diverse_predictions() -> None:
    confident = torch.eye(CLASSES).repeat(8, 1) * 30.0
    hesitant = torch.full((32, CLASSES), -30.0)
    hesitant[:, :2] = 5.0  # every sample torn between classes 0 and 1
    assert float(class_confusion(confident)) < 0.05
    assert float(class_confusion(hesitant)) > 0.3
    assert float(mean_entropy(confident)) < 1e-6
    assert float(mean_entropy(hesitant)) == pytest.approx(math.log(2), abs=1e-3)
    assert float(marginal_entropy(confident)) == pytest.approx(math.log(CLASSES), abs=1e-4)
    collapsed = torch.zeros(8, CLASSES)
    collapsed[:, 2] = 30.0
    assert float(marginal_entropy(collapsed)) < 1e-6


def test_mcc_and_real_terms_use_the_real_samples_only() -> None:
    domains = torch.tensor([RENDERED] * 4 + [REAL] * 4)
    logits = torch.randn(8, CLASSES)
    changed = logits.clone()
    changed[:4] = torch.randn(4, CLASSES) * 10  # only the rendered half changes
    for method in (MinimumClassConfusion(), RealSampleTerms(consistency_weight=0.0)):
        method.bind(DIM, CLASSES)
        features = torch.randn(8, DIM)
        first = method(AdaptationInputs(features, domains, logits), 1.0).loss
        second = method(AdaptationInputs(features, domains, changed), 1.0).loss
        assert float(first) == pytest.approx(float(second))


ALL_METHODS = [
    lambda: DomainAdversarial(schedule="constant"),
    lambda: CDAN(schedule="constant", entropy_conditioning=True),
    lambda: CORAL(schedule="constant"),
    lambda: MMD(schedule="constant"),
    lambda: MinimumClassConfusion(schedule="constant"),
    lambda: RealSampleTerms(schedule="constant", consistency_weight=0.0),
]


@pytest.mark.parametrize("make", ALL_METHODS)
def test_gradients_reach_the_features_or_logits_of_both_domains_or_the_real_ones(make) -> None:
    method = make()
    method.bind(DIM, CLASSES)
    inputs = _two_domains(1.0, count=16)
    inputs.features.requires_grad_(True)
    inputs.logits.requires_grad_(True)
    method(inputs, 1.0).loss.backward()
    real = inputs.domains == REAL
    grads = [g for g in (inputs.features.grad, inputs.logits.grad) if g is not None]
    assert grads and any(g[real].abs().sum() > 0 for g in grads)


def test_adversarial_reversal_sends_minus_strength_times_the_discriminator_gradient() -> None:
    method = DomainAdversarial(weight=0.7, schedule="constant")
    method.bind(DIM)
    inputs = _two_domains(1.0, count=8)
    features = inputs.features.clone().requires_grad_(True)
    method(AdaptationInputs(features, inputs.domains), 1.0).loss.backward()
    reversed_grad = features.grad.clone()
    plain = features.detach().clone().requires_grad_(True)
    balanced_domain_loss(method.discriminator(plain).reshape(-1), inputs.domains).backward()
    torch.testing.assert_close(reversed_grad, -0.7 * plain.grad)


def test_weight_zero_trains_the_discriminator_and_leaves_the_features_alone() -> None:
    method = DomainAdversarial(weight=0.0)
    method.bind(DIM)
    inputs = _two_domains(1.0, count=8)
    features = inputs.features.clone().requires_grad_(True)
    method(AdaptationInputs(features, inputs.domains), 1.0).loss.backward()
    assert float(features.grad.abs().sum()) == 0.0
    assert all(p.grad.abs().sum() > 0 for p in method.discriminator.parameters())


def test_balanced_domain_loss_weighs_both_domains_equally_whatever_their_share() -> None:
    logits = torch.tensor([0.3, -1.0, 2.0, 0.5])
    domains = torch.tensor([RENDERED, RENDERED, RENDERED, REAL])
    bce = nn.functional.binary_cross_entropy_with_logits
    rendered = bce(logits[:3], torch.zeros(3))
    real = bce(logits[3:], torch.ones(1))
    assert balanced_domain_loss(logits, domains) == pytest.approx(float(rendered + real) / 2)
    assert balanced_domain_loss(logits[:3], domains[:3]) == pytest.approx(float(rendered))


def test_ramps_follow_the_schedule() -> None:
    dann, linear, constant = (DomainAdversarial(schedule=s) for s in ("dann", "linear", "constant"))
    assert dann.ramp(0.0) == 0.0 and dann.ramp(1.0) == pytest.approx(1.0, abs=1e-4)
    assert linear.ramp(0.25) == 0.25 and constant.ramp(0.0) == 1.0
    mmd = MMD(weight=2.0, schedule="linear")
    inputs = _two_domains(1.0, count=16)
    assert float(mmd(inputs, 0.0).loss) == 0.0
    assert float(mmd(inputs, 0.5).loss) == pytest.approx(float(mmd(inputs, 1.0).loss) / 2)


def test_dense_maps_become_masked_subsampled_pixels_of_both_domains() -> None:
    maps = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    domains = torch.tensor([RENDERED, REAL])
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[0, :2, :2] = True
    mask[1, 3, :] = True
    samples, sample_domains = domain_samples(maps, domains, mask)
    assert samples.shape == (8, 3) and sample_domains.tolist() == [0] * 4 + [1] * 4
    assert samples[0].tolist() == maps[0, :, 0, 0].tolist()
    few, few_domains = domain_samples(maps, domains, mask, max_samples=2)
    assert few.shape == (4, 3) and sorted(few_domains.tolist()) == [0, 0, 1, 1]
    # Every kept pixel is one of the masked ones.
    allowed = {tuple(row.tolist()) for row in samples}
    assert all(tuple(row.tolist()) in allowed for row in few)


def test_dense_methods_see_only_the_masked_pixels() -> None:
    torch.manual_seed(0)
    maps = torch.randn(4, DIM, 6, 6, requires_grad=True)
    logits = torch.randn(4, CLASSES, 6, 6)
    domains = torch.tensor([RENDERED, RENDERED, REAL, REAL])
    mask = torch.zeros(4, 6, 6, dtype=torch.bool)
    mask[:, 1:4, 1:4] = True
    for method in (DomainAdversarial(), CDAN(), CORAL(), MMD(), MinimumClassConfusion()):
        method.bind(DIM, CLASSES)
        maps.grad = None
        method(AdaptationInputs(maps, domains, logits, pixel_mask=mask), 1.0).loss.backward()
        if maps.grad is not None:
            assert float(maps.grad[:, :, 4:, :].abs().sum()) == 0.0
            assert float(maps.grad[:, :, :, 4:].abs().sum()) == 0.0


def test_cdan_map_is_the_outer_product_and_large_maps_are_randomized() -> None:
    features, probabilities = torch.rand(3, 5), torch.rand(3, 4)
    mapped = multilinear_map(features, probabilities)
    assert torch.allclose(mapped[1].view(5, 4), torch.outer(features[1], probabilities[1]))
    small = CDAN()
    small.bind(5, 4)
    assert small.discriminator.layers[0].in_features == 20
    large = CDAN(max_map_dim=16)
    large.bind(5, 4)
    assert large.discriminator.layers[0].in_features == 16
    twin = CDAN(max_map_dim=16)
    twin.bind(5, 4)
    twin.load_state_dict(large.state_dict())
    assert torch.equal(twin.feature_projection, large.feature_projection)


def test_methods_that_need_classes_refuse_tasks_without_them() -> None:
    for method in (CDAN(), MinimumClassConfusion(), RealSampleTerms()):
        with pytest.raises(ValueError, match="needs class predictions"):
            method.bind(DIM, None)


def test_consistency_uses_confident_real_predictions_as_pseudo_labels() -> None:
    images = torch.rand(6, 1, 4, 4)
    classify = nn.Sequential(nn.Flatten(), nn.Linear(16, CLASSES))
    logits = classify(images)
    domains = torch.tensor([RENDERED] * 3 + [REAL] * 3)
    method = RealSampleTerms(
        entropy_weight=0.0,
        diversity_weight=0.0,
        consistency_weight=2.0,
        threshold=0.0,
        augment=nn.Identity(),
        schedule="constant",
    )
    method.bind(16, CLASSES)
    inputs = AdaptationInputs(torch.rand(6, 16), domains, logits, images=images, classify=classify)
    got = method(inputs, 1.0)
    real = logits[3:]
    expected = 2.0 * nn.functional.cross_entropy(real, real.argmax(dim=1))
    assert float(got.loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    assert float(got.logs["pseudo_label_fraction"]) == 1.0
    method.threshold = 1.0  # nobody is that sure: no pseudo-label, a zero loss in the graph
    nobody = method(inputs, 1.0)
    assert float(nobody.loss) == 0.0 and float(nobody.logs["pseudo_label_fraction"]) == 0.0
    dense = AdaptationInputs(torch.rand(6, 16, 2, 2), domains, torch.rand(6, CLASSES, 2, 2))
    with pytest.raises(ValueError, match="per-image predictions"):
        method(dense, 1.0)


def test_bad_arguments_are_refused_with_their_names() -> None:
    with pytest.raises(ValueError, match="weight"):
        CORAL(weight=-1.0)
    with pytest.raises(ValueError, match="schedule"):
        MMD(schedule="cosine")
    with pytest.raises(ValueError, match="multipliers"):
        MMD(multipliers=[])
    with pytest.raises(ValueError, match="threshold"):
        RealSampleTerms(threshold=1.5)
    with pytest.raises(ValueError, match="entropy_weight"):
        RealSampleTerms(entropy_weight=-0.1)
