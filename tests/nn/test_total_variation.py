"""Total variation and the Chambolle-Pock TV denoiser: values, gradients, skimage agreement."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lightning_synth.errors import InputError
from lightning_synth.nn.total_variation import (
    RELATIVE_TOL,
    ChambollePockTV,
    TotalVariation,
    TVSmoothing,
    default_tol,
    divergence,
    gap_to_rms,
    image_gradient,
    rgb_to_ycbcr,
    rof_objective,
    total_variation,
    tv_denoise,
    tv_denoise_luma_chroma,
    ycbcr_to_rgb,
)


def _noisy(size: int = 40, channels: int = 1, sigma: float = 0.1, seed: int = 0):
    """A piecewise-constant image with a diagonal edge, and a noisy copy."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.arange(size).view(-1, 1)
    cols = torch.arange(size).view(1, -1)
    clean = torch.where(rows + cols < size, 0.25, 0.75).float()
    clean = clean.expand(1, channels, size, size).clone()
    clean[:, :, size // 4 : size // 2, size // 4 : size // 2] = 0.5
    noisy = clean + sigma * torch.randn(clean.shape, generator=generator)
    return clean, noisy


def test_tv_of_a_known_image() -> None:
    # One step up at the top-left pixel, in both directions.
    image = torch.tensor([[0.0, 1.0], [1.0, 1.0]]).view(1, 1, 2, 2)
    assert total_variation(image, "anisotropic").item() == pytest.approx(2.0)
    assert total_variation(image, "isotropic").item() == pytest.approx(math.sqrt(2))
    two = image.expand(1, 2, 2, 2)
    # Channels apart: twice sqrt(2); coupled: the length over both channels, sqrt(4).
    assert total_variation(two, "isotropic").item() == pytest.approx(2 * math.sqrt(2))
    assert total_variation(two, "isotropic", coupled_channels=True).item() == pytest.approx(2.0)
    # One value per image of a batch.
    batch = torch.stack([image[0], 2 * image[0]])
    assert total_variation(batch, "anisotropic").tolist() == pytest.approx([2.0, 4.0])


def test_divergence_is_the_negative_adjoint_of_the_gradient() -> None:
    x = torch.randn(2, 3, 7, 5, dtype=torch.float64)
    p = torch.randn(2, 3, 2, 7, 5, dtype=torch.float64)
    assert float((image_gradient(x) * p).sum()) == pytest.approx(-float((x * divergence(p)).sum()))


def test_tv_gradients_are_finite_on_flat_images() -> None:
    flat = torch.full((1, 3, 8, 8), 0.5, requires_grad=True)
    total_variation(flat).backward()  # exact TV: |g| at g = 0
    assert torch.isfinite(flat.grad).all() and flat.grad.abs().max() == 0
    loss = TotalVariation(smoothing=1e-3)
    step = torch.zeros(1, 1, 8, 8)
    step[..., 4:] = 1.0
    step.requires_grad_(True)
    value = loss(step)
    value.backward()
    # One unit jump per row over 64 pixels, minus the smoothing.
    assert float(value.detach()) == pytest.approx(8 / 64, rel=1e-2)
    assert torch.isfinite(step.grad).all() and step.grad.abs().sum() > 0


def test_denoising_matches_scikit_image_at_the_same_weight() -> None:
    skimage_restoration = pytest.importorskip("skimage.restoration")
    _, gray = _noisy(32, 1)
    _, colour = _noisy(24, 3, seed=1)
    for noisy, channel_axis in ((gray, None), (colour, -1)):
        # coupled_channels=False: scikit-image treats each channel on its own.
        ours = tv_denoise(
            noisy.double(), weight=0.1, tol=1e-5, max_iter=5000, coupled_channels=False
        )[0]
        image = noisy[0].permute(1, 2, 0).numpy().astype(np.float64)
        image = image[..., 0] if channel_axis is None else image
        theirs = skimage_restoration.denoise_tv_chambolle(
            image, weight=0.1, eps=1e-12, max_num_iter=20000, channel_axis=channel_axis
        )
        theirs = torch.from_numpy(np.asarray(theirs)).reshape(ours.permute(1, 2, 0).shape)
        rms = float((ours.permute(1, 2, 0) - theirs).square().mean().sqrt())
        assert rms < 1e-3, f"our solution is {rms:.2e} RMS from scikit-image's"


def test_objective_falls_and_the_certificate_holds() -> None:
    clean, noisy = _noisy(40, 3)
    exact = tv_denoise(
        noisy.double(), weight=0.1, tol=1e-6, max_iter=5000, coupled_channels=False
    ).float()
    x = noisy.clone()
    optimizer = ChambollePockTV([x], weight=0.1)
    objectives, bounds = [float(rof_objective(x, noisy, 0.1))], []
    for _ in range(60):
        optimizer.step(target=noisy)
        objective, gap = optimizer.objective_and_gap(noisy)
        assert float(objective) == pytest.approx(
            float(rof_objective(x.double(), noisy.double(), 0.1)), rel=1e-5
        )
        objectives.append(float(objective))
        bound = float(gap_to_rms(gap, x[0].numel()))
        distance = float((x - exact).square().mean().sqrt())
        assert distance <= bound + 1e-5, "the duality gap must bound the distance"
        bounds.append(bound)
    assert objectives[-1] < 0.5 * objectives[0]
    assert objectives[-1] == pytest.approx(float(rof_objective(exact, noisy, 0.1)), rel=1e-3)
    # The certificate shrinks (O(1/n)), and the result is closer to the clean image.
    assert bounds[-1] < 0.1 * bounds[0]
    assert (x - clean).square().mean() < 0.5 * (noisy - clean).square().mean()


@pytest.mark.parametrize("channels, coupled", [(1, False), (3, True), (3, False)])
def test_the_averaged_certificate_holds_and_is_tighter(channels: int, coupled: bool) -> None:
    _, noisy = _noisy(32, channels, sigma=0.2, seed=4)
    exact = tv_denoise(
        noisy.double(), weight=0.15, tol=1e-7, max_iter=20000, coupled_channels=coupled
    ).float()
    for steps in (3, 10, 30):
        x = noisy.clone()
        optimizer = ChambollePockTV([x], weight=0.15, coupled_channels=coupled)
        for _ in range(steps):
            optimizer.step(target=noisy)
        plain_bound = float(gap_to_rms(optimizer.duality_gap(noisy), x[0].numel()))
        objective, bound = optimizer.certificate(noisy)
        assert float(objective) == pytest.approx(
            float(rof_objective(x.double(), noisy.double(), 0.15, coupled_channels=coupled)),
            rel=1e-5,
        )
        assert float(bound) <= plain_bound / math.sqrt(2) + 1e-7
        optimizer.settle(noisy)
        distance = float((x - exact).square().mean().sqrt())
        assert distance <= float(bound) + 1e-5, "the averaged image must be within the bound"
        # Iterations go on from the settled image and still converge.
        for _ in range(20):
            optimizer.step(target=noisy)
        assert float((x - exact).square().mean().sqrt()) < distance
    result = tv_denoise(noisy, weight=0.15, tol=0.01, coupled_channels=coupled)
    assert float((result - exact).square().mean().sqrt()) <= 0.01


def test_default_tolerance_scales_with_the_weight() -> None:
    _, noisy = _noisy(32, 3, sigma=0.2)
    for weight in (0.05, 0.2):
        assert default_tol(weight) == pytest.approx(weight * RELATIVE_TOL)
        exact = tv_denoise(noisy.double(), weight=weight, tol=1e-7, max_iter=20000).float()
        rms = {
            tol: float((tv_denoise(noisy, weight=weight, tol=tol) - exact).square().mean().sqrt())
            for tol in (None, default_tol(weight))
        }
        assert rms[None] == rms[default_tol(weight)], "None means weight * RELATIVE_TOL"
        assert rms[None] <= default_tol(weight)
    with pytest.raises(ValueError, match="tol must be positive"):
        tv_denoise(noisy, weight=0.1, tol=0.0)


def test_solver_resumes_from_its_state_dict() -> None:
    _, noisy = _noisy(16, 1)
    straight = noisy.clone()
    optimizer = ChambollePockTV([straight], weight=0.1)
    for _ in range(20):
        optimizer.step(target=noisy)
    resumed = noisy.clone()
    first = ChambollePockTV([resumed], weight=0.1)
    for _ in range(10):
        first.step(target=noisy)
    second = ChambollePockTV([resumed], weight=0.1)
    second.load_state_dict(first.state_dict())
    for _ in range(10):
        second.step(target=noisy)
    torch.testing.assert_close(resumed, straight)


def test_batches_denoise_each_image_on_its_own() -> None:
    _, a = _noisy(24, 1, seed=2)
    _, b = _noisy(24, 1, sigma=0.2, seed=3)
    together = tv_denoise(torch.cat([a, b]), weight=0.15, tol=1e-4)
    apart = torch.cat([tv_denoise(a, weight=0.15, tol=1e-4), tv_denoise(b, weight=0.15, tol=1e-4)])
    assert float((together - apart).abs().max()) < 2e-3


def test_anisotropic_tv_is_minimised_for_its_own_norm() -> None:
    _, noisy = _noisy(24, 1)
    iso = tv_denoise(noisy, weight=0.1, norm="isotropic", tol=1e-4)
    aniso = tv_denoise(noisy, weight=0.1, norm="anisotropic", tol=1e-4)
    assert float(rof_objective(aniso, noisy, 0.1, "anisotropic")) < float(
        rof_objective(iso, noisy, 0.1, "anisotropic")
    )
    assert float(rof_objective(iso, noisy, 0.1, "isotropic")) < float(
        rof_objective(aniso, noisy, 0.1, "isotropic")
    )


def test_vectorial_tv_default_minimises_its_own_objective() -> None:
    _, noisy = _noisy(24, 3)
    noisy = noisy.double()
    coupled = tv_denoise(noisy, weight=0.1, tol=1e-6, max_iter=5000)
    apart = tv_denoise(noisy, weight=0.1, tol=1e-6, max_iter=5000, coupled_channels=False)

    def objective(x: torch.Tensor) -> float:
        return float(rof_objective(x, noisy, 0.1, coupled_channels=True))

    assert objective(coupled) < objective(apart) - 1e-3
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        nudge = 1e-3 * torch.randn(coupled.shape, generator=generator, dtype=coupled.dtype)
        assert objective(coupled + nudge) > objective(coupled) - 1e-6
    # On a gray image the two agree (and the faster per-channel path is used).
    _, gray = _noisy(24, 1)
    assert torch.allclose(
        tv_denoise(gray, weight=0.1), tv_denoise(gray, weight=0.1, coupled_channels=False)
    )


def test_wrong_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="B x C x H x W"):
        tv_denoise(torch.rand(8, 8))
    with pytest.raises(ValueError, match="positive"):
        ChambollePockTV([torch.rand(1, 1, 4, 4)], weight=0.0)
    x = torch.rand(1, 1, 4, 4)
    with pytest.raises(ValueError, match="target"):
        ChambollePockTV([x]).step()


