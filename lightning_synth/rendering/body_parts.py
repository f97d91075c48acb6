"""The body's primitives (capsules and ellipsoids on the skeleton) and its 31 part labels.

Parts follow Shotton et al. (CVPR 2011, Fig. 2): a part is a piece of a primitive.
The head ellipsoid is cut into four quadrants by its own frame (left/right, upper/
lower); the chest capsule gives the upper torso quadrants, the abdomen ellipsoid the
lower ones; limb capsules give the arm and leg segments, with bands of a few
centimetres around the elbow, wrist, knee and ankle joints labelled as those joints;
the shoulders are the top of the upper arm plus the torso within a radius of the
shoulder joint.
"""

from __future__ import annotations

import torch

from lightning_synth.rendering.body_skeleton import JOINT_NAMES, SHAPE_NAMES

__all__ = [
    "PART_NAMES",
    "MIRROR_PARTS",
    "PART_TO_JOINT",
    "PRIMITIVE_NAMES",
    "build_primitives",
    "label_hits",
    "label_parts",
]

#: Shotton et al.'s 31 body parts: "lu_arm" is the left upper arm, "lw_arm" the left
#: lower arm (forearm), "head_lu" the left upper quadrant of the head, and so on.
PART_NAMES: tuple[str, ...] = (
    "head_lu", "head_ru", "head_lw", "head_rw", "neck",
    "l_shoulder", "r_shoulder", "lu_arm", "ru_arm", "lw_arm", "rw_arm",
    "l_elbow", "r_elbow", "l_wrist", "r_wrist", "l_hand", "r_hand",
    "lu_torso", "ru_torso", "lw_torso", "rw_torso",
    "lu_leg", "ru_leg", "lw_leg", "rw_leg",
    "l_knee", "r_knee", "l_ankle", "r_ankle", "l_foot", "r_foot",
)  # fmt: skip


def _mirror_name(name: str) -> str:
    swap = {"l": "r", "r": "l"}
    if name.startswith("head_"):
        return "head_" + swap[name[5]] + name[6]
    if name[0] in "lr" and (name[1] == "_" or name[1] in "uw"):
        return swap[name[0]] + name[1:]
    return name


#: ``MIRROR_PARTS[p]`` is the label part ``p`` takes in a left-right mirrored image.
MIRROR_PARTS: tuple[int, ...] = tuple(PART_NAMES.index(_mirror_name(n)) for n in PART_NAMES)


def _joint_of(part: str) -> int:
    name = "head" if part.startswith("head_") else part
    return JOINT_NAMES.index(name) if name in JOINT_NAMES else -1


#: Joint (index into ``JOINT_NAMES``) whose position a part's pixels vote for in the
#: joint-proposal stage, or -1 for parts that stand for no joint (arm and leg segments,
#: torso quadrants). The four head quadrants vote for the head centre.
PART_TO_JOINT: tuple[int, ...] = tuple(_joint_of(p) for p in PART_NAMES)

# Primitives: name, start (joint, offset in its frame, metres), end, frame joint (whose x
# axis orients the cross-section), radii (x, cap, z) in metres, girth multiplier,
# labels by quadrant of the frame (left-upper, right-upper, left-lower, right-lower),
# label within a distance of the start along the axis, same for the end, labels within a
# radius of a joint. Side primitives are given for the left and mirrored.
_CENTRAL = (
    ("head", ("head", (0, 0, 0)), ("head", (0, 0, 0)), "head", (0.078, 0.105, 0.095),
     "head_size", ("head_lu", "head_ru", "head_lw", "head_rw"), None, None, ()),
    ("neck", ("neck", (0, 0, 0)), ("head", (0, -0.07, 0)), "neck", (0.05, 0.05, 0.05),
     "limb_girth", ("neck",) * 4, None, None, ()),
    ("chest", ("spine", (0, 0.06, 0)), ("neck", (0, -0.08, 0)), "chest", (0.155, 0.09, 0.11),
     "torso_girth", ("lu_torso", "ru_torso") * 2, None, None,
     (("l_shoulder", 0.085, "l_shoulder"), ("r_shoulder", 0.085, "r_shoulder"))),
    ("abdomen", ("pelvis", (0, 0.05, 0)), ("pelvis", (0, 0.05, 0)), "pelvis", (0.16, 0.15, 0.11),
     "torso_girth", ("lw_torso", "rw_torso") * 2, None, None, ()),
)  # fmt: skip
_SIDE = (
    ("upper_arm", ("shoulder", (0, 0, 0)), ("elbow", (0, 0, 0)), "shoulder", (0.05,) * 3,
     "lu_arm", ("l_shoulder", 0.03), ("l_elbow", 0.05)),
    ("forearm", ("elbow", (0, 0, 0)), ("wrist", (0, 0, 0)), "elbow", (0.04,) * 3,
     "lw_arm", ("l_elbow", 0.05), ("l_wrist", 0.035)),
    ("hand", ("wrist", (0, -0.02, 0)), ("wrist", (0, -0.13, 0)), "wrist", (0.025, 0.03, 0.045),
     "l_hand", ("l_wrist", 0.015), None),
    ("thigh", ("hip", (0, 0, 0)), ("knee", (0, 0, 0)), "hip", (0.082,) * 3,
     "lu_leg", None, ("l_knee", 0.06)),
    ("shin", ("knee", (0, 0, 0)), ("ankle", (0, 0, 0)), "knee", (0.055,) * 3,
     "lw_leg", ("l_knee", 0.06), ("l_ankle", 0.05)),
    ("foot", ("ankle", (0, -0.05, -0.04)), ("ankle", (0, -0.055, 0.15)), "ankle",
     (0.045, 0.035, 0.03), "l_foot", ("l_ankle", 0.05), None),
)  # fmt: skip


