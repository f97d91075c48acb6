"""Tests of the Kinect-v1-like depth sensor model ``DepthSensorNoise``."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_synth.rendering.body import BodyRenderer
from lightning_synth.rendering.sensor import (
    DepthSensorNoise,
    khoshelham_axial_sigma,
    kinect_axial_sigma,
)

H, W, FX = 120, 160, 140.0
INTR = torch.tensor([[FX, FX, (W - 1) / 2, (H - 1) / 2]])
OFF = dict(
    axial_noise=False,
    quantize=False,
    edge_dropout=False,
    grazing_dropout=False,
    random_dropout=False,
    range_limits=False,
    projector_shadows=False,
    lateral_noise=False,
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
    noisy, valid = _only(axial_noise=True, axial_model="nguyen")(_plane(z, 2), INTR.expand(2, -1))
    assert valid.all()
    expected = 0.0012 + 0.0019 * (z - 0.4) ** 2
    assert kinect_axial_sigma(torch.tensor(z)).item() == pytest.approx(expected)
    assert (noisy - z).std().item() == pytest.approx(expected, rel=0.03)
    assert (noisy - z).mean().abs().item() < 3 * expected / math.sqrt(noisy.numel())
    doubled, _ = _only(axial_noise=True, axial_model="nguyen", axial_scale=2.0)(
        _plane(z, 2), INTR.expand(2, -1)
    )
    assert (doubled - z).std().item() == pytest.approx(2 * expected, rel=0.03)


def test_quantisation_steps_follow_disparity() -> None:
    sensor = _only(quantize=True, native_width=None)  # at the image's own focal length
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
    # By default the disparity is measured at the Kinect's native 640-pixel width: a
    # 160-pixel-wide frame has the real sensor's steps (fx * 4), not 4x coarser ones.
    native, _ = _only(quantize=True)(ramp, INTR)
    fb_native = FX * (640 / W) * 0.075
    disparity = fb_native / native
    assert (disparity * 8 - (disparity * 8).round()).abs().max() < 1e-3
    native_levels = native.unique()
    native_steps = (native_levels[1:] - native_levels[:-1])[
        (native_levels[1:] > 1.9) & (native_levels[1:] < 2.1)
    ]
    assert native_steps.mean().item() == pytest.approx(4.0 / fb_native / 8, rel=0.05)  # 1.2 cm


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
    _, valid = _only(edge_dropout=True, edge_prob=0.8)(frame.depth, frame.intrinsics)
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
    out, valid = _only(range_limits=True, min_depth=0.4, max_depth=8.0)(depth, intr)
    assert valid.tolist() == [[[False, True, True, True, False, False]]]
    assert out[~valid].eq(0).all() and torch.equal(out[valid], depth[valid])
    # The default is the Kinect v1's working range, 0.8-4 m.
    _, valid = _only(range_limits=True)(torch.tensor([[[0.7, 0.9, 3.9, 4.1]]]), intr)
    assert valid.tolist() == [[[False, True, True, False]]]


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
    no_shadow, no_shadow_valid = DepthSensorNoise(projector_shadows=False)(
        frame.depth, frame.intrinsics
    )
    both = full_valid & no_shadow_valid
    assert torch.equal(full[both], no_shadow[both]) and (full_valid <= no_shadow_valid).all()
    # Quantisation moves the (native) disparity by at most half a 1/8-pixel step.
    no_quant, _ = DepthSensorNoise(quantize=False, axial_noise=False)(frame.depth, frame.intrinsics)
    quant, quant_valid = DepthSensorNoise(axial_noise=False)(frame.depth, frame.intrinsics)
    fb = frame.intrinsics[:, 0, None, None] * (640 / W) * 0.075
    gap = (fb / no_quant - fb / quant).abs()[quant_valid]
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


def _box_on_wall(
    width: int = W, fx: float = 580.0, near: float = 2.0, far: float = 3.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A wall at ``far`` metres and a box at ``near`` in columns [60, 100) of rows
    [30, 90), seen at focal length ``fx``; depth ``1 x H x width`` and intrinsics."""
    depth = torch.full((1, H, width), far)
    depth[0, 30:90, 60:100] = near
    return depth, torch.tensor([[fx, fx, (width - 1) / 2, (H - 1) / 2]])


@pytest.mark.parametrize("side", ["right", "left"])
def test_projector_shadow_band_lies_on_the_side_the_baseline_predicts(side: str) -> None:
    depth, intr = _box_on_wall()
    sensor = _only(projector_shadows=True, projector_side=side)
    out, valid = sensor(depth, intr)
    # f b (1/z_near - 1/z_far) = 580 * 0.075 * (1/2 - 1/3) = 7.25 pixels of wall.
    lost = ~valid[0]
    rows = slice(30, 90)
    if side == "right":  # light from the image's right: the shadow falls left of the box
        assert lost[rows, 53:60].all() and not lost[rows, 52].any()
        assert not lost[rows, 100:].any()
    else:
        assert lost[rows, 100:107].all() and not lost[rows, 107].any()
        assert not lost[rows, :60].any()
    assert not lost[:30].any() and not lost[90:].any()  # above and below: the wall is lit
    assert not lost[rows, 60:100].any()  # the box itself is lit
    assert lost.sum() == 60 * 7
    assert torch.equal(out[valid], depth[valid]) and out[~valid].eq(0).all()
    assert torch.equal(sensor.shadow_mask(depth, intr), ~valid)


