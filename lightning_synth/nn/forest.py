"""``DepthForest``: Shotton's randomised decision forest, trained by scikit-learn, run as tensors.

Shotton et al. (CVPR 2011) classify every pixel of a depth image with a forest of 3
trees of depth 20 over depth-comparison features, each node testing one feature against
a threshold, both drawn at random among candidates and kept if they best split the
training pixels (2000 pixels sampled per image). Here scikit-learn grows the trees
(``ExtraTreesClassifier``: one random threshold per candidate feature, the closest
well-kept equivalent of the paper's sampling; or ``RandomForestClassifier``) on the
features of sampled pixels, and the fitted trees are copied into registered buffers:
per node the feature index, the threshold, the left child (the right one follows it),
and the class distribution of its training pixels. Inference walks all trees for all
pixels at once, a few ``index_select`` calls per level, on any device; the buffers
travel with ``.to()`` and with the state dict, so a checkpoint reloads the forest.

The forest is not trained by back-propagation: it has no parameters, and its output
carries no gradient. A task collects the features and labels of sampled pixels and calls
:meth:`DepthForest.fit_forest` once.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lightning_synth.errors import InputError

__all__ = ["DepthForest"]

_BUFFERS = ("feature", "threshold", "left", "roots", "distribution", "levels")


class DepthForest(nn.Module):
    """Per-pixel decision forest: ``N x D`` features -> ``N x K`` log-probabilities.

    Also takes ``B x D x H x W`` feature maps (-> ``B x K x H x W``), like
    :class:`~lightning_synth.nn.PixelClassifier`. The output is the log of the trees' mean
    class distribution (plus ``1e-6`` so no score is infinite): ``argmax`` gives
    scikit-learn's ``predict``, ``softmax`` its ``predict_proba`` (up to that floor).
    Before :meth:`fit_forest` the forest knows nothing and returns the uniform
    distribution (with a warning); :attr:`fitted` tells the two apart.

    Args:
        in_features: number of features ``D`` per pixel.
        num_classes: number of classes ``K`` (31 body parts); labels outside ``[0, K)``
            (such as -1, unknown) are left out of training.
        num_trees: number of trees (the paper: 3).
        max_depth: largest tree depth (the paper: 20).
        method: ``extra_trees`` (scikit-learn's ``ExtraTreesClassifier``: random
            thresholds, as in the paper) or ``random_forest`` (best thresholds, bootstrap).
        max_features: candidate features tried at each node: a count, a fraction of
            ``D`` (``1.0``: all of them, as the paper searches all its candidates at every
            node), or ``sqrt`` (grows about 5 times faster; 4 points lower mean per-class
            accuracy on held-out renders in ``docs/benchmarks.md``).
        min_samples_leaf: fewest training pixels in a leaf.
        class_weight: ``balanced`` weights each class by the inverse of its pixel count
            (favours the mean per-class accuracy over the pixel accuracy); ``None``
            counts every pixel once.
        n_jobs: processes scikit-learn grows trees with (``None``: one, ``-1``: all
            cores).
        seed: seed of the random candidate features and thresholds.
    """

    #: Acts on each pixel alone, so ``N x D`` input (foreground pixels only) is allowed.
    pointwise: ClassVar[bool] = True
    #: Trained by :meth:`fit_forest`, not by gradient steps.
    trainable_by_gradient: ClassVar[bool] = False

    feature: torch.Tensor
    threshold: torch.Tensor
    left: torch.Tensor
    roots: torch.Tensor
    distribution: torch.Tensor
    levels: torch.Tensor

    def __init__(
        self,
        in_features: int = 128,
        num_classes: int = 31,
        num_trees: int = 3,
        max_depth: int = 20,
        method: Literal["extra_trees", "random_forest"] = "extra_trees",
        max_features: int | float | Literal["sqrt"] = 1.0,
        min_samples_leaf: int = 1,
        class_weight: Literal["balanced"] | None = None,
        n_jobs: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if in_features < 1 or num_classes < 2:
            raise InputError("in_features must be positive and num_classes at least 2")
        if num_trees < 1 or max_depth < 1 or min_samples_leaf < 1:
            raise InputError("num_trees, max_depth and min_samples_leaf must be positive")
        if method not in ("extra_trees", "random_forest"):
            raise InputError(f"method must be 'extra_trees' or 'random_forest', got {method!r}")
        self.in_features, self.out_features = int(in_features), int(num_classes)
        self.num_trees, self.max_depth = int(num_trees), int(max_depth)
        self.method, self.max_features = method, max_features
        self.min_samples_leaf, self.class_weight = int(min_samples_leaf), class_weight
        self.n_jobs, self.seed = n_jobs, int(seed)
        # Empty until fitted; _load_from_state_dict resizes them to a checkpoint's forest.
        self.register_buffer("feature", torch.zeros(0, dtype=torch.long))
        self.register_buffer("threshold", torch.zeros(0))
        self.register_buffer("left", torch.zeros(0, dtype=torch.long))
        self.register_buffer("roots", torch.zeros(0, dtype=torch.long))
        self.register_buffer("distribution", torch.zeros(0, self.out_features))
        self.register_buffer("levels", torch.zeros((), dtype=torch.long))
        # The traversal's loop count as a Python int: torch.export cannot unroll a loop
        # whose count it would have to read from a tensor.
        self._depth = 0
        self._warned = False

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit_forest` (or a loaded state dict) has given the forest trees."""
        return self.feature.numel() > 0

    def extra_repr(self) -> str:
        nodes = self.feature.numel()
        return (
            f"in_features={self.in_features}, num_classes={self.out_features}, "
            f"num_trees={self.num_trees}, max_depth={self.max_depth}, method={self.method!r}, "
            f"fitted={self.fitted}, nodes={nodes}, levels={int(self.levels)}"
        )

    # -- training ---------------------------------------------------------------------
    def estimator(self) -> Any:
        """The (unfitted) scikit-learn forest :meth:`fit_forest` trains."""
        from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

        kind = ExtraTreesClassifier if self.method == "extra_trees" else RandomForestClassifier
        return kind(
            n_estimators=self.num_trees,
            max_depth=self.max_depth,
            max_features=self.max_features,
            min_samples_leaf=self.min_samples_leaf,
            class_weight=self.class_weight,
            n_jobs=self.n_jobs,
            random_state=self.seed,
        )

    @torch.no_grad()
    def fit_forest(self, features: torch.Tensor, labels: torch.Tensor) -> Any:
        """Grow the trees on pixels' features and labels; returns the scikit-learn forest.

        Replaces any earlier forest. Pixels whose label lies outside ``[0, num_classes)``
        are left out.

        Args:
            features: ``N x D`` features of the training pixels (any device; copied to
                the CPU as float32, the precision scikit-learn's trees compare in).
            labels: ``N`` class labels.
        """
        if features.ndim != 2 or features.shape[1] != self.in_features:
            raise ValueError(
                f"expected N x {self.in_features} features, got {tuple(features.shape)}"
            )
        if labels.shape != features.shape[:1]:
            raise ValueError(f"expected {len(features)} labels, got {tuple(labels.shape)}")
        known = (labels >= 0) & (labels < self.out_features)
        if not bool(known.any()):
            raise ValueError("no pixel with a label in [0, num_classes) to fit the forest on")
        if not bool(known.all()):
            features, labels = features[known], labels[known]
        # Without a copy where the features are already float32 on the CPU: they can take
        # gigabytes, and scikit-learn reads float32 as it is.
        x = features.detach().float().cpu().contiguous().numpy()
        y = labels.detach().long().cpu().numpy()
        forest = self.estimator().fit(x, y)
        self.load_sklearn(forest)
        return forest

    def load_sklearn(self, forest: Any) -> None:
        """Copy a fitted scikit-learn forest (or single tree) of classifiers into the buffers.

        Args:
            forest: a fitted ``ExtraTreesClassifier``, ``RandomForestClassifier`` or
                ``DecisionTreeClassifier`` on ``in_features`` features whose classes are
                integers in ``[0, num_classes)``.
        """
        trees = getattr(forest, "estimators_", [forest])
        classes = np.asarray(forest.classes_)
        if classes.min() < 0 or classes.max() >= self.out_features:
            raise ValueError(f"classes {classes.tolist()} do not fit in {self.out_features}")
        if forest.n_features_in_ != self.in_features:
            raise ValueError(f"forest has {forest.n_features_in_} features, not {self.in_features}")
        parts: dict[str, list[np.ndarray]] = {name: [] for name in _BUFFERS[:5]}
        offset, levels = 0, 0
        for tree in trees:
            t = tree.tree_
            # Breadth-first order puts each node's right child right after its left one.
            order = _breadth_first(t.children_left, t.children_right)
            number = np.empty_like(order)
            number[order] = np.arange(len(order))
            leaf = t.children_left[order] < 0
            # A leaf is its own left child and its threshold is +inf: a fixed number of
            # steps leaves every pixel in its leaf, with no "is this a leaf" test.
            own = np.arange(len(order)) + offset
            parts["left"].append(np.where(leaf, own, number[t.children_left[order]] + offset))
            parts["feature"].append(np.where(leaf, 0, t.feature[order]))
            threshold = _float32_floor(np.where(leaf, 0.0, t.threshold[order]))
            parts["threshold"].append(np.where(leaf, np.float32(np.inf), threshold))
            parts["roots"].append(np.array([offset]))
            value = t.value[order, 0, : len(classes)].astype(np.float64)
            value = value / np.maximum(value.sum(1, keepdims=True), 1e-300)
            dist = np.zeros((len(order), self.out_features), dtype=np.float32)
            dist[:, classes] = value
            parts["distribution"].append(dist)
            offset += len(order)
            levels = max(levels, int(t.max_depth))
        device = self.feature.device
        for name, values in parts.items():
            tensor = torch.from_numpy(np.concatenate(values))
            setattr(self, name, tensor.to(device, torch.float32 if name == "threshold" else None))
        self.levels = torch.tensor(levels, dtype=torch.long, device=device)
        self._depth = int(levels)

    def leaves(self, features: torch.Tensor) -> torch.Tensor:
        """Leaf node (index into the buffers) each pixel reaches in each tree: ``N x T``.

        Args:
            features: ``N x D`` features.
        """
        count, width = features.shape
        flat = features.float().contiguous().view(-1)
        trees = len(self.roots)
        node = self.roots.repeat(count)  # pixel-major: N * T
        row = torch.arange(count, device=flat.device).repeat_interleave(trees) * width
        # One-dimensional index_select: several times faster on a CPU than gather or
        # advanced indexing with the same indices.
        for _ in range(self._depth):
            value = flat.index_select(0, row + self.feature.index_select(0, node))
            right = value > self.threshold.index_select(0, node)
            node = self.left.index_select(0, node) + right
        return node.view(count, trees)

    def log_proba(self, features: torch.Tensor) -> torch.Tensor:
        """``N x K`` log of the trees' mean class distribution (floored at ``1e-6``).

        Args:
            features: ``N x D`` features.
        """
        if not self.fitted:
            if not self._warned:
                warnings.warn(
                    "DepthForest is not fitted yet: it returns the uniform distribution",
                    stacklevel=3,
                )
                self._warned = True
            return features.new_full((len(features), self.out_features), -np.log(self.out_features))
        # The trees' mean distribution in one call (3x faster than gathering N x T x K).
        proba = F.embedding_bag(self.leaves(features), self.distribution, mode="mean")
        return (proba + 1e-6).log()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``N x K`` of ``N x D`` features, or ``B x K x H x W`` of maps.

        Args:
            features: ``N x D`` or ``B x D x H x W`` features.
        """
        if features.ndim == 2:
            return self.log_proba(features)
        if features.ndim != 4:
            raise ValueError(
                f"expected N x D or B x D x H x W features, got {tuple(features.shape)}"
            )
        flat = features.movedim(1, -1).reshape(-1, features.shape[1])
        scores = self.log_proba(flat)
        batch, _, height, width = features.shape
        return scores.view(batch, height, width, -1).permute(0, 3, 1, 2)

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # The buffers' sizes are the saved forest's: take them before the copy.
        for name in _BUFFERS:
            saved = state_dict.get(prefix + name)
            if isinstance(saved, torch.Tensor):
                current = getattr(self, name)
                setattr(self, name, torch.empty_like(saved, device=current.device))
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        self._depth = int(self.levels)


def _breadth_first(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Node numbers of a scikit-learn tree (children ``-1`` at leaves) in breadth-first
    order, siblings side by side: there, a node's right child follows its left one."""
    order, frontier = [], np.array([0])
    while len(frontier):
        order.append(frontier)
        inner = frontier[left[frontier] >= 0]
        frontier = np.stack([left[inner], right[inner]], 1).reshape(-1)
    return np.concatenate(order)


def _float32_floor(threshold: np.ndarray) -> np.ndarray:
    """The largest float32 at or below each (float64) threshold.

    scikit-learn compares float32 features with float64 thresholds; for a float32 ``x``,
    ``x <= t`` holds exactly when ``x <= floor32(t)``, so float32 inference takes the same
    branches (plain rounding could move a threshold above a feature value just past it).
    """
    rounded = threshold.astype(np.float32)
    above = rounded.astype(np.float64) > threshold
    rounded[above] = np.nextafter(rounded[above], np.float32(-np.inf))
    return rounded