def _primitive_table() -> list[tuple]:
    prims = list(_CENTRAL)
    for side in "lr":
        flip = (lambda n: n) if side == "l" else _mirror_name
        for name, start, end, frame, radii, label, prox, dist in _SIDE:
            prims.append(
                (f"{side}_{name}", (f"{side}_{start[0]}", start[1]), (f"{side}_{end[0]}", end[1]),
                 f"{side}_{frame}", radii, "limb_girth", (flip(label),) * 4,
                 prox and (flip(prox[0]), prox[1]), dist and (flip(dist[0]), dist[1]), ())
            )  # fmt: skip
    return prims


_PRIMS = _primitive_table()
#: Names of the body's primitives, in the order of the primitive index.
PRIMITIVE_NAMES: tuple[str, ...] = tuple(p[0] for p in _PRIMS)
_J = {n: i for i, n in enumerate(JOINT_NAMES)}
_L = {n: i for i, n in enumerate(PART_NAMES)}


def _offset(name: str, offset: tuple) -> tuple[float, float, float]:
    sign = -1.0 if name.startswith("r_") else 1.0
    return (sign * offset[0], float(offset[1]), float(offset[2]))


_START_J = torch.tensor([_J[p[1][0]] for p in _PRIMS])
_START_O = torch.tensor([_offset(p[0], p[1][1]) for p in _PRIMS])
_END_J = torch.tensor([_J[p[2][0]] for p in _PRIMS])
_END_O = torch.tensor([_offset(p[0], p[2][1]) for p in _PRIMS])
_FRAME_J = torch.tensor([_J[p[3]] for p in _PRIMS])
_RADII = torch.tensor([p[4] for p in _PRIMS])
_GIRTH = torch.tensor([SHAPE_NAMES.index(p[5]) for p in _PRIMS])
_QUAD = torch.tensor([[_L[n] for n in p[6]] for p in _PRIMS])
_NONE = (PART_NAMES[0], float("-inf"))
_PROX = [p[7] or _NONE for p in _PRIMS]
_DIST = [p[8] or _NONE for p in _PRIMS]
_PROX_LABEL = torch.tensor([_L[n] for n, _ in _PROX])
_PROX_LEN = torch.tensor([d for _, d in _PROX])
_DIST_LABEL = torch.tensor([_L[n] for n, _ in _DIST])
_DIST_LEN = torch.tensor([d for _, d in _DIST])
_OVER = [list(p[9]) + [("pelvis", 0.0, PART_NAMES[0])] * (2 - len(p[9])) for p in _PRIMS]
_OVER_J = torch.tensor([[_J[j] for j, _, _ in o] for o in _OVER])
_OVER_R = torch.tensor([[r for _, r, _ in o] for o in _OVER])
_OVER_LABEL = torch.tensor([[_L[n] for _, _, n in o] for o in _OVER])


