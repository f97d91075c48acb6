"""The proxy A-distance and the bound's terms on data whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lightning_synth.metrics import BoundTerms, bound_terms, joint_error, proxy_a_distance


def _gaussian(n: int, dim: int, shift: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(n, dim))
    data[:, 0] += shift
    return data


def test_two_samples_of_one_distribution_are_near_zero_apart() -> None:
    values = [
        proxy_a_distance(_gaussian(300, 20, seed=s), _gaussian(300, 20, seed=100 + s), seed=s)
        for s in range(3)
    ]
    assert all(0.0 <= v < 0.35 for v in values), values


def test_separable_samples_are_two_apart_and_overlap_lies_between() -> None:
    assert proxy_a_distance(_gaussian(200, 20), _gaussian(200, 20, shift=10.0, seed=1)) > 1.95
    partial = proxy_a_distance(_gaussian(300, 20), _gaussian(300, 20, shift=1.0, seed=1))
    # one-dimensional shift of 1 std: Bayes error Phi(-0.5) = 0.31 -> PAD about 0.77
    assert 0.4 < partial < 1.2


def test_pad_takes_tensors_of_images_and_unequal_sample_sizes() -> None:
    dark = torch.rand(120, 1, 8, 8) * 0.5
    bright = torch.rand(80, 1, 8, 8) * 0.5 + 0.5
    assert proxy_a_distance(dark, bright) > 1.9


def test_pad_refuses_mismatched_or_tiny_samples() -> None:
    with pytest.raises(ValueError, match="different sizes"):
        proxy_a_distance(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(ValueError, match="at least 4"):
        proxy_a_distance(np.zeros((3, 3)), np.ones((10, 3)))


def test_joint_error_is_low_when_one_classifier_labels_both_domains() -> None:
    rng = np.random.default_rng(0)
    labels_a, labels_b = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    centres = np.eye(3) * 6
    a = centres[labels_a] + rng.normal(size=(200, 3))
    b = centres[labels_b] + rng.normal(size=(200, 3)) + 0.5  # shifted domain, same classes
    error_a, error_b = joint_error(a, labels_a, b, labels_b)
    assert error_a < 0.05 and error_b < 0.05
    # labels unrelated to the features: the joint classifier is at chance (2/3 wrong)
    shuffled_a, shuffled_b = rng.permutation(labels_a), rng.permutation(labels_b)
    error_a, error_b = joint_error(a, shuffled_a, b, shuffled_b)
    assert error_a > 0.45 and error_b > 0.45


def test_bound_terms_add_up_and_skip_lambda_without_real_labels() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 100)
    synth = labels[:, None] * 4.0 + rng.normal(size=(100, 5))
    real = labels[:, None] * 4.0 + rng.normal(size=(100, 5)) + 1.0
    terms = bound_terms(0.1, synth, real, labels, labels, er_real=0.3)
    assert isinstance(terms, BoundTerms)
    assert terms.disc == proxy_a_distance(synth, real)
    assert terms.bound == pytest.approx(0.1 + terms.disc + terms.lambda_)
    assert terms.slack == pytest.approx(terms.bound - 0.3)
    assert 0.0 <= terms.lambda_ < 0.2
    assert set(terms.as_dict()) == {"er_synth", "disc", "lambda_", "er_real", "bound", "slack"}
    hidden = bound_terms(0.1, synth, real, labels, np.full(100, -1))
    assert math.isnan(hidden.lambda_) and math.isnan(hidden.bound)
    assert hidden.disc == terms.disc
