"""The schedules of DANN (Ganin et al., 2016, JMLR, section 5.2.2), as functions of progress.

``p`` is the training progress, from 0 at the first step to 1 at the last. Computing it
from the step counter (``global_step / total_steps``) rather than from state kept
in a callback means a run resumed from a checkpoint picks the schedule up where it was.
"""

from __future__ import annotations

import math

__all__ = ["training_progress", "grl_lambda", "annealed_lr_factor"]


def training_progress(step: int, total_steps: float) -> float:
    """Progress ``p = step / total_steps``, clipped to [0, 1].

    Args:
        step: optimizer steps taken so far (``trainer.global_step``).
        total_steps: steps the run will take (``trainer.estimated_stepping_batches``);
            an unknown (infinite or non-positive) total counts as "done" (``p = 1``).
    """
    if not math.isfinite(total_steps) or total_steps <= 0:
        return 1.0
    return min(max(step / total_steps, 0.0), 1.0)


def grl_lambda(progress: float, gamma: float = 10.0) -> float:
    """The paper's reversal strength ``2 / (1 + exp(-gamma p)) - 1``: 0 at p=0, about 1 at p=1.

    Starting at 0 keeps the domain classifier's early, noisy gradient away from the
    features while they are still being formed.

    Args:
        progress: training progress ``p`` in [0, 1].
        gamma: steepness; the paper uses 10 (lambda reaches 0.99991 at p=1).
    """
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


def annealed_lr_factor(progress: float, alpha: float = 10.0, beta: float = 0.75) -> float:
    """The paper's learning-rate factor ``1 / (1 + alpha p) ** beta`` (multiplies ``mu0``).

    Args:
        progress: training progress ``p`` in [0, 1].
        alpha: the paper uses 10.
        beta: the paper uses 0.75 (the factor ends at 11 ** -0.75, about 0.166).
    """
    return (1.0 + alpha * progress) ** -beta
