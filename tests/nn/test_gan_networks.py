"""DCGAN networks, the adversarial losses, the penalties and the moving average."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel

from lightning_synth.nn import DCGANDiscriminator, DCGANGenerator, ExponentialMovingAverage
from lightning_synth.nn.gan import ConditionalBatchNorm2d, upsampling_plan
from lightning_synth.nn.gan_losses import (
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    r1_penalty,
)


@pytest.mark.parametrize("size", [8, 16, 28, 32])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("num_classes", [None, 4])
def test_default_networks_fit_the_image_shape(size: int, channels: int, num_classes) -> None:
    generator = DCGANGenerator(16, channels, size, width=8, num_classes=num_classes)
    discriminator = DCGANDiscriminator(channels, size, width=8, num_classes=num_classes)
    labels = torch.arange(5) % 4 if num_classes else None
    images = generator(torch.randn(5, 16), labels)
    assert images.shape == (5, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1  # Tanh output
    assert discriminator(images, labels).shape == (5,)


def test_sizes_the_generator_cannot_reach_are_refused() -> None:
    assert upsampling_plan(28) == (7, 2)
    assert upsampling_plan(32) == (4, 3)
    for size in (7, 9, 15):
        with pytest.raises(ValueError, match="even size"):
            DCGANGenerator(image_size=size)


def test_dcgan_initialisation_statistics() -> None:
    generator = DCGANGenerator(100, 3, 32, width=64)
    discriminator = DCGANDiscriminator(3, 32, width=64)
    for network in (generator, discriminator):
        convs = [m for m in network.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
        weights = torch.cat([m.weight.detach().flatten() for m in convs])
        assert abs(float(weights.mean())) < 1e-3
        assert float(weights.std()) == pytest.approx(0.02, rel=0.05)
        assert all(m.bias is None or not m.bias.any() for m in convs)
        norms = [m for m in network.modules() if isinstance(m, nn.BatchNorm2d)]
        scales = torch.cat([m.weight.detach() for m in norms])
        assert float(scales.mean()) == pytest.approx(1.0, abs=0.01)
        assert float(scales.std()) == pytest.approx(0.02, rel=0.3)


def test_dcgan_layout_batch_norm_and_activations() -> None:
    discriminator = DCGANDiscriminator(1, 32, width=8)
    layers = list(discriminator.features)
    # no batch norm after D's first convolution, LeakyReLU(0.2) everywhere in D
    assert isinstance(layers[0], nn.Conv2d) and isinstance(layers[1], nn.LeakyReLU)
    assert all(m.negative_slope == 0.2 for m in layers if isinstance(m, nn.LeakyReLU))
    assert sum(isinstance(m, nn.BatchNorm2d) for m in layers) == 2
    generator = DCGANGenerator(16, 1, 32, width=8)
    # one batch norm per hidden layer, none on the output layer
    assert len(generator.norms) == len(generator.convs) - 1
    assert generator.convs[-1].out_channels == 1 and generator.convs[-1].bias is not None


def test_discriminator_norm_options() -> None:
    layer = DCGANDiscriminator(1, 16, width=8, norm="layer")
    assert any(isinstance(m, nn.GroupNorm) for m in layer.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in layer.modules())
    # no norm: one sample's score does not depend on the rest of the batch, even in training
    plain = DCGANDiscriminator(1, 16, width=8, norm="none").train()
    x = torch.randn(4, 1, 16, 16)
    assert torch.allclose(plain(x)[:1], plain(x[:1]), atol=1e-6)
    with pytest.raises(ValueError, match="norm"):
        DCGANDiscriminator(1, 16, norm="instance")  # type: ignore[arg-type]


def test_spectral_norm_bounds_every_weight() -> None:
    discriminator = DCGANDiscriminator(1, 16, width=8, norm="none", spectral_norm=True)
    x = torch.randn(8, 1, 16, 16)
    for _ in range(30):  # power iterations run in training forward passes
        discriminator(x)
    convs = [m for m in discriminator.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(hasattr(m, "parametrizations") for m in convs)
    for conv in convs:
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
        assert float(sigma) == pytest.approx(1.0, abs=0.05)


def test_conditional_networks_depend_on_the_labels() -> None:
    generator = DCGANGenerator(16, 1, 16, width=8, num_classes=3)
    discriminator = DCGANDiscriminator(1, 16, width=8, num_classes=3).eval()
    z = torch.randn(4, 16)
    zeros, twos = torch.zeros(4, dtype=torch.long), torch.full((4,), 2)
    first, other = generator(z, zeros), generator(z, twos)
    assert (first - other).abs().mean() > 0.1 * first.abs().mean()
    images = generator(z, zeros)
    assert not torch.allclose(discriminator(images, zeros), discriminator(images, twos))
    with pytest.raises(ValueError, match="pass labels"):
        generator(z)
    with pytest.raises(ValueError, match="pass labels"):
        discriminator(images)


def test_auxiliary_classifier_and_unconditional_norm_options() -> None:
    discriminator = DCGANDiscriminator(1, 16, width=8, num_classes=5, auxiliary_classifier=True)
    images, labels = torch.randn(3, 1, 16, 16), torch.tensor([0, 4, 2])
    scores, logits = discriminator.scores_and_class_logits(images, labels)
    assert scores.shape == (3,) and logits.shape == (3, 5)
    assert torch.equal(discriminator(images, labels), scores)
    assert DCGANDiscriminator(1, 16, 8, 5).scores_and_class_logits(images, labels)[1] is None
    with pytest.raises(ValueError, match="needs num_classes"):
        DCGANDiscriminator(1, 16, auxiliary_classifier=True)
    normed = DCGANDiscriminator(1, 16, 8, 5, "none", spectral_norm=True, auxiliary_classifier=True)
    assert hasattr(normed.classifier, "parametrizations")
    plain = DCGANGenerator(8, 1, 16, width=8, num_classes=5, class_norm=False)
    assert not any(isinstance(m, ConditionalBatchNorm2d) for m in plain.modules())
    assert plain(torch.randn(2, 8), torch.tensor([1, 3])).shape == (2, 1, 16, 16)


def test_class_embedding_starts_weaker_than_the_noise() -> None:
    # N(0, 1) embeddings as strong as z made the conditional generator ignore z on MNIST
    generator = DCGANGenerator(64, 1, 28, width=8, num_classes=10, embedding_dim=32)
    assert float(generator.embed.weight.detach().std()) == pytest.approx(0.1, rel=0.2)


# -- losses ------------------------------------------------------------------------------------

REAL = torch.tensor([2.0, -1.0])
FAKE = torch.tensor([0.5, -3.0])


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_loss_values_on_known_scores() -> None:
    ns_d = (_softplus(-2.0) + _softplus(1.0)) / 2 + (_softplus(0.5) + _softplus(-3.0)) / 2
    assert float(discriminator_loss(REAL, FAKE, "non_saturating")) == pytest.approx(ns_d)
    ns_g = (_softplus(-0.5) + _softplus(3.0)) / 2
    assert float(generator_loss(FAKE, "non_saturating")) == pytest.approx(ns_g)
    # hinge: relu(1 - [2, -1]) = [0, 2]; relu(1 + [0.5, -3]) = [1.5, 0]
    assert float(discriminator_loss(REAL, FAKE, "hinge")) == pytest.approx(1.0 + 0.75)
    assert float(generator_loss(FAKE, "hinge")) == pytest.approx(1.25)
    assert float(discriminator_loss(REAL, FAKE, "wgan")) == pytest.approx(-1.25 - 0.5)
    assert float(generator_loss(FAKE, "wgan")) == pytest.approx(1.25)
    with pytest.raises(ValueError, match="loss must be"):
        generator_loss(FAKE, "least_squares")  # type: ignore[arg-type]


def test_non_saturating_loss_is_binary_cross_entropy_with_logits() -> None:
    real, fake = torch.randn(16), torch.randn(16)
    expected = F.binary_cross_entropy_with_logits(
        real, torch.ones(16)
    ) + F.binary_cross_entropy_with_logits(fake, torch.zeros(16))
    assert torch.allclose(discriminator_loss(real, fake), expected)
    assert torch.allclose(
        generator_loss(fake), F.binary_cross_entropy_with_logits(fake, torch.ones(16))
    )
    # huge logits stay finite (no sigmoid then log)
    assert torch.isfinite(discriminator_loss(torch.tensor([-200.0]), torch.tensor([300.0])))


def test_losses_compute_in_float32_from_half_precision_scores() -> None:
    for kind in ("non_saturating", "hinge", "wgan"):
        loss = discriminator_loss(REAL.bfloat16(), FAKE.bfloat16(), kind)
        assert loss.dtype == torch.float32
        assert generator_loss(FAKE.half(), kind).dtype == torch.float32


class _Linear(nn.Module):
    """``D(x) = <w, x>``: its input gradient is ``w`` everywhere."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) * self.w).sum(dim=1)


