"""Skeleton of the rendered body: joints, joint-angle limits, poses, shapes, kinematics.

Body frame (before the body is placed in the world): ``x`` points to the subject's left,
``y`` up, ``z`` forward (the way the subject faces). Every joint carries a rotation; a
joint's children hang off it at fixed offsets (the rest pose: standing, arms hanging).
Angles of the right side are given with the same meaning as the left side (a positive
shoulder abduction lifts either arm sideways), so a pose is mirrored by swapping the
``l_*`` and ``r_*`` angles and negating the sideways bends and twists of the spine.

Everything is vectorised over a batch and runs on any device.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch

__all__ = [
    "JOINT_NAMES",
    "JOINT_PARENTS",
    "MIRROR_JOINTS",
    "DOF_NAMES",
    "DOF_LIMITS_DEG",
    "CANONICAL_POSES",
    "SHAPE_NAMES",
    "NOMINAL_HEIGHT",
    "pose_from_degrees",
    "mirror_pose",
    "sample_poses",
    "forward_kinematics",
    "axis_angle_to_matrix",
]

#: Joints whose 3-D positions the renderer reports (``l_hand`` is the palm centre,
#: ``l_foot`` the ball of the foot, ``head`` the centre of the head).
JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "spine", "chest", "neck", "head",
    "l_shoulder", "l_elbow", "l_wrist", "l_hand",
    "r_shoulder", "r_elbow", "r_wrist", "r_hand",
    "l_hip", "l_knee", "l_ankle", "l_foot",
    "r_hip", "r_knee", "r_ankle", "r_foot",
)  # fmt: skip
JOINT_PARENTS: tuple[int, ...] = (
    -1,
    0,
    1,
    2,
    3,
    2,
    5,
    6,
    7,
    2,
    9,
    10,
    11,
    0,
    13,
    14,
    15,
    0,
    17,
    18,
    19,
)


def _swap_lr(name: str) -> str:
    if name.startswith("l_"):
        return "r_" + name[2:]
    if name.startswith("r_"):
        return "l_" + name[2:]
    return name


#: ``MIRROR_JOINTS[j]`` is the joint that ``j`` becomes in a left-right mirrored body.
MIRROR_JOINTS: tuple[int, ...] = tuple(JOINT_NAMES.index(_swap_lr(n)) for n in JOINT_NAMES)

#: Height in metres (sole to top of head) of the rest skeleton at ``scale`` 1.
NOMINAL_HEIGHT = 1.77

# Rest offset of every joint from its parent, in the parent's frame, metres, left side.
_OFFSETS = {
    "pelvis": (0.0, 0.0, 0.0),
    "spine": (0.0, 0.11, 0.0),
    "chest": (0.0, 0.20, 0.0),
    "neck": (0.0, 0.20, 0.0),
    "head": (0.0, 0.16, 0.015),
    "l_shoulder": (0.175, 0.15, -0.01),
    "l_elbow": (0.0, -0.29, 0.0),
    "l_wrist": (0.0, -0.25, 0.0),
    "l_hand": (0.0, -0.085, 0.0),
    "l_hip": (0.09, -0.06, 0.0),
    "l_knee": (0.0, -0.43, 0.0),
    "l_ankle": (0.0, -0.42, 0.0),
    "l_foot": (0.0, -0.055, 0.125),
}

#: Body-shape parameters, all multipliers of the nominal adult (1 = nominal).
SHAPE_NAMES: tuple[str, ...] = (
    "scale",  # overall size: height / NOMINAL_HEIGHT
    "torso_len",
    "arm_len",
    "leg_len",
    "shoulder_width",
    "hip_width",
    "head_size",
    "torso_girth",
    "limb_girth",
)
# Which shape multiplier stretches each axis of each joint's offset.
_OFFSET_GROUPS = {
    "spine": "torso_len", "chest": "torso_len", "neck": "torso_len", "head": "head_size",
    "shoulder": ("shoulder_width", "torso_len", "torso_len"), "elbow": "arm_len",
    "wrist": "arm_len", "hand": "arm_len", "hip": ("hip_width", "scale", "scale"),
    "knee": "leg_len", "ankle": "leg_len", "foot": "scale", "pelvis": "scale",
}  # fmt: skip

# Degrees of freedom with their limits in degrees. Signs: flex > 0 bends the spine and
# neck forward, lifts the arm/thigh forward, bends the elbow, knee and wrist, lifts the
# toes; abd > 0 lifts the arm/leg sideways away from the body; lat > 0 leans to the
# subject's left; twist turns about the bone. ``pelvis_flex`` bends the whole upper
# body forward at the hips; the legs hang from the vertical, so ``hip_flex`` is the
# thigh's angle from the vertical (the sampler keeps ``hip_flex + pelvis_flex``, the
# anatomical hip flexion, within [-25, 125] degrees).
_CENTRAL_DOFS = (
    ("pelvis_flex", -15, 70), ("pelvis_lat", -15, 15),
    ("spine_flex", -20, 45), ("spine_lat", -25, 25), ("spine_twist", -30, 30),
    ("chest_flex", -15, 30), ("chest_lat", -15, 15), ("chest_twist", -25, 25),
    ("neck_flex", -40, 50), ("neck_lat", -35, 35), ("neck_twist", -70, 70),
)  # fmt: skip
_SIDE_DOFS = (
    ("shoulder_flex", -50, 180), ("shoulder_abd", -30, 180), ("shoulder_twist", -90, 90),
    ("elbow_flex", 0, 150), ("wrist_flex", -70, 70), ("wrist_dev", -25, 35),
    ("hip_flex", -60, 125), ("hip_abd", -25, 60), ("hip_twist", -40, 40),
    ("knee_flex", 0, 150), ("ankle_flex", -45, 30),
)  # fmt: skip
_ALL_DOFS = _CENTRAL_DOFS + tuple(
    (f"{side}_{name}", lo, hi) for side in "lr" for name, lo, hi in _SIDE_DOFS
)
DOF_NAMES: tuple[str, ...] = tuple(d[0] for d in _ALL_DOFS)
#: ``(lo, hi)`` limit of every degree of freedom, degrees, in ``DOF_NAMES`` order.
DOF_LIMITS_DEG: tuple[tuple[float, float], ...] = tuple(
    (float(lo), float(hi)) for _, lo, hi in _ALL_DOFS
)
_DOF = {name: i for i, name in enumerate(DOF_NAMES)}
_MIRROR_DOF = tuple(_DOF[_swap_lr(n)] for n in DOF_NAMES)
_MIRROR_SIGN = tuple(
    -1.0 if n.endswith(("_lat", "_twist")) and n[1] != "_" else 1.0 for n in DOF_NAMES
)
# Per-group jitter weight and the group each DOF belongs to (for "random limb" draws).
_GROUPS = ("spine", "neck", "l_arm", "r_arm", "l_leg", "r_leg")


def _dof_group(name: str) -> int:
    if name.startswith(("pelvis", "spine", "chest")):
        return 0
    if name.startswith("neck"):
        return 1
    limb = "arm" if name[2:].startswith(("shoulder", "elbow", "wrist")) else "leg"
    return _GROUPS.index(f"{name[0]}_{limb}")


_DOF_GROUP = tuple(_dof_group(n) for n in DOF_NAMES)
_ANATOMICAL_HIP_FLEX = (-25.0, 125.0)
_GROUP_JITTER = (0.4, 1.0, 1.0, 1.0, 0.6, 0.6)


def _pose(**degrees: float) -> dict[str, float]:
    return degrees


def _both(**degrees: float) -> dict[str, float]:
    return {f"{side}_{k}": v for side in "lr" for k, v in degrees.items()}


#: Canonical poses in degrees (unlisted angles are 0); the sampler mixes them with noise.
CANONICAL_POSES: dict[str, dict[str, float]] = {
    "stand": _both(shoulder_abd=8, elbow_flex=12, knee_flex=3),
    "walk": {
        **_both(shoulder_abd=8, elbow_flex=25),
        **_pose(l_hip_flex=28, r_hip_flex=-15, l_knee_flex=12, r_knee_flex=40),
        **_pose(l_shoulder_flex=-25, r_shoulder_flex=30, r_ankle_flex=-20, spine_twist=8),
    },
    "arms_up": _both(shoulder_abd=165, elbow_flex=10, knee_flex=3),
    "t_pose": _both(shoulder_abd=90, elbow_flex=5),
    "crouch": {
        **_both(hip_flex=85, knee_flex=135, ankle_flex=25, shoulder_flex=55, elbow_flex=40),
        **_pose(pelvis_flex=30, spine_flex=15, neck_flex=-25),
    },
    "reach": {
        **_pose(l_shoulder_flex=95, l_elbow_flex=5, r_shoulder_abd=10, r_elbow_flex=15),
        **_pose(spine_twist=-15, spine_flex=10, r_hip_flex=-10, l_knee_flex=10),
    },
    "wave": {
        **_pose(l_shoulder_abd=95, l_shoulder_twist=90, l_elbow_flex=100),
        **_pose(r_shoulder_abd=8, r_elbow_flex=10, neck_lat=10),
    },
    "kick": {
        **_pose(l_hip_flex=75, l_knee_flex=25, r_knee_flex=10, l_ankle_flex=-20),
        **_both(shoulder_abd=35, elbow_flex=30),
        **_pose(pelvis_flex=-5, spine_flex=5),
    },
    "bend": {
        **_both(hip_flex=8, shoulder_flex=70, elbow_flex=10),
        **_pose(pelvis_flex=45, spine_flex=25, neck_flex=-30),
    },
    "sit": {
        **_both(hip_flex=90, knee_flex=90, shoulder_flex=30, elbow_flex=60),
        **_pose(spine_flex=10),
    },
    "jump_jack": _both(shoulder_abd=135, elbow_flex=15, hip_abd=25),
    "guard": {
        **_both(shoulder_flex=45, shoulder_abd=15, shoulder_twist=-40, elbow_flex=125),
        **_pose(l_hip_flex=15, r_hip_flex=-5, l_knee_flex=20, r_knee_flex=15, spine_twist=15),
    },
    "hands_on_hips": _both(shoulder_abd=45, shoulder_twist=-60, elbow_flex=100, hip_abd=8),
    "point_up": {**_pose(l_shoulder_flex=165, r_shoulder_abd=8, r_elbow_flex=10), **_pose()},
    "lunge": {
        **_pose(l_hip_flex=60, l_knee_flex=75, r_hip_flex=-30, r_knee_flex=25, pelvis_flex=10),
        **_both(shoulder_abd=20, elbow_flex=30),
    },
}


def pose_from_degrees(
    degrees: dict[str, float], batch: int = 1, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Pose tensor ``(batch, len(DOF_NAMES))`` in radians from named angles in degrees.

    Args:
        degrees: angle of each named degree of freedom; missing ones are 0.
        batch: number of copies.
        device: device of the result.
    """
    unknown = set(degrees) - set(DOF_NAMES)
    if unknown:
        raise ValueError(f"unknown degrees of freedom {sorted(unknown)}; see DOF_NAMES")
    row = torch.tensor([degrees.get(n, 0.0) for n in DOF_NAMES], dtype=torch.float32)
    return torch.deg2rad(row).to(device).expand(batch, -1).clone()


