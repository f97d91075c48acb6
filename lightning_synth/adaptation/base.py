"""What every adaptation method shares: its inputs, its output, its weight and ramp.

A method is a plain ``nn.Module``. The task hands it an :class:`AdaptationInputs` (features
of the whole mixed batch, their domain codes, the class logits where the task has them) and
the training progress; it returns an :class:`AdaptationOutput` whose ``loss`` is already
weighted and ramped, ready to add to the task's own loss. Dense features
(``B x D x H x W``) become one sample per pixel, restricted to ``pixel_mask`` (for depth
frames: the person) and subsampled to ``max_samples`` per domain, so every method is
written once, for ``N x D`` samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from torch import nn

from lightning_synth.batch import REAL, RENDERED
from lightning_synth.errors import InputError
from lightning_synth.nn.schedules import grl_lambda

__all__ = [
    "AdaptationInputs",
    "AdaptationOutput",
    "AdaptationMethod",
    "Schedule",
    "domain_samples",
]

Schedule = Literal["dann", "linear", "constant"]


@dataclass
class AdaptationInputs:
    """The mixed batch as an adaptation method sees it.

    Args:
        features: ``B x D`` features, or ``B x D x H x W`` feature maps (one sample per pixel).
        domains: ``B`` domain codes (0 rendered, 1 real).
        logits: class scores ``B x C`` (or ``B x C x H x W``) for the methods that condition
            on classes (CDAN, MCC, the real-sample terms); ``None`` for tasks without classes.
        pixel_mask: ``B x H x W`` bool, the pixels of feature maps that count; ``None``: all.
        images: the batch's images, for methods that re-run the network on augmented copies.
        classify: images -> logits (the task's own forward), for the consistency term.
    """

    features: torch.Tensor
    domains: torch.Tensor
    logits: torch.Tensor | None = None
    pixel_mask: torch.Tensor | None = None
    images: torch.Tensor | None = None
    classify: Callable[[torch.Tensor], torch.Tensor] | None = None


@dataclass
class AdaptationOutput:
    """A method's contribution: ``loss`` (weighted, ramped; add it to the task's loss) and
    ``logs``, detached scalars by short name (the task logs them as ``{stage}/{name}``)."""

    loss: torch.Tensor
    logs: dict[str, torch.Tensor] = field(default_factory=dict)


def domain_samples(
    values: torch.Tensor,
    domains: torch.Tensor,
    pixel_mask: torch.Tensor | None = None,
    max_samples: int = 0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``N x D`` samples and their ``N`` domain codes from ``B x D`` or ``B x D x H x W`` values.

    Feature maps give one sample per pixel of ``pixel_mask`` (all pixels without one);
    with ``max_samples > 0`` at most that many random samples per domain are kept, so the
    pairwise methods (MMD) stay affordable on dense maps and per-pixel features.

    Args:
        values: ``B x D`` or ``B x D x H x W``.
        domains: ``B`` domain codes.
        pixel_mask: ``B x H x W`` bool, resized (nearest) to the maps' size if it differs.
        max_samples: most samples per domain (0: all).
        generator: random source for the subsample.
    """
    if values.ndim < 2:
        raise ValueError(f"expected B x D or B x D x H x W values, got {tuple(values.shape)}")
    if values.ndim == 2:
        flat, flat_domains = values, domains
        if max_samples <= 0 or len(values) <= max_samples:
            return values, domains
        index = torch.arange(len(values), device=values.device)
    else:
        batch, channels = values.shape[:2]
        spatial = values.shape[2:]
        pixel_domains = domains.view(batch, *([1] * len(spatial))).expand(batch, *spatial)
        if pixel_mask is not None:
            if pixel_mask.shape[1:] != spatial:
                resized = nn.functional.interpolate(pixel_mask[:, None].float(), size=spatial)
                pixel_mask = resized[:, 0] > 0.5
            keep = pixel_mask.reshape(-1)
        else:
            keep = torch.ones(pixel_domains.numel(), dtype=torch.bool, device=values.device)
        flat = values.movedim(1, -1).reshape(-1, channels)
        flat_domains = pixel_domains.reshape(-1)
        index = keep.nonzero()[:, 0]
    if max_samples > 0:
        chosen = []
        for code in (RENDERED, REAL):
            mine = index[flat_domains[index] == code]
            if len(mine) > max_samples:
                order = torch.randperm(len(mine), generator=generator, device="cpu")
                mine = mine[order[:max_samples].to(mine.device)]
            chosen.append(mine)
        index = torch.cat(chosen)
    return flat[index], flat_domains[index]


