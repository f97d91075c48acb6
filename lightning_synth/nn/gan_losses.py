"""Adversarial losses on raw discriminator scores, and the gradient penalties.

Every loss takes raw scores (logits), never probabilities, and computes in float32, so
it is safe under autocast. ``kind``:

* ``non_saturating`` (Goodfellow et al., 2014): D minimises
  ``softplus(-D(x)) + softplus(D(G(z)))`` (binary cross-entropy with logits), G minimises
  ``softplus(-D(G(z)))``.
* ``hinge`` (Lim & Ye, 2017; Miyato et al., 2018): D minimises
  ``relu(1 - D(x)) + relu(1 + D(G(z)))``, G minimises ``-D(G(z))``.
* ``wgan`` (Arjovsky et al., 2017): D minimises ``D(G(z)) - D(x)``, G ``-D(G(z))``; add
  :func:`gradient_penalty` for WGAN-GP (Gulrajani et al., 2017).

The penalties run the discriminator again with autocast switched off (in float32 under
mixed precision): their double backward is where half precision underflows first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "LossKind",
    "discriminator_loss",
    "generator_loss",
    "gradient_penalty",
    "r1_penalty",
]

LossKind = Literal["non_saturating", "hinge", "wgan"]
_KINDS = ("non_saturating", "hinge", "wgan")

#: A discriminator as the penalties see it: images (and labels) -> ``B`` scores.
Critic = Callable[..., torch.Tensor]


def _check(kind: str) -> None:
    if kind not in _KINDS:
        raise ValueError(f"loss must be one of {_KINDS}, got {kind!r}")


def discriminator_loss(
    real_scores: torch.Tensor, fake_scores: torch.Tensor, kind: LossKind = "non_saturating"
) -> torch.Tensor:
    """The discriminator's loss, averaged over each batch (real and fake terms summed).

    Args:
        real_scores: raw scores of real images.
        fake_scores: raw scores of generated images.
        kind: ``non_saturating``, ``hinge`` or ``wgan``.
    """
    _check(kind)
    real, fake = real_scores.float(), fake_scores.float()
    if kind == "non_saturating":
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    return fake.mean() - real.mean()


def generator_loss(fake_scores: torch.Tensor, kind: LossKind = "non_saturating") -> torch.Tensor:
    """The generator's loss on the scores of its images.

    Args:
        fake_scores: raw scores of generated images.
        kind: ``non_saturating``, ``hinge`` or ``wgan``.
    """
    _check(kind)
    fake = fake_scores.float()
    if kind == "non_saturating":
        return F.softplus(-fake).mean()
    return -fake.mean()


def _scores_fp32(critic: Critic, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    with torch.autocast(device_type=images.device.type, enabled=False):
        return critic(images) if labels is None else critic(images, labels)


def gradient_penalty(
    critic: Critic,
    real: torch.Tensor,
    fake: torch.Tensor,
    labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP: ``E[(||grad_x D(x_hat)||_2 - 1)^2]`` at random points between real and fake.

    Differentiable with respect to the critic's weights (``create_graph``), so add it to
    the critic's loss times a weight (the paper: 10).

    Args:
        critic: the discriminator.
        real: real images ``B x C x H x W``.
        fake: generated images of the same shape (detached from the generator).
        labels: class labels when the critic is conditional.
        generator: random generator for the interpolation weights.
    """
    real, fake = real.detach(), fake.detach().to(real.dtype)
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, generator=generator)
    mixed = (alpha.to(real.dtype) * real + (1 - alpha.to(real.dtype)) * fake).requires_grad_()
    scores = _scores_fp32(critic, mixed, labels)
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    return (grad.float().flatten(1).norm(dim=1) - 1.0).square().mean()


def r1_penalty(
    critic: Critic, real: torch.Tensor, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """R1 (Mescheder et al., 2018): ``E[||grad_x D(x)||_2^2]`` on real images.

    Multiply by ``gamma / 2`` and add to the discriminator's loss.

    Args:
        critic: the discriminator.
        real: real images.
        labels: class labels when the critic is conditional.
    """
    images = real.detach().clone().requires_grad_()
    scores = _scores_fp32(critic, images, labels)
    (grad,) = torch.autograd.grad(scores.sum(), images, create_graph=True)
    return grad.float().flatten(1).square().sum(dim=1).mean()