def mirror_pose(pose: torch.Tensor) -> torch.Tensor:
    """Left-right mirror a ``(..., len(DOF_NAMES))`` pose (swap sides, negate side bends).

    Args:
        pose: joint angles in ``DOF_NAMES`` order.
    """
    sign = pose.new_tensor(_MIRROR_SIGN)
    return pose[..., list(_MIRROR_DOF)] * sign


_CANON = torch.deg2rad(
    torch.tensor([[p.get(n, 0.0) for n in DOF_NAMES] for p in CANONICAL_POSES.values()])
)


def sample_poses(
    uniforms: torch.Tensor, normals: torch.Tensor, jitter_deg: float, random_limb_prob: float
) -> torch.Tensor:
    """Draw poses within the joint limits from pre-drawn random numbers.

    A canonical pose is chosen and possibly mirrored, every angle gets Gaussian jitter,
    and each limb group (spine, neck, each arm, each leg) is with probability
    ``random_limb_prob`` replaced by angles uniform within the limits; the result is
    clipped to the limits.

    Args:
        uniforms: ``(B, 2 + 6 + D)`` numbers in [0, 1): canonical choice, mirroring,
            one per limb group, one per degree of freedom (``D = len(DOF_NAMES)``).
        normals: ``(B, D)`` standard normal numbers.
        jitter_deg: standard deviation of the jitter for the arms, in degrees.
        random_limb_prob: chance that a limb group is posed uniformly at random.
    """
    n_dof, n_group = len(DOF_NAMES), len(_GROUPS)
    canon = _CANON.to(uniforms.device)
    pick = (uniforms[:, 0] * len(canon)).long().clamp(max=len(canon) - 1)
    base = canon[pick]
    base = torch.where(uniforms[:, 1:2] < 0.5, mirror_pose(base), base)
    lo, hi = torch.deg2rad(uniforms.new_tensor(DOF_LIMITS_DEG)).unbind(-1)
    weight = uniforms.new_tensor([_GROUP_JITTER[g] for g in _DOF_GROUP])
    pose = base + normals * math.radians(jitter_deg) * weight
    group_draw = uniforms[:, 2 : 2 + n_group][:, list(_DOF_GROUP)]
    uniform = lo + uniforms[:, 2 + n_group : 2 + n_group + n_dof] * (hi - lo)
    pose = torch.where(group_draw < random_limb_prob, uniform, pose)
    pose = torch.minimum(torch.maximum(pose, lo), hi)
    # The thighs hang from the vertical, not from the pelvis: keep the anatomical hip
    # flexion (thigh angle + forward tilt of the pelvis) within its limits.
    tilt = pose[:, _DOF["pelvis_flex"], None]
    hips = [_DOF["l_hip_flex"], _DOF["r_hip_flex"]]
    low, high = (math.radians(a) - tilt for a in _ANATOMICAL_HIP_FLEX)
    pose[:, hips] = torch.minimum(torch.maximum(pose[:, hips], low), high)
    return pose