def test_tv_smoothing_module_is_tv_denoise_clipped() -> None:
    noisy = (torch.full((2, 3, 24, 24), 0.9) + 0.2 * torch.randn(2, 3, 24, 24)).clamp(0, 1)
    smoothed = TVSmoothing(weight=0.1)(noisy)
    assert torch.allclose(smoothed, tv_denoise(noisy, 0.1).clamp(0, 1))
    assert smoothed.std() < noisy.std() / 2 and smoothed.max() <= 1
    with pytest.raises(InputError, match="positive weight"):
        TVSmoothing(weight=0)
    with pytest.raises(InputError, match="positive chroma_weight"):
        TVSmoothing(chroma_weight=-0.1)


def test_ycbcr_is_jpegs_colour_space_and_inverts() -> None:
    # White, red and blue: JPEG's (BT.601, full range) luma and centred chroma.
    rgb = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 1.0]]).view(1, 3, 1, 3)
    expected = torch.tensor([[1.0, 0.299, 0.114], [0.0, -0.168736, 0.5], [0.0, 0.5, -0.081312]])
    assert torch.allclose(rgb_to_ycbcr(rgb)[0, :, 0], expected, atol=1e-6)
    images = torch.rand(2, 3, 5, 7, dtype=torch.float64)
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(images)), images, atol=1e-12)


