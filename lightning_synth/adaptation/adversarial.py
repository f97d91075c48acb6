"""Domain-adversarial training (Ganin & Lempitsky, ICML 2015; Ganin et al., JMLR 2016).

A domain discriminator learns to tell rendered from real features; between the features
and the discriminator a gradient-reversal layer hands the features the *negated*
gradient, so they learn to make the two domains indistinguishable. The reversal strength
follows the paper's ramp ``weight * (2 / (1 + exp(-gamma p)) - 1)``; the discriminator
itself always learns at full strength.
"""

from __future__ import annotations

from collections.abc import Sequence

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
from lightning_synth.nn.domain_adversarial import DomainClassifier
from lightning_synth.nn.gradient_reversal import grad_reverse

__all__ = ["DomainAdversarial", "balanced_domain_loss", "balanced_domain_accuracy"]


def balanced_domain_loss(logits: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of "is real", each domain present weighing the same.

    The mean loss over the rendered samples and the mean loss over the real samples are
    averaged, so a batch of 3 real and 61 rendered samples trains the discriminator as much
    on real as on rendered.

    Args:
        logits: ``N`` domain logits, positive for "real".
        domains: ``N`` domain codes.
    """
    is_real = domains == REAL
    target = is_real.to(torch.float32)
    per_sample = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")
    counts = torch.stack([(~is_real).sum(), is_real.sum()]).to(per_sample.dtype)
    present = (counts > 0).sum().clamp(min=1)
    weights = 1.0 / counts[is_real.long()].clamp(min=1)
    return (per_sample * weights).sum() / present


def balanced_domain_accuracy(logits: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
    """Mean over the domains present of the share of samples the discriminator gets right
    (0.5: it cannot tell them apart)."""
    is_real = domains == REAL
    correct = ((logits.detach() > 0) == is_real).float()
    rates = [correct[mask].mean() for mask in (~is_real, is_real) if bool(mask.any())]
    return torch.stack(rates).mean() if rates else logits.new_zeros(()).float()


class DomainAdversarial(AdaptationMethod):
    """DANN's domain-adversarial term: a discriminator behind a gradient-reversal layer.

    Logs ``domain_loss`` (the discriminator's balanced cross-entropy), ``domain_acc``
    (its balanced accuracy: 0.5 means the features no longer tell the domains apart) and
    ``grl_lambda`` (the current reversal strength).

    Args:
        discriminator: features ``N x D`` -> ``N`` "is real" logits; default
            :class:`~lightning_synth.nn.DomainClassifier` with ``hidden`` layers, sized
            when the task binds the method.
        hidden: hidden widths of the default discriminator (the paper: one layer of 100).
        weight: the largest reversal strength (0: the discriminator learns, the features
            are left alone: a source-only baseline that still reports ``domain_acc``).
        schedule: ramp of the reversal strength (``dann``: the paper's).
        gamma: steepness of the ``dann`` ramp (the paper: 10).
        max_samples: most samples (images or pixels) per domain and batch (0: all).
    """

    name = "domain"

    def __init__(
        self,
        discriminator: nn.Module | None = None,
        hidden: Sequence[int] = (100,),
        weight: float = 1.0,
        schedule: Schedule = "dann",
        gamma: float = 10.0,
        max_samples: int = 4096,
    ) -> None:
        super().__init__(weight=weight, schedule=schedule, gamma=gamma, max_samples=max_samples)
        self.hidden = tuple(hidden)
        self.discriminator = discriminator

    def discriminator_width(self, feature_dim: int, num_classes: int | None) -> int:
        """Width of what the discriminator sees (the features; CDAN widens it)."""
        return feature_dim

    def bind(self, feature_dim: int, num_classes: int | None = None) -> None:
        super().bind(feature_dim, num_classes)
        width = self.discriminator_width(feature_dim, num_classes)
        if self.discriminator is None:
            self.discriminator = DomainClassifier(width, hidden=self.hidden)
        elif any(isinstance(p, nn.parameter.UninitializedParameter) for p in self.parameters()):
            # Lazy layers take their size from one dummy pass here, before DDP wraps the
            # model, an optimizer sees it or a checkpoint is loaded into it.
            with torch.no_grad():
                self.discriminator(torch.zeros(2, width))

    def discriminator_input(
        self, features: torch.Tensor, logits: torch.Tensor | None
    ) -> torch.Tensor:
        """What the discriminator sees, from the (already reversed) features."""
        return features

    def compute(self, inputs: AdaptationInputs, strength: float) -> AdaptationOutput:
        if self.discriminator is None:
            raise RuntimeError(
                f"{type(self).__name__} has no discriminator: the task must call bind() first"
            )
        features, logits, domains = self.samples(inputs)
        reversed_features = grad_reverse(features, strength)
        domain_logits = self.discriminator(self.discriminator_input(reversed_features, logits))
        domain_logits = domain_logits.reshape(len(domains))
        loss = balanced_domain_loss(domain_logits, domains)
        logs = {
            "domain_loss": loss.detach(),
            "domain_acc": balanced_domain_accuracy(domain_logits, domains),
            "grl_lambda": torch.tensor(strength),
        }
        return AdaptationOutput(loss=loss, logs=logs)