def build_primitives(
    rotations: torch.Tensor, positions: torch.Tensor, shape: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centres ``(B, P, 3)``, axes ``(B, P, 3, 3)``, radii ``(B, P, 3)``, half lengths ``(B, P)``.

    Args:
        rotations: ``(B, J, 3, 3)`` joint rotations (from ``forward_kinematics``).
        positions: ``(B, J, 3)`` joint positions, same frame.
        shape: ``(B, len(SHAPE_NAMES))`` body-shape multipliers.
    """
    dev, dtype = positions.device, positions.dtype
    scale = shape[:, 0, None, None]

    def point(joints: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        off = offsets.to(dev, dtype) * scale
        return positions[:, joints] + (rotations[:, joints] @ off[..., None])[..., 0]

    start = point(_START_J.to(dev), _START_O)
    end = point(_END_J.to(dev), _END_O)
    frame = rotations[:, _FRAME_J.to(dev)]
    seg = end - start
    length = seg.norm(dim=-1, keepdim=True)
    y = torch.where(length > 1e-6, seg / length.clamp_min(1e-6), frame[..., 1])
    hint = frame[..., 0]
    x = hint - (hint * y).sum(-1, keepdim=True) * y
    x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    z = torch.cross(x, y, dim=-1)
    axes = torch.stack([x, y, z], -1)
    radii = _RADII.to(dev, dtype) * scale * shape[:, _GIRTH.to(dev), None]
    return (start + end) / 2, axes, radii, length[..., 0] / 2


def label_parts(
    depth: torch.Tensor,
    index: torch.Tensor,
    intrinsics: torch.Tensor,
    centers: torch.Tensor,
    axes: torch.Tensor,
    half_lengths: torch.Tensor,
    joints: torch.Tensor,
    scale: torch.Tensor,
) -> torch.Tensor:
    """Part label ``(B, H, W)`` long of every pixel, -1 on the background.

    Args:
        depth: ``(B, H, W)`` depth of the first hit (camera frame).
        index: ``(B, H, W)`` primitive hit at each pixel, -1 for none.
        intrinsics, centers, axes, half_lengths, joints, scale: as in :func:`label_hits`.
    """
    pixel = (index >= 0).flatten().nonzero()[:, 0]
    labels = label_hits(
        pixel,
        depth.flatten()[pixel],
        index.flatten()[pixel],
        depth.shape,
        intrinsics,
        centers,
        axes,
        half_lengths,
        joints,
        scale,
    )
    parts = torch.full((depth.numel(),), -1, dtype=torch.long, device=depth.device)
    parts[pixel] = labels
    return parts.view(depth.shape)


def label_hits(
    pixel: torch.Tensor,
    depth: torch.Tensor,
    primitive: torch.Tensor,
    size: tuple[int, int, int] | torch.Size,
    intrinsics: torch.Tensor,
    centers: torch.Tensor,
    axes: torch.Tensor,
    half_lengths: torch.Tensor,
    joints: torch.Tensor,
    scale: torch.Tensor,
) -> torch.Tensor:
    """Part label ``(N,)`` long of covered pixels (as :func:`raycast_hits` returns them).

    Args:
        pixel: ``(N,)`` flat indices into ``size``.
        depth: ``(N,)`` depth of the first hit there (camera frame).
        primitive: ``(N,)`` primitive hit there.
        size: ``(B, H, W)``, the frames' shape.
        intrinsics: ``(B, 4)`` ``fx, fy, cx, cy``.
        centers: ``(B, P, 3)`` primitive centres, camera frame.
        axes: ``(B, P, 3, 3)`` primitive frames, camera frame.
        half_lengths: ``(B, P)`` primitive half lengths.
        joints: ``(B, J, 3)`` joints, camera frame.
        scale: ``(B,)`` body scale (band widths and radii scale with it).
    """
    _, height, width = size
    dev = depth.device
    prims = centers.shape[1]
    # index_select on flat tables throughout: several times faster than x[index] on CPU.
    b = torch.div(pixel, height * width, rounding_mode="floor")
    pix = pixel - b * (height * width)
    row = torch.div(pix, width, rounding_mode="floor")
    v = row.to(depth.dtype)
    u = (pix - row * width).to(depth.dtype)
    z = depth
    fx, fy, cx, cy = intrinsics.index_select(0, b).unbind(-1)
    point = torch.stack([(u - cx) / fx * z, (v - cy) / fy * z, z], -1)
    p = primitive
    bp = b * prims + p
    center = centers.reshape(-1, 3).index_select(0, bp)
    frame = axes.reshape(-1, 9).index_select(0, bp).view(-1, 3, 3)
    local = ((point - center)[:, None, :] @ frame)[:, 0]
    half = half_lengths.reshape(-1).index_select(0, bp)
    along = local[:, 1] + half
    quadrant = (local[:, 0] <= 0).long() + 2 * (local[:, 1] <= 0).long()

    def per_primitive(table: torch.Tensor) -> torch.Tensor:
        return table.to(dev).index_select(0, p)

    label = _QUAD.to(dev).flatten().index_select(0, p * _QUAD.shape[1] + quadrant)
    s = scale.index_select(0, b)
    label = torch.where(along < per_primitive(_PROX_LEN) * s, per_primitive(_PROX_LABEL), label)
    label = torch.where(
        along > 2 * half - per_primitive(_DIST_LEN) * s, per_primitive(_DIST_LABEL), label
    )
    joint_rows = joints.reshape(-1, 3)
    for k in range(_OVER_J.shape[1]):
        joint = joint_rows.index_select(0, b * joints.shape[1] + per_primitive(_OVER_J[:, k]))
        dist = (point - joint).norm(dim=-1)
        label = torch.where(
            dist < per_primitive(_OVER_R[:, k]) * s, per_primitive(_OVER_LABEL[:, k]), label
        )
    return label
