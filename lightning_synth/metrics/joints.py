"""3-D joint proposals from body-part probabilities, and joint average precision.

The second stage of Shotton et al. (CVPR 2011): each pixel with a depth reading is
back-projected to a 3-D point; for every joint, the points of the parts that stand for
it vote with weight ``p(part | pixel) * depth^2`` (the depth squared makes the vote
proportional to the surface area the pixel covers); weighted mean shift with a Gaussian
kernel finds the densest mode, which is pushed back along the line of sight by
``push_back`` (the surface lies in front of the joint) to give the joint's proposal.
Its confidence is the kernel density at the mode.

Joint average precision: a proposal is a true positive when it lies within 0.1 m of
the true joint; per joint type, proposals are ranked by confidence over the whole
evaluation set and the area under the precision-recall curve is taken; the mean over
joint types is the mAP. Everything is vectorised torch and runs on any device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from lightning_synth.rendering.body import JOINT_NAMES, PART_TO_JOINT

__all__ = [
    "backproject",
    "joint_proposals",
    "joint_visibility",
    "average_precision",
    "JointAveragePrecision",
    "SCORED_JOINTS",
]

#: Joints that some body part votes for (the others, e.g. the pelvis, get no proposal).
SCORED_JOINTS: tuple[int, ...] = tuple(sorted({j for j in PART_TO_JOINT if j >= 0}))


def backproject(depth: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """``B x H x W x 3`` camera-frame points (metres) of every pixel.

    Args:
        depth: ``B x H x W`` metres (z along the optical axis).
        intrinsics: ``B x 4``: ``fx, fy, cx, cy`` in pixels.
    """
    _, height, width = depth.shape
    fx, fy, cx, cy = (intrinsics[:, i, None, None].to(depth.dtype) for i in range(4))
    v = torch.arange(height, device=depth.device, dtype=depth.dtype)[:, None]
    u = torch.arange(width, device=depth.device, dtype=depth.dtype)[None, :]
    return torch.stack([(u - cx) / fx * depth, (v - cy) / fy * depth, depth], dim=-1)


def _foreground_pixels(depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat indices of each frame's foreground pixels, foreground first, padded.

    Returns ``index`` (``B x N`` long, positions in ``H * W``; ``N`` the largest
    foreground count of the batch) and ``keep`` (``B x N`` bool, false on padding).

    Args:
        depth: ``B x H x W`` metres, 0 on the background.
    """
    foreground = (depth > 0).flatten(1)
    counts = foreground.sum(dim=1)
    size = int(counts.max()) if len(counts) else 0
    # A stable sort on "is background" brings each frame's foreground pixels first.
    order = torch.argsort((~foreground).to(torch.uint8), dim=1, stable=True)[:, :size]
    keep = torch.arange(size, device=depth.device)[None] < counts[:, None]
    return order, keep


def _part_to_joint_matrix(
    part_to_joint: Sequence[int], num_joints: int, device: torch.device
) -> torch.Tensor:
    matrix = torch.zeros(num_joints, len(part_to_joint), device=device)
    for part, joint in enumerate(part_to_joint):
        if joint >= 0:
            matrix[joint, part] = 1.0
    return matrix


