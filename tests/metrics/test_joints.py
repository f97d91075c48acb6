"""Mean-shift joint proposals and joint average precision."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lightning_synth.metrics import JointAveragePrecision, joint_proposals
from lightning_synth.metrics.joints import (
    SCORED_JOINTS,
    average_precision,
    backproject,
    joint_visibility,
)
from lightning_synth.rendering.body import JOINT_NAMES, PART_NAMES, BodyRenderer, RenderedBodies

HAND, L_HAND = PART_NAMES.index("l_hand"), JOINT_NAMES.index("l_hand")
# 1 px = 1 cm at 2 m: a 6 x 6 pixel hand is 6 cm wide, about the kernel width.
INTRINSICS = torch.tensor([[200.0, 200.0, 15.5, 11.5]])


def _one_hot(labels: torch.Tensor) -> torch.Tensor:
    probabilities = F.one_hot(labels.clamp_min(0), len(PART_NAMES)).permute(0, 3, 1, 2).float()
    return probabilities * (labels >= 0)[:, None]


def test_mean_shift_finds_the_densest_cluster_and_pushes_it_back() -> None:
    depth = torch.zeros(1, 24, 32)
    labels = torch.full((1, 24, 32), -1)
    depth[0, 4:10, 4:10] = 2.0  # the hand: 36 pixels
    labels[0, 4:10, 4:10] = HAND
    depth[0, 18:20, 26:28] = 2.0  # a few stray "hand" pixels far away
    labels[0, 18:20, 26:28] = HAND
    depth[0, 12:16, 14:18] = 2.5  # some other part
    labels[0, 12:16, 14:18] = PART_NAMES.index("neck")
    positions, confidence = joint_proposals(
        _one_hot(labels), depth, INTRINSICS, push_back=0.04, bandwidth=0.065
    )
    points = backproject(depth, INTRINSICS)[0, 4:10, 4:10].reshape(-1, 3)
    expected = points.mean(0) + torch.tensor([0.0, 0.0, 0.04])
    assert torch.allclose(positions[0, L_HAND], expected, atol=0.002)
    assert confidence[0, L_HAND] > 0
    # joints without a voting part, or whose parts are absent, get no proposal
    assert confidence[0, JOINT_NAMES.index("pelvis")] == 0
    assert confidence[0, JOINT_NAMES.index("r_foot")] == 0


def test_proposals_from_true_labels_score_a_high_joint_map() -> None:
    frames = RenderedBodies(8, BodyRenderer(60, 80, seed=2)).__getitems__(list(range(8)))
    depth = torch.stack([f["image"] for f in frames])
    labels = torch.stack([f["label"] for f in frames])
    intrinsics = torch.stack([f["intrinsics"] for f in frames])
    joints = torch.stack([f["joints"] for f in frames])
    positions, confidence = joint_proposals(_one_hot(labels), depth, intrinsics)
    metric = JointAveragePrecision(threshold=0.1)
    metric.update(positions, confidence, joints, joint_visibility(labels))
    assert metric.compute() > 0.85
    # a classifier that finds nothing scores 0
    empty = JointAveragePrecision()
    empty.update(positions, torch.zeros_like(confidence), joints, joint_visibility(labels))
    assert empty.compute() == 0


def test_joint_ap_is_one_for_perfect_proposals_and_drops_for_displaced_ones() -> None:
    torch.manual_seed(0)
    truth = torch.randn(10, len(JOINT_NAMES), 3)
    confidence = torch.rand(10, len(JOINT_NAMES)) + 0.1
    perfect = JointAveragePrecision()
    perfect.update(truth, confidence, truth)
    assert perfect.compute() == pytest.approx(1.0)

    displaced = truth.clone()
    displaced[5:] += torch.tensor([0.0, 0.15, 0.0])  # half the frames 15 cm off
    half = JointAveragePrecision()
    half.update(displaced, confidence, truth)
    assert 0.2 < half.compute() < 0.9

    wrong = JointAveragePrecision()
    wrong.update(truth + 0.2, confidence, truth)
    assert wrong.compute() == 0
    # within the threshold counts as correct
    close = JointAveragePrecision(threshold=0.1)
    close.update(truth + torch.tensor([0.05, 0.0, 0.0]), confidence, truth)
    assert close.compute() == pytest.approx(1.0)


def test_invisible_and_unknown_joints_are_left_out() -> None:
    truth = torch.zeros(2, len(JOINT_NAMES), 3)
    proposals = truth + 1.0  # all wrong
    visible = torch.zeros(2, len(JOINT_NAMES), dtype=torch.bool)
    visible[:, SCORED_JOINTS[0]] = True
    proposals[:, SCORED_JOINTS[0]] = 0.0  # the one visible joint is right
    metric = JointAveragePrecision()
    metric.update(proposals, torch.ones(2, len(JOINT_NAMES)), truth, visible)
    assert metric.compute() == pytest.approx(1.0)
    assert math.isnan(metric.per_joint()[JOINT_NAMES[SCORED_JOINTS[1]]])
    unknown = JointAveragePrecision()
    unknown.update(proposals, torch.ones(2, len(JOINT_NAMES)), torch.full_like(truth, math.nan))
    assert unknown.compute().isnan()


def test_average_precision_matches_a_hand_computed_curve() -> None:
    # ranks: hit, miss, hit over 2 positives -> precision 1, .5, .67 at recall .5, .5, 1
    ap = average_precision(torch.tensor([0.9, 0.8, 0.7]), torch.tensor([True, False, True]), 2)
    assert ap.item() == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # an undetected positive caps recall
    ap = average_precision(torch.tensor([0.9]), torch.tensor([True]), 2)
    assert ap.item() == pytest.approx(0.5)


def test_head_quadrants_make_the_head_visible() -> None:
    labels = torch.full((2, 4, 4), -1)
    labels[0, 0, 0] = PART_NAMES.index("head_ru")
    visible = joint_visibility(labels)
    assert visible[0, JOINT_NAMES.index("head")] and visible[0].sum() == 1
    assert not visible[1].any()
