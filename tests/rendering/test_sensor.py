"""Tests of the Kinect-v1-like depth sensor model ``DepthSensorNoise``."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_synth.rendering.body import BodyRenderer
from lightning_synth.rendering.sensor import DepthSensorNoise, kinect_axial_sigma

H, W, FX = 120, 160, 140.0
INTR = torch.tensor([[FX, FX, (W - 1) / 2, (H - 1) / 2]])
OFF = dict(
    axial_noise=False,
    quantize=False,
    edge_dropout=False,
    grazing_dropout=False,
    random_dropout=False,
    range_limits=False,
)


def _only(**switches) -> DepthSensorNoise:
    """A sensor with every effect off except those given."""
    return DepthSensorNoise(**{**OFF, **switches})


def _plane(z: float, batch: int = 1) -> torch.Tensor:
    return torch.full((batch, H, W), z)


def _tilted_plane(angle_deg: float, z0: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth of a plane through (0, 0, z0) turned about the vertical, and the exact
    angle between its normal and each pixel's line of sight (degrees)."""
    theta = math.radians(angle_deg)
    u = torch.arange(W, dtype=torch.float64).expand(H, -1)
    v = torch.arange(H, dtype=torch.float64)[:, None].expand(-1, W)
    dx, dy = (u - INTR[0, 2]) / FX, (v - INTR[0, 3]) / FX
    depth = z0 / (1 - math.tan(theta) * dx)
    normal = torch.tensor([math.sin(theta), 0.0, -math.cos(theta)], dtype=torch.float64)
    rays = torch.stack([dx, dy, torch.ones_like(dx)], -1)
    cos = (rays @ normal).abs() / rays.norm(dim=-1)
    return depth[None].float(), torch.rad2deg(torch.arccos(cos))


@pytest.mark.parametrize("z", [2.0, 3.0])
def test_axial_noise_matches_nguyen_formula(z: float) -> None:
    noisy, valid = _only(axial_noise=True)(_plane(z, 2), INTR.expand(2, -1))
    assert valid.all()
    expected = 0.0012 + 0.0019 * (z - 0.4) ** 2
    assert kinect_axial_sigma(torch.tensor(z)).item() == pytest.approx(expected)
    assert (noisy - z).std().item() == pytest.approx(expected, rel=0.03)
    assert (noisy - z).mean().abs().item() < 3 * expected / math.sqrt(noisy.numel())
    doubled, _ = _only(axial_noise=True, axial_scale=2.0)(_plane(z, 2), INTR.expand(2, -1))
    assert (doubled - z).std().item() == pytest.approx(2 * expected, rel=0.03)


def test_quantisation_steps_follow_disparity() -> None:
    sensor = _only(quantize=True)
    ramp = torch.linspace(1.0, 4.0, H * W).view(1, H, W)
    out, valid = sensor(ramp, INTR)
    assert valid.all()
    fb = FX * 0.075
    disparity = fb / out
    # Every output depth comes from a disparity on the 1/8-pixel grid ...
    assert (disparity * 8 - (disparity * 8).round()).abs().max() < 1e-3
    # ... the nearest one to the true disparity (error under half a step) ...
    assert ((disparity - fb / ramp).abs() <= 1 / 16 + 1e-4).all()
    # ... so the depth levels are spaced z^2 / (f b) / 8 apart.
    levels = out.unique()
    steps = levels[1:] - levels[:-1]
    mid = (levels[1:] + levels[:-1]) / 2
    torch.testing.assert_close(steps, mid**2 / fb / 8, rtol=0.05, atol=0)
    near = steps[(mid > 1.9) & (mid < 2.1)].mean()
    assert near.item() == pytest.approx(4.0 / fb / 8, rel=0.05)  # ~4.8 cm at this focal
    # A fixed focal length (e.g. the sensor's native 580 px) overrides fx.
    fine, _ = _only(quantize=True, focal_length=580.0)(ramp, INTR)
    assert fine.unique().numel() > 3 * levels.numel()


def test_edge_dropout_removes_silhouette_pixels() -> None:
    depth = torch.zeros(1, H, W)
    depth[0, 30:90, 40:120] = 2.0  # a box in front of nothing
    depth[0, 50:70, 60:100] = 1.5  # and a smaller box in front of it
    sensor = _only(edge_dropout=True, edge_prob=1.0, edge_width=0.3)
    _, valid = sensor(depth, INTR)
    fg = depth > 0
    border = fg.clone()
    border[0, 31:89, 41:119] = False  # the outermost ring of the box
    assert not valid[border].any()
    inner_edge = torch.zeros_like(fg)
    inner_edge[0, 49:71, 59:101] = True
    inner_edge[0, 51:69, 61:99] = False  # both sides of the occlusion edge
    assert not valid[inner_edge].any()
    interior = torch.zeros_like(fg)
    interior[0, 34:86, 44:116] = True
    interior[0, 46:74, 56:104] = False
    interior[0, 53:67, 63:97] = True
    assert valid[interior].all()
    # On a body at QVGA, most silhouette pixels go missing with the default settings.
    frame = BodyRenderer(120, 160, seed=0).render(range(4))
    _, valid = _only(edge_dropout=True)(frame.depth, frame.intrinsics)
    fg = frame.valid
    pad = torch.nn.functional.pad(fg[:, None].float(), (1, 1, 1, 1))
    inside = -torch.nn.functional.max_pool2d(-pad, 3, stride=1)[:, 0] > 0
    silhouette = fg & ~inside
    assert 0.7 < 1 - valid[silhouette].float().mean() < 0.9  # edge_prob = 0.8
    assert valid[fg].float().mean() > 0.6


