"""Tests of the articulated body depth renderer ``BodyRenderer`` and ``RenderedBodies``."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch.utils.data import DataLoader

from lightning_synth.batch import (
    DOMAIN,
    IGNORE_LABEL,
    IMAGE,
    INTRINSICS,
    JOINTS,
    LABEL,
    RENDERED,
    VALID,
    check_batch,
)
from lightning_synth.rendering.body import (
    JOINT_NAMES,
    MIRROR_PARTS,
    PART_NAMES,
    PART_PALETTE,
    PART_TO_JOINT,
    BodyFrame,
    BodyParams,
    BodyRenderer,
    RenderedBodies,
    colorize_parts,
    mirror_frame,
)
from lightning_synth.rendering.body_render import raycast_capsules
from lightning_synth.rendering.body_skeleton import (
    CANONICAL_POSES,
    DOF_LIMITS_DEG,
    DOF_NAMES,
    SHAPE_NAMES,
    mirror_pose,
    pose_from_degrees,
)
from lightning_synth.rendering.sensor import DepthSensorNoise

H, W = 60, 80


@pytest.fixture(scope="module")
def frames():
    """32 frames at 60 x 80 (half of them mirrored), shared by several tests."""
    return BodyRenderer(H, W, seed=3).render(range(32))


def _points(frame) -> torch.Tensor:
    """``(B, H, W, 3)`` camera-frame points of every pixel."""
    height, width = frame.depth.shape[1:]
    v, u = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    fx, fy, cx, cy = (frame.intrinsics[:, i, None, None] for i in range(4))
    z = frame.depth
    return torch.stack([(u - cx) / fx * z, (v - cy) / fy * z, z], -1)


def _front_params(renderer: BodyRenderer, pose: str, count: int = 1, yaw: float = 0.0):
    """A nominal body in a canonical pose, 2.5 m in front of a level camera."""
    camera = torch.tensor([[2.5, 1.0, 0.0, 0.0, 0.0, math.radians(58)]]).expand(count, -1)
    return BodyParams(
        pose=pose_from_degrees(CANONICAL_POSES[pose], count),
        shape=torch.ones(count, len(SHAPE_NAMES)),
        yaw=torch.full((count,), yaw),
        camera=camera.clone(),
        mirrored=torch.zeros(count, dtype=torch.bool),
    )


def test_frame_shapes_dtypes_and_background_convention(frames) -> None:
    assert frames.depth.shape == (32, H, W) and frames.depth.dtype == torch.float32
    assert frames.parts.shape == (32, H, W) and frames.parts.dtype == torch.long
    assert frames.joints.shape == (32, len(JOINT_NAMES), 3)
    assert frames.intrinsics.shape == (32, 4)
    assert frames.valid.dtype == torch.bool
    # Background: depth 0, label -1, valid False; foreground: depth > 0 and a real part.
    assert torch.equal(frames.valid, frames.depth > 0)
    assert torch.equal(frames.valid, frames.parts != IGNORE_LABEL)
    assert frames.parts.max() < len(PART_NAMES)
    # Every frame shows a body, covering a plausible share of the image.
    share = frames.valid.float().mean((1, 2))
    assert (share > 0.01).all() and (share < 0.8).all()
    assert len(PART_NAMES) == 31 and len(set(PART_NAMES)) == 31
    assert PART_PALETTE.shape == (31, 3) and PART_PALETTE.dtype == torch.uint8
    assert len({tuple(c) for c in PART_PALETTE.tolist()}) == 31


def test_frames_depend_only_on_seed_and_index() -> None:
    renderer = BodyRenderer(H, W, seed=7)
    batch = renderer.render([4, 5, 6, 7])
    singles = [BodyRenderer(H, W, seed=7).render(i) for i in (4, 5, 6, 7)]
    for k, single in enumerate(singles):
        torch.testing.assert_close(batch.depth[k], single.depth[0], atol=1e-5, rtol=0)
        assert (batch.parts[k] != single.parts[0]).float().mean() < 1e-3
        torch.testing.assert_close(batch.joints[k], single.joints[0])
    assert torch.equal(renderer.render(torch.tensor([5])).depth, renderer.render([5]).depth)
    other = BodyRenderer(H, W, seed=8).render([4, 5, 6, 7])
    assert not torch.allclose(other.joints, batch.joints)
    # Different indices give different bodies, poses and views.
    assert (batch.joints[1:] - batch.joints[:1]).abs().amax((1, 2)).min() > 0.1


def test_a_renderer_moved_to_a_device_makes_the_same_frames_there() -> None:
    renderer = BodyRenderer(H, W, seed=3, yaw_range=(-30.0, 30.0))
    moved = renderer.to("cpu")
    assert moved is not renderer and moved.device == torch.device("cpu")
    assert moved.yaw_range == (-30.0, 30.0) and renderer.device == torch.device("cpu")
    assert torch.equal(moved.render([2, 9]).depth, renderer.render([2, 9]).depth)


def test_all_31_parts_appear(frames) -> None:
    counts = torch.bincount(frames.parts[frames.valid], minlength=len(PART_NAMES))
    missing = [PART_NAMES[i] for i in range(len(PART_NAMES)) if counts[i] == 0]
    assert not missing, f"parts never rendered in 32 frames: {missing}"
    # Big parts (torso, thighs) outnumber small ones (wrists), as on a real body.
    assert counts[PART_NAMES.index("lu_torso")] > 5 * counts[PART_NAMES.index("l_wrist")]


def test_part_pixels_lie_near_their_joint(frames) -> None:
    points = _points(frames)
    for part, joint in enumerate(PART_TO_JOINT):
        if joint < 0:
            continue
        mask = frames.parts == part
        dist = (points[mask] - frames.joints[mask.nonzero()[:, 0], joint]).norm(dim=-1)
        assert dist.max() < 0.2, f"{PART_NAMES[part]} pixels up to {dist.max():.2f} m away"
    # The brief's check: left-hand pixels are near the left wrist, not the right one.
    mask = frames.parts == PART_NAMES.index("l_hand")
    images = mask.nonzero()[:, 0]
    left = (points[mask] - frames.joints[images, JOINT_NAMES.index("l_wrist")]).norm(dim=-1)
    right = (points[mask] - frames.joints[images, JOINT_NAMES.index("r_wrist")]).norm(dim=-1)
    assert left.max() < 0.25
    assert (left < right).float().mean() > 0.95


@pytest.mark.parametrize(
    "part, start, end",
    [
        ("lu_arm", "l_shoulder", "l_elbow"),
        ("rw_arm", "r_elbow", "r_wrist"),
        ("lu_leg", "l_hip", "l_knee"),
        ("rw_leg", "r_knee", "r_ankle"),
    ],
)
def test_limb_pixels_lie_along_their_bone(frames, part: str, start: str, end: str) -> None:
    points = _points(frames)
    mask = frames.parts == PART_NAMES.index(part)
    images = mask.nonzero()[:, 0]
    a = frames.joints[images, JOINT_NAMES.index(start)]
    b = frames.joints[images, JOINT_NAMES.index(end)]
    p = points[mask]
    t = (((p - a) * (b - a)).sum(-1) / ((b - a) ** 2).sum(-1)).clamp(0, 1)
    dist = (p - (a + t[:, None] * (b - a))).norm(dim=-1)
    assert dist.max() < 0.15  # limb radius plus margin: the label follows the bone
    assert 0.1 < t.mean() < 0.9  # and covers its middle, not just one end


def test_depth_follows_camera_distance() -> None:
    medians = {}
    for distance in (1.8, 3.5):
        renderer = BodyRenderer(H, W, seed=1, distance_range=(distance, distance))
        frame = renderer.render(range(8))
        for k in range(8):
            z = frame.depth[k][frame.valid[k]]
            assert distance - 1.3 < z.min() and z.max() < distance + 1.3
        medians[distance] = torch.stack([frame.depth[k][frame.valid[k]].median() for k in range(8)])
        # The pelvis is at the chosen horizontal distance, seen slightly from above/below.
        pelvis = frame.joints[:, JOINT_NAMES.index("pelvis")]
        assert (pelvis.norm(dim=-1) - distance).abs().max() < 1.0
    gap = (medians[3.5] - medians[1.8]).mean()
    assert 1.3 < gap < 2.1


def test_front_view_puts_the_subjects_left_on_the_image_right() -> None:
    renderer = BodyRenderer(120, 160, mirror=False)
    frame = renderer.render_params(_front_params(renderer, "t_pose"))
    cols = torch.arange(160).expand(120, -1)

    def mean_column(name: str) -> float:
        return cols[frame.parts[0] == PART_NAMES.index(name)].float().mean().item()

    assert mean_column("l_hand") > 100 > 60 > mean_column("r_hand")
    assert mean_column("lu_torso") > 80 > mean_column("ru_torso")
    rows = torch.arange(120)[:, None].expand(-1, 160)
    head = rows[frame.parts[0] == PART_NAMES.index("head_lu")].float().mean()
    foot = rows[frame.parts[0] == PART_NAMES.index("l_foot")].float().mean()
    assert head < 40 and foot > 80  # upright: head at the top, feet at the bottom
    # Seen from behind, the subject's left is on the image left.
    back = renderer.render_params(_front_params(renderer, "t_pose", yaw=math.pi))
    lh = cols[back.parts[0] == PART_NAMES.index("l_hand")].float().mean()
    assert lh < 60


def test_mirroring_swaps_left_and_right() -> None:
    plain = BodyRenderer(H, W, seed=11, mirror=False).render(range(12))
    mixed = BodyRenderer(H, W, seed=11, mirror=True).render(range(12))
    flipped = mixed.mirrored
    assert 0 < flipped.sum() < 12 and not plain.mirrored.any()
    # Unflipped frames are identical; flipped ones are the mirror image with L/R swapped.
    assert torch.equal(mixed.parts[~flipped], plain.parts[~flipped])
    expected = torch.tensor(MIRROR_PARTS + (IGNORE_LABEL,))[plain.parts].flip(-1)
    assert torch.equal(mixed.parts[flipped], expected[flipped])
    assert torch.equal(mixed.depth[flipped], plain.depth[flipped].flip(-1))
    lw, rw = JOINT_NAMES.index("l_wrist"), JOINT_NAMES.index("r_wrist")
    torch.testing.assert_close(mixed.joints[flipped, lw, 0], -plain.joints[flipped, rw, 0])
    # Mirroring a "reach" with the left arm gives a reach with the right arm, and the
    # mirrored person still has their left hand on the image right (facing the camera).
    renderer = BodyRenderer(120, 160, mirror=False)
    frame = renderer.render_params(_front_params(renderer, "reach"))
    back = mirror_frame(frame)
    cols = torch.arange(160).expand(120, -1)

    def column(f, name: str) -> float:
        return cols[f.parts[0] == PART_NAMES.index(name)].float().mean().item()

    assert back.mirrored.all()
    assert column(back, "l_hand") > 80 > column(back, "r_hand")
    assert column(back, "r_hand") == pytest.approx(159 - column(frame, "l_hand"))
    reaching = frame.joints[0, JOINT_NAMES.index("l_hand"), 2]  # nearer the camera
    assert back.joints[0, JOINT_NAMES.index("r_hand"), 2] == reaching
    # Mirroring twice gives the frame back.
    again = mirror_frame(back)
    assert torch.equal(again.parts, frame.parts) and torch.equal(again.depth, frame.depth)


def test_sphere_depth_matches_closed_form() -> None:
    height, width, fx = 48, 64, 60.0
    intr = torch.tensor([[fx, fx, (width - 1) / 2, (height - 1) / 2]])
    center, radius = torch.tensor([0.3, -0.2, 2.0]), 0.5
    depth, index = raycast_capsules(
        center.view(1, 1, 3),
        torch.eye(3).view(1, 1, 3, 3),
        torch.full((1, 1, 3), radius),
        torch.zeros(1, 1),
        intr,
        height,
        width,
    )
    v, u = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    d = torch.stack([(u - intr[0, 2]) / fx, (v - intr[0, 3]) / fx, torch.ones(height, width)], -1)
    d = d.double()
    c = center.double()
    dc = (d * c).sum(-1)
    dd = (d * d).sum(-1)
    disc = dc**2 - dd * ((c * c).sum() - radius**2)
    expected = torch.where(disc > 0, (dc - disc.clamp_min(0).sqrt()) / dd, 0.0)
    hit = disc > 1e-6  # rays that graze the silhouette may go either way in float32
    assert ((index[0] >= 0) != (disc > 0)).sum() <= 2
    assert (index[0][hit] == 0).all() and (index[0][disc < -1e-6] == -1).all()
    torch.testing.assert_close(depth[0][hit].double(), expected[hit], atol=1e-5, rtol=0)
    # The nearest surface point, z = 2 - r, is seen (no pixel sees nearer).
    assert depth[0][hit].min().item() == pytest.approx(2.0 - radius, abs=2e-3)


def test_capsule_side_on_and_end_on() -> None:
    """A capsule across the view is a band of depth z - r; along the view, a disc."""
    height, width, fx = 40, 80, 50.0
    intr = torch.tensor([[fx, fx, (width - 1) / 2, (height - 1) / 2]])
    # Axis along camera x: columns are local x, y (axis), z.
    across = torch.tensor([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    along = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    centers = torch.tensor([[[0.0, 0.0, 3.0], [0.0, 0.0, 3.0]]])
    for axes, half in ((across, 0.8), (along, 0.8)):
        depth, _ = raycast_capsules(
            centers[:, :1],
            axes.view(1, 1, 3, 3),
            torch.full((1, 1, 3), 0.2),
            torch.tensor([[half]]),
            intr,
            height,
            width,
        )
        row = depth[0, 19:21].amin(0)
        if axes is across:
            # Pixels whose ray passes over the cylinder see z = 3 - 0.2 / cos(angle) ~ 2.8.
            seen = row > 0
            assert seen.sum() == pytest.approx(2 * 1.0 * fx / 2.8, abs=4)
            assert (row[30:50] - 2.8).abs().max() < 0.01
        else:
            # End-on: the near cap at z = 3 - 0.8 - 0.2 = 2.0 fills a disc of radius 0.2.
            assert depth[0].max() < 2.0 + 0.2 + 1e-3
            assert depth[0][depth[0] > 0].min() == pytest.approx(2.0, abs=5e-3)
            assert (depth[0] > 0).sum() == pytest.approx(math.pi * (0.2 * fx / 2.05) ** 2, rel=0.35)


def test_primitives_partly_outside_the_image_are_cut_not_lost() -> None:
    """Culling boxes are clipped to the image: a sphere on the border still renders."""
    intr = torch.tensor([[40.0, 40.0, 19.5, 14.5]])
    depth, _ = raycast_capsules(
        torch.tensor([[[1.0, 0.0, 2.0]]]),
        torch.eye(3).view(1, 1, 3, 3),
        torch.full((1, 1, 3), 0.3),
        torch.zeros(1, 1),
        intr,
        30,
        40,
    )
    # The sphere's centre projects to u = 39.5: the right half of the image border.
    assert (depth[0, :, -1] > 0).sum() > 8 and (depth[0, :, :25] == 0).all()


def random_capsule_scene(batch: int, prims: int, height: int, width: int) -> tuple:
    """Random elliptic capsules, wide-angle, off-axis, some close to the camera: the
    arguments of ``raycast_capsules``."""
    generator = torch.Generator().manual_seed(0)
    rand = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    centers = torch.stack(
        [
            (rand(batch, prims) - 0.5) * 3,
            (rand(batch, prims) - 0.5) * 2,
            0.4 + 3 * rand(batch, prims),
        ],
        -1,
    )
    axes = torch.linalg.qr(torch.randn(batch, prims, 3, 3, generator=generator)).Q
    radii = 0.03 + 0.3 * rand(batch, prims, 3)
    half_lengths = 0.5 * rand(batch, prims) * (rand(batch, prims) > 0.2)
    focal = 0.56 * width
    intrinsics = torch.tensor([[focal, focal, (width - 1) / 2, (height - 1) / 2]])
    return centers, axes, radii, half_lengths, intrinsics.expand(batch, -1), height, width


def test_row_spans_cull_nothing_a_ray_could_hit() -> None:
    """Testing only the row spans gives the same image as testing every pixel of the
    boxes."""
    args = random_capsule_scene(6, 24, 60, 80)
    depth, index = raycast_capsules(*args)
    reference_depth, reference_index = raycast_capsules(*args, culling="boxes")
    assert (reference_index >= 0).float().mean() > 0.3  # a busy scene, not an empty one
    assert torch.equal(index, reference_index) and torch.equal(depth, reference_depth)
    with pytest.raises(ValueError, match="culling"):
        raycast_capsules(*args, culling="none")


def test_sampled_poses_respect_joint_limits_and_vary() -> None:
    renderer = BodyRenderer(H, W)
    params = renderer.sample(range(200))
    lo, hi = torch.deg2rad(torch.tensor(DOF_LIMITS_DEG)).unbind(-1)
    assert (params.pose >= lo - 1e-6).all() and (params.pose <= hi + 1e-6).all()
    spread = torch.rad2deg(params.pose.std(0))
    elbow = DOF_NAMES.index("l_elbow_flex")
    assert spread[elbow] > 20 and spread[DOF_NAMES.index("r_shoulder_abd")] > 30
    heights = params.shape[:, 0] * 1.77
    assert 1.2 <= heights.min() and heights.max() <= 2.0 and heights.std() > 0.1
    assert 0.3 < params.mirrored.float().mean() < 0.7
    # Mirroring a pose twice is the identity.
    torch.testing.assert_close(mirror_pose(mirror_pose(params.pose)), params.pose)


def test_dataset_items_follow_the_batch_contract() -> None:
    renderer = BodyRenderer(H, W, seed=2)
    dataset = RenderedBodies(6, renderer=renderer, noise=DepthSensorNoise(), offset=100)
    batch = next(iter(DataLoader(dataset, batch_size=6)))
    check_batch(batch)
    assert batch[IMAGE].shape == (6, 1, H, W) and batch[LABEL].shape == (6, H, W)
    assert (batch[DOMAIN] == RENDERED).all()
    assert batch[JOINTS].shape == (6, len(JOINT_NAMES), 3) and batch[INTRINSICS].shape == (6, 4)
    valid = batch[VALID]
    assert torch.equal(valid, batch[IMAGE][:, 0] > 0)
    assert (batch[LABEL][~valid] == IGNORE_LABEL).all()
    # Noise drops some foreground pixels (many at this tiny size: bodies are mostly
    # edges) and moves the others by about the sensor's noise and depth step.
    clean = renderer.render(range(100, 106))
    assert torch.equal(batch[JOINTS], clean.joints)
    assert (valid <= clean.valid).all()
    kept = valid.sum() / clean.valid.sum()
    assert 0.3 < kept < 0.99
    error = (batch[IMAGE][:, 0] - clean.depth)[valid].abs()
    assert 0.001 < error.mean() < 0.05 and error.max() < 0.3
    # One item alone equals the same item in a batch (per-frame noise generators).
    single = dataset[3]
    assert torch.equal(single[IMAGE], batch[IMAGE][3])
    assert torch.equal(single[LABEL], batch[LABEL][3])
    with pytest.raises(IndexError):
        dataset[6]


def test_colorize_parts_uses_the_palette() -> None:
    parts = torch.tensor([[0, 30, -1]])
    image = colorize_parts(parts, background=7)
    assert image.shape == (1, 3, 3) and image.dtype == torch.uint8
    assert torch.equal(image[0, 0], PART_PALETTE[0]) and torch.equal(image[0, 1], PART_PALETTE[30])
    assert image[0, 2].tolist() == [7, 7, 7]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_renders_on_gpu_like_on_cpu() -> None:
    cpu = BodyRenderer(H, W, seed=9).render(range(8))
    gpu = BodyRenderer(H, W, seed=9, device="cuda").render(range(8))
    assert gpu.depth.is_cuda and gpu.parts.is_cuda
    torch.testing.assert_close(gpu.joints.cpu(), cpu.joints, atol=1e-4, rtol=0)
    same = gpu.valid.cpu() == cpu.valid
    assert same.float().mean() > 0.999
    both = gpu.valid.cpu() & cpu.valid
    assert (gpu.depth.cpu() - cpu.depth)[both].abs().max() < 1e-3
    assert (gpu.parts.cpu() == cpu.parts)[both].float().mean() > 0.995
    noisy, valid = DepthSensorNoise()(gpu.depth, gpu.intrinsics)
    assert noisy.is_cuda and valid.is_cuda and valid.sum() > 0.5 * gpu.valid.sum()


def _fraction_in_view(renderer: BodyRenderer, count: int) -> tuple[torch.Tensor, BodyFrame]:
    """Per frame, the fraction of the person's pixels inside the image: the same frames
    rendered with the same focal length on a canvas 3x as wide and high, centred on the
    image, count the pixels that fall outside. Returns it and the frames."""
    params = renderer.sample(range(count))
    camera = params.camera.clone()
    camera[:, 5] = 2 * torch.atan(3 * torch.tan(camera[:, 5] / 2))
    height, width = renderer.height, renderer.width
    wide = BodyRenderer(3 * height, 3 * width).render_params(
        dataclasses.replace(params, camera=camera)
    )
    frame = renderer.render_params(params)
    inside = wide.valid[:, height : 2 * height, width : 2 * width]
    assert (inside == frame.valid).float().mean() > 0.999  # the centre is the image
    return inside.flatten(1).sum(1) / wide.valid.flatten(1).sum(1).clamp_min(1), frame


@pytest.mark.parametrize("height_range", [(1.4, 2.0), (1.2, 2.0)])
def test_the_whole_person_stays_in_view_within_the_sensor_range(height_range) -> None:
    """Over many frames, people 1.2-2.0 m tall are seen whole, within the Kinect's
    0.8-4 m, and never as a close-up that fills the view."""
    renderer = BodyRenderer(48, 64, seed=5, height_range=height_range)
    inside, frame = _fraction_in_view(renderer, 96)
    assert inside.mean() > 0.99 and inside.min() > 0.85
    cover = frame.valid.flatten(1).float().mean(1)
    assert cover.max() < 0.3 and cover.min() > 0.01
    depth = frame.depth[frame.valid]
    assert depth.min() > 0.8 and (depth > 4.0).float().mean() < 0.005
    # Drawing the distance without looking at the pose cuts bodies: the check sees it.
    loose = BodyRenderer(48, 64, seed=5, height_range=height_range, fit_in_view=False)
    loose_inside, _ = _fraction_in_view(loose, 96)
    assert loose_inside.min() < 0.85 and loose_inside.mean() < inside.mean()
