"""``BodyRenderer``: depth maps of articulated people with Shotton's 31 body-part labels.

Shotton et al. (CVPR 2011) trained the Kinect body-part classifier on millions of
rendered depth images of people in varied poses, shapes and camera set-ups. This
renderer makes such frames on the fly in plain ``torch``, vectorised over the batch, on
any device: a skeleton (:mod:`~lightning_synth.rendering.body_skeleton`) with joint
limits, dressed in 16 elliptic capsules and ellipsoids, ray-cast in closed form
(:mod:`~lightning_synth.rendering.body_render`). No mesh or file is read.

Conventions of a :class:`BodyFrame`:

* camera frame: ``x`` right, ``y`` down, ``z`` forward, metres; pinhole ``intrinsics``
  ``(fx, fy, cx, cy)`` in pixels, pixel ``(u, v)`` looks along
  ``((u - cx) / fx, (v - cy) / fy, 1)``;
* ``depth`` is the ``z`` of the surface (not the ray length); **background is 0** and
  ``valid`` (the foreground mask) is ``depth > 0``;
* ``parts`` indexes :data:`PART_NAMES`; background is ``IGNORE_LABEL`` (-1);
* left and right are the subject's own: facing the camera, their left is on the right
  of the image.

Every sample is a pure function of ``(seed, index)``, so a batch renders the same
frames as its indices one by one, in any DataLoader worker or DDP process.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Literal

import torch
from torch.utils.data import Dataset

from lightning_synth.batch import (
    DOMAIN,
    IGNORE_LABEL,
    IMAGE,
    INTRINSICS,
    JOINTS,
    LABEL,
    RENDERED,
    VALID,
    Batch,
)
from lightning_synth.errors import InputError
from lightning_synth.rendering.body_frame import (
    BodyFrame,
    BodyParams,
    frame_from_hits,
    mirror_frame,
)
from lightning_synth.rendering.body_parts import (
    MIRROR_PARTS,
    PART_NAMES,
    PART_TO_JOINT,
    build_primitives,
    label_hits,
)
from lightning_synth.rendering.body_render import raycast_hits
from lightning_synth.rendering.body_render_tiles import tiles_available
from lightning_synth.rendering.body_skeleton import (
    DOF_NAMES,
    JOINT_NAMES,
    MIRROR_JOINTS,
    NOMINAL_HEIGHT,
    SHAPE_NAMES,
    forward_kinematics,
    sample_poses,
)
from lightning_synth.rendering.counter_random import box_muller, counter_uniforms
from lightning_synth.rendering.sensor import DepthSensorNoise

__all__ = [
    "BodyRenderer",
    "BodyParams",
    "BodyFrame",
    "RenderedBodies",
    "PART_NAMES",
    "PART_PALETTE",
    "PART_TO_JOINT",
    "JOINT_NAMES",
    "MIRROR_PARTS",
    "MIRROR_JOINTS",
    "mirror_frame",
    "colorize_parts",
    "item_numbers",
]

#: A fixed colour (uint8 RGB) per part, in ``PART_NAMES`` order, for label images.
PART_PALETTE: torch.Tensor = torch.tensor(
    [
        (255, 38, 38), (103, 230, 140), (149, 0, 255), (178, 160, 27), (92, 185, 204),
        (178, 0, 97), (55, 153, 23), (121, 115, 255), (153, 51, 0), (34, 230, 157),
        (243, 115, 255), (181, 230, 0), (31, 117, 204), (178, 80, 101), (0, 204, 17),
        (120, 38, 255), (153, 125, 69), (0, 255, 245), (255, 38, 200), (161, 230, 103),
        (0, 42, 255), (178, 46, 27), (92, 204, 139), (127, 0, 178), (153, 153, 23),
        (115, 214, 255), (153, 0, 63), (58, 230, 34), (139, 115, 255), (230, 106, 0),
        (31, 204, 161),
    ],
    dtype=torch.uint8,
)  # fmt: skip


def colorize_parts(parts: torch.Tensor, background: int = 0) -> torch.Tensor:
    """``(..., H, W, 3)`` uint8 RGB picture of a part map with :data:`PART_PALETTE`.

    Args:
        parts: long part labels, -1 for background.
        background: grey level of the background.
    """
    palette = torch.cat([PART_PALETTE, torch.full((1, 3), background, dtype=torch.uint8)])
    return palette.to(parts.device)[parts]


def item_numbers(indices: Sequence[int], length: int) -> list[int]:
    """``indices`` of a dataset of ``length`` items as numbers in ``[0, length)``
    (negative ones count from the end), or an ``IndexError`` naming the first bad one.

    Args:
        indices: item indices.
        length: number of items.
    """
    for i in indices:
        if not -length <= i < length:
            raise IndexError(f"index {i} out of range for {length} frames")
    return [int(i) % length for i in indices]


def _sample_seed(seed: int, index: int) -> int:
    """A well-mixed 63-bit seed from ``(seed, index)`` (splitmix64 finaliser)."""
    mask = (1 << 64) - 1
    x = (seed * 0x9E3779B97F4A7C15 + index * 0xD1B54A32D192ED03 + 0x2545F4914F6CDD1D) & mask
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
    return (x ^ (x >> 31)) >> 1


def _as_indices(indices: torch.Tensor | Sequence[int] | int) -> list[int]:
    if isinstance(indices, int):
        return [indices]
    if isinstance(indices, torch.Tensor):
        return [int(i) for i in indices.flatten().tolist()]
    return [int(i) for i in indices]


_N_DOF, _N_SHAPE = len(DOF_NAMES), len(SHAPE_NAMES)
_N_POSE_U = 2 + 6 + _N_DOF  # see sample_poses
_N_UNIFORM = _N_POSE_U + _N_SHAPE + 1 + 6 + 1 + 1  # pose, shape, girth, camera, yaw, mirror


class BodyRenderer:
    """Render depth maps and part labels of people in random poses, shapes and views.

    Sample ``i`` depends only on ``(seed, i)``: its pose is a canonical pose (standing,
    walking, arms raised, T-pose, crouching, reaching, waving, kicking, bending, sitting,
    jumping jack, guard, hands on hips, pointing up, lunge), possibly mirrored, with
    Gaussian jitter and some limbs posed uniformly within the joint limits; body height,
    proportions and girths, rotation about the vertical, camera distance, height, aim,
    roll and field of view are uniform in their ranges.

    Args:
        height: image height in pixels (240 for a Kinect v1 at QVGA).
        width: image width in pixels.
        seed: base seed; frame ``i`` depends only on ``(seed, i)``.
        mirror: flip half of the frames left-right (labels and joints follow).
        distance_range: horizontal camera-to-pelvis distance in metres.
        camera_height_range: camera height above the floor in metres.
        pitch_jitter: largest pitch offset in degrees from looking at the body centre.
        pan_jitter: largest pan offset in degrees from looking at the body centre.
        max_roll: largest camera roll in degrees.
        fov_range: horizontal field of view in degrees (a Kinect v1 has about 58).
        yaw_range: rotation of the body about the vertical in degrees (0 faces the camera).
        height_range: body height in metres.
        girth_range: girth multiplier (thin to heavy); limbs follow it less than the torso.
        proportion_jitter: largest relative change of limb, torso, shoulder, hip and head
            sizes.
        pose_jitter: standard deviation in degrees of the jitter added to the canonical
            pose (arms and neck; spine and legs get less).
        random_limb_prob: chance that each limb group (spine, neck, each arm and leg) is
            posed uniformly at random within its joint limits.
        fit_in_view: step the camera back from the drawn distance (up to the top of
            ``distance_range``) until the whole body fits in the view, as a Kinect player
            does; ``False`` keeps the drawn distance (close-ups may cut the body).
        view_fill: the largest fraction of the half-width and half-height of the view the
            body may reach from the image centre when the camera steps back.
        device: device the frames are rendered on (``"cpu"``, ``"cuda"``, ``"cuda:1"``...).
        culling: how the ray cast finds the pixels each primitive covers: ``spans`` (the
            default; gathers the pixels near each primitive, fast on a CPU) or ``tiles``
            (one fused Triton kernel over pixel tiles; CUDA only, written to cut the many
            small kernels ``spans`` launches per batch; not yet measured on a GPU).
    """

    def __init__(
        self,
        height: int = 240,
        width: int = 320,
        seed: int = 0,
        mirror: bool = True,
        distance_range: tuple[float, float] = (1.5, 3.5),
        camera_height_range: tuple[float, float] = (0.6, 1.8),
        pitch_jitter: float = 5.0,
        pan_jitter: float = 5.0,
        max_roll: float = 5.0,
        fov_range: tuple[float, float] = (52.0, 64.0),
        yaw_range: tuple[float, float] = (-180.0, 180.0),
        height_range: tuple[float, float] = (1.2, 2.0),
        girth_range: tuple[float, float] = (0.8, 1.3),
        proportion_jitter: float = 0.08,
        pose_jitter: float = 12.0,
        random_limb_prob: float = 0.2,
        fit_in_view: bool = True,
        view_fill: float = 0.95,
        device: str = "cpu",
        culling: Literal["spans", "tiles"] = "spans",
    ) -> None:
        if culling not in ("spans", "tiles"):
            raise InputError(f"culling must be 'spans' or 'tiles', got {culling!r}")
        if culling == "tiles" and not tiles_available(torch.device(device)):
            raise InputError(
                f"culling='tiles' needs Triton and a CUDA device, not {device!r}; use "
                f"culling='spans' (the default) there"
            )
        if height < 1 or width < 1:
            raise InputError(f"image size must be positive, got {height} x {width}")
        if min(distance_range) <= 0.3:
            raise InputError(f"distance_range must stay above 0.3 m, got {distance_range}")
        self.height, self.width, self.seed, self.mirror = int(height), int(width), int(seed), mirror
        self.distance_range, self.camera_height_range = distance_range, camera_height_range
        self.pitch_jitter, self.pan_jitter, self.max_roll = pitch_jitter, pan_jitter, max_roll
        self.fov_range, self.yaw_range = fov_range, yaw_range
        self.height_range, self.girth_range = height_range, girth_range
        self.proportion_jitter, self.pose_jitter = proportion_jitter, pose_jitter
        self.random_limb_prob = random_limb_prob
        if not 0 < view_fill <= 1:
            raise InputError(f"view_fill must be in (0, 1], got {view_fill}")
        self.fit_in_view, self.view_fill = fit_in_view, float(view_fill)
        self.device = torch.device(device)
        self.culling = culling

    def to(self, device: str | torch.device) -> BodyRenderer:
        """This renderer on ``device``: a copy that makes the same frames there.

        Args:
            device: where the copy renders (``"cpu"``, ``"cuda"``, ``"cuda:1"``...).
        """
        device = torch.device(device)
        if self.culling == "tiles" and not tiles_available(device):
            raise ValueError(
                f"culling='tiles' needs Triton and a CUDA device, not {str(device)!r}; use "
                f"culling='spans' (the default) there"
            )
        moved = copy.copy(self)
        moved.device = device
        return moved

    def sample(self, indices: torch.Tensor | Sequence[int] | int) -> BodyParams:
        """Draw the parameters of frames ``indices``.

        Args:
            indices: frame indices (non-negative integers).
        """
        indices = _as_indices(indices)
        if not indices:
            raise ValueError("no frame indices given")
        # One counter-based stream per frame: a few dozen tensor operations for the whole
        # batch, on the render device (a generator per frame cost ~10 us of host work each).
        draws = counter_uniforms(self.seed, indices, _N_UNIFORM + 2 * _N_DOF, self.device)
        u = draws[:, :_N_UNIFORM].float()
        n = box_muller(draws[:, _N_UNIFORM:]).float()
        pose = sample_poses(u[:, :_N_POSE_U], n, self.pose_jitter, self.random_limb_prob)
        rest = u[:, _N_POSE_U:]

        def lerp(bounds: tuple[float, float], x: torch.Tensor) -> torch.Tensor:
            return bounds[0] + (bounds[1] - bounds[0]) * x

        prop = 1 + (2 * rest[:, 1:7] - 1) * self.proportion_jitter
        girth = lerp(self.girth_range, rest[:, _N_SHAPE])
        shape = torch.cat(
            [
                lerp(self.height_range, rest[:, :1]) / NOMINAL_HEIGHT,
                prop,
                (girth * (0.9 + 0.2 * rest[:, 7]))[:, None],
                (girth**0.6 * (0.92 + 0.16 * rest[:, 8]))[:, None],
            ],
            1,
        )
        cam = rest[:, _N_SHAPE + 1 : _N_SHAPE + 7]
        camera = torch.stack(
            [
                lerp(self.distance_range, cam[:, 0]),
                lerp(self.camera_height_range, cam[:, 1]),
                torch.deg2rad((2 * cam[:, 2] - 1) * self.pan_jitter),
                torch.deg2rad((2 * cam[:, 3] - 1) * self.pitch_jitter),
                torch.deg2rad((2 * cam[:, 4] - 1) * self.max_roll),
                torch.deg2rad(lerp(self.fov_range, cam[:, 5])),
            ],
            1,
        )
        yaw = torch.deg2rad(lerp(self.yaw_range, rest[:, -2]))
        if self.fit_in_view:
            camera = self._step_back(camera, pose, shape, yaw)
        mirrored = (rest[:, -1] < 0.5) & self.mirror
        return BodyParams(pose=pose, shape=shape, yaw=yaw, camera=camera, mirrored=mirrored)

    def _step_back(
        self, camera: torch.Tensor, pose: torch.Tensor, shape: torch.Tensor, yaw: torch.Tensor
    ) -> torch.Tensor:
        """``camera`` with the distance raised (up to the top of ``distance_range``) until
        the whole body, with a margin for the flesh around the joints, fits in the view.

        A player steps back until the Kinect sees all of them; drawing the distance
        without looking at the pose made close-ups of raised arms or bent-over bodies
        with half the person out of the frame.
        """
        _, joints = forward_kinematics(pose, shape, yaw)
        # Head, hands and feet reach about this far beyond their joints (metres).
        flesh = (0.13 * shape[:, 0])[:, None]
        half_width = torch.tan(camera[:, 5] / 2)[:, None]
        half_height = half_width * (self.height / self.width)
        farthest = self.distance_range[1]
        camera = camera.clone()
        # Angular sizes shrink about as 1 / distance: a few rescaling steps settle it.
        for _ in range(3):
            rotation, eye = self._camera(camera, joints)
            points = (rotation[:, None] @ (joints - eye[:, None])[..., None])[..., 0]
            z = points[..., 2].clamp_min(0.1)
            spread = torch.maximum(
                (points[..., 0].abs() + flesh) / (z * half_width),
                (points[..., 1].abs() + flesh) / (z * half_height),
            ).amax(1)
            wanted = camera[:, 0] * spread / self.view_fill
            camera[:, 0] = torch.clamp(torch.maximum(camera[:, 0], wanted), max=farthest)
        return camera

    def render(self, indices: torch.Tensor | Sequence[int] | int) -> BodyFrame:
        """Render frames ``indices`` (same result in one batch or one by one).

        Args:
            indices: frame indices (non-negative integers).
        """
        return self.render_params(self.sample(indices))

    def render_params(self, params: BodyParams) -> BodyFrame:
        """Render frames from explicit parameters (e.g. a chosen pose).

        Args:
            params: batched parameters, on ``self.device``.
        """
        rot, pos = forward_kinematics(params.pose, params.shape, params.yaw)
        centers, axes, radii, half = build_primitives(rot, pos, params.shape)
        world_to_cam, eye = self._camera(params.camera, pos)
        centers = (world_to_cam[:, None] @ (centers - eye[:, None])[..., None])[..., 0]
        axes = world_to_cam[:, None] @ axes
        joints = (world_to_cam[:, None] @ (pos - eye[:, None])[..., None])[..., 0]
        focal = (self.width / 2) / torch.tan(params.camera[:, 5] / 2)
        intrinsics = torch.stack(
            [
                focal,
                focal,
                torch.full_like(focal, (self.width - 1) / 2),
                torch.full_like(focal, (self.height - 1) / 2),
            ],
            1,
        )
        size = (params.pose.shape[0], self.height, self.width)
        pixel, depth, primitive = raycast_hits(
            centers, axes, radii, half, intrinsics, self.height, self.width, self.culling
        )
        parts = label_hits(
            pixel, depth, primitive, size, intrinsics, centers, axes, half, joints,
            params.shape[:, 0],
        )  # fmt: skip
        return frame_from_hits(pixel, depth, parts, size, joints, intrinsics, params.mirrored)

    @staticmethod
    def _camera(camera: torch.Tensor, joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World-to-camera rotation ``(B, 3, 3)`` and camera centre ``(B, 3)``."""
        distance, cam_height, pan, pitch, roll, _ = camera.unbind(-1)
        zero = torch.zeros_like(distance)
        eye = torch.stack([zero, cam_height, distance], -1)
        target = (joints.amin(1) + joints.amax(1)) / 2
        look = target - eye
        look = look / look.norm(dim=-1, keepdim=True)
        azimuth = torch.atan2(look[:, 0], look[:, 2]) + pan
        elevation = torch.asin(look[:, 1].clamp(-1, 1)) + pitch
        forward = torch.stack(
            [
                torch.cos(elevation) * torch.sin(azimuth),
                torch.sin(elevation),
                torch.cos(elevation) * torch.cos(azimuth),
            ],
            -1,
        )
        down = torch.stack([zero, zero - 1, zero], -1)
        y = down - (down * forward).sum(-1, keepdim=True) * forward
        y = y / y.norm(dim=-1, keepdim=True)
        x = torch.cross(y, forward, dim=-1)
        cos, sin = torch.cos(roll)[:, None], torch.sin(roll)[:, None]
        x, y = cos * x + sin * y, cos * y - sin * x
        return torch.stack([x, y, forward], 1), eye