class AdaptationMethod(nn.Module):
    """Base of every adaptation method: a weight, a ramp over training, one ``forward``.

    Subclasses implement :meth:`compute` on ``N x D`` samples (see :func:`domain_samples`)
    and may build networks in :meth:`bind`, which the task calls once it knows its feature
    width and number of classes.

    Args:
        weight: the method's largest weight in the loss (adversarial methods: the largest
            gradient-reversal strength).
        schedule: how the weight ramps up with training progress ``p``: ``dann``,
            ``2 / (1 + exp(-gamma p)) - 1`` (Ganin et al. 2016); ``linear``, ``p``;
            ``constant``, 1 from the first step.
        gamma: steepness of the ``dann`` ramp (the paper: 10).
        max_samples: at most this many random samples (images, or pixels of feature maps)
            per domain and batch (0: all).
    """

    #: Short name used in logged metrics (``train/{name}_loss``).
    name: ClassVar[str] = "adaptation"
    #: Whether the method needs class logits (CDAN, MCC, the real-sample terms).
    needs_logits: ClassVar[bool] = False

    def __init__(
        self,
        weight: float = 1.0,
        schedule: Schedule = "dann",
        gamma: float = 10.0,
        max_samples: int = 4096,
    ) -> None:
        super().__init__()
        if weight < 0:
            raise InputError(f"weight must be >= 0 (0 turns the method off), got {weight}")
        if schedule not in ("dann", "linear", "constant"):
            raise InputError(f"schedule must be 'dann', 'linear' or 'constant', got {schedule!r}")
        if max_samples < 0:
            raise InputError(f"max_samples must be >= 0 (0: all pixels), got {max_samples}")
        self.weight = float(weight)
        self.schedule = schedule
        self.gamma = float(gamma)
        self.max_samples = int(max_samples)

    def bind(self, feature_dim: int, num_classes: int | None = None) -> None:
        """Build what depends on the task's sizes (e.g. a domain discriminator).

        Args:
            feature_dim: ``D``, the channels of the features the task hands over.
            num_classes: number of classes, ``None`` for tasks without classes.
        """
        if self.needs_logits and num_classes is None:
            raise ValueError(
                f"{type(self).__name__} needs class predictions; this task has none. "
                "Use a method that works on features alone (DomainAdversarial, CORAL, MMD)."
            )

    def ramp(self, progress: float) -> float:
        """The schedule's factor (0 to 1) at training progress ``progress``."""
        if self.schedule == "constant":
            return 1.0
        if self.schedule == "linear":
            return min(max(progress, 0.0), 1.0)
        return grl_lambda(progress, self.gamma)

    def samples(
        self, inputs: AdaptationInputs
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """``N x D`` features, ``N x C`` logits (``None`` without) and ``N`` domain codes:
        one sample per image, or per kept pixel of feature maps (the same pixels for both)."""
        if inputs.logits is None:
            features, domains = domain_samples(
                inputs.features, inputs.domains, inputs.pixel_mask, self.max_samples
            )
            return features, None, domains
        width = inputs.features.shape[1]
        joint = torch.cat([inputs.features, inputs.logits.to(inputs.features.dtype)], dim=1)
        both, domains = domain_samples(joint, inputs.domains, inputs.pixel_mask, self.max_samples)
        return both[:, :width], both[:, width:], domains

    def forward(self, inputs: AdaptationInputs, progress: float = 1.0) -> AdaptationOutput:
        """The method's weighted, ramped loss on ``inputs`` at training progress ``progress``."""
        if self.needs_logits and inputs.logits is None:
            raise ValueError(f"{type(self).__name__} needs class logits; the task gave none")
        return self.compute(inputs, self.weight * self.ramp(progress))

    def compute(self, inputs: AdaptationInputs, strength: float) -> AdaptationOutput:
        """The loss at ``strength`` (weight times ramp); implemented by each method."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute")
