"""Real handwritten digits: the "real" domain of the digit recipes.

Three :class:`~lightning_synth.datamodules.sources.DomainSource` implementations whose
datasets yield ``(image, label)``: ``image`` a float32 ``C x H x W`` tensor in [0, 1] at
the native size, ``label`` an ``int`` in ``0..num_classes-1``.

* :class:`SklearnDigits`: the 1,797 8x8 digits bundled with scikit-learn (offline default).
* :class:`TorchvisionDigits`: MNIST, USPS or SVHN files in torchvision's layout.
* :class:`~lightning_synth.datamodules.digit_folder.DigitFolder` (in ``digit_folder.py``):
  your own PNG/JPEG/BMP images, one subfolder per class.

Every dataset also carries ``labels`` (long tensor, one per item) and either ``indices``
(position of each item in the source's full array or official split) or ``files`` (path
of each item), so a user can see exactly which images a stage holds.
"""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from lightning_synth.datamodules.sources import DomainSource, Stage
from lightning_synth.datamodules.splits import (
    _check_fractions,
    _check_stage,
    _split_by_fractions,
    _subset,
    _TensorDigits,
)
from lightning_synth.errors import InputError

__all__ = ["SklearnDigits", "TorchvisionDigits"]


class SklearnDigits(DomainSource):
    """The 1,797 real 8x8 handwritten digits bundled with scikit-learn (1 channel).

    Needs no download, so it is the default real domain. Pixel values 0..16 are scaled to
    [0, 1]. The split into train/val/test is stratified by class and depends only on the
    fractions and ``seed``. The data is loaded once, on the first ``dataset`` call.
    """

    def __init__(
        self, val_fraction: float = 0.2, test_fraction: float = 0.3, seed: int = 0
    ) -> None:
        """Build the source.

        Args:
            val_fraction: share of each class that goes to the validation set.
            test_fraction: share of each class that goes to the test set.
            seed: seed of the split; the same seed gives the same split everywhere.
        """
        _check_fractions(val_fraction=val_fraction, test_fraction=test_fraction)
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self._datasets: dict[str, _TensorDigits] | None = None

    def __getstate__(self) -> dict:
        # Never carry loaded pixels when pickled (e.g. as a saved hyperparameter).
        return {**self.__dict__, "_datasets": None}

    def dataset(self, stage: Stage) -> Dataset:
        stage = _check_stage(stage)
        if self._datasets is None:
            from sklearn.datasets import load_digits  # slow import, only when used

            digits = load_digits()
            images = torch.from_numpy(digits.images.astype(np.float32)).unsqueeze(1)
            labels = torch.from_numpy(digits.target.astype(np.int64))
            split = _split_by_fractions(
                digits.target, self.val_fraction, self.test_fraction, self.seed
            )
            self._datasets = {s: _subset(images, labels, idx, 16.0) for s, idx in split.items()}
        return self._datasets[stage]


