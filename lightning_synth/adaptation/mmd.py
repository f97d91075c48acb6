"""Multi-kernel maximum mean discrepancy (DAN; Long et al., ICML 2015).

The squared MMD between the domains' features under a sum of Gaussian kernels, whose
bandwidths are the mean pairwise squared distance of the batch times fixed multipliers
(as DAN and tllib do), so the kernels follow the features' scale as they train.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lightning_synth.adaptation.base import (
    AdaptationInputs,
    AdaptationMethod,
    AdaptationOutput,
    Schedule,
)
from lightning_synth.batch import REAL
from lightning_synth.errors import InputError

__all__ = ["MMD", "mk_mmd"]


def mk_mmd(
    rendered: torch.Tensor,
    real: torch.Tensor,
    multipliers: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0),
) -> torch.Tensor:
    """Squared multi-kernel MMD (biased estimate, >= 0) between two ``N x D`` samples.

    Args:
        rendered: ``N1 x D`` features.
        real: ``N2 x D`` features.
        multipliers: bandwidths as multiples of the mean pairwise squared distance.
    """
    joint = torch.cat([rendered, real]).float()
    squared = torch.cdist(joint, joint).pow(2)
    count = len(joint)
    base = squared.sum().detach() / max(count * count - count, 1)
    kernel = sum(torch.exp(-squared / (base * m).clamp(min=1e-12)) for m in multipliers)
    n = len(rendered)
    within_rendered = kernel[:n, :n].mean()
    within_real = kernel[n:, n:].mean()
    across = kernel[:n, n:].mean()
    return within_rendered + within_real - 2 * across


class MMD(AdaptationMethod):
    """DAN's multi-kernel MMD between rendered and real features.

    Logs ``mmd_loss`` (unweighted). The cost grows with the square of the samples, so
    feature maps are subsampled to ``max_samples`` per domain (default 512).

    Args:
        multipliers: Gaussian bandwidths as multiples of the mean pairwise squared distance.
        weight: the largest weight of the MMD in the loss.
        schedule: ramp of the weight.
        gamma: steepness of the ``dann`` ramp.
        max_samples: most samples (images or pixels) per domain and batch (0: all).
    """

    name = "mmd"

    def __init__(
        self,
        multipliers: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0),
        weight: float = 1.0,
        schedule: Schedule = "dann",
        gamma: float = 10.0,
        max_samples: int = 512,
    ) -> None:
        super().__init__(weight=weight, schedule=schedule, gamma=gamma, max_samples=max_samples)
        if not multipliers or any(m <= 0 for m in multipliers):
            raise InputError(f"multipliers must be positive numbers, got {list(multipliers)}")
        self.multipliers = tuple(float(m) for m in multipliers)

    def compute(self, inputs: AdaptationInputs, strength: float) -> AdaptationOutput:
        features, _, domains = self.samples(inputs)
        is_real = domains == REAL
        if not bool(is_real.any()) or bool(is_real.all()):
            zero = features.sum() * 0.0
            return AdaptationOutput(loss=zero, logs={"mmd_loss": zero.detach()})
        distance = mk_mmd(features[~is_real], features[is_real], self.multipliers)
        return AdaptationOutput(loss=strength * distance, logs={"mmd_loss": distance.detach()})