def test_luma_chroma_tv_smooths_each_at_its_own_weight() -> None:
    # A grey edge (luma only) under colour noise (chroma only): a strong chroma weight and
    # a weak luma weight remove the colour noise and keep the edge.
    clean, _ = _noisy(size=32)
    clean = clean.expand(1, 3, 32, 32)
    generator = torch.Generator().manual_seed(1)
    chroma_noise = torch.zeros(1, 3, 32, 32)
    chroma_noise[:, 1:] = 0.05 * torch.randn(1, 2, 32, 32, generator=generator)
    noisy = clean + ycbcr_to_rgb(chroma_noise)
    denoised = tv_denoise_luma_chroma(noisy, luma_weight=0.005, chroma_weight=0.2)
    assert (denoised - clean).pow(2).mean() < 0.02 * (noisy - clean).pow(2).mean()
    # One weight for R, G and B cannot do both: weak leaves the colour noise, strong
    # rounds the edge.
    for weight in (0.005, 0.2):
        single = tv_denoise(noisy, weight)
        assert (single - clean).pow(2).mean() > 5 * (denoised - clean).pow(2).mean()
    module = TVSmoothing(weight=0.005, chroma_weight=0.2)(noisy)
    assert torch.allclose(module, denoised.clamp(0, 1))
    with pytest.raises(InputError, match="3 channels"):
        TVSmoothing(chroma_weight=0.1)(torch.rand(1, 1, 8, 8))
