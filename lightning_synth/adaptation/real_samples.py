"""Terms on the real samples' own predictions: entropy, diversity, pseudo-label consistency.

- entropy (Grandvalet & Bengio, NeurIPS 2004): the mean prediction entropy of the real
  samples; minimising it moves decision boundaries out of dense regions of real data;
- diversity (information maximisation, as in SHOT, Liang et al., ICML 2020): the entropy
  of the real samples' *mean* prediction, maximised, so that entropy minimisation cannot
  settle on a few classes;
- consistency (FixMatch, Sohn et al., NeurIPS 2020): a real image already predicted with
  probability at least ``threshold`` must keep that class under a random augmentation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_synth.adaptation.base import (
    AdaptationInputs,
    AdaptationMethod,
    AdaptationOutput,
    Schedule,
)
from lightning_synth.batch import REAL
from lightning_synth.errors import InputError
from lightning_synth.nn.augment import RandomAffine

__all__ = ["RealSampleTerms", "mean_entropy", "marginal_entropy"]


def mean_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of the class distributions of ``N x C`` logits; 0 for none."""
    if len(logits) == 0:
        return logits.sum() * 0.0
    log_probabilities = F.log_softmax(logits.float(), dim=1)
    return -(log_probabilities.exp() * log_probabilities).sum(dim=1).mean()


def marginal_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of the mean class distribution of ``N x C`` logits; 0 for none.

    High when the predictions spread over the classes, 0 when all pick the same class.
    """
    if len(logits) == 0:
        return logits.sum() * 0.0
    mean = F.softmax(logits.float(), dim=1).mean(dim=0)
    return -(mean * mean.clamp(min=1e-12).log()).sum()


class RealSampleTerms(AdaptationMethod):
    """Entropy, diversity and pseudo-label consistency on the unlabelled real samples.

    The loss is ``weight * ramp * (entropy_weight * entropy - diversity_weight *
    diversity + consistency_weight * consistency)``. Logs ``real_entropy``,
    ``real_diversity`` and, in training with consistency on, ``consistency_loss`` and
    ``pseudo_label_fraction`` (the share of real samples confident enough).

    Args:
        entropy_weight: weight of the mean prediction entropy (0: off).
        diversity_weight: weight of the entropy of the mean prediction, maximised (0: off).
        consistency_weight: weight of the pseudo-label consistency (0: off); per-image
            classifiers only.
        threshold: the probability a real prediction needs to become a pseudo-label.
        augment: images -> augmented images for the consistency term; default
            :class:`~lightning_synth.nn.RandomAffine` (10 degrees, 10 % shift, zoom 0.9-1.1).
        weight: overall weight of the three terms.
        schedule: ramp of the weight.
        gamma: steepness of the ``dann`` ramp.
        max_samples: most samples (images or pixels) per domain and batch (0: all).
    """

    name = "real"
    needs_logits = True

    def __init__(
        self,
        entropy_weight: float = 0.3,
        diversity_weight: float = 0.3,
        consistency_weight: float = 1.0,
        threshold: float = 0.95,
        augment: nn.Module | None = None,
        weight: float = 1.0,
        schedule: Schedule = "dann",
        gamma: float = 10.0,
        max_samples: int = 4096,
    ) -> None:
        super().__init__(weight=weight, schedule=schedule, gamma=gamma, max_samples=max_samples)
        for name, value in {
            "entropy_weight": entropy_weight,
            "diversity_weight": diversity_weight,
            "consistency_weight": consistency_weight,
        }.items():
            if value < 0:
                raise InputError(f"{name} must be >= 0 (0 turns it off), got {value}")
        if not 0 <= threshold <= 1:
            raise InputError(f"threshold must be in [0, 1], got {threshold}")
        self.entropy_weight = float(entropy_weight)
        self.diversity_weight = float(diversity_weight)
        self.consistency_weight = float(consistency_weight)
        self.threshold = float(threshold)
        self.augment = augment if augment is not None else RandomAffine()

    def compute(self, inputs: AdaptationInputs, strength: float) -> AdaptationOutput:
        _, logits, domains = self.samples(inputs)
        assert logits is not None  # needs_logits: checked in forward
        real = logits[domains == REAL]
        entropy, diversity = mean_entropy(real), marginal_entropy(real)
        loss = self.entropy_weight * entropy - self.diversity_weight * diversity
        logs = {"real_entropy": entropy.detach(), "real_diversity": diversity.detach()}
        if self.consistency_weight > 0 and self.training:
            consistency, fraction = self.consistency(inputs)
            loss = loss + self.consistency_weight * consistency
            logs |= {"consistency_loss": consistency.detach(), "pseudo_label_fraction": fraction}
        return AdaptationOutput(loss=strength * loss, logs=logs)

    def consistency(self, inputs: AdaptationInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy between confident real predictions and the predictions for their
        augmented copies, averaged over all real samples; and the share that was confident."""
        logits = inputs.logits
        if logits is None or logits.ndim != 2:
            raise ValueError(
                "consistency_weight needs per-image predictions (B x classes); set "
                "consistency_weight: 0 for dense tasks"
            )
        if inputs.images is None or inputs.classify is None:
            raise ValueError("consistency_weight needs the task to pass its images and forward")
        is_real = inputs.domains == REAL
        probabilities = logits.detach()[is_real].float().softmax(dim=1)
        confidence, pseudo_labels = probabilities.max(dim=1)
        confident = confidence >= self.threshold
        fraction = confident.float().mean() if len(confident) else logits.new_zeros(()).float()
        if not bool(confident.any()):
            return logits.sum() * 0.0, fraction
        augmented = self.augment(inputs.images[is_real][confident])
        augmented_logits = inputs.classify(augmented)
        total = F.cross_entropy(augmented_logits.float(), pseudo_labels[confident], reduction="sum")
        return total / len(confident), fraction
