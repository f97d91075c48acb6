"""Label-free validators: which checkpoint to trust on real data without real labels.

A domain-adaptation run cannot pick its best epoch by real accuracy when the real
labels are unknown (and when they are known, choosing by them overstates what a user
will get). These scores need only unlabelled real samples (and labelled rendered ones):

============  =========================================================  ==============
name          what it measures                                           better
============  =========================================================  ==============
``snd``       soft neighbourhood density of the real predictions         higher
              (Saito et al., ICCV 2021): the mean entropy of each real
              sample's softmax-over-neighbours similarity distribution.
              Dense, well-separated clusters score high.
``dev``       deep embedded validation (You et al., ICML 2019): the      lower (risk)
              rendered validation loss weighted by ``p_real / p_rendered``
              from a domain classifier on the features, with the
              control variate that cuts its variance.
``im``        information maximisation: entropy of the mean real         higher
              prediction minus the mean entropy of each; ``log C`` for
              confident, class-balanced predictions, 0 for uniform or
              collapsed ones.
``rendered_acc``  accuracy on the rendered validation set                higher
============  =========================================================  ==============

:class:`~lightning_synth.callbacks.ModelSelection` logs them as ``val/select_<name>``,
each signed so that **higher is better** (``val/select_dev`` is the negated DEV risk),
so one ``ModelCheckpoint(monitor="val/select_<name>", mode="max")`` fits all of them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Final, Literal

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "VALIDATORS",
    "Validator",
    "selection_metric",
    "soft_neighborhood_density",
    "information_maximization",
    "domain_importance_weights",
    "control_variate_risk",
    "deep_embedded_validation",
]

Validator = Literal["snd", "dev", "im", "rendered_acc"]

#: Every validator, with what it measures (all logged so that higher is better).
VALIDATORS: Final[dict[str, str]] = {
    "snd": "soft neighbourhood density of real predictions (Saito et al. 2021)",
    "dev": "negated deep-embedded-validation risk (You et al. 2019)",
    "im": "information maximisation of real predictions: H(mean p) - mean H(p)",
    "rendered_acc": "accuracy on rendered validation samples",
}

#: Probabilities of the domain classifier are kept in ``[_CLIP, 1 - _CLIP]`` so that a
#: sample it is certain of gets a large but finite density ratio (at most ~1000).
_CLIP = 1e-3


def selection_metric(name: str) -> str:
    """The logged name of a validator, e.g. ``val/select_snd`` (monitor it with ``mode="max"``).

    Args:
        name: one of :data:`VALIDATORS`.
    """
    if name not in VALIDATORS:
        raise ValueError(f"unknown validator {name!r}; choose from {sorted(VALIDATORS)}")
    return f"val/select_{name}"


def _entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each row of probabilities."""
    return -(probabilities * probabilities.clamp_min(1e-12).log()).sum(-1)


def soft_neighborhood_density(logits: torch.Tensor, temperature: float = 0.05) -> float:
    """SND of the target predictions (Saito et al., "Tune it the right way", ICCV 2021).

    The softmax outputs are L2-normalised; each sample's cosine similarities to the
    others (itself excluded), divided by ``temperature``, go through a softmax; SND is
    the mean entropy of these neighbour distributions. High when every sample has many
    close neighbours (dense clusters), low when predictions are scattered. Higher is
    better. (A model that gives every sample the same prediction also scores high;
    :func:`information_maximization` catches that case.)

    Args:
        logits: ``N x C`` class scores of unlabelled real samples, ``N >= 2``.
        temperature: the paper's ``tau``; 0.05 as published.
    """
    if logits.ndim != 2 or len(logits) < 2:
        raise ValueError(f"SND needs N x C logits with N >= 2, got {tuple(logits.shape)}")
    normalised = F.normalize(logits.double().softmax(dim=1), dim=1)
    similarity = normalised @ normalised.T / temperature
    # Self-similarity is set to the lowest cosine there is, as in the authors' code.
    similarity.fill_diagonal_(-1.0 / temperature)
    return float(_entropy(similarity.softmax(dim=1)).mean())


def information_maximization(logits: torch.Tensor) -> float:
    """Mutual information between samples and predicted classes: ``H(mean p) - mean H(p)``.

    The objective of information-maximisation adaptation (Gomes et al. 2010; Shi and
    Sha 2012; SHOT, Liang et al. 2020) used as a validator: ``log C`` when predictions
    are confident and the classes balanced, 0 when they are uniform or all the same
    class. Higher is better.

    Args:
        logits: ``N x C`` class scores of unlabelled real samples.
    """
    if logits.ndim != 2 or len(logits) < 1:
        raise ValueError(f"IM needs N x C logits with N >= 1, got {tuple(logits.shape)}")
    probabilities = logits.double().softmax(dim=1)
    return float(_entropy(probabilities.mean(dim=0)) - _entropy(probabilities).mean())


def _canonical_order(features: np.ndarray) -> np.ndarray:
    """An order of rows that depends on their values only (so on no gathering order)."""
    return np.lexsort(features.T[::-1]) if features.size else np.arange(len(features))


