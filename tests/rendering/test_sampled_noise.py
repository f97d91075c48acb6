"""SampledNoise: noise cut from flat regions of noisy photographs and added to clean ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_synth.errors import InputError
from lightning_synth.rendering.sampled_noise import SampledNoise, plane_residuals


def _photograph(seed: int, size: int = 128) -> tuple[torch.Tensor, float, float]:
    """A noisy photograph: a dark flat half (noise 0.01), a brighter flat half (noise
    0.03) with a strongly textured square inside it. Returns it and the two sigmas."""
    generator = torch.Generator().manual_seed(seed)
    clean = torch.full((3, size, size), 0.125)
    clean[:, :, size // 2 :] = 0.625
    sigma = torch.where(clean < 0.4, 0.01, 0.03)
    texture = torch.rand(3, 32, 32, generator=generator) * 0.4
    clean[:, 16:48, size // 2 + 16 : size // 2 + 48] = 0.5 + texture
    noisy = clean + sigma * torch.randn(clean.shape, generator=generator)
    return noisy.clamp(0, 1), 0.01, 0.03


def test_plane_residuals_remove_planes_and_keep_noise() -> None:
    axis = torch.arange(16.0)
    plane = (0.1 + 0.02 * axis[:, None] - 0.01 * axis[None, :]).expand(2, 3, 16, 16)
    assert plane_residuals(plane).abs().max() < 1e-5
    noise = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(plane_residuals(plane + noise).std(), noise.std(), rtol=0.05)


def test_fit_learns_the_noise_level_at_each_brightness_and_skips_texture() -> None:
    photos = [_photograph(seed)[0] for seed in range(4)]
    model = SampledNoise(patch_size=16, levels=4, flat_fraction=0.5).fit(photos)
    assert model.fitted
    # The two flat halves lie at the centres of the bins 0-0.25 and 0.5-0.75.
    assert model.noise_level[0] == pytest.approx(0.01, rel=0.2)
    assert model.noise_level[2] == pytest.approx(0.03, rel=0.2)
    assert model.patches is not None
    kept_spread = model.patches.flatten(1).std(dim=1)
    assert kept_spread.max() < 0.05  # the textured square (std about 0.12) is never kept


def test_sampled_noise_follows_the_clean_images_brightness() -> None:
    photos = [_photograph(seed)[0] for seed in range(4)]
    model = SampledNoise(patch_size=16, levels=4, flat_fraction=0.5, clip=False).fit(photos)
    clean = torch.full((2, 3, 64, 64), 0.125)
    clean[1] = 0.625
    noise = model(clean, torch.Generator().manual_seed(1)) - clean
    assert noise[0].std() == pytest.approx(0.01, rel=0.25)
    assert noise[1].std() == pytest.approx(0.03, rel=0.25)
    assert noise.mean().abs() < 0.003
    again = model(clean, torch.Generator().manual_seed(1)) - clean
    assert torch.equal(noise, again)  # the same generator, the same noise
    odd = model(torch.full((1, 3, 37, 50), 0.2), torch.Generator().manual_seed(2))
    assert odd.shape == (1, 3, 37, 50)


def test_fits_a_folder_at_first_use(tmp_path) -> None:
    for seed in range(2):
        photo = _photograph(seed)[0]
        pixels = (photo.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"shot{seed}.png")
    model = SampledNoise(photographs=str(tmp_path), patch_size=16, levels=4)
    assert not model.fitted
    model(torch.full((1, 3, 32, 32), 0.5))
    assert model.fitted


def test_clear_errors() -> None:
    with pytest.raises(InputError, match="no noise to sample"):
        SampledNoise()(torch.zeros(1, 3, 32, 32))
    with pytest.raises(InputError, match="at least 32 x 32"):
        SampledNoise(patch_size=32).fit([torch.rand(3, 20, 20)])
    model = SampledNoise(patch_size=16, levels=4).fit([_photograph(0)[0]])
    with pytest.raises(InputError, match="fitted to 3-channel"):
        model(torch.zeros(1, 1, 32, 32))
    with pytest.raises(InputError, match="flat_fraction"):
        SampledNoise(flat_fraction=0)
    with pytest.raises(InputError, match="uniformity >= 1"):
        SampledNoise(uniformity=0.5)


def test_the_datamodule_fits_it_to_its_real_photographs() -> None:
    from lightning_synth.datamodules.noisy_images import NoisyImageDataModule

    noise = SampledNoise(patch_size=16)
    data = NoisyImageDataModule(
        clean=["skimage:camera"], noise=noise, train_length=4, batch_size=2, patch_size=32
    )
    data.setup("fit")
    assert noise.fitted
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32)
    assert not torch.equal(batch["image"], batch["reference"])


def _flat_photograph(sigma: float, seed: int, size: int = 64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (0.25 + sigma * torch.randn(3, size, size, generator=generator)).clamp(0, 1)


def test_per_photograph_noise_keeps_each_photographs_strength() -> None:
    quiet, loud = _flat_photograph(0.02, 0), _flat_photograph(0.04, 1)
    options = {"patch_size": 16, "levels": 2, "flat_fraction": 1.0, "clip": False}
    pooled = SampledNoise(**options).fit([quiet, loud])
    model = SampledNoise(**options, per_photograph=True).fit([quiet, loud])
    clean = torch.full((1, 3, 32, 32), 0.25)
    for photograph, sigma in ((0, 0.02), (1, 0.04)):
        noise = model.of_photograph(clean, torch.Generator().manual_seed(2), photograph) - clean
        assert noise.std() == pytest.approx(sigma, rel=0.2)
    # Drawn at random, an image has one photograph's strength, not a blend of the two.
    images = torch.full((40, 3, 32, 32), 0.25)
    spread = (model(images, torch.Generator().manual_seed(3)) - images).flatten(1).std(dim=1)
    assert ((spread - 0.02).abs() < 0.004).sum() >= 8
    assert ((spread - 0.04).abs() < 0.008).sum() >= 8
    assert (((spread - 0.02).abs() < 0.004) | ((spread - 0.04).abs() < 0.008)).all()
    blended = (pooled(images, torch.Generator().manual_seed(3)) - images).flatten(1).std(dim=1)
    # Pooled, tiles of one image come from either photograph: strengths in between.
    assert ((blended > 0.026) & (blended < 0.032)).any()


def test_mean_detrending_keeps_what_the_plane_removes() -> None:
    generator = torch.Generator().manual_seed(0)
    ramp = torch.linspace(-0.08, 0.08, 64).view(1, 1, 64)  # shading, or a slow blotch
    photo = (0.3 + ramp + 0.01 * torch.randn(3, 64, 64, generator=generator)).clamp(0, 1)
    options = {"patch_size": 32, "levels": 2, "flat_fraction": 1.0, "uniformity": 3.0}
    plane = SampledNoise(**options).fit([photo])
    mean = SampledNoise(**options, detrend="mean").fit([photo])
    assert plane.noise_level[0] == pytest.approx(0.01, rel=0.15)
    assert mean.noise_level[0] > 1.2 * plane.noise_level[0]
    with pytest.raises(InputError, match="detrend"):
        SampledNoise(detrend="median")  # type: ignore[arg-type]