class RenderedBodies(Dataset):
    """Dataset of rendered body frames as batch-contract dicts (see ``lightning_synth.batch``).

    Item ``i`` is frame ``offset + i`` of ``renderer``: ``image`` the depth ``1 x H x W``
    in metres (0 = no reading), ``label`` the part map ``H x W`` (-1 on the background
    and, with noise, where the sensor returned nothing), ``domain`` ``RENDERED``,
    ``joints``, ``intrinsics`` and ``valid``. A DataLoader fetches a batch through
    ``__getitems__``, which renders it in one vectorised call.

    Args:
        length: number of frames.
        renderer: the body renderer; ``None`` uses ``BodyRenderer()`` (240 x 320).
        noise: sensor model applied to every frame; frame ``i``'s noise depends only on
            ``(renderer.seed, noise.seed, i)``; ``None`` keeps the clean render.
        offset: index of the first frame, to keep train/val/test frames apart.
    """

    def __init__(
        self,
        length: int = 100_000,
        renderer: BodyRenderer | None = None,
        noise: DepthSensorNoise | None = None,
        offset: int = 0,
    ) -> None:
        if length < 0 or offset < 0:
            raise InputError(f"length and offset must be >= 0, got {length} and {offset}")
        self.length, self.offset = int(length), int(offset)
        self.renderer = renderer if renderer is not None else BodyRenderer()
        self.noise = noise

    def __len__(self) -> int:
        return self.length

    def to(self, device: str | torch.device) -> RenderedBodies:
        """The same frames, rendered (and passed through the sensor model) on ``device``.

        Args:
            device: where the frames are made.
        """
        return RenderedBodies(self.length, self.renderer.to(device), self.noise, self.offset)

    def __getitem__(self, index: int) -> Batch:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[Batch]:
        batch = self.render_batch(indices)
        domain = torch.tensor(RENDERED, dtype=torch.long)
        return [
            {key: domain if key == DOMAIN else value[k] for key, value in batch.items()}
            for k in range(len(indices))
        ]

    def render_batch(self, indices: Sequence[int]) -> Batch:
        """Items ``indices`` as one batch (what collating ``__getitems__`` would give,
        without splitting the frames apart and stacking them again).

        Args:
            indices: item indices.
        """
        frames = [self.offset + i for i in item_numbers(indices, self.length)]
        frame = self.renderer.render(frames)
        depth, valid, parts = frame.depth, frame.valid, frame.parts
        if self.noise is not None:
            noise_seed = _sample_seed(self.noise.seed, self.renderer.seed)
            gens = [
                torch.Generator(device=depth.device).manual_seed(_sample_seed(noise_seed, f))
                for f in frames
            ]
            depth, valid = self.noise(depth, frame.intrinsics, gens)
            parts = torch.where(valid, parts, IGNORE_LABEL)
        return {
            IMAGE: depth[:, None],
            LABEL: parts,
            DOMAIN: torch.full((len(frames),), RENDERED, dtype=torch.long, device=depth.device),
            JOINTS: frame.joints,
            INTRINSICS: frame.intrinsics,
            VALID: valid,
        }