def domain_importance_weights(
    features_rendered: np.ndarray | torch.Tensor,
    features_real: np.ndarray | torch.Tensor,
    folds: int = 2,
    cs: Sequence[float] = (0.01, 0.1, 1.0),
    seed: int = 0,
) -> np.ndarray:
    """Density ratios ``p_real(x) / p_rendered(x)`` of the rendered samples, cross-fitted.

    A logistic regression on standardised features (``C`` from ``cs`` by 3-fold
    cross-validated log loss) learns rendered (0) vs real (1) on all real samples and
    the rendered samples outside one fold, and gives the fold's samples
    ``w = (n_rendered / n_real) * P(real | x) / P(rendered | x)``, ``n`` the counts it
    was trained on; so no sample is weighted by a classifier that saw it. Rows are put
    in an order of their values first, so the result does not depend on the order they
    came in (DDP gathers them interleaved).

    Args:
        features_rendered: ``N x D`` features of labelled rendered validation samples.
        features_real: ``M x D`` features of real validation samples.
        folds: cross-fitting folds over the rendered samples (at least 2).
        cs: inverse regularisation strengths to choose from.
        seed: seed of the folds.

    Returns:
        ``N`` weights, in the order of ``features_rendered``.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rendered = _as_array(features_rendered)
    real = _as_array(features_real)
    if min(len(rendered), len(real)) < 2 * folds or folds < 2:
        raise ValueError(
            f"importance weights need at least {2 * max(folds, 2)} samples of each domain "
            f"and folds >= 2, got {len(rendered)} rendered, {len(real)} real, folds={folds}"
        )
    real = real[_canonical_order(real)]
    order = _canonical_order(rendered)
    fold_of = np.random.default_rng(seed).permutation(len(rendered)) % folds
    weights = np.empty(len(rendered))
    for fold in range(folds):
        held = order[fold_of == fold]
        train = order[fold_of != fold]
        x = np.concatenate([rendered[train], real])
        y = np.repeat([0, 1], [len(train), len(real)])
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        search = GridSearchCV(
            model,
            {"logisticregression__C": list(cs)},
            scoring="neg_log_loss",
            cv=StratifiedKFold(min(3, len(train), len(real)), shuffle=True, random_state=seed),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            search.fit(x, y)
        p_real = np.clip(search.predict_proba(rendered[held])[:, 1], _CLIP, 1.0 - _CLIP)
        weights[held] = len(train) / len(real) * p_real / (1.0 - p_real)
    return weights


def control_variate_risk(
    weights: np.ndarray | torch.Tensor, losses: np.ndarray | torch.Tensor
) -> float:
    """The DEV risk of weighted losses: ``mean(w l) + eta mean(w) - eta``, ``eta = -Cov(wl, w) / Var(w)``.

    ``mean(w)`` is 1 in expectation, so the correction keeps the estimate unbiased while
    cancelling the variance the weights bring (You et al. 2019, Algorithm 1).

    Args:
        weights: ``N`` importance weights.
        losses: ``N`` per-sample losses.
    """
    w = _as_array(weights).reshape(-1)
    weighted = w * _as_array(losses).reshape(-1)
    if len(w) < 2:
        raise ValueError("the DEV risk needs at least 2 samples")
    variance = float(np.var(w, ddof=1))
    if variance <= 1e-12:  # all weights equal: no variance to remove
        return float(weighted.mean())
    eta = -float(np.cov(weighted, w, ddof=1)[0, 1]) / variance
    return float(weighted.mean() + eta * w.mean() - eta)


def deep_embedded_validation(
    features_rendered: np.ndarray | torch.Tensor,
    logits_rendered: torch.Tensor,
    labels_rendered: torch.Tensor,
    features_real: np.ndarray | torch.Tensor,
    folds: int = 2,
    seed: int = 0,
) -> float:
    """The DEV risk: the real-domain loss estimated from labelled rendered samples.

    Per-sample cross-entropy on the rendered validation samples, importance-weighted by
    :func:`domain_importance_weights` and corrected by :func:`control_variate_risk`.
    Lower is better (``val/select_dev`` logs its negative). When both domains are drawn
    from one distribution the weights are near 1 and DEV is the plain rendered loss.

    Args:
        features_rendered: ``N x D`` features of rendered samples.
        logits_rendered: ``N x C`` class scores of the same samples.
        labels_rendered: ``N`` labels of the same samples.
        features_real: ``M x D`` features of real samples (no labels needed).
        folds: cross-fitting folds of the domain classifier.
        seed: seed of the folds.
    """
    losses = F.cross_entropy(logits_rendered.double(), labels_rendered.long(), reduction="none")
    weights = domain_importance_weights(features_rendered, features_real, folds, seed=seed)
    return control_variate_risk(weights, losses.cpu().numpy())


def _as_array(values: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().double().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    return array.reshape(len(array), -1) if array.ndim > 1 else array