def test_gradient_penalty_and_r1_on_a_linear_critic() -> None:
    w = torch.tensor([3.0, 4.0, 0.0, 0.0])  # norm 5
    critic = _Linear(w)
    real, fake = torch.randn(6, 1, 2, 2), torch.randn(6, 1, 2, 2)
    gp = gradient_penalty(critic, real, fake)
    assert float(gp.detach()) == pytest.approx((5.0 - 1.0) ** 2)
    # differentiable with respect to the critic: d/dw (|w| - 1)^2 = 2 (|w| - 1) w / |w|
    gp.backward()
    assert torch.allclose(critic.w.grad, 2 * 4.0 * w / 5.0)
    assert float(gradient_penalty(_Linear(w / 5), real, fake).detach()) == pytest.approx(
        0.0, abs=1e-10
    )
    assert float(r1_penalty(critic, real).detach()) == pytest.approx(25.0)


def test_penalties_on_a_quadratic_critic_follow_the_input() -> None:
    critic = lambda x: 0.5 * x.flatten(1).square().sum(dim=1)  # noqa: E731 - grad is x
    real = torch.randn(5, 1, 3, 3)
    assert float(r1_penalty(critic, real).detach()) == pytest.approx(
        float(real.flatten(1).square().sum(1).mean()), rel=1e-5
    )
    # real == fake: every interpolate is the image itself
    expected = (real.flatten(1).norm(dim=1) - 1).square().mean()
    penalty = gradient_penalty(critic, real, real).detach()
    assert float(penalty) == pytest.approx(float(expected), rel=1e-5)