@torch.no_grad()
def joint_proposals(
    probabilities: torch.Tensor,
    depth: torch.Tensor,
    intrinsics: torch.Tensor,
    bandwidth: float = 0.065,
    threshold: float = 0.14,
    push_back: float = 0.039,
    iterations: int = 8,
    seeds: int = 4,
    part_to_joint: Sequence[int] = PART_TO_JOINT,
    num_joints: int = len(JOINT_NAMES),
) -> tuple[torch.Tensor, torch.Tensor]:
    """One 3-D proposal per joint and frame by weighted mean shift, with a confidence.

    The defaults are the paper's (bandwidth 0.065 m, probability threshold 0.14, push
    back 0.039 m, its mean learnt values). Seeds are the ``seeds`` heaviest pixels of each
    joint; each climbs ``iterations`` mean-shift steps and the mode with the highest
    density wins. Joints without votes get confidence 0 (and position 0).

    Returns ``positions`` (``B x J x 3`` metres, camera frame) and ``confidence``
    (``B x J``, the summed kernel-weighted votes at the mode, 0 = no proposal).

    Args:
        probabilities: ``B x K x H x W`` part probabilities (softmax of the logits).
        depth: ``B x H x W`` (or ``B x 1 x H x W``) metres, 0 = no reading.
        intrinsics: ``B x 4``: ``fx, fy, cx, cy``.
        bandwidth: Gaussian kernel width in metres.
        threshold: pixels vote for a joint only where its probability exceeds this.
        push_back: metres added to the mode's depth (from the surface to the joint).
        iterations: mean-shift steps.
        seeds: starting points per joint and frame.
        part_to_joint: joint index of each part (-1: votes for none).
        num_joints: number of joints ``J``.
    """
    if depth.ndim == 4:
        depth = depth[:, 0]
    batch = depth.shape[0]
    depth = depth.float()
    index, keep = _foreground_pixels(depth)  # B x N
    points = backproject(depth, intrinsics.float()).flatten(1, 2)
    points = points.gather(1, index[..., None].expand(-1, -1, 3))  # B x N x 3
    matrix = _part_to_joint_matrix(part_to_joint, num_joints, depth.device)
    probs = (
        probabilities.float()
        .flatten(2)
        .gather(2, index[:, None].expand(-1, probabilities.shape[1], -1))
    )  # B x K x N
    joint_probs = torch.einsum("jk,bkn->bjn", matrix, probs)
    z = points[..., 2]
    weights = torch.where(joint_probs > threshold, joint_probs, 0.0) * (z * z)[:, None]
    weights = weights * keep[:, None]  # B x J x N
    positions = depth.new_zeros(batch, num_joints, 3)
    confidence = depth.new_zeros(batch, num_joints)
    if points.shape[1] == 0:
        return positions, confidence
    count = min(seeds, points.shape[1])
    start = weights.topk(count, dim=-1).indices  # B x J x S
    modes = points.gather(1, start.flatten(1)[..., None].expand(-1, -1, 3))
    modes = modes.view(batch, num_joints, count, 3)
    scale = -1.0 / (bandwidth * bandwidth)
    squared = (points * points).sum(-1)  # B x N

    def kernel(centres: torch.Tensor) -> torch.Tensor:
        """``B x J x S x N`` weighted Gaussian kernel between the centres and the points."""
        flat = centres.flatten(1, 2)  # B x JS x 3
        distance = (flat * flat).sum(-1, keepdim=True) - 2 * flat @ points.transpose(1, 2)
        distance = (distance + squared[:, None]).clamp_min(0)
        k = torch.exp(distance * scale).view(batch, num_joints, count, -1)
        return k * weights[:, :, None]

    for _ in range(iterations):
        k = kernel(modes)
        total = k.sum(-1, keepdim=True)
        shifted = (k @ points[:, None]) / total.clamp_min(1e-12)
        modes = torch.where(total > 0, shifted, modes)
    density = kernel(modes).sum(-1)  # B x J x S
    best = density.argmax(-1)
    confidence = density.gather(-1, best[..., None])[..., 0]
    positions = modes.gather(2, best[..., None, None].expand(-1, -1, 1, 3))[:, :, 0]
    positions = positions + positions.new_tensor([0.0, 0.0, push_back])
    positions = torch.where(confidence[..., None] > 0, positions, 0.0)
    return positions, confidence


def joint_visibility(
    labels: torch.Tensor,
    part_to_joint: Sequence[int] = PART_TO_JOINT,
    num_joints: int = len(JOINT_NAMES),
) -> torch.Tensor:
    """``B x J`` bool: some pixel is labelled with a part of the joint.

    Args:
        labels: ``B x H x W`` part labels, -1 for background or unknown.
        part_to_joint: joint index of each part (-1: none).
        num_joints: number of joints ``J``.
    """
    lookup = torch.tensor([*part_to_joint, -1], device=labels.device)
    joints = lookup[labels.flatten(1)]  # -1 labels index the trailing -1
    visible = torch.zeros(labels.shape[0], num_joints + 1, dtype=torch.bool, device=labels.device)
    visible.scatter_(1, joints.clamp_min(-1) % (num_joints + 1), True)
    return visible[:, :num_joints]


