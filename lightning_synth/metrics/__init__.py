"""Measurements of the synthetic-to-real gap (plain functions, no Lightning)."""

from lightning_synth.metrics.discrepancy import (
    DEFAULT_CS,
    BoundTerms,
    bound_terms,
    joint_error,
    proxy_a_distance,
)
from lightning_synth.metrics.gap_report import DomainGap, gap_report, image_statistics
from lightning_synth.metrics.generative import DomainFeatures, GenerativeScores, gan_train_accuracy
from lightning_synth.metrics.joints import JointAveragePrecision, joint_proposals
from lightning_synth.metrics.selection import (
    VALIDATORS,
    deep_embedded_validation,
    information_maximization,
    selection_metric,
    soft_neighborhood_density,
)
from lightning_synth.metrics.symmetry import LeftRightConfusion, left_right_confusion

__all__ = ["proxy_a_distance", "joint_error", "bound_terms", "BoundTerms", "DEFAULT_CS"]
__all__ += ["DomainFeatures", "GenerativeScores", "gan_train_accuracy"]
__all__ += ["JointAveragePrecision", "joint_proposals"]
__all__ += ["VALIDATORS", "selection_metric", "soft_neighborhood_density"]
__all__ += ["information_maximization", "deep_embedded_validation"]
__all__ += ["DomainGap", "gap_report", "image_statistics"]
__all__ += ["LeftRightConfusion", "left_right_confusion"]
