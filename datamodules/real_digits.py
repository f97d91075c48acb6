"""Real handwritten digits: the "real" domain of the digit recipes.

Three :class:`~lightning_synth.datamodules.sources.DomainSource` implementations whose
datasets yield ``(image, label)``: ``image`` a float32 ``C x H x W`` tensor in [0, 1] at
the native size, ``label`` an ``int`` in ``0..num_classes-1``.

* :class:`SklearnDigits`: the 1,797 8x8 digits bundled with scikit-learn (offline default).
* :class:`TorchvisionDigits`: MNIST, USPS or SVHN files in torchvision's layout.
* :class:`DigitFolder`: your own PNG/JPEG/BMP images, one subfolder per class.

Every dataset also carries ``labels`` (long tensor, one per item) and either ``indices``
(position of each item in the source's full array or official split) or ``files`` (path
of each item), so a user can see exactly which images a stage holds.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .sources import DomainSource, Stage

__all__ = ["SklearnDigits", "TorchvisionDigits", "DigitFolder"]

_STAGES: tuple[str, ...] = ("train", "val", "test")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
# PIL modes that _to_tensor converts (what PNG, JPEG and BMP files open as).
_MODES = frozenset(
    "1 L LA La P PA RGB RGBA RGBa RGBX CMYK YCbCr LAB HSV I I;16 I;16B I;16L I;16N".split()
)


def _check_stage(stage: str) -> Stage:
    if stage not in _STAGES:
        raise ValueError(f"stage must be one of {_STAGES}, got {stage!r}")
    return stage  # type: ignore[return-value]


def _check_fractions(**fractions: float) -> None:
    for name, value in fractions.items():
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must lie in [0, 1), got {value}")
    if sum(fractions.values()) >= 1.0:
        raise ValueError(
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
    """Images held in memory (``N x C x H x W``, any dtype), divided by ``scale`` on access."""

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor, scale: float
    ) -> None:
        self.images = images
        self.labels = labels
        self.indices = indices
        self.scale = scale

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index].to(torch.float32) / self.scale, int(self.labels[index])


def _subset(
    images: torch.Tensor, labels: torch.Tensor, idx: np.ndarray, scale: float
) -> _TensorDigits:
    index = torch.from_numpy(np.asarray(idx, dtype=np.int64))
    return _TensorDigits(images[index], labels[index], index, scale)


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
        raise ValueError(
            f"cannot read {path}: {err}; the file is corrupt or truncated, delete it and "
            f"fetch it again"
        ) from err
    offset = 4 + 4 * ndim
    if len(data) < offset or data[:3] != b"\x00\x00\x08" or data[3] != ndim:
        raise ValueError(f"{path} is not an IDX file of {ndim}-d unsigned bytes (bad header)")
    shape = struct.unpack(f">{ndim}I", data[4:offset])
    if len(data) != offset + math.prod(shape):
        raise ValueError(
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
            raise ValueError(f"name must be one of {tuple(_OFFICIAL_FILES)}, got {name!r}")
        _check_fractions(val_fraction=val_fraction)
        ranges = {"train_range": train_range, "test_range": test_range}
        for arg, value in ranges.items():
            if value is not None and not (len(value) == 2 and 0 <= value[0] < value[1]):
                raise ValueError(f"{arg} must be (start, stop) with 0 <= start < stop, got {value}")
        if train_split == test_split:
            overlap = train_range is None or test_range is None
            if not overlap:
                overlap = max(train_range[0], test_range[0]) < min(train_range[1], test_range[1])
            if overlap:
                raise ValueError(
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
                raise ValueError(
                    f"{image_path} holds {len(images)} images but {label_path} holds "
                    f"{len(labels)} labels; the files do not belong together"
                )
        else:
            try:
                data = self._torchvision_dataset(split, download=False)
            except (RuntimeError, OSError, EOFError, ValueError) as err:
                raise ValueError(
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
            raise ValueError(
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


def _to_tensor(image: Image.Image) -> torch.Tensor:
    """A PIL image as float32 ``C x H x W`` in [0, 1]; alpha is composited onto white."""
    if image.mode in ("P", "PA", "RGBa", "RGBX"):
        image = image.convert("RGBA")
    elif image.mode == "La":
        image = image.convert("LA")
    elif image.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGB")
    if image.mode == "1":
        array = np.asarray(image, dtype=np.float32)
    elif image.mode in ("L", "LA", "RGB", "RGBA"):
        array = np.asarray(image, dtype=np.float32) / 255.0
    elif image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):  # 16-bit grayscale PNG
        array = np.clip(np.asarray(image).astype(np.float32) / 65535.0, 0.0, 1.0)
    else:
        raise ValueError(f"unsupported image mode {image.mode!r}")
    if array.ndim == 2:
        array = array[:, :, None]
    if image.mode in ("LA", "RGBA"):
        alpha = array[:, :, -1:]
        array = array[:, :, :-1] * alpha + (1.0 - alpha)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


# What PIL raises for unreadable, truncated or corrupt files (and _to_tensor for odd modes).
_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def _read_image(path: str, channels: int | None) -> torch.Tensor:
    try:
        with Image.open(path) as image:
            tensor = _to_tensor(image)
    except _IMAGE_ERRORS as err:
        raise ValueError(
            f"cannot read image {path}: {err}. Replace or delete the file; with "
            f"verify='full' (the default) DigitFolder.prepare() finds such files before training"
        ) from err
    if channels == 1 and tensor.shape[0] == 3:  # ITU-R 601-2 luma, as PIL's "L"
        weights = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
        tensor = (tensor * weights).sum(0, keepdim=True)
    elif channels == 3 and tensor.shape[0] == 1:
        tensor = tensor.expand(3, -1, -1).contiguous()
    return tensor


class _FileDigits(Dataset):
    """Images read from files on access."""

    def __init__(self, files: list[str], labels: list[int], channels: int | None) -> None:
        self.files = files
        self.labels = torch.tensor(labels, dtype=torch.long)
        self.channels = channels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return _read_image(self.files[index], self.channels), int(self.labels[index])


class DigitFolder(DomainSource):
    """Your own digit images: a folder with one subfolder per class.

    Two layouts:

    * ``root/<label>/*.png``: split into train/val/test by ``val_fraction`` and
      ``test_fraction``, stratified by class and seeded (files are taken in sorted order).
    * ``root/train/<label>/...``, ``root/val/<label>/...``, ``root/test/<label>/...``: used
      as given (the fractions are ignored); without ``val/``, val is a stratified
      ``val_fraction`` of ``train/``.

    Class folders must be named by their integer label, ``0`` to ``num_classes - 1``
    (leading zeros allowed; classes may be missing). Names are *not* mapped by sort order,
    since that would silently relabel, e.g., folders ``3`` and ``7`` as 0 and 1 and disagree
    with the rendered domain. Files ending in .png, .jpg, .jpeg or .bmp (any case) are read
    with PIL: 1-bit, 8-bit and 16-bit grayscale, RGB and palette images; alpha is composited
    onto white; Pillow reads 16-bit RGB PNGs at 8 bits. Hidden files and folders (``.*``)
    are skipped.
    """

    def __init__(
        self,
        root: str,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        seed: int = 0,
        channels: Literal[1, 3] | None = None,
        num_classes: int = 10,
        verify: Literal["none", "quick", "full"] = "full",
    ) -> None:
        """Build the source (reads nothing yet).

        Args:
            root: folder holding the class folders, or ``train/``, ``val/``, ``test/``.
            val_fraction: share of each class that goes to val (flat layout, or when
                ``val/`` is absent).
            test_fraction: share of each class that goes to test (flat layout only).
            seed: seed of the split; the same seed gives the same split everywhere.
            channels: convert every image to 1 (luma) or 3 channels; ``None`` keeps each
                file's own (1 for grayscale, 3 for colour).
            num_classes: number of classes; class folders are named ``0`` to ``num_classes-1``.
            verify: what ``prepare()`` checks in every file before training starts:
                ``full`` decodes every image (about 0.06 ms per 28x28 PNG); ``quick`` runs
                PIL's ``Image.verify`` (header and PNG checksums; misses truncated JPEG and
                BMP files); ``none`` only checks the folder layout.
        """
        _check_fractions(val_fraction=val_fraction, test_fraction=test_fraction)
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.root = root
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self.channels = channels
        self._num_classes = num_classes
        self.verify = verify
        self._stages: dict[str, tuple[list[str], list[int]]] | None = None

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def _class_files(self, folder: Path) -> tuple[list[str], list[int]]:
        names = sorted(e.name for e in os.scandir(folder) if e.is_dir() and e.name[0] != ".")
        if not names:
            raise ValueError(
                f"{folder} has no class subfolders; put each class's images in a subfolder "
                f"named by its label ({folder}/0/, {folder}/1/, ...), optionally inside "
                f"train/, val/ and test/"
            )
        bad = [n for n in names if not (n.isascii() and n.isdigit() and int(n) < self.num_classes)]
        if bad:
            raise ValueError(
                f"class folders in {folder} must be named by their integer label, 0 to "
                f"{self.num_classes - 1}; got {bad}. Rename them (or set num_classes)"
            )
        if len({int(n) for n in names}) != len(names):
            raise ValueError(f"two class folders in {folder} name the same label: {names}")
        files: list[str] = []
        labels: list[int] = []
        for name in names:
            found = sorted(
                e.path
                for e in os.scandir(folder / name)
                if e.is_file() and e.name[0] != "." and e.name.lower().endswith(_IMAGE_SUFFIXES)
            )
            if not found:
                raise ValueError(
                    f"class folder {folder / name} has no images ({', '.join(_IMAGE_SUFFIXES)}); "
                    f"add images or remove the folder"
                )
            files += found
            labels += [int(name)] * len(found)
        return files, labels

    def _scan(self) -> dict[str, tuple[list[str], list[int]]]:
        """Files and labels of each stage present (cached); raises on a broken layout."""
        if self._stages is not None:
            return self._stages
        root = Path(self.root)
        if not root.exists():
            raise FileNotFoundError(
                f"DigitFolder root {root} does not exist; create it with one subfolder per "
                f"class ({root}/0/, {root}/1/, ...) holding the images, or fix root"
            )
        if not root.is_dir():
            raise NotADirectoryError(f"DigitFolder root {root} is a file, not a folder")
        subfolders = {e.name for e in os.scandir(root) if e.is_dir() and e.name[0] != "."}
        stage_folders = subfolders & set(_STAGES)
        stages: dict[str, tuple[list[str], list[int]]] = {}
        if stage_folders:
            if subfolders - stage_folders:
                raise ValueError(
                    f"{root} mixes stage folders {sorted(stage_folders)} with other folders "
                    f"{sorted(subfolders - stage_folders)}; use either {root}/<label>/ or "
                    f"{root}/train|val|test/<label>/"
                )
            for stage in sorted(stage_folders):
                stages[stage] = self._class_files(root / stage)
            carve = {"train"} if "val" not in stages and "train" in stages else set()
            val_fraction, test_fraction = self.val_fraction, 0.0
        else:
            stages["all"] = self._class_files(root)
            carve = {"all"}
            val_fraction, test_fraction = self.val_fraction, self.test_fraction
        for source in carve:
            files, labels = stages.pop(source)
            split = _split_by_fractions(np.array(labels), val_fraction, test_fraction, self.seed)
            for stage, idx in split.items():
                if source == "all" or stage != "test":
                    stages[stage] = [files[i] for i in idx], [labels[i] for i in idx]
        self._stages = stages
        return stages

    def prepare(self) -> None:
        """Check the layout and, as ``verify`` says, every image, naming any bad file."""
        stages = self._scan()
        if self.verify == "none":
            return
        bad = []
        for files, _ in stages.values():
            for path in files:
                try:
                    with Image.open(path) as image:
                        if self.verify == "full":
                            _to_tensor(image)
                        elif image.mode not in _MODES:
                            raise ValueError(f"unsupported image mode {image.mode!r}")
                        else:
                            image.verify()
                except _IMAGE_ERRORS as err:
                    bad.append(f"{path} ({err})")
        if bad:
            raise ValueError(
                f"{len(bad)} unreadable image(s) under {self.root}: {'; '.join(bad[:20])}"
                f"{' ...' if len(bad) > 20 else ''}. Replace or delete them"
            )

    def dataset(self, stage: Stage) -> Dataset:
        stage = _check_stage(stage)
        stages = self._scan()
        if stage not in stages:
            raise FileNotFoundError(
                f"{Path(self.root, stage)} does not exist: {self.root} has the train/val/test "
                f"layout but no {stage}/ folder; add {Path(self.root, stage)}/<label>/ images"
            )
        files, labels = stages[stage]
        return _FileDigits(files, labels, self.channels)