def average_precision(scores: torch.Tensor, hits: torch.Tensor, positives: int) -> torch.Tensor:
    """Area under the precision-recall curve (all-point interpolation, as in PASCAL VOC).

    Args:
        scores: confidence of each detection (higher first).
        hits: whether each detection is a true positive.
        positives: number of ground-truth instances (recall's denominator).
    """
    if positives <= 0:
        return scores.new_tensor(float("nan"))
    order = torch.argsort(scores, descending=True, stable=True)
    tp = hits[order].float().cumsum(0)
    ranks = torch.arange(1, len(order) + 1, device=scores.device, dtype=torch.float32)
    precision = tp / ranks
    recall = tp / positives
    # Precision envelope: the best precision at any recall at least as high.
    envelope = precision.flip(0).cummax(0).values.flip(0)
    steps = torch.diff(recall, prepend=recall.new_zeros(1))
    return (envelope * steps).sum()


class JointAveragePrecision(Metric):
    """Mean over joint types of the joint average precision at ``threshold`` metres.

    ``update`` takes one proposal per joint and frame (confidence 0 = none), the true
    joints and which of them are visible. Pairs whose joint is invisible or unknown (NaN
    in ``target``) are left out: they neither count as misses nor as false alarms (the
    paper does not penalise invisible joints). Proposals on the visible ones are true
    positives within ``threshold`` of the truth and false positives otherwise. States
    are concatenated tensors, so the metric syncs across DDP processes.

    Args:
        threshold: largest distance in metres of a true positive (the paper: 0.1 m).
        num_joints: number of joints per frame.
        joints: joint indices averaged in the mAP; default those some part votes for.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        threshold: float = 0.1,
        num_joints: int = len(JOINT_NAMES),
        joints: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.threshold = float(threshold)
        self.num_joints = int(num_joints)
        self.joints = list(SCORED_JOINTS if joints is None else joints)
        # Flat lists of B * J values: lists of 1-D tensors are what torchmetrics gathers
        # across processes of uneven sizes, including processes that saw no frame.
        for name in ("scores", "hits", "positives"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        positions: torch.Tensor,
        confidence: torch.Tensor,
        target: torch.Tensor,
        visible: torch.Tensor | None = None,
    ) -> None:
        """Add a batch of frames.

        Args:
            positions: ``B x J x 3`` proposals, metres.
            confidence: ``B x J``, 0 where there is no proposal.
            target: ``B x J x 3`` true joints, NaN where unknown.
            visible: ``B x J`` bool; all known joints count when ``None``.
        """
        known = torch.isfinite(target).all(-1)
        if visible is not None:
            known = known & visible
        distance = (positions.float() - target.float()).norm(dim=-1)
        hits = (distance <= self.threshold) & (confidence > 0)
        self.scores.append((confidence.float() * known).flatten())
        self.hits.append((hits & known).float().flatten())
        self.positives.append(known.float().flatten())

    def _state(self, name: str) -> torch.Tensor:
        values = getattr(self, name)
        if isinstance(values, list):
            values = dim_zero_cat(values) if values else torch.zeros(0, device=self.device)
        return values.reshape(-1, self.num_joints)

    def per_joint(self) -> dict[str, torch.Tensor]:
        """Average precision of each scored joint, by name (NaN where none was visible)."""
        all_scores, all_hits = self._state("scores"), self._state("hits")
        all_positives = self._state("positives")
        result = {}
        for joint in self.joints:
            scores, hits = all_scores[:, joint], all_hits[:, joint]
            detected = scores > 0
            positives = int(all_positives[:, joint].sum())
            name = JOINT_NAMES[joint] if self.num_joints == len(JOINT_NAMES) else f"joint_{joint}"
            result[name] = average_precision(scores[detected], hits[detected] > 0, positives)
        return result

    def compute(self) -> torch.Tensor:
        values = torch.stack(list(self.per_joint().values()))
        values = values[~values.isnan()]
        return values.mean() if len(values) else values.new_tensor(float("nan"))
