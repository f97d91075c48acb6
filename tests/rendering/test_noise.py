"""Tests of the synthetic noise models: Gaussian, Poisson-Gaussian and the camera pipeline."""

from __future__ import annotations

import pytest
import torch
from torchvision.io import decode_jpeg, encode_jpeg

from lightning_synth.rendering.camera import (
    CameraNoise,
    demosaic,
    jpeg_round_trip,
    mosaic,
)
from lightning_synth.rendering.noise import GaussianNoise, PoissonGaussianNoise


def _generators(count: int, offset: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(offset + i) for i in range(count)]


def _lag_correlation(noise: torch.Tensor, lag: int = 1) -> float:
    """Correlation of the noise with itself ``lag`` pixels to the right."""
    noise = noise - noise.mean()
    left, right = noise[..., :-lag], noise[..., lag:]
    return float((left * right).mean() / (noise * noise).mean())


def test_gaussian_noise_has_the_sigma_asked_for() -> None:
    clean = torch.full((2, 3, 64, 64), 0.5)
    noisy = GaussianNoise(sigma=0.05, clip=False)(clean, _generators(2))
    assert (noisy - clean).std().item() == pytest.approx(0.05, rel=0.05)
    assert abs((noisy - clean).mean().item()) < 0.003
    # A range: each image draws its own sigma within it.
    spread = GaussianNoise(sigma=(0.01, 0.2), clip=False)(
        clean[:1].expand(8, -1, -1, -1), _generators(8)
    )
    sigmas = (spread - 0.5).flatten(1).std(dim=1)
    assert sigmas.min() >= 0.009 and sigmas.max() <= 0.21
    assert sigmas.max() - sigmas.min() > 0.03


def test_noise_of_an_image_depends_only_on_its_own_generator() -> None:
    images = torch.rand(3, 1, 16, 16)
    model = CameraNoise(jpeg_quality=(70, 90))
    batch = model(images, _generators(3))
    alone = model(images[1:2], [torch.Generator().manual_seed(1)])
    assert torch.equal(batch[1:2], alone)
    again = model(images, _generators(3))
    assert torch.equal(batch, again)
    other = model(images, _generators(3, offset=10))
    assert not torch.equal(batch, other)
    with pytest.raises(ValueError, match="generators for 3 images"):
        model(images, _generators(2))


@pytest.mark.parametrize("poisson", [False, True])
def test_poisson_gaussian_variance_grows_linearly_with_the_signal(poisson: bool) -> None:
    shot, read = 0.01, 0.0004
    model = PoissonGaussianNoise(shot=shot, read=read, poisson=poisson, clip=False)
    for level in (0.1, 0.3, 0.6, 0.9):
        clean = torch.full((4, 1, 64, 64), level)
        noisy = model(clean, _generators(4))
        expected = shot * level + read
        assert (noisy - clean).var().item() == pytest.approx(expected, rel=0.06), level
        assert abs((noisy - clean).mean().item()) < 4 * (expected / noisy.numel()) ** 0.5


def test_read_noise_follows_brooks_fit_when_not_given() -> None:
    shot, read = PoissonGaussianNoise(shot=(1e-4, 1e-2)).variances(
        4000, torch.Generator().manual_seed(0), torch.device("cpu")
    )
    assert shot.min() >= 1e-4 and shot.max() <= 1e-2
    residual = read.log() - (2.18 * shot.log() + 1.2)
    assert residual.mean().abs().item() < 0.02
    assert residual.std().item() == pytest.approx(0.26, rel=0.05)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("rggb", (0, 1, 1, 2)),
        ("bggr", (2, 1, 1, 0)),
        ("grbg", (1, 0, 2, 1)),
        ("gbrg", (1, 2, 0, 1)),
    ],
)
def test_bayer_mosaic_keeps_one_colour_per_photosite(pattern: str, expected: tuple) -> None:
    # Channel c holds the value c + 1 everywhere: the mosaic shows which colour each site kept.
    image = torch.arange(1.0, 4.0).view(1, 3, 1, 1).expand(2, 3, 6, 7)
    raw = mosaic(image, pattern)
    assert raw.shape == (2, 1, 6, 7)
    top_left = raw[0, 0, :2, :2].flatten() - 1
    assert tuple(int(v) for v in top_left) == expected
    assert torch.equal(raw[:, :, 2:4, 2:4], raw[:, :, :2, :2])  # the 2 x 2 tile repeats
    # Half the sites are green, a quarter red, a quarter blue (even sides).
    even = mosaic(image[:, :, :6, :6], pattern) - 1
    assert (even == 1).float().mean() == 0.5 and (even == 0).float().mean() == 0.25


