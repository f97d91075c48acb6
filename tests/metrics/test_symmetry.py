"""Left/right confusion rate of body-part predictions."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_synth.metrics.symmetry import (
    PART_SIDES,
    LeftRightConfusion,
    left_right_confusion,
    part_sides,
)
from lightning_synth.rendering.body import MIRROR_PARTS, PART_NAMES, BodyRenderer, mirror_frame


def _part(name: str) -> int:
    return PART_NAMES.index(name)


def test_sides_follow_the_part_names() -> None:
    assert PART_SIDES[_part("neck")] == 0
    assert PART_SIDES[_part("head_lu")] == -1 and PART_SIDES[_part("head_rw")] == 1
    assert PART_SIDES[_part("lu_arm")] == -1 and PART_SIDES[_part("r_foot")] == 1
    # Every sided part's mirror is on the other side.
    assert all(PART_SIDES[MIRROR_PARTS[p]] == -s for p, s in enumerate(PART_SIDES))
    assert sum(s == 0 for s in PART_SIDES) == 1
    with pytest.raises(ValueError):
        part_sides(("x_arm", "y_arm"), (1, 0))


def test_confusion_counts_mirror_swaps_only() -> None:
    labels = torch.tensor([_part("lu_arm")] * 4 + [_part("neck"), -1, _part("r_hand")])
    preds = torch.tensor(
        [_part("ru_arm"), _part("lu_arm"), _part("rw_arm"), _part("neck"), 3, 5, _part("l_hand")]
    )
    # Sided labelled pixels: 4 upper left arm and 1 right hand; mirror swaps: 2.
    assert left_right_confusion(preds, labels).item() == pytest.approx(2 / 5)
    # Any part of the other side: the right forearm counts too (the neck does not).
    assert left_right_confusion(preds, labels, any_opposite=True).item() == pytest.approx(3 / 5)
    assert math.isnan(left_right_confusion(preds[4:6], labels[4:6]).item())


def test_mirrored_predictions_are_all_confused_and_metric_accumulates() -> None:
    frame = BodyRenderer(30, 40, seed=2).render(range(4))
    flipped = mirror_frame(frame)
    # Predicting a frame's parts from its mirror image, unflipped: every sided part swaps.
    swapped = flipped.parts.flip(-1)
    assert left_right_confusion(swapped, frame.parts).item() == 1.0
    assert left_right_confusion(frame.parts, frame.parts).item() == 0.0
    metric = LeftRightConfusion()
    metric.update(swapped[:2], frame.parts[:2])
    metric.update(frame.parts[2:], frame.parts[2:])
    sided = torch.tensor(PART_SIDES)[frame.parts.clamp_min(0)] != 0
    sided &= frame.parts >= 0
    expected = sided[:2].sum() / sided.sum()
    assert metric.compute().item() == pytest.approx(expected.item())
    metric.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert math.isnan(metric.compute().item())
