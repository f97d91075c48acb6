"""Conditional domain-adversarial training (CDAN; Long et al., NeurIPS 2018).

The discriminator sees the multilinear map of features and class probabilities (their
outer product), so rendered and real features are aligned class by class rather than as
two clouds: a rendered "3" is not matched with a real "2". With ``entropy_conditioning``
(CDAN+E) each sample's discriminator loss is weighted by ``1 + exp(-entropy)``, so
confident, transferable samples count more. Past ``max_map_dim`` channels the outer
product is replaced by the paper's randomized multilinear map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lightning_synth.adaptation.adversarial import (
    DomainAdversarial,
    balanced_domain_accuracy,
)
from lightning_synth.adaptation.base import (
    AdaptationInputs,
    AdaptationOutput,
    Schedule,
)
from lightning_synth.batch import REAL
from lightning_synth.errors import InputError
from lightning_synth.nn.gradient_reversal import grad_reverse

__all__ = ["CDAN", "multilinear_map"]


def multilinear_map(features: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
    """Outer product of features and class probabilities per sample: ``N x (D * C)``.

    Channel ``d * C + c`` is feature ``d`` times the probability of class ``c``.

    Args:
        features: ``N x D`` features.
        probabilities: ``N x C`` class probabilities.
    """
    if features.ndim != 2 or probabilities.ndim != 2 or len(features) != len(probabilities):
        raise ValueError(
            f"features {tuple(features.shape)} and probabilities {tuple(probabilities.shape)} "
            "must be N x D and N x C"
        )
    product = features.unsqueeze(2) * probabilities.unsqueeze(1).to(features.dtype)
    return product.flatten(1, 2)


class CDAN(DomainAdversarial):
    """Conditional adversarial adaptation: the discriminator sees features x predictions.

    Needs class logits. Logs ``cdan_loss``, ``domain_acc`` and ``grl_lambda``.

    Args:
        discriminator: ``N x M`` -> ``N`` "is real" logits, with ``M = D * num_classes``
            (or ``max_map_dim`` with the randomized map); default sized at bind time.
        hidden: hidden widths of the default discriminator (tllib: 1024, 1024).
        entropy_conditioning: weight each sample by ``1 + exp(-entropy)`` (CDAN+E).
        max_map_dim: above this many channels ``D * C``, use the randomized multilinear
            map of that width instead of the full outer product.
        weight: the largest reversal strength.
        schedule: ramp of the reversal strength.
        gamma: steepness of the ``dann`` ramp.
        max_samples: most samples (images or pixels) per domain and batch (0: all).
    """

    name = "cdan"
    needs_logits = True

    def __init__(
        self,
        discriminator: nn.Module | None = None,
        hidden: Sequence[int] = (100,),
        entropy_conditioning: bool = False,
        max_map_dim: int = 4096,
        weight: float = 1.0,
        schedule: Schedule = "dann",
        gamma: float = 10.0,
        max_samples: int = 4096,
    ) -> None:
        super().__init__(
            discriminator=discriminator,
            hidden=hidden,
            weight=weight,
            schedule=schedule,
            gamma=gamma,
            max_samples=max_samples,
        )
        if max_map_dim < 1:
            raise InputError(f"max_map_dim must be positive, got {max_map_dim}")
        self.entropy_conditioning = bool(entropy_conditioning)
        self.max_map_dim = int(max_map_dim)

    def discriminator_width(self, feature_dim: int, num_classes: int | None) -> int:
        width = feature_dim * int(num_classes or 1)
        if width <= self.max_map_dim:
            return width
        # Randomized multilinear map (the paper, section 3.2): fixed Gaussian projections,
        # saved with the model so a checkpoint reloads the same map.
        generator = torch.Generator().manual_seed(0)
        self.register_buffer(
            "feature_projection", torch.randn(feature_dim, self.max_map_dim, generator=generator)
        )
        self.register_buffer(
            "class_projection",
            torch.randn(int(num_classes or 1), self.max_map_dim, generator=generator),
        )
        return self.max_map_dim

    def discriminator_input(
        self, features: torch.Tensor, logits: torch.Tensor | None
    ) -> torch.Tensor:
        if logits is None:
            raise ValueError("CDAN needs class logits; the task gave none")
        probabilities = logits.detach().float().softmax(dim=1).to(features.dtype)
        if hasattr(self, "feature_projection"):
            projected = (features @ self.feature_projection.to(features.dtype)) * (
                probabilities @ self.class_projection.to(features.dtype)
            )
            return projected / self.max_map_dim**0.5
        return multilinear_map(features, probabilities)

    def compute(self, inputs: AdaptationInputs, strength: float) -> AdaptationOutput:
        if self.discriminator is None:
            raise RuntimeError("CDAN has no discriminator: the task must call bind() first")
        features, logits, domains = self.samples(inputs)
        reversed_features = grad_reverse(features, strength)
        domain_logits = self.discriminator(self.discriminator_input(reversed_features, logits))
        domain_logits = domain_logits.reshape(len(domains)).float()
        is_real = domains == REAL
        per_sample = F.binary_cross_entropy_with_logits(
            domain_logits, is_real.float(), reduction="none"
        )
        if self.entropy_conditioning:
            probabilities = logits.detach().float().softmax(dim=1)
            entropy = -(probabilities * probabilities.clamp(min=1e-12).log()).sum(dim=1)
            weights = 1.0 + torch.exp(-entropy)
        else:
            weights = torch.ones_like(per_sample)
        # Each domain weighs the same, and within it samples by their (normalised) weight.
        loss = per_sample.new_zeros(())
        present = 0
        for mask in (~is_real, is_real):
            if bool(mask.any()):
                loss = loss + (per_sample[mask] * weights[mask]).sum() / weights[mask].sum()
                present += 1
        loss = loss / max(present, 1)
        logs = {
            "cdan_loss": loss.detach(),
            "domain_acc": balanced_domain_accuracy(domain_logits, domains),
            "grl_lambda": torch.tensor(strength),
        }
        return AdaptationOutput(loss=loss, logs=logs)
