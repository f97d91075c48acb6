"""Minimum class confusion (MCC; Jin et al., ECCV 2020).

On the real (unlabelled) predictions, sharpened by a temperature, build the class
correlation matrix weighted by each sample's certainty, normalise it per class, and
minimise its off-diagonal mass: predictions that hesitate between two classes are
pushed to choose. Needs no discriminator and no features, only the class logits.
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
from lightning_synth.errors import InputError

__all__ = ["MinimumClassConfusion", "class_confusion"]


def class_confusion(logits: torch.Tensor, temperature: float = 2.5) -> torch.Tensor:
    """MCC's loss on ``N x C`` logits: off-diagonal mass of the normalised class correlation.

    Args:
        logits: ``N x C`` class scores of unlabelled samples.
        temperature: rescaling before the softmax (the paper: 2.5).
    """
    count, classes = logits.shape
    probabilities = (logits.float() / temperature).softmax(dim=1)
    entropy = -(probabilities * probabilities.clamp(min=1e-12).log()).sum(dim=1).detach()
    weights = 1.0 + torch.exp(-entropy)
    weights = count * weights / weights.sum()
    correlation = (probabilities * weights[:, None]).T @ probabilities
    correlation = correlation / correlation.sum(dim=1, keepdim=True).clamp(min=1e-12)
    return (correlation.sum() - correlation.trace()) / classes


class MinimumClassConfusion(AdaptationMethod):
    """MCC on the real samples of the batch (or their pixels, for dense tasks).

    Logs ``mcc_loss`` (unweighted).

    Args:
        temperature: softmax temperature (the paper: 2.5).
        weight: the largest weight of the confusion in the loss (the paper: 1).
        schedule: ramp of the weight.
        gamma: steepness of the ``dann`` ramp.
        max_samples: most samples (images or pixels) per domain and batch (0: all).
    """

    name = "mcc"
    needs_logits = True

    def __init__(
        self,
        temperature: float = 2.5,
        weight: float = 1.0,
        schedule: Schedule = "dann",
        gamma: float = 10.0,
        max_samples: int = 4096,
    ) -> None:
        super().__init__(weight=weight, schedule=schedule, gamma=gamma, max_samples=max_samples)
        if temperature <= 0:
            raise InputError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)

    def compute(self, inputs: AdaptationInputs, strength: float) -> AdaptationOutput:
        _, logits, domains = self.samples(inputs)
        assert logits is not None  # needs_logits: checked in forward
        real = logits[domains == REAL]
        if len(real) < 2:
            zero = logits.sum() * 0.0
            return AdaptationOutput(loss=zero, logs={"mcc_loss": zero.detach()})
        confusion = class_confusion(real, self.temperature)
        return AdaptationOutput(loss=strength * confusion, logs={"mcc_loss": confusion.detach()})