# Files each official split needs, relative to ``root`` (torchvision's layout).
_OFFICIAL_FILES: dict[str, dict[str, tuple[str, ...]]] = {
    "MNIST": {
        "train": ("MNIST/raw/train-images-idx3-ubyte.gz", "MNIST/raw/train-labels-idx1-ubyte.gz"),
        "test": ("MNIST/raw/t10k-images-idx3-ubyte.gz", "MNIST/raw/t10k-labels-idx1-ubyte.gz"),
    },
    "USPS": {"train": ("usps.bz2",), "test": ("usps.t.bz2",)},
    "SVHN": {"train": ("train_32x32.mat",), "test": ("test_32x32.mat",)},
}
_WHERE_FROM = {
    "MNIST": "https://yann.lecun.com/exdb/mnist/; gunzipped copies work too",
    "USPS": "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass.html#usps",
    "SVHN": "http://ufldl.stanford.edu/housenumbers/ (format 2, cropped digits)",
}


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes (MNIST's format), gzipped or not."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as file:
            data = file.read()
    except (OSError, EOFError) as err:
        raise InputError(
            f"cannot read {path}: {err}; the file is corrupt or truncated, delete it and "
            f"fetch it again"
        ) from err
    offset = 4 + 4 * ndim
    if len(data) < offset or data[:3] != b"\x00\x00\x08" or data[3] != ndim:
        raise InputError(f"{path} is not an IDX file of {ndim}-d unsigned bytes (bad header)")
    shape = struct.unpack(f">{ndim}I", data[4:offset])
    if len(data) != offset + math.prod(shape):
        raise InputError(
            f"{path} holds {len(data) - offset} bytes of data but its header says {shape}; "
            f"the file is truncated or corrupt, delete it and fetch it again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape).copy()


class TorchvisionDigits(DomainSource):
    """MNIST, USPS or SVHN digits, read from files in torchvision's layout.

    By default train and val come from the official train split (val is a stratified,
    seeded ``val_fraction`` of it) and test from the official test split. Any stage can
    instead take an index range of either official split, e.g. the MNIST-test protocol
    "images 0-4999 train, 5000-9999 evaluation" is ``train_split="test"``,
    ``train_range=(0, 5000)``, ``test_range=(5000, 10000)``. Ranges are half-open
    ``[start, stop)``. Train and test may not overlap.

    Files, under ``root`` (only the splits in use are needed):

    * MNIST: ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` (or gunzipped).
      Read here directly: torchvision 0.29's own loader insists on all four gunzipped files.
    * USPS: ``usps.bz2`` (train), ``usps.t.bz2`` (test).
    * SVHN: ``train_32x32.mat``, ``test_32x32.mat`` (MD5-checked by torchvision; needs scipy).

    MNIST and USPS give 1 channel (28x28, 16x16), SVHN 3 channels (32x32); SVHN's label
    10 is digit 0 (torchvision maps it).
    """

    def __init__(
        self,
        name: Literal["MNIST", "USPS", "SVHN"] = "MNIST",
        root: str = "data",
        download: bool = False,
        train_split: Literal["train", "test"] = "train",
        train_range: tuple[int, int] | None = None,
        val_fraction: float = 0.1,
        test_split: Literal["train", "test"] = "test",
        test_range: tuple[int, int] | None = None,
        seed: int = 0,
    ) -> None:
        """Build the source (reads nothing yet).

        Args:
            name: which data set: ``MNIST``, ``USPS`` or ``SVHN``.
            root: folder holding the files in torchvision's layout (see the class docstring).
            download: fetch missing files in ``prepare()`` (needs internet).
            train_split: official split that train and val are drawn from.
            train_range: half-open index range ``[start, stop)`` of ``train_split`` that
                train and val share; ``None`` for the whole split.
            val_fraction: share of each class of the train pool held out for validation.
            test_split: official split the test set comes from.
            test_range: half-open index range ``[start, stop)`` of ``test_split``; ``None``
                for the whole split.
            seed: seed of the train/val division.
        """
        if name not in _OFFICIAL_FILES:
            raise InputError(f"name must be one of {tuple(_OFFICIAL_FILES)}, got {name!r}")
        _check_fractions(val_fraction=val_fraction)
        ranges = {"train_range": train_range, "test_range": test_range}
        for arg, value in ranges.items():
            if value is not None and not (len(value) == 2 and 0 <= value[0] < value[1]):
                raise InputError(f"{arg} must be (start, stop) with 0 <= start < stop, got {value}")
        if train_split == test_split:
            overlap = train_range is None or test_range is None
            if not overlap:
                overlap = max(train_range[0], test_range[0]) < min(train_range[1], test_range[1])
            if overlap:
                raise InputError(
                    f"train and test both come from the official {train_split!r} split and "
                    f"overlap (train_range={train_range}, test_range={test_range}); give "
                    f"disjoint ranges, or take them from different splits"
                )
        self.name = name
        self.root = root
        self.download = download
        self.train_split = train_split
        self.train_range = None if train_range is None else tuple(train_range)
        self.val_fraction = val_fraction
        self.test_split = test_split
        self.test_range = None if test_range is None else tuple(test_range)
        self.seed = seed
        self._loaded: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __getstate__(self) -> dict:
        # Never carry loaded pixels when pickled (e.g. as a saved hyperparameter).
        return {**self.__dict__, "_loaded": {}}

    def _splits_in_use(self) -> list[str]:
        return sorted({self.train_split, self.test_split})

    def _missing(self, split: str) -> list[Path]:
        missing = []
        for relative in _OFFICIAL_FILES[self.name][split]:
            path = Path(self.root, relative)
            if not (path.is_file() or (path.suffix == ".gz" and path.with_suffix("").is_file())):
                missing.append(path)
        return missing

    def _not_found(self, missing: list[Path]) -> str:
        files = ", ".join(str(path) for path in missing)
        return (
            f"{self.name} files not found: missing {files}. Put the official files there "
            f"(from {_WHERE_FROM[self.name]}), or pass download=true to fetch them"
        )

    def prepare(self) -> None:
        """Check that the files of every split in use exist; download them if asked."""
        missing = [path for split in self._splits_in_use() for path in self._missing(split)]
        if missing and self.download:
            try:
                for split in self._splits_in_use():
                    if self._missing(split):
                        self._torchvision_dataset(split, download=True)
            except (RuntimeError, OSError) as err:
                raise FileNotFoundError(
                    f"{self._not_found(missing)}. Downloading to {self.root} failed "
                    f"(offline?): {err}"
                ) from err
            missing = [path for split in self._splits_in_use() for path in self._missing(split)]
        if missing:
            raise FileNotFoundError(self._not_found(missing))

    def _torchvision_dataset(self, split: str, download: bool):
        from torchvision import datasets

        if self.name == "MNIST":
            return datasets.MNIST(self.root, train=split == "train", download=download)
        if self.name == "USPS":
            return datasets.USPS(self.root, train=split == "train", download=download)
        return datasets.SVHN(self.root, split=split, download=download)

    def _load(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (uint8 ``N x C x H x W``) and labels of an official split, cached."""
        if split in self._loaded:
            return self._loaded[split]
        missing = self._missing(split)
        if missing:
            raise FileNotFoundError(self._not_found(missing))
        path = Path(self.root, _OFFICIAL_FILES[self.name][split][0])
        if self.name == "MNIST":
            # Prefer the gunzipped copies that a torchvision download leaves beside the .gz.
            image_path, label_path = (
                gz.with_suffix("") if gz.with_suffix("").is_file() else gz
                for gz in (Path(self.root, name) for name in _OFFICIAL_FILES["MNIST"][split])
            )
            images, labels = _read_idx(image_path, 3)[:, None], _read_idx(label_path, 1)
            if len(images) != len(labels):
                raise InputError(
                    f"{image_path} holds {len(images)} images but {label_path} holds "
                    f"{len(labels)} labels; the files do not belong together"
                )
        else:
            try:
                data = self._torchvision_dataset(split, download=False)
            except (RuntimeError, OSError, EOFError, ValueError) as err:
                raise InputError(
                    f"cannot read {path} ({err}); it is corrupt, truncated or fails its MD5 "
                    f"check: delete it and fetch it again (download=true)"
                ) from err
            if self.name == "USPS":
                images, labels = np.asarray(data.data)[:, None], np.asarray(data.targets)
            else:
                images, labels = np.asarray(data.data), np.asarray(data.labels)
        loaded = torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))
        self._loaded[split] = loaded
        return loaded

    def _pool(
        self, split: str, index_range: tuple[int, int] | None, size: int, arg: str
    ) -> np.ndarray:
        if index_range is None:
            return np.arange(size)
        if index_range[1] > size:
            raise InputError(
                f"{arg}={index_range} runs past the end of {self.name}'s official {split!r} "
                f"split, which holds {size} images"
            )
        return np.arange(*index_range)

    def dataset(self, stage: Stage) -> Dataset:
        stage = _check_stage(stage)
        if stage == "test":
            images, labels = self._load(self.test_split)
            pool = self._pool(self.test_split, self.test_range, len(labels), "test_range")
            return _subset(images, labels, pool, 255.0)
        images, labels = self._load(self.train_split)
        pool = self._pool(self.train_split, self.train_range, len(labels), "train_range")
        pool_labels = labels[torch.from_numpy(pool)].numpy()
        parts = _split_by_fractions(pool_labels, self.val_fraction, 0.0, self.seed)
        return _subset(images, labels, pool[parts[stage]], 255.0)