@pytest.mark.parametrize("angle", [0.0, 40.0, 65.0, 80.0])
def test_grazing_angles_lose_depth(angle: float) -> None:
    """Dropout follows the exact viewing angle of a tilted plane (the model estimates
    normals by finite differences; the test knows them in closed form)."""
    depth, view_angle = _tilted_plane(angle)
    _, valid = _only(grazing_dropout=True, grazing_angle=75.0)(depth, INTR)
    # Pixels that see the plane (in front of the camera), with a full stencil around.
    seen = depth[0] > 0
    inner = -torch.nn.functional.max_pool2d(-seen[None].float(), 3, stride=1, padding=1)[0] > 0
    inner[[0, -1]] = False
    inner[:, [0, -1]] = False
    assert inner.float().mean() > 0.5
    dropped = 1 - valid[0][inner].float().mean()
    expected = ((view_angle - 75.0) / 15.0).clamp(0, 1)[inner].mean()
    assert dropped.item() == pytest.approx(expected.item(), abs=0.02)
    if angle <= 40:
        assert valid[0][seen].all()
    if angle == 80:
        assert dropped > 0.1


def test_random_dropout_rate() -> None:
    _, valid = _only(random_dropout=True, dropout_prob=0.1)(_plane(2.0, 2), INTR.expand(2, -1))
    assert 1 - valid.float().mean().item() == pytest.approx(0.1, abs=0.01)


def test_range_limits() -> None:
    depth = torch.tensor([[[0.3, 0.5, 2.0, 7.5, 9.0, 0.0]]])
    intr = torch.tensor([[5.0, 5.0, 2.5, 0.0]])
    out, valid = _only(range_limits=True)(depth, intr)
    assert valid.tolist() == [[[False, True, True, True, False, False]]]
    assert out[~valid].eq(0).all() and torch.equal(out[valid], depth[valid])


def test_switches_disable_effects() -> None:
    frame = BodyRenderer(H, W, seed=4).render(range(2))
    out, valid = _only()(frame.depth, frame.intrinsics)
    assert torch.equal(out, frame.depth) and torch.equal(valid, frame.valid)
    full, full_valid = DepthSensorNoise()(frame.depth, frame.intrinsics)
    assert not torch.equal(full, frame.depth)
    assert (full_valid <= frame.valid).all()
    # Switching one effect off leaves the others' random draws alone.
    no_edges, no_edges_valid = DepthSensorNoise(edge_dropout=False)(frame.depth, frame.intrinsics)
    both = full_valid & no_edges_valid
    assert torch.equal(full[both], no_edges[both])
    assert (full_valid <= no_edges_valid).all() and no_edges_valid.sum() > full_valid.sum()
    no_quant, _ = DepthSensorNoise(quantize=False)(frame.depth, frame.intrinsics)
    fb = frame.intrinsics[:, 0, None, None] * 0.075
    # Same noise; quantisation moves the disparity by at most half a 1/8-pixel step.
    gap = (fb / no_quant - fb / full).abs()[full_valid]
    assert gap.max() <= 1 / 16 + 1e-4 and gap.mean() > 0.01


def test_noise_is_deterministic_given_seed_or_generators() -> None:
    frame = BodyRenderer(H, W, seed=5).render(range(3))
    a = DepthSensorNoise(seed=1)(frame.depth, frame.intrinsics)
    b = DepthSensorNoise(seed=1)(frame.depth, frame.intrinsics)
    c = DepthSensorNoise(seed=2)(frame.depth, frame.intrinsics)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    gens = [torch.Generator().manual_seed(10 + k) for k in range(3)]
    batch, batch_valid = DepthSensorNoise()(frame.depth, frame.intrinsics, gens)
    alone, alone_valid = DepthSensorNoise()(
        frame.depth[1:2], frame.intrinsics[1:2], [torch.Generator().manual_seed(11)]
    )
    assert torch.equal(batch[1:2], alone) and torch.equal(batch_valid[1:2], alone_valid)
    with pytest.raises(ValueError):
        DepthSensorNoise()(frame.depth, frame.intrinsics, gens[:2])
