"""Deterministic, class-stratified splits shared by the real-digit sources."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

from lightning_synth.batch import IMAGE, LABEL, Batch, Stage
from lightning_synth.errors import InputError

__all__: list[str] = []  # helpers for the sources in this package, not a public API

_STAGES: tuple[str, ...] = ("train", "val", "test")


def _check_stage(stage: str) -> Stage:
    if stage not in _STAGES:
        raise InputError(f"stage must be one of {_STAGES}, got {stage!r}")
    return stage  # type: ignore[return-value]


def _check_fractions(**fractions: float) -> None:
    for name, value in fractions.items():
        if not 0.0 <= value < 1.0:
            raise InputError(f"{name} must lie in [0, 1), got {value}")
    if sum(fractions.values()) >= 1.0:
        raise InputError(
            f"{' + '.join(fractions)} must be below 1 so that some images are left for "
            f"training, got {' + '.join(map(str, fractions.values()))}"
        )


def _apportion(sizes: np.ndarray, fraction: float, capacity: np.ndarray) -> np.ndarray:
    """Per-class counts summing to ``round(sizes.sum() * fraction)``, each the floor or ceil
    of its class's share (largest remainders get the ceil; ties go to the lower class)."""
    quota = sizes * fraction
    counts = np.minimum(np.floor(quota).astype(np.int64), capacity)
    extra = math.floor(sizes.sum() * fraction + 0.5) - int(counts.sum())
    for c in sorted(range(len(sizes)), key=lambda c: -(quota[c] - math.floor(quota[c]))):
        if extra <= 0:
            break
        if counts[c] < capacity[c]:
            counts[c] += 1
            extra -= 1
    return counts


def _split_by_fractions(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Stratified, deterministic split of ``range(len(labels))`` into sorted index arrays.

    Stage sizes are ``round(N * fraction)``; each class gives each stage the floor or ceil
    of its share. Within each class (in sorted order) the positions are shuffled by one
    seeded generator; test takes the first, val the next, train the rest. The same labels
    and seed give the same split on every machine.
    """
    classes, sizes = np.unique(labels, return_counts=True)
    n_test = _apportion(sizes, test_fraction, sizes)
    n_val = _apportion(sizes, val_fraction, sizes - n_test)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {stage: [np.zeros(0, np.int64)] for stage in _STAGES}
    for label, test, val in zip(classes, n_test, n_val, strict=True):
        members = rng.permutation(np.flatnonzero(labels == label))
        parts["test"].append(members[:test])
        parts["val"].append(members[test : test + val])
        parts["train"].append(members[test + val :])
    return {stage: np.sort(np.concatenate(chunks)) for stage, chunks in parts.items()}


class _TensorDigits(Dataset):
    """Images held in memory (``N x C x H x W``, any dtype), divided by ``scale`` on access;
    items are samples ``{image, label}``."""

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor, scale: float
    ) -> None:
        self.images = images
        self.labels = labels
        self.indices = indices
        self.scale = scale

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Batch:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[Batch]:
        index = torch.as_tensor(indices, dtype=torch.long)
        images = self.images[index].to(torch.float32) / self.scale
        return [
            {IMAGE: image, LABEL: label}
            for image, label in zip(images.unbind(0), self.labels[index].unbind(0), strict=True)
        ]


def _subset(
    images: torch.Tensor, labels: torch.Tensor, idx: np.ndarray, scale: float
) -> _TensorDigits:
    index = torch.from_numpy(np.asarray(idx, dtype=np.int64))
    return _TensorDigits(images[index], labels[index], index, scale)
