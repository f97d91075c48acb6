"""Noise learned from real noisy photographs: patches of their flat regions, re-used.

A parametric noise model (Gaussian, Poisson-Gaussian, a camera pipeline) has to guess
what a camera, its noise reduction and its JPEG encoder did to the noise: its strength at
each brightness, its spatial correlation, its colour. :class:`SampledNoise` does not
guess: it cuts the noise out of the user's own noisy photographs, where they are flat,
and adds it to clean ones (the noise-extraction step of GCBD, Chen et al. 2018, "Image
Blind Denoising With Generative Adversarial Network Based Noise Modeling", used directly
instead of through a GAN). No clean reference is needed.

Fitting (:meth:`SampledNoise.fit`): every photograph is cut into ``patch_size`` blocks;
each block minus its least-squares plane (per channel) is its *residual*, which in a
flat block is the noise, with the spatial correlation, colour and JPEG structure the
camera gave it. Blocks are grouped by brightness (``levels`` bins of their mean); in each
bin of each photograph the ``flat_fraction`` with the smallest residual are kept (the
others hold texture). The pooled median residual standard deviation per bin is the
*noise level function*: the noise's strength against brightness.

Sampling (:meth:`SampledNoise.apply`): each ``patch_size`` tile of a clean image gets
the residual of a random kept block of its brightness bin, rescaled pixel by pixel by the
noise level function (the level at the pixel's brightness over the level of the block's
bin), so the noise follows the clean image's brightness inside the tile too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from lightning_synth.errors import InputError
from lightning_synth.image_io import PAIR_SUFFIXES, read_image
from lightning_synth.rendering.noise import NoiseModel, Range, as_range, uniform

__all__ = ["SampledNoise", "plane_residuals"]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
#: What marks a clean reference beside noisy photographs (PolyU-style names, clean/).
_REFERENCE_STEMS = tuple(reference for _, reference in PAIR_SUFFIXES)


def _is_reference(path: Path, root: Path) -> bool:
    return path.stem.endswith(_REFERENCE_STEMS) or "clean" in path.relative_to(root).parts[:-1]


#: Fewest blocks of one brightness in one photograph to choose flat ones among.
_MIN_BLOCKS = 4
#: A kept block's residual spread is at most this many times its bin's median.
_OUTLIER = 2.5


def _even_spread(residuals: torch.Tensor) -> torch.Tensor:
    """Largest over smallest standard deviation of each block's four quadrants: near 1
    for noise, large where an edge or texture fills part of the block."""
    half = residuals.shape[-1] // 2
    quadrants = residuals.unfold(2, half, half).unfold(3, half, half)  # N x C x 2 x 2 x h x h
    spread = quadrants.permute(0, 2, 3, 1, 4, 5).flatten(3).std(dim=3).flatten(1)
    return spread.amax(dim=1) / spread.amin(dim=1).clamp_min(1e-8)


def plane_residuals(blocks: torch.Tensor) -> torch.Tensor:
    """Each block minus its least-squares plane ``a + b y + c x``, channel by channel.

    Args:
        blocks: ``N x C x P x P``.
    """
    size = blocks.shape[-1]
    axis = torch.arange(size, dtype=blocks.dtype, device=blocks.device) - (size - 1) / 2
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    design = torch.stack([torch.ones_like(y), y, x]).flatten(1)  # 3 x P*P
    # The columns are orthogonal on a centred grid: the projection is a sum of outer products.
    design = design / design.norm(dim=1, keepdim=True)
    flat = blocks.flatten(-2)
    fitted = (flat @ design.T) @ design
    return (flat - fitted).view_as(blocks)


class SampledNoise(NoiseModel):
    """Noise cut from flat regions of real noisy photographs, added to clean images.

    Fit it to photographs with :meth:`fit` (``NoisyImageDataModule`` does so with its
    real photographs, references unused, when the model is not fitted yet) or give
    ``photographs``: a folder read at the first use.

    Args:
        photographs: folder of noisy photographs to fit to (with its subfolders; clean
            references, ``*_mean``/``*_clean`` files or a ``clean/`` folder, are skipped);
            ``None``: call :meth:`fit`.
        patch_size: side of the blocks cut from the photographs and of the tiles of noise.
        levels: brightness bins of the noise level function.
        flat_fraction: share of each photograph's blocks, per brightness bin, kept as
            flat (the ones with the smallest residual).
        uniformity: most a flat block's quadrants may differ in residual standard deviation
            (largest over smallest): noise is even, texture and edges are not.
        scale: factor on the noise, a number or a ``[low, high]`` range each image draws
            from uniformly (1: the photographs' strength).
        detrend: what each block loses before it counts as noise: its least-squares
            ``plane`` (shading gradients go, and with them the noise's slowest blotches)
            or only its ``mean`` (the noise keeps its low frequencies up to the block
            size; a shading gradient inside a flat block stays with it).
        per_photograph: each image's noise from one photograph drawn at random, at that
            photograph's strength, instead of blocks pooled over all photographs at their
            median strength (which gives the noisiest camera too little and the cleanest
            too much).
        clip: clip the noisy images to [0, 1].
        seed: seed of the generator used when ``forward`` gets none.
    """

    def __init__(
        self,
        photographs: str | None = None,
        patch_size: int = 32,
        levels: int = 8,
        flat_fraction: float = 0.2,
        uniformity: float = 1.5,
        scale: Range = 1.0,
        detrend: Literal["plane", "mean"] = "plane",
        per_photograph: bool = False,
        clip: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(clip=clip, seed=seed)
        if detrend not in ("plane", "mean"):
            raise InputError(f"detrend must be 'plane' or 'mean', got {detrend!r}")
        if patch_size < 4 or levels < 1 or not 0 < flat_fraction <= 1 or uniformity < 1:
            raise InputError(
                "SampledNoise needs patch_size >= 4, levels >= 1, 0 < flat_fraction <= 1 and "
                f"uniformity >= 1, got {patch_size}, {levels}, {flat_fraction}, {uniformity}"
            )
        self.photographs = photographs
        self.patch_size, self.levels, self.flat_fraction = patch_size, levels, flat_fraction
        self.uniformity = float(uniformity)
        self.scale = as_range(scale, "scale")
        self.detrend = detrend
        self.per_photograph = bool(per_photograph)
        self.patches: torch.Tensor | None = None  # N x C x P x P residuals
        self.patch_level = torch.zeros(0, dtype=torch.long)  # N bins
        self.noise_level = torch.zeros(levels)  # std per bin
        self._members: list[torch.Tensor] = []  # kept blocks to draw from, per bin
        # Per photograph (by its position in the fitted sequence): its level per bin and
        # its kept blocks per bin; photographs without kept blocks are absent.
        self.photograph_level: dict[int, torch.Tensor] = {}
        self._photograph_members: dict[int, list[torch.Tensor]] = {}

    @property
    def fitted(self) -> bool:
        """Whether the model holds noise to sample."""
        return self.patches is not None

    def fit(self, photographs: Iterable[torch.Tensor]) -> SampledNoise:
        """Cut the flat blocks' noise out of ``photographs`` (``C x H x W`` in [0, 1], all
        with the channels of the images the noise will be added to).

        Args:
            photographs: the noisy photographs.
        """
        size, kept, kept_levels, owners = self.patch_size, [], [], []
        channels = None
        for index, photo in enumerate(photographs):
            photo = photo.float()
            if channels is not None and photo.shape[0] != channels:
                raise InputError("SampledNoise.fit needs photographs with one channel count")
            channels = photo.shape[0]
            if min(photo.shape[-2:]) < size:
                continue
            blocks = photo.unfold(1, size, size).unfold(2, size, size)  # C x h x w x P x P
            blocks = blocks.permute(1, 2, 0, 3, 4).reshape(-1, channels, size, size)
            if self.detrend == "plane":
                residuals = plane_residuals(blocks)
            else:
                residuals = blocks - blocks.mean(dim=(-2, -1), keepdim=True)
            spread = residuals.flatten(1).std(dim=1)
            level = self._level_of(blocks.mean(dim=(1, 2, 3)))
            even = _even_spread(residuals) <= self.uniformity
            for bin_index in level.unique():
                members = torch.nonzero(level == bin_index).flatten()
                if len(members) < _MIN_BLOCKS:
                    continue  # too few blocks to tell flat from textured
                count = max(1, math.ceil(self.flat_fraction * len(members)))
                flattest = members[spread[members].argsort()[:count]]
                flattest = flattest[even[flattest]]
                kept.append(residuals[flattest])
                kept_levels.append(level[flattest])
                owners.append(torch.full((len(flattest),), index, dtype=torch.long))
        if not kept:
            raise InputError(
                f"SampledNoise found no photograph of at least {size} x {size} pixels to "
                "learn the noise from; give larger photographs or a smaller patch_size"
            )
        patches, levels, owner = torch.cat(kept), torch.cat(kept_levels), torch.cat(owners)
        spread = patches.flatten(1).std(dim=1)
        # Texture that passed both tests is far stronger than the noise of its bin elsewhere.
        # (Across photographs: one photograph's few blocks of a bin are too few to judge.)
        typical = torch.zeros(self.levels)
        for bin_index in levels.unique():
            typical[bin_index] = spread[levels == bin_index].median()
        plausible = spread <= _OUTLIER * typical[levels]
        patches, levels, spread = patches[plausible], levels[plausible], spread[plausible]
        owner = owner[plausible]
        self.patches, self.patch_level = patches.contiguous(), levels
        self.noise_level, self._members = self._level_and_members(levels, spread)
        self.photograph_level, self._photograph_members = {}, {}
        for photo in owner.unique().tolist():
            mine = torch.nonzero(owner == photo).flatten()
            level, members = self._level_and_members(levels[mine], spread[mine])
            self.photograph_level[photo] = level
            self._photograph_members[photo] = [mine[m] for m in members]
        return self

    def _level_and_members(
        self, levels: torch.Tensor, spread: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The noise level per bin of blocks in ``levels`` bins with residual ``spread``, and
        each bin's blocks (positions in ``levels``)."""
        centres, known = [], []
        for bin_index in range(self.levels):
            members = spread[levels == bin_index]
            if len(members):
                centres.append((bin_index + 0.5) / self.levels)
                known.append(float(members.median()))
        # Bins without blocks take the level of the nearest bins with some.
        grid = (np.arange(self.levels) + 0.5) / self.levels
        level = torch.from_numpy(np.interp(grid, centres, known)).float().clamp_min(1e-4)
        # Each bin's blocks, and for a bin without any, those of the nearest bin with some.
        filled = levels.unique().tolist()
        members = [
            torch.nonzero(levels == min(filled, key=lambda b, want=want: abs(b - want))).flatten()
            for want in range(self.levels)
        ]
        return level, members

    def _level_of(self, brightness: torch.Tensor) -> torch.Tensor:
        return (brightness * self.levels).long().clamp(0, self.levels - 1)

    def _ensure_fitted(self) -> None:
        if self.fitted:
            return
        if self.photographs is None:
            raise InputError(
                "SampledNoise has no noise to sample: give photographs=FOLDER, call fit(), or "
                "use it as the noise of NoisyImageDataModule, which fits it to its real photographs"
            )
        folder = Path(self.photographs).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"no folder {self.photographs!r} of noisy photographs")
        files = sorted(
            path
            for path in folder.rglob("*")
            if path.suffix.lower() in _IMAGE_SUFFIXES and not _is_reference(path, folder)
        )
        self.fit(read_image(path) for path in files)

    def fit_if_needed(self, photographs: Iterable[torch.Tensor]) -> None:
        """:meth:`fit` to ``photographs`` unless fitted or given a folder of its own."""
        if not self.fitted and self.photographs is None:
            self.fit(photographs)

    def of_photograph(
        self, images: torch.Tensor, generator: torch.Generator, photograph: int
    ) -> torch.Tensor:
        """Noisy copies of ``images`` (``B x C x H x W``) with the noise of one fitted
        photograph: the one a crop was cut from, so the added noise matches the noise the
        crop already holds (as Noisier2Noise assumes). A photograph without flat blocks
        gives way to a random one.

        Args:
            images: clean (or noisy) images in [0, 1].
            generator: the random draws.
            photograph: position of the photograph in the sequence given to :meth:`fit`.
        """
        noisy = self._noisy(images, generator, photograph)
        return noisy.clamp(0, 1) if self.clip else noisy

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self._noisy(images, generator, None)

    def _noisy(
        self, images: torch.Tensor, generator: torch.Generator, photograph: int | None
    ) -> torch.Tensor:
        self._ensure_fitted()
        assert self.patches is not None
        channels = images.shape[1]
        if channels != self.patches.shape[1]:
            raise InputError(
                f"SampledNoise was fitted to {self.patches.shape[1]}-channel photographs but "
                f"got {channels}-channel images; fit it to photographs of the same channels"
            )
        if photograph is None and not self.per_photograph:
            return self._add(images, generator, self.noise_level, self._members)
        known = list(self._photograph_members)
        noisy = []
        for image in images.split(1):
            chosen = photograph
            if chosen not in self._photograph_members:
                pick = torch.randint(len(known), (1,), generator=generator, device=generator.device)
                chosen = known[int(pick)]
            members = self._photograph_members[chosen]
            noisy.append(self._add(image, generator, self.photograph_level[chosen], members))
        return torch.cat(noisy)

    def _add(
        self,
        images: torch.Tensor,
        generator: torch.Generator,
        noise_level: torch.Tensor,
        members_of_bin: list[torch.Tensor],
    ) -> torch.Tensor:
        """``images`` plus blocks drawn from ``members_of_bin`` at the levels of
        ``noise_level``."""
        assert self.patches is not None
        count, channels, height, width = images.shape
        size = self.patch_size
        rows, cols = -(-height // size), -(-width // size)
        padded = torch.nn.functional.pad(
            images, (0, cols * size - width, 0, rows * size - height), mode="replicate"
        )
        brightness = padded.mean(dim=1, keepdim=True)  # B x 1 x H' x W'
        tile_mean = torch.nn.functional.avg_pool2d(brightness, size).flatten()  # B*rows*cols
        tile_level = self._level_of(tile_mean.cpu())
        # A random kept block of each tile's bin.
        draw = torch.rand(len(tile_level), generator=generator, device=generator.device).cpu()
        choice = torch.empty(len(tile_level), dtype=torch.long)
        for index, (level, u) in enumerate(zip(tile_level.tolist(), draw.tolist(), strict=True)):
            members = members_of_bin[level]
            choice[index] = members[min(int(u * len(members)), len(members) - 1)]
        patches = self.patches[choice].to(device=images.device, dtype=images.dtype)
        noise = patches.view(count, rows, cols, channels, size, size)
        noise = noise.permute(0, 3, 1, 4, 2, 5).reshape(count, channels, rows * size, cols * size)
        # Pixel by pixel: the level at the pixel's brightness over the level of the block's bin.
        levels = noise_level.to(device=images.device, dtype=images.dtype)
        pixel_level = _level_curve(brightness, levels)
        block_level = levels[self.patch_level[choice].to(images.device)]
        block_level = block_level.view(count, 1, rows, cols).repeat_interleave(size, 2)
        block_level = block_level.repeat_interleave(size, 3)
        factor = uniform(self.scale, count, generator, images.device).view(-1, 1, 1, 1)
        noise = noise * (pixel_level / block_level).clamp(0.25, 4.0) * factor.to(images.dtype)
        return images + noise[..., :height, :width]


def _level_curve(brightness: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """The noise level at each brightness: linear between the bins' centres."""
    bins = len(levels)
    position = (brightness * bins - 0.5).clamp(0, bins - 1)
    low = position.floor().long().clamp(max=bins - 1)
    high = (low + 1).clamp(max=bins - 1)
    weight = position - low
    return levels[low] * (1 - weight) + levels[high] * weight
