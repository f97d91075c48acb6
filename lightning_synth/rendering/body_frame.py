"""Containers of the body renderer: its parameters and frames, and left-right mirroring."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lightning_synth.batch import IGNORE_LABEL
from lightning_synth.rendering.body_parts import MIRROR_PARTS
from lightning_synth.rendering.body_skeleton import MIRROR_JOINTS

__all__ = ["BodyParams", "BodyFrame", "mirror_frame"]


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
    joints = frame.joints[:, list(MIRROR_JOINTS)] * frame.joints.new_tensor([-1.0, 1.0, 1.0])
    intr = frame.intrinsics.clone()
    intr[:, 2] = width - 1 - intr[:, 2]
    return BodyFrame(
        depth=torch.where(m, frame.depth.flip(-1), frame.depth),
        parts=parts,
        joints=torch.where(which[:, None, None], joints, frame.joints),
        intrinsics=torch.where(which[:, None], intr, frame.intrinsics),
        valid=torch.where(m, frame.valid.flip(-1), frame.valid),
        mirrored=frame.mirrored ^ which,
    )
