"""Left/right confusion of body-part labels: the known failure of Shotton et al.'s classifier.

Depth carries little that tells a left arm from a right one: a body seen from behind
looks like one seen from the front, mirrored. Shotton et al. (CVPR 2011) name left/right
swaps as a main source of error. The *left/right confusion rate* is the fraction of
labelled pixels of a sided part (say ``lu_arm``) that are predicted as its mirror part
(``ru_arm``); with ``any_opposite`` as any part of the other side. Parts without a side
(the neck) are left out. Sides come from :data:`~lightning_synth.rendering.body.MIRROR_PARTS`
(a part whose mirror is another part) and the names in
:data:`~lightning_synth.rendering.body.PART_NAMES`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

from lightning_synth.rendering.body_parts import MIRROR_PARTS, PART_NAMES

__all__ = ["PART_SIDES", "part_sides", "left_right_confusion", "LeftRightConfusion"]


def part_sides(
    names: Sequence[str] = PART_NAMES, mirror: Sequence[int] = MIRROR_PARTS
) -> tuple[int, ...]:
    """Side of every part: -1 the subject's left, +1 their right, 0 none (its own mirror).

    Args:
        names: part names; a sided part's name starts with ``l``/``r`` (``l_hand``,
            ``lu_arm``) or, for the head, ``head_l``/``head_r``.
        mirror: ``mirror[p]`` is the part ``p`` becomes in a mirrored image.
    """
    sides = []
    for index, name in enumerate(names):
        if mirror[index] == index:
            sides.append(0)
            continue
        letter = name[5] if name.startswith("head_") else name[0]
        if letter not in "lr":
            raise ValueError(f"cannot tell the side of part {name!r}")
        sides.append(-1 if letter == "l" else 1)
    return tuple(sides)


#: Side of each part of :data:`PART_NAMES`: -1 left, +1 right, 0 none.
PART_SIDES: tuple[int, ...] = part_sides()


def _counts(
    preds: torch.Tensor,
    labels: torch.Tensor,
    any_opposite: bool,
    ignore_index: int,
    mirror: Sequence[int],
    sides: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Confused and counted pixels (two scalar tensors)."""
    if preds.shape != labels.shape:
        raise ValueError(f"preds {tuple(preds.shape)} and labels {tuple(labels.shape)} differ")
    preds, labels = preds.reshape(-1).long(), labels.reshape(-1).long()
    side = torch.tensor(sides, device=labels.device)
    known = (labels != ignore_index) & (labels >= 0) & (labels < len(side))
    labels = labels[known]
    preds = preds[known].clamp(0, len(side) - 1)
    true_side = side[labels]
    sided = true_side != 0
    if any_opposite:
        confused = side[preds] == -true_side
    else:
        confused = preds == torch.tensor(mirror, device=labels.device)[labels]
    return (confused & sided).sum(), sided.sum()


def left_right_confusion(
    preds: torch.Tensor,
    labels: torch.Tensor,
    any_opposite: bool = False,
    ignore_index: int = -1,
    mirror: Sequence[int] = MIRROR_PARTS,
    sides: Sequence[int] = PART_SIDES,
) -> torch.Tensor:
    """Fraction of labelled pixels of sided parts predicted as the other side (NaN if none).

    Args:
        preds: predicted parts, any shape.
        labels: true parts, the same shape; ``ignore_index`` where unknown.
        any_opposite: count any part of the other side as confused, not only the mirror
            part.
        ignore_index: label of pixels to leave out.
        mirror: ``mirror[p]`` is the part ``p`` becomes in a mirrored image.
        sides: side of each part (-1, +1, 0 for none), see :func:`part_sides`.
    """
    confused, counted = _counts(preds, labels, any_opposite, ignore_index, mirror, sides)
    if not int(counted):
        return torch.tensor(float("nan"), device=labels.device)
    return confused.float() / counted


class LeftRightConfusion(Metric):
    """:func:`left_right_confusion` accumulated over batches (sums sync across processes).

    Args:
        any_opposite: count any part of the other side as confused, not only the mirror
            part.
        ignore_index: label of pixels to leave out.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, any_opposite: bool = False, ignore_index: int = -1) -> None:
        super().__init__()
        self.any_opposite, self.ignore_index = any_opposite, int(ignore_index)
        self.add_state("confused", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("counted", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, labels: torch.Tensor) -> None:
        """Add predicted and true parts of some pixels.

        Args:
            preds: predicted parts, any shape.
            labels: true parts, the same shape.
        """
        confused, counted = _counts(
            preds, labels, self.any_opposite, self.ignore_index, MIRROR_PARTS, PART_SIDES
        )
        self.confused += confused
        self.counted += counted

    def compute(self) -> torch.Tensor:
        """The confusion rate (NaN before any sided pixel)."""
        if not int(self.counted):
            return torch.tensor(float("nan"), device=self.confused.device)
        return self.confused.float() / self.counted
