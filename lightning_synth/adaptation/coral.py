"""Deep CORAL (Sun & Saenko, ECCV 2016 workshops): align second-order feature statistics.

The loss is the squared Frobenius distance between the feature covariances of the two
domains, ``||C_rendered - C_real||_F^2 / (4 D^2)`` as in the paper, plus the squared
distance of the means (as tllib's implementation adds), so a pure shift counts too.
No extra network, no adversary: cheap and stable, but blind to differences beyond
second order.
"""

from __future__ import annotations

import torch

from lightning_synth.adaptation.base import (
    AdaptationInputs,
    AdaptationMethod,
    AdaptationOutput,
    Schedule,
)
from lightning_synth.batch import REAL

__all__ = ["CORAL", "coral_loss"]


def coral_loss(rendered: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """CORAL distance between two ``N x D`` samples: covariance term plus mean term.

    Args:
        rendered: ``N1 x D`` features of one domain (at least 2 rows).
        real: ``N2 x D`` features of the other (at least 2 rows).
    """
    dim = rendered.shape[1]
    rendered, real = rendered.float(), real.float()
    mean_rendered, mean_real = rendered.mean(0, keepdim=True), real.mean(0, keepdim=True)
    cov_rendered = (rendered - mean_rendered).T @ (rendered - mean_rendered) / (len(rendered) - 1)
    cov_real = (real - mean_real).T @ (real - mean_real) / (len(real) - 1)
    covariance = (cov_rendered - cov_real).pow(2).sum() / (4 * dim * dim)
    return covariance + (mean_rendered - mean_real).pow(2).mean()


class CORAL(AdaptationMethod):
    """Deep CORAL: penalise the distance between the domains' feature covariances.

    Logs ``coral_loss`` (unweighted). A batch with fewer than two samples of a domain
    contributes 0.

    Args:
        weight: the largest weight of the CORAL distance in the loss.
        schedule: ramp of the weight.
        gamma: steepness of the ``dann`` ramp.
        max_samples: most samples (images or pixels) per domain and batch (0: all).
    """

    name = "coral"

    def __init__(
        self,
        weight: float = 1.0,
        schedule: Schedule = "dann",
        gamma: float = 10.0,
        max_samples: int = 4096,
    ) -> None:
        super().__init__(weight=weight, schedule=schedule, gamma=gamma, max_samples=max_samples)

    def compute(self, inputs: AdaptationInputs, strength: float) -> AdaptationOutput:
        features, _, domains = self.samples(inputs)
        is_real = domains == REAL
        if int(is_real.sum()) < 2 or int((~is_real).sum()) < 2:
            zero = features.sum() * 0.0
            return AdaptationOutput(loss=zero, logs={"coral_loss": zero.detach()})
        distance = coral_loss(features[~is_real], features[is_real])
        return AdaptationOutput(loss=strength * distance, logs={"coral_loss": distance.detach()})