def axis_angle_to_matrix(vec: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(..., 3, 3)`` from rotation vectors ``(..., 3)`` (Rodrigues).

    Args:
        vec: axis times angle in radians.
    """
    angle = vec.norm(dim=-1, keepdim=True)
    axis = vec / angle.clamp_min(1e-12)
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).unflatten(-1, (3, 3))
    s, c = torch.sin(angle)[..., None], torch.cos(angle)[..., None]
    eye = torch.eye(3, dtype=vec.dtype, device=vec.device)
    return eye + s * k + (1 - c) * (k @ k)


def _joint_rotation_table() -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Per joint, the pose angles of its swing (about local ``x`` and ``z``) and twist
    (about ``y``): three rows of DOF indices (``-1``: none) and their signs."""
    angles = {name: ((-1, 1.0), (-1, 1.0), (-1, 1.0)) for name in JOINT_NAMES}
    angles["pelvis"] = ((_DOF["pelvis_flex"], 1.0), (_DOF["pelvis_lat"], -1.0), (-1, 1.0))
    for joint in ("spine", "chest", "neck"):
        dof = (f"{joint}_flex", f"{joint}_lat", f"{joint}_twist")
        angles[joint] = ((_DOF[dof[0]], 1.0), (_DOF[dof[1]], -1.0), (_DOF[dof[2]], 1.0))
    for side, sign in (("l", 1.0), ("r", -1.0)):
        # Mirroring a rotation through x -> -x negates its y and z components.
        for joint in ("shoulder", "hip"):
            flex, abd, twist = (_DOF[f"{side}_{joint}_{k}"] for k in ("flex", "abd", "twist"))
            angles[f"{side}_{joint}"] = ((flex, -1.0), (abd, sign), (twist, sign))
        wrist = ((_DOF[f"{side}_wrist_flex"], -1.0), (_DOF[f"{side}_wrist_dev"], sign))
        angles[f"{side}_wrist"] = (*wrist, (-1, 1.0))
        for joint, flex_sign in (("elbow", -1.0), ("knee", 1.0), ("ankle", -1.0)):
            flex = (_DOF[f"{side}_{joint}_flex"], flex_sign)
            angles[f"{side}_{joint}"] = (flex, (-1, 1.0), (-1, 1.0))
    rows = [angles[name] for name in JOINT_NAMES]
    index = tuple(row[k][0] for k in range(3) for row in rows)
    sign = tuple(row[k][1] for k in range(3) for row in rows)
    return index, sign


_ROTATION_DOFS, _ROTATION_SIGNS = _joint_rotation_table()


def _depth(joint: int) -> int:
    return 0 if JOINT_PARENTS[joint] < 0 else 1 + _depth(JOINT_PARENTS[joint])


#: Joints grouped by depth below the pelvis: each group's parents are placed before it.
_LEVELS = tuple(
    tuple(j for j in range(len(JOINT_NAMES)) if _depth(j) == level)
    for level in range(1, 1 + max(_depth(j) for j in range(len(JOINT_NAMES))))
)
#: The frame each joint's rotation and offset hang from: its parent's, except the hips,
#: which hang from the untilted pelvis (the yaw frame, stored after the joints).
_FRAME_PARENT = tuple(
    len(JOINT_NAMES) if p < 0 or JOINT_NAMES[j] in ("l_hip", "r_hip") else p
    for j, p in enumerate(JOINT_PARENTS)
)


def _offset_table() -> tuple[tuple[tuple[float, float, float], ...], tuple[int, ...]]:
    """Rest offset of every joint and, per axis, the shape column that stretches it
    (``len(SHAPE_NAMES)``: none)."""
    offsets, groups = [], []
    for name in JOINT_NAMES:
        base = name[2:] if name[1] == "_" else name
        off = _OFFSETS.get(name, _OFFSETS.get("l_" + base))
        mirror = -1.0 if name.startswith("r_") else 1.0
        offsets.append((off[0] * mirror, off[1], off[2]))
        group = _OFFSET_GROUPS[base]
        for g in group if isinstance(group, tuple) else (group, group, group):
            groups.append(len(SHAPE_NAMES) if g == "scale" else SHAPE_NAMES.index(g))
    return tuple(offsets), tuple(groups)


_REST_OFFSETS, _OFFSET_COLUMNS = _offset_table()


@functools.lru_cache(maxsize=16)
def _tables(device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """The skeleton's constant tables on ``device``, made once (not copied every batch)."""

    def long(values: tuple[int, ...]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=device)

    return {
        "rotation_dofs": long(_ROTATION_DOFS),
        "rotation_signs": torch.tensor(_ROTATION_SIGNS, dtype=dtype, device=device),
        "rest_offsets": torch.tensor(_REST_OFFSETS, dtype=dtype, device=device),
        "offset_columns": long(_OFFSET_COLUMNS),
        "levels": [(long(level), long(tuple(_FRAME_PARENT[j] for j in level)),
                    long(tuple(JOINT_PARENTS[j] for j in level))) for level in _LEVELS],
    }  # fmt: skip


def _with_zero_column(values: torch.Tensor) -> torch.Tensor:
    return torch.cat([values, values.new_zeros(len(values), 1)], 1)


def _local_rotations(pose: torch.Tensor) -> torch.Tensor:
    """``(B, J, 3, 3)`` rotation of every joint relative to its parent: a swing (angle at
    most pi) about an axis in the local ``x``-``z`` plane, then a twist about ``y``."""
    tables = _tables(pose.device, pose.dtype)
    joints = len(JOINT_NAMES)
    # Index -1 reads the appended zero column: joints without that angle.
    angles = _with_zero_column(pose)[:, tables["rotation_dofs"]] * tables["rotation_signs"]
    x, z, twist = angles[:, :joints], angles[:, joints : 2 * joints], angles[:, 2 * joints :]
    zero = torch.zeros_like(x)
    vec = torch.stack([x, zero, z], -1)
    norm = vec.norm(dim=-1, keepdim=True)
    swing = axis_angle_to_matrix(vec * (math.pi / norm.clamp_min(math.pi)))
    return swing @ axis_angle_to_matrix(torch.stack([zero, twist, zero], -1))


def _offsets(shape: torch.Tensor) -> torch.Tensor:
    """``(B, J, 3)`` rest offsets of the joints scaled by the body shape."""
    tables = _tables(shape.device, shape.dtype)
    # The appended column is the multiplier 1 ("scale" axes are scaled once, below).
    stretch = shape.new_ones(len(shape), len(SHAPE_NAMES) + 1)
    stretch[:, : len(SHAPE_NAMES)] = shape
    stretch = stretch[:, tables["offset_columns"]].view(len(shape), len(JOINT_NAMES), 3)
    return tables["rest_offsets"] * stretch * shape[:, 0, None, None]


def forward_kinematics(
    pose: torch.Tensor, shape: torch.Tensor, yaw: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """World rotations ``(B, J, 3, 3)`` and positions ``(B, J, 3)`` of the joints.

    The world frame has ``y`` up and the ground at ``y = 0``: the body stands on it
    (its lowest joint sits a few centimetres above it), the pelvis above the origin,
    facing ``+z`` when ``yaw`` is 0.

    Args:
        pose: ``(B, len(DOF_NAMES))`` joint angles, radians.
        shape: ``(B, len(SHAPE_NAMES))`` body-shape multipliers.
        yaw: ``(B,)`` rotation of the whole body about the vertical, radians.
    """
    local = _local_rotations(pose)
    offsets = _offsets(shape)
    zero = torch.zeros_like(yaw)
    rot_yaw = axis_angle_to_matrix(torch.stack([zero, yaw, zero], -1))
    joints = len(JOINT_NAMES)
    # Level by level (six matrix products of many joints, not one per joint): slot
    # ``joints`` holds the yaw frame the pelvis and the hips hang from.
    frames = rot_yaw[:, None].repeat(1, joints + 1, 1, 1)
    frames[:, 0] = rot_yaw @ local[:, 0]
    positions = torch.zeros_like(offsets)
    for level, frame_parent, parent in _tables(pose.device, pose.dtype)["levels"]:
        hanging_from = frames[:, frame_parent]
        frames[:, level] = hanging_from @ local[:, level]
        positions[:, level] = (
            positions[:, parent] + (hanging_from @ offsets[:, level, :, None])[..., 0]
        )
    rotations = frames[:, :joints]
    lowest = positions[..., 1].amin(1) - 0.06 * shape[:, 0]
    positions = positions - torch.stack([zero, lowest, zero], -1)[:, None]
    return rotations, positions
