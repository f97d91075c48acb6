"""How far apart two domains are: the proxy A-distance, and the terms of the domain-adaptation bound.

Ben-David et al. (2007, 2010) bound the error of a classifier ``h`` on the real (target)
domain by its error on the rendered (source) domain, the discrepancy of the two input
distributions as seen through the representation, and ``lambda``, the error of the best
joint classifier on both domains::

    er_real(h) <= er_synth(h) + disc + lambda

``disc`` is estimated by the *proxy A-distance* ``2 (1 - 2 e)`` where ``e`` is the held-out
error of a linear classifier trained to tell the two samples apart (Ben-David et al., 2007;
Ganin et al., 2016): 0 when they cannot be told apart, 2 when they are linearly separable.
``lambda`` is estimated the same way, by a linear classifier trained on labelled samples
of both domains. Classifiers are scikit-learn's ``LinearSVC`` on standardised features,
their regularisation chosen by cross-validation on the training half only.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

__all__ = ["proxy_a_distance", "joint_error", "BoundTerms", "bound_terms", "DEFAULT_CS"]

#: Regularisation strengths tried for every linear classifier here.
DEFAULT_CS: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0)

ArrayLike = np.ndarray | torch.Tensor


def _as_rows(values: ArrayLike) -> np.ndarray:
    """``N x ...`` tensor or array -> ``N x D`` float64 array (trailing dimensions flattened)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().numpy()
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 0:
        raise ValueError("expected N x D samples, got a scalar")
    return values.reshape(len(values), -1)


