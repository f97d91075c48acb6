"""The DANN schedules: values the paper gives, and progress that survives odd totals."""

from __future__ import annotations

import math

import pytest

from lightning_synth.nn.schedules import annealed_lr_factor, grl_lambda, training_progress


def test_reversal_strength_starts_at_zero_and_ends_near_one() -> None:
    assert grl_lambda(0.0) == 0.0
    assert grl_lambda(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert 0.9999 < grl_lambda(1.0) < 1.0
    assert grl_lambda(0.1) == pytest.approx(2 / (1 + math.exp(-1)) - 1)  # 0.462
    values = [grl_lambda(p / 10) for p in range(11)]
    assert values == sorted(values)
    assert grl_lambda(0.1, gamma=1.0) < grl_lambda(0.1)


def test_learning_rate_annealing_matches_the_paper() -> None:
    assert annealed_lr_factor(0.0) == 1.0
    assert annealed_lr_factor(1.0) == pytest.approx(11**-0.75)  # about 0.166
    assert annealed_lr_factor(0.5, alpha=10, beta=0.75) == pytest.approx(6**-0.75)


def test_progress_is_step_over_total_clipped_and_safe_for_unknown_totals() -> None:
    assert training_progress(0, 100) == 0.0
    assert training_progress(25, 100) == 0.25
    assert training_progress(150, 100) == 1.0
    assert training_progress(5, float("inf")) == 1.0
    assert training_progress(5, 0) == 1.0