def test_penalties_run_in_float32_under_autocast() -> None:
    critic = DCGANDiscriminator(1, 8, width=4, norm="none")
    real = torch.rand(4, 1, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        r1 = r1_penalty(critic, real)
        gp = gradient_penalty(critic, real, torch.rand(4, 1, 8, 8))
    assert r1.dtype == gp.dtype == torch.float32
    with torch.autocast("cpu", enabled=False):
        assert torch.allclose(r1, r1_penalty(critic, real))


# -- exponential moving average -------------------------------------------------------------------


def test_ema_is_an_averaged_model_with_warm_up() -> None:
    network = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = ExponentialMovingAverage(network, decay=0.9)
    assert isinstance(ema, AveragedModel)
    assert all(not p.requires_grad for p in ema.module.parameters())
    assert all(p.requires_grad for p in network.parameters())  # the original still trains
    with torch.no_grad():
        for p in network.parameters():
            p.add_(1.0)
        network[1].running_mean.fill_(7.0)
    # first update: a copy
    assert ema.current_decay() == 0.0
    ema.update(network)
    for averaged, new in zip(ema.module.parameters(), network.parameters(), strict=True):
        assert torch.equal(averaged, new)
    assert torch.equal(ema.module[1].running_mean, network[1].running_mean)  # buffers copied
    assert ema.num_updates == 1
    # second update: decay min(0.9, 2/11), the warm-up
    assert ema.current_decay() == pytest.approx(2 / 11)
    before = [p.clone() for p in ema.module.parameters()]
    with torch.no_grad():
        for p in network.parameters():
            p.add_(1.0)
        network[1].running_var.fill_(3.0)
    ema.update(network)
    for averaged, old, new in zip(
        ema.module.parameters(), before, network.parameters(), strict=True
    ):
        assert torch.allclose(averaged, 2 / 11 * old + 9 / 11 * new)
    assert torch.equal(ema.module[1].running_var, network[1].running_var)  # copied, not averaged
    # after many updates the decay is the configured one
    ema.n_averaged.fill_(1000)
    assert ema.current_decay() == pytest.approx(0.9)
    before = [p.clone() for p in ema.module.parameters()]
    with torch.no_grad():
        for p in network.parameters():
            p.add_(10.0)
    ema.update(network)
    for averaged, old, new in zip(
        ema.module.parameters(), before, network.parameters(), strict=True
    ):
        assert torch.allclose(averaged, 0.9 * old + 0.1 * new)
    assert ema.num_updates == 1001
    with pytest.raises(ValueError, match="decay"):
        ExponentialMovingAverage(network, decay=1.0)


def test_ema_state_dict_reloads_old_and_new_checkpoints() -> None:
    network = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = ExponentialMovingAverage(network, decay=0.9)
    for _ in range(3):
        with torch.no_grad():
            for p in network.parameters():
                p.add_(1.0)
        ema.update(network)
    state = ema.state_dict()
    assert int(state["n_averaged"]) == 3 and "module.0.weight" in state
    fresh = ExponentialMovingAverage(nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)))
    fresh.load_state_dict(state)
    assert fresh.num_updates == 3
    assert torch.equal(fresh.module[0].weight, ema.module[0].weight)
    # the earlier, hand-written average saved its count as num_updates
    old = {("num_updates" if k == "n_averaged" else k): v for k, v in state.items()}
    older = ExponentialMovingAverage(nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)))
    older.load_state_dict(old)  # strict
    assert older.num_updates == 3
    assert torch.equal(older.module[0].bias, ema.module[0].bias)
    assert older.current_decay() == pytest.approx(4 / 13)