def _fit_linear(
    features: np.ndarray, targets: np.ndarray, cs: Sequence[float], folds: int, seed: int
):
    """A standardised ``LinearSVC`` fitted on ``features``, ``C`` chosen by stratified CV."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    pipeline = make_pipeline(StandardScaler(), LinearSVC(max_iter=2000, random_state=seed))
    smallest_class = int(np.unique(targets, return_counts=True)[1].min())
    folds = min(folds, smallest_class)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if len(cs) == 1 or folds < 2:
            pipeline.set_params(linearsvc__C=cs[len(cs) // 2])
            return pipeline.fit(features, targets)
        search = GridSearchCV(
            pipeline,
            {"linearsvc__C": list(cs)},
            cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
        )
        return search.fit(features, targets)


def _halves(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(count)
    return order[: count // 2], order[count // 2 :]


def proxy_a_distance(
    features_a: ArrayLike,
    features_b: ArrayLike,
    cs: Sequence[float] = DEFAULT_CS,
    folds: int = 3,
    seed: int = 0,
) -> float:
    """The proxy A-distance ``2 (1 - 2 e)`` between two samples, in [0, 2].

    Both samples are cut to the smaller one's size (so chance is 50%) and each is split
    into halves at random; a linear SVM learns on the first halves to tell ``a`` from
    ``b`` (``C`` picked from ``cs`` by ``folds``-fold cross-validation on those halves
    alone) and ``e`` is its error on the second halves. An error above 0.5 is flipped
    (such a classifier, inverted, does better), so the result is never negative.

    Args:
        features_a: ``N x ...`` samples of one domain (pixels or features; flattened).
        features_b: ``M x ...`` samples of the other domain, same trailing size.
        cs: regularisation strengths to choose from.
        folds: cross-validation folds for choosing ``C``.
        seed: seed of the subsampling, the split and the folds.

    Raises:
        ValueError: if either sample has fewer than 4 rows or their sizes differ.
    """
    a, b = _as_rows(features_a), _as_rows(features_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the samples have different sizes: {a.shape[1]} and {b.shape[1]}")
    count = min(len(a), len(b))
    if count < 4:
        raise ValueError(f"the proxy A-distance needs at least 4 samples per domain, got {count}")
    rng = np.random.default_rng(seed)
    a = a[rng.choice(len(a), count, replace=False)]
    b = b[rng.choice(len(b), count, replace=False)]
    train_a, test_a = _halves(count, rng)
    train_b, test_b = _halves(count, rng)
    x_train = np.concatenate([a[train_a], b[train_b]])
    y_train = np.repeat([0, 1], [len(train_a), len(train_b)])
    x_test = np.concatenate([a[test_a], b[test_b]])
    y_test = np.repeat([0, 1], [len(test_a), len(test_b)])
    model = _fit_linear(x_train, y_train, cs, folds, seed)
    error = float(np.mean(model.predict(x_test) != y_test))
    error = min(error, 1.0 - error)
    return 2.0 * (1.0 - 2.0 * error)


def joint_error(
    features_a: ArrayLike,
    labels_a: ArrayLike,
    features_b: ArrayLike,
    labels_b: ArrayLike,
    cs: Sequence[float] = DEFAULT_CS,
    folds: int = 3,
    seed: int = 0,
) -> tuple[float, float]:
    """Held-out errors on each domain of one linear classifier trained on both (``lambda``'s parts).

    ``lambda = min_h er_a(h) + er_b(h)`` is the error of the ideal joint hypothesis; it is
    small when one classifier on these features can label both domains. Each domain is
    split in halves; a multi-class linear SVM learns the labels on both first halves
    (``C`` by cross-validation there) and is scored on each second half.

    Args:
        features_a: ``N x ...`` labelled samples of one domain.
        labels_a: ``N`` class labels.
        features_b: ``M x ...`` labelled samples of the other domain.
        labels_b: ``M`` class labels.
        cs: regularisation strengths to choose from.
        folds: cross-validation folds for choosing ``C``.
        seed: seed of the split and the folds.

    Returns:
        ``(error on a, error on b)``; ``lambda`` is their sum.

    Raises:
        ValueError: if a domain has fewer than 4 samples or only one class in its first half.
    """
    a, b = _as_rows(features_a), _as_rows(features_b)
    ya = _as_rows(labels_a).reshape(-1).astype(np.int64)
    yb = _as_rows(labels_b).reshape(-1).astype(np.int64)
    if min(len(a), len(b)) < 4:
        raise ValueError(
            f"the joint error needs at least 4 samples per domain, got {len(a)}, {len(b)}"
        )
    rng = np.random.default_rng(seed)
    train_a, test_a = _halves(len(a), rng)
    train_b, test_b = _halves(len(b), rng)
    y_train = np.concatenate([ya[train_a], yb[train_b]])
    if len(np.unique(y_train)) < 2:
        raise ValueError("the joint error needs at least two classes among the labelled samples")
    model = _fit_linear(np.concatenate([a[train_a], b[train_b]]), y_train, cs, folds, seed)
    error_a = float(np.mean(model.predict(a[test_a]) != ya[test_a]))
    error_b = float(np.mean(model.predict(b[test_b]) != yb[test_b]))
    return error_a, error_b


@dataclass(frozen=True)
class BoundTerms:
    """The terms of ``er_real <= er_synth + disc + lambda`` and the measured ``er_real``.

    Attributes:
        er_synth: the classifier's error on rendered samples.
        disc: proxy A-distance between the domains' features.
        lambda_: error of the best joint linear classifier (held-out, both domains summed);
            ``nan`` when real labels are unknown.
        er_real: the classifier's measured error on real samples; ``nan`` when unknown.
    """

    er_synth: float
    disc: float
    lambda_: float
    er_real: float

    @property
    def bound(self) -> float:
        """``er_synth + disc + lambda``, the bound on ``er_real``."""
        return self.er_synth + self.disc + self.lambda_

    @property
    def slack(self) -> float:
        """``bound - er_real``: how loose the bound is (never negative if the bound holds)."""
        return self.bound - self.er_real

    def as_dict(self) -> dict[str, float]:
        """The terms, the bound and the slack by name."""
        return {**asdict(self), "bound": self.bound, "slack": self.slack}

    def as_metrics(self) -> dict[str, float]:
        """The terms by the names they are logged under (``{stage}/bound_er_synth``, ...)."""
        return {
            "bound_er_synth": self.er_synth,
            "bound_disc": self.disc,
            "bound_lambda": self.lambda_,
            "bound": self.bound,
            "bound_er_real": self.er_real,
            "bound_slack": self.slack,
        }


def bound_terms(
    er_synth: float,
    features_synth: ArrayLike,
    features_real: ArrayLike,
    labels_synth: ArrayLike | None = None,
    labels_real: ArrayLike | None = None,
    er_real: float = float("nan"),
    cs: Sequence[float] = DEFAULT_CS,
    folds: int = 3,
    seed: int = 0,
) -> BoundTerms:
    """Estimate ``disc`` and ``lambda`` from features and collect the bound's terms.

    Args:
        er_synth: the classifier's error on the rendered validation set.
        features_synth: ``N x ...`` features of rendered samples.
        features_real: ``M x ...`` features of real samples.
        labels_synth: labels of ``features_synth`` (for ``lambda``).
        labels_real: labels of ``features_real`` (for ``lambda``); ``None`` or all
            ``-1`` when the real labels are unknown, then ``lambda`` is ``nan``.
        er_real: the classifier's measured error on real samples, reported beside the bound.
        cs: regularisation strengths for the linear classifiers.
        folds: cross-validation folds for choosing ``C``.
        seed: seed of the splits.
    """
    disc = proxy_a_distance(features_synth, features_real, cs=cs, folds=folds, seed=seed)
    lambda_ = float("nan")
    if labels_synth is not None and labels_real is not None:
        ya = _as_rows(labels_synth).reshape(-1)
        yb = _as_rows(labels_real).reshape(-1)
        known_a, known_b = ya >= 0, yb >= 0
        if known_a.sum() >= 4 and known_b.sum() >= 4:
            fa, fb = _as_rows(features_synth), _as_rows(features_real)
            try:
                lambda_ = sum(
                    joint_error(fa[known_a], ya[known_a], fb[known_b], yb[known_b], cs, folds, seed)
                )
            except ValueError:
                lambda_ = float("nan")
    return BoundTerms(er_synth=float(er_synth), disc=disc, lambda_=lambda_, er_real=float(er_real))