def test_demosaic_restores_constant_and_linear_images() -> None:
    constant = torch.tensor([0.2, 0.5, 0.8]).view(1, 3, 1, 1).expand(1, 3, 9, 11)
    for pattern in ("rggb", "gbrg"):
        assert torch.allclose(demosaic(mosaic(constant, pattern), pattern), constant, atol=1e-6)
    # Bilinear interpolation is exact on a ramp, away from the mirrored border.
    ramp = torch.linspace(0, 1, 12).view(1, 1, 1, 12).expand(1, 3, 10, 12)
    restored = demosaic(mosaic(ramp, "rggb"), "rggb")
    assert torch.allclose(restored[..., 1:-1, 1:-1], ramp[..., 1:-1, 1:-1], atol=1e-6)


def test_jpeg_round_trip_matches_libjpeg_and_loses_more_at_low_quality() -> None:
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(2, 3, 4, 4, generator=generator)
    smooth = torch.nn.functional.interpolate(coarse, size=48, mode="bilinear")
    noisy = (smooth + 0.02 * torch.randn(smooth.shape, generator=generator)).clamp(0, 1)
    out = jpeg_round_trip(noisy, [95, 10])
    assert out.shape == noisy.shape and out.dtype == noisy.dtype
    pixels = (noisy[0] * 255).round().to(torch.uint8)
    assert torch.equal(
        (out[0] * 255).round().to(torch.uint8), decode_jpeg(encode_jpeg(pixels, quality=95))
    )
    errors = (out - noisy).square().flatten(1).mean(1)
    assert errors[0] < 1e-3 and errors[0] < 0.25 * errors[1]
    # Values are 8-bit levels; gray images stay gray.
    assert torch.allclose(out * 255, (out * 255).round(), atol=1e-4)
    assert jpeg_round_trip(noisy[:, :1], [50, 50]).shape == (2, 1, 48, 48)
    with pytest.raises(ValueError, match="quality"):
        jpeg_round_trip(noisy, [0, 50])


def test_camera_pipeline_without_noise_gives_the_image_back() -> None:
    image = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 0.8 + 0.1
    silent = CameraNoise(shot=1e-12, read=1e-12, jpeg_quality=None, detail="pipeline", bayer=False)
    assert torch.allclose(silent(image, _generators(2)), image, atol=2e-3)


def test_camera_noise_is_correlated_colour_mixed_and_signal_dependent() -> None:
    dark, bright = torch.full((8, 3, 32, 32), 0.15), torch.full((8, 3, 32, 32), 0.6)
    camera = CameraNoise(shot=(2e-3, 2e-3), read=(1e-5, 1e-5), jpeg_quality=None)
    white = PoissonGaussianNoise(shot=2e-3, read=1e-5, clip=False)
    camera_noise = camera(bright, _generators(8)) - bright
    white_noise = white(bright, _generators(8)) - bright
    # Demosaicing spreads each photosite's noise over its neighbours.
    assert _lag_correlation(camera_noise) > 0.3
    assert abs(_lag_correlation(white_noise)) < 0.05
    # The colour matrix mixes the channels' noise.
    flat = camera_noise.transpose(0, 1).flatten(1)
    assert torch.corrcoef(flat)[0, 1].abs() > 0.1
    # The tone curve and gamma: noise differs with the brightness of the scene.
    dark_std = (camera(dark, _generators(8)) - dark).std().item()
    assert abs(dark_std / camera_noise.std().item() - 1) > 0.1
    # In-camera noise reduction: blurred colour noise keeps mostly the luminance noise.
    reduced = CameraNoise(shot=(2e-3, 2e-3), read=(1e-5, 1e-5), jpeg_quality=None, chroma_blur=3.0)
    noise = reduced(bright, _generators(8)) - bright
    chroma = noise - noise.mean(1, keepdim=True)
    assert chroma.std() < 0.6 * (camera_noise - camera_noise.mean(1, keepdim=True)).std()


def test_camera_noise_on_gray_images_and_clipping() -> None:
    gray = torch.rand(2, 1, 20, 18, generator=torch.Generator().manual_seed(2))
    noisy = CameraNoise(pattern="random")(gray, _generators(2))
    assert noisy.shape == gray.shape
    assert noisy.min() >= 0 and noisy.max() <= 1
    assert (noisy - gray).abs().mean() > 1e-3


def test_invalid_ranges_are_named() -> None:
    with pytest.raises(ValueError, match="sigma"):
        GaussianNoise(sigma=(0.2, 0.1))
    with pytest.raises(ValueError, match="jpeg_quality"):
        CameraNoise(jpeg_quality=(50, 101))
    with pytest.raises(ValueError, match="pattern"):
        CameraNoise(pattern="rgbg")  # type: ignore[arg-type]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_noise_models_run_on_the_gpu() -> None:
    images = torch.rand(2, 3, 32, 32, device="cuda")
    for model in (GaussianNoise(), PoissonGaussianNoise(), CameraNoise()):
        noisy = model(images)
        assert noisy.device == images.device and noisy.shape == images.shape
