"""Synthetic image noise: additive Gaussian and signal-dependent Poisson-Gaussian.

Every model is a parameter-free ``nn.Module`` that maps a batch of clean images
``B x C x H x W`` in [0, 1] to noisy ones, on whatever device the images are. Each
parameter is a range; every image draws its own value. The random numbers come from
``generator``: one for the whole batch, or one per image, in which case an image's noise
depends only on its own generator (a DataLoader worker seeding image ``i`` with
``seed + i`` gets the same noise whichever batch the image lands in). With no generator
a fixed one seeded with ``seed`` is made on the images' device.

The camera pipeline (:class:`~lightning_synth.rendering.camera.CameraNoise`) builds on
these and lives in ``camera.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from lightning_synth.errors import InputError

__all__ = [
    "NoiseModel",
    "GaussianNoise",
    "PoissonGaussianNoise",
    "Generators",
    "as_range",
    "uniform",
    "log_uniform",
]

Generators = torch.Generator | Sequence[torch.Generator] | None
Range = float | tuple[float, float] | Sequence[float]


def as_range(value: Range, name: str, low: float = 0.0) -> tuple[float, float]:
    """``(lo, hi)`` from a number (a fixed value) or a pair, checked against ``low``.

    Args:
        value: a number or a ``[lo, hi]`` pair.
        name: the parameter's name, for the error message.
        low: smallest allowed value.
    """
    if isinstance(value, (int, float)):
        pair = (float(value), float(value))
    else:
        items = [float(v) for v in value]
        if len(items) != 2:
            raise InputError(f"{name} must be a number or a [low, high] pair, got {value!r}")
        pair = (items[0], items[1])
    if not low <= pair[0] <= pair[1]:
        raise InputError(f"{name} must satisfy {low} <= low <= high, got {list(pair)}")
    return pair


def uniform(
    bounds: tuple[float, float], count: int, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """``count`` numbers uniform in ``bounds`` (float32, on ``device``)."""
    draw = torch.rand(count, generator=generator, device=generator.device)
    return (bounds[0] + (bounds[1] - bounds[0]) * draw).to(device)


def log_uniform(
    bounds: tuple[float, float], count: int, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """``count`` numbers whose logarithm is uniform in ``log(bounds)`` (``bounds`` > 0)."""
    logs = uniform((math.log(bounds[0]), math.log(bounds[1])), count, generator, device)
    return logs.exp()


class NoiseModel(nn.Module):
    """Base of the noise models: per-image generators, clipping, a fixed default seed.

    Subclasses implement :meth:`apply` for a batch and one generator.

    Args:
        clip: clip the noisy images to [0, 1], as a stored 8-bit image is.
        seed: seed of the generator used when ``forward`` gets none.
    """

    def __init__(self, clip: bool = True, seed: int = 0) -> None:
        super().__init__()
        self.clip = bool(clip)
        self.seed = int(seed)

    def forward(self, images: torch.Tensor, generator: Generators = None) -> torch.Tensor:
        """Noisy copies of ``images``.

        Args:
            images: ``B x C x H x W`` (or ``C x H x W``) clean images in [0, 1].
            generator: one generator for the batch, one per image, or ``None`` (a fixed
                one from ``seed``). A generator may live on the CPU for images elsewhere.
        """
        single = images.ndim == 3
        batch = images[None] if single else images
        if batch.ndim != 4:
            raise ValueError(f"expected B x C x H x W images, got {tuple(images.shape)}")
        if generator is None:
            generator = torch.Generator(device=batch.device).manual_seed(self.seed)
        if isinstance(generator, torch.Generator):
            noisy = self.apply(batch, generator)
        else:
            if len(generator) != len(batch):
                raise ValueError(f"got {len(generator)} generators for {len(batch)} images")
            noisy = torch.cat(
                [self.apply(batch[i : i + 1], g) for i, g in enumerate(generator)], dim=0
            )
        if self.clip:
            noisy = noisy.clamp(0, 1)
        return noisy[0] if single else noisy

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The noisy batch (before clipping), drawing from ``generator``."""
        raise NotImplementedError(f"{type(self).__name__} must implement apply")

    @staticmethod
    def normal(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Standard normal numbers shaped as ``like``, drawn on the generator's device."""
        draw = torch.randn(like.shape, generator=generator, device=generator.device)
        return draw.to(device=like.device, dtype=like.dtype)


class GaussianNoise(NoiseModel):
    """Additive white Gaussian noise, the same standard deviation at every pixel.

    The textbook model that denoisers are usually trained with (DnCNN-B: ``sigma`` in
    [0, 55/255]).

    Args:
        sigma: standard deviation (images in [0, 1]): a number, or a ``[low, high]``
            range from which each image draws its own, uniformly.
        clip: clip the noisy images to [0, 1].
        seed: seed of the generator used when ``forward`` gets none.
    """

    def __init__(self, sigma: Range = (0.0, 0.1), clip: bool = True, seed: int = 0) -> None:
        super().__init__(clip=clip, seed=seed)
        self.sigma = as_range(sigma, "sigma")

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        sigma = uniform(self.sigma, len(images), generator, images.device)
        return images + sigma.view(-1, 1, 1, 1).to(images.dtype) * self.normal(images, generator)


class PoissonGaussianNoise(NoiseModel):
    """Shot and read noise of a sensor: variance ``shot * x + read`` at signal ``x``.

    Photon counting makes the variance grow with the signal (shot noise); the electronics
    add a constant floor (read noise). Each image draws ``shot`` log-uniformly from its
    range and ``read`` either from its own range or, as Brooks et al. (2019) fitted on
    real sensors, from ``log read = 2.18 log shot + 1.2 + N(0, 0.26)``. By default the
    noise is the heteroscedastic Gaussian approximation (Brooks et al.'s choice); with
    ``poisson`` the shot part is drawn as ``shot * Poisson(x / shot)``.

    Args:
        shot: shot-noise variance per unit of signal (images in [0, 1]), a number or a
            ``[low, high]`` range drawn log-uniformly; 0 turns it off.
        read: read-noise variance, a number or a range drawn log-uniformly; ``None``
            ties it to ``shot`` by Brooks et al.'s fit.
        poisson: draw the shot noise from a Poisson distribution (exact photon counts)
            instead of its Gaussian approximation.
        clip: clip the noisy images to [0, 1].
        seed: seed of the generator used when ``forward`` gets none.
    """

    def __init__(
        self,
        shot: Range = (1e-4, 1.2e-2),
        read: Range | None = None,
        poisson: bool = False,
        clip: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(clip=clip, seed=seed)
        self.shot = as_range(shot, "shot")
        self.read = None if read is None else as_range(read, "read")
        if self.read is None and self.shot[0] <= 0:
            raise InputError("read=None ties the read noise to shot, which must then be > 0")
        self.poisson = bool(poisson)

    def variances(
        self, count: int, generator: torch.Generator, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` pairs ``(shot, read)`` as each image draws them."""
        shot = _draw_variance(self.shot, count, generator, device)
        if self.read is None:
            jitter = torch.randn(count, generator=generator, device=generator.device)
            log_read = 2.18 * shot.log() + 1.2 + 0.26 * jitter.to(device)
            return shot, log_read.exp()
        return shot, _draw_variance(self.read, count, generator, device)

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        shot, read = self.variances(len(images), generator, images.device)
        return add_shot_read_noise(images, shot, read, generator, self.poisson)


def _draw_variance(
    bounds: tuple[float, float], count: int, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    if bounds[0] <= 0:  # a range from 0 cannot be log-uniform: uniform instead
        return uniform(bounds, count, generator, device)
    return log_uniform(bounds, count, generator, device)


def add_shot_read_noise(
    images: torch.Tensor,
    shot: torch.Tensor,
    read: torch.Tensor,
    generator: torch.Generator,
    poisson: bool = False,
) -> torch.Tensor:
    """``images`` plus noise of variance ``shot * x + read`` (per image ``shot``, ``read``).

    Args:
        images: ``B x C x H x W`` signal (linear light).
        shot: ``B`` shot-noise variances per unit signal.
        read: ``B`` read-noise variances.
        generator: random source.
        poisson: exact Poisson shot noise instead of its Gaussian approximation.
    """
    shot = shot.view(-1, 1, 1, 1).to(images.dtype)
    read = read.view(-1, 1, 1, 1).to(images.dtype)
    signal = images.clamp_min(0)
    if not poisson:
        std = (shot * signal + read).sqrt()
        return images + std * NoiseModel.normal(images, generator)
    rate = (signal / shot.clamp_min(1e-12)).to(device=generator.device, dtype=torch.float32)
    counts = torch.poisson(rate, generator=generator).to(device=images.device, dtype=images.dtype)
    shot_part = torch.where(shot > 0, counts * shot, signal)
    return shot_part + read.sqrt() * NoiseModel.normal(images, generator)