def test_projector_shadow_width_follows_the_baseline_and_depths() -> None:
    for near, far, fx in ((1.0, 3.5, 580.0), (2.5, 2.8, 580.0), (1.5, 3.0, 285.0)):
        depth, intr = _box_on_wall(near=near, far=far, fx=fx)
        shadow = _only().shadow_mask(depth, intr)[0, 60]
        expected = fx * 0.075 * (1 / near - 1 / far)
        assert abs(int(shadow.sum()) - expected) <= 1
        assert shadow[: 60 - math.ceil(expected)].sum() == 0 and shadow[60:].sum() == 0


def test_all_background_and_unreadable_frames_give_no_nan() -> None:
    empty = torch.zeros(3, H, W)
    out, valid = DepthSensorNoise()(empty, INTR.expand(3, -1))
    assert torch.equal(out, empty) and not valid.any()
    # NaN, infinite and negative depths count as no surface.
    odd = torch.zeros(2, H, W)
    odd[0, 10:20, 10:20] = torch.nan
    odd[0, 30:40, 30:40] = torch.inf
    odd[1, 50:60, 50:60] = -1.0
    odd[1, 70:90, 70:90] = 2.0
    out, valid = DepthSensorNoise()(odd, INTR.expand(2, -1))
    assert torch.isfinite(out).all() and not valid[0].any()
    assert valid[1].sum() > 0.8 * 400 and not valid[1, 50:60, 50:60].any()


def test_khoshelham_axial_noise_with_quantisation_has_the_published_spread() -> None:
    """Noise and 1/8-pixel quantisation together spread like Khoshelham & Elberink's
    measurements (the Gaussian part makes room for the quantisation's share)."""
    z = torch.linspace(1.95, 2.05, H * W).view(1, H, W).expand(4, -1, -1).contiguous()
    expected = 1.425e-3 * 2.0**2  # 5.7 mm at 2 m
    assert khoshelham_axial_sigma(torch.tensor(2.0)).item() == pytest.approx(expected)
    for quantize in (False, True):
        noisy, valid = _only(axial_noise=True, quantize=quantize)(z, INTR.expand(4, -1))
        assert valid.all()
        assert (noisy - z).std().item() == pytest.approx(expected, rel=0.04)


def test_lateral_noise_makes_silhouettes_ragged_and_flying_pixels() -> None:
    """At the Kinect's native 640 x 480, Nguyen et al.'s sigma_L = 0.8 pixel: a box's
    outermost column reads the background (and loses its depth) when the displacement
    rounds to -1 or less, P(N(0, 0.8) < -0.5) = 27 %."""
    height, width = 480, 640
    intr = torch.tensor([[580.0, 580.0, (width - 1) / 2, (height - 1) / 2]])
    box = torch.zeros(1, height, width)
    box[0, 40:440, 120:520] = 2.0
    out, valid = _only(lateral_noise=True)(box, intr)
    assert 1 - valid[0, 60:420, 120].float().mean().item() == pytest.approx(0.266, abs=0.06)
    assert valid[0, 60:420, 125:515].all()  # the interior is whole ...
    assert out[valid].eq(2.0).all()  # ... and a flat plane keeps its depth
    # In front of a wall, reads across the step take the other side's depth or, as flying
    # pixels, one in between.
    wall = torch.full((1, height, width), 3.0)
    wall[0, 40:440, 120:520] = 2.0
    for prob in (0.0, 1.0):
        out, valid = _only(lateral_noise=True, flying_prob=prob)(wall, intr)
        inner = (slice(None), slice(2, -2), slice(2, -2))  # reads past the border: none
        assert valid[inner].all()
        out, wall_inner = out[inner], wall[inner]
        between = (out > 2.0) & (out < 3.0)
        if prob == 0:
            assert not between.any() and (out != wall_inner).sum() > 200
        else:
            assert between.sum() > 200 and (out != wall_inner).sum() == between.sum()


@pytest.mark.parametrize("size", [(120, 160), (240, 320)])
def test_a_person_stays_a_mostly_solid_silhouette(size: tuple[int, int]) -> None:
    """A Kinect v1 frame of a person is a solid silhouette with a few holes, not salt
    noise: the default model keeps most person pixels (with the edge dropout of earlier
    versions, 70 % at 120 x 160)."""
    frame = BodyRenderer(*size, seed=11, yaw_range=(-90.0, 90.0)).render(range(6))
    _, valid = DepthSensorNoise()(frame.depth, frame.intrinsics)
    kept = (valid.sum() / frame.valid.sum()).item()
    assert 0.85 < kept < 0.995


def test_grazing_dropout_spares_both_sides_of_an_occlusion_edge() -> None:
    """Normals are taken on one surface: a box before a wall, both facing the camera,
    loses nothing at its edges (differences across the step would make them edge-on)."""
    depth, intr = _box_on_wall(fx=140.0)
    _, valid = _only(grazing_dropout=True)(depth, intr)
    assert valid.all()
    # A surface that really turns away still drops: a plane seen at 85 degrees.
    tilted, _ = _tilted_plane(85.0)
    _, valid = _only(grazing_dropout=True)(tilted, INTR)
    assert (~valid[tilted > 0]).float().mean() > 0.15
