"""Containers of the body renderer: its parameters and frames, and left-right mirroring."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lightning_synth.batch import IGNORE_LABEL
from lightning_synth.rendering.body_parts import MIRROR_PARTS
from lightning_synth.rendering.body_skeleton import MIRROR_JOINTS

__all__ = ["BodyParams", "BodyFrame", "frame_from_hits", "mirror_frame"]


@dataclass(frozen=True)
class BodyParams:
    """Everything a frame depends on (batched); ``BodyRenderer.sample`` draws it.

    Attributes:
        pose: ``(B, len(DOF_NAMES))`` joint angles, radians.
        shape: ``(B, len(SHAPE_NAMES))`` body-shape multipliers.
        yaw: ``(B,)`` rotation of the body about the vertical, radians (0: faces camera).
        camera: ``(B, 6)``: horizontal distance to the pelvis (m), camera height (m), pan
            and pitch offsets from looking at the body centre, roll, horizontal field of
            view (radians).
        mirrored: ``(B,)`` bool, flip the frame left-right (and its labels).
    """

    pose: torch.Tensor
    shape: torch.Tensor
    yaw: torch.Tensor
    camera: torch.Tensor
    mirrored: torch.Tensor


@dataclass(frozen=True)
class BodyFrame:
    """A batch of rendered frames (see the module docstring for the conventions).

    Attributes:
        depth: ``(B, H, W)`` float, metres, 0 on the background.
        parts: ``(B, H, W)`` long, index into ``PART_NAMES``, -1 on the background.
        joints: ``(B, len(JOINT_NAMES), 3)`` joint positions in the camera frame, metres.
        intrinsics: ``(B, 4)`` ``fx, fy, cx, cy`` in pixels.
        valid: ``(B, H, W)`` bool, the foreground mask (``depth > 0``).
        mirrored: ``(B,)`` bool, whether the frame was flipped left-right.
    """

    depth: torch.Tensor
    parts: torch.Tensor
    joints: torch.Tensor
    intrinsics: torch.Tensor
    valid: torch.Tensor
    mirrored: torch.Tensor


def mirror_frame(frame: BodyFrame, which: torch.Tensor | None = None) -> BodyFrame:
    """Flip frames left-right: image columns, left/right part labels and joints.

    The flipped depth map is the exact render of the mirror-image scene.

    Args:
        frame: frames to flip.
        which: ``(B,)`` bool, the frames to flip; ``None`` flips all.
    """
    if which is None:
        which = torch.ones_like(frame.mirrored)
    width = frame.depth.shape[-1]
    m = which[:, None, None]
    part_map = torch.tensor(MIRROR_PARTS + (IGNORE_LABEL,), device=frame.parts.device)
    parts = torch.where(m, part_map[frame.parts].flip(-1), frame.parts)
    joints, intrinsics = _mirror_camera(frame.joints, frame.intrinsics, width, which)
    return BodyFrame(
        depth=torch.where(m, frame.depth.flip(-1), frame.depth),
        parts=parts,
        joints=joints,
        intrinsics=intrinsics,
        valid=torch.where(m, frame.valid.flip(-1), frame.valid),
        mirrored=frame.mirrored ^ which,
    )


def frame_from_hits(
    pixel: torch.Tensor,
    depth: torch.Tensor,
    parts: torch.Tensor,
    size: tuple[int, int, int] | torch.Size,
    joints: torch.Tensor,
    intrinsics: torch.Tensor,
    mirrored: torch.Tensor,
) -> BodyFrame:
    """Frames from their covered pixels, flipping the frames ``mirrored`` on the way.

    The same as writing the images and then :func:`mirror_frame`, but it moves only
    the pixels the person covers (a few percent of the frame) instead of whole images.

    Args:
        pixel: ``(N,)`` flat indices into ``size`` of the covered pixels.
        depth: ``(N,)`` depth there, metres.
        parts: ``(N,)`` part labels there (as rendered, before mirroring).
        size: ``(B, H, W)``.
        joints: ``(B, J, 3)`` joints, camera frame.
        intrinsics: ``(B, 4)`` ``fx, fy, cx, cy``.
        mirrored: ``(B,)`` bool, the frames to flip.
    """
    batch, height, width = size
    frame = torch.div(pixel, height * width, rounding_mode="floor")
    flip = mirrored.index_select(0, frame)
    column = pixel % width
    pixel = torch.where(flip, pixel - column + (width - 1 - column), pixel)
    part_map = torch.tensor(MIRROR_PARTS, device=parts.device)
    parts = torch.where(flip, part_map.index_select(0, parts), parts)
    numel = batch * height * width
    depth_image = depth.new_zeros(numel).index_copy_(0, pixel, depth)
    part_image = torch.full((numel,), IGNORE_LABEL, dtype=torch.long, device=parts.device)
    part_image.index_copy_(0, pixel, parts)
    valid = torch.zeros(numel, dtype=torch.bool, device=depth.device)
    valid.index_fill_(0, pixel, True)
    joints, intrinsics = _mirror_camera(joints, intrinsics, width, mirrored)
    return BodyFrame(
        depth=depth_image.view(size),
        parts=part_image.view(size),
        joints=joints,
        intrinsics=intrinsics,
        valid=valid.view(size),
        mirrored=mirrored.clone(),
    )


def _mirror_camera(
    joints: torch.Tensor, intrinsics: torch.Tensor, width: int, which: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Joints and intrinsics of the frames ``which`` after a left-right flip."""
    flipped = joints[:, list(MIRROR_JOINTS)] * joints.new_tensor([-1.0, 1.0, 1.0])
    intr = intrinsics.clone()
    intr[:, 2] = width - 1 - intr[:, 2]
    return (
        torch.where(which[:, None, None], flipped, joints),
        torch.where(which[:, None], intr, intrinsics),
    )
