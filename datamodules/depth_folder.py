"""``DepthFolder``: real depth frames on disk (a depth camera's recordings) as a depth source.

Layout::

    root/depth/<name>.png    16-bit single-channel PNG, millimetres (0 = no reading)
    root/depth/<name>.npy    or a float array in metres (0 or NaN = no reading)
    root/labels/<name>.png   optional: 8-bit part indices 0-30 (PART_NAMES), 255 = background

Units are checked, since a frame in the wrong unit trains without complaint and
predicts nonsense: a PNG whose largest depth is below 20 holds metres, not millimetres;
an ``.npy`` whose largest depth is above 20 holds millimetres, not metres. Either error
says how to convert.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from lightning_synth.batch import (
    IGNORE_LABEL,
    IMAGE,
    INTRINSICS,
    JOINTS,
    REAL,
    VALID,
    Batch,
    Stage,
    make_sample,
)
from lightning_synth.datamodules.body import DepthSource
from lightning_synth.errors import InputError
from lightning_synth.rendering.body import JOINT_NAMES, PART_NAMES

__all__ = ["DepthFolder", "read_depth", "read_part_labels"]

#: Largest plausible depth in metres of a body-tracking frame; beyond it, the unit is wrong.
_MAX_METRES = 20.0
_BACKGROUND_LABEL = 255


def read_depth(path: str | Path) -> np.ndarray:
    """``H x W`` float32 depth in metres (0 = no reading) from a 16-bit PNG (mm) or ``.npy`` (m).

    Args:
        path: the file.
    """
    path = Path(path)
    if path.suffix.lower() == ".png":
        with Image.open(path) as image:
            if image.mode in ("1", "L", "P", "LA", "PA"):
                raise InputError(
                    f"{path} is an 8-bit PNG, which cannot hold depth; save depth PNGs as "
                    f"16-bit single-channel images of millimetres (uint16)"
                )
            if image.mode not in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
                raise InputError(
                    f"{path} is a {len(image.getbands())}-channel {image.mode} PNG; depth PNGs "
                    f"must be 16-bit single-channel millimetres (a colour-mapped depth picture "
                    f"cannot be turned back into depth)"
                )
            millimetres = np.asarray(image).astype(np.float32)
        largest = float(millimetres.max(initial=0))
        if 0 < largest < _MAX_METRES:
            raise InputError(
                f"{path}: the largest depth is {largest:g}, which looks like metres; 16-bit "
                f"PNGs must hold millimetres (2500 for 2.5 m). Multiply by 1000 before saving, "
                f"or save float metres as .npy"
            )
        return millimetres / 1000.0
    if path.suffix.lower() != ".npy":
        raise InputError(f"{path}: depth frames must be .png (16-bit mm) or .npy (float m)")
    array = np.load(path, allow_pickle=False)
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):
        array = array.squeeze(0 if array.shape[0] == 1 else -1)
    if array.ndim != 2:
        raise InputError(f"{path} holds an array of shape {array.shape}; expected H x W depth")
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(
            f"{path} holds {array.dtype} values; .npy frames must be float metres. If these "
            f"are millimetres, divide by 1000 and save as float32 (or save a 16-bit PNG)"
        )
    metres = np.nan_to_num(array.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if (metres < 0).any():
        raise InputError(f"{path} has negative depths; use 0 (or NaN) for 'no reading'")
    largest = float(metres.max(initial=0))
    if largest > _MAX_METRES:
        raise InputError(
            f"{path}: the largest depth is {largest:g}, which looks like millimetres; .npy "
            f"frames must hold metres. Divide by 1000 before saving"
        )
    return metres


def read_part_labels(path: str | Path) -> np.ndarray:
    """``H x W`` int64 part labels (-1 = background) from an 8-bit part-index PNG.

    Args:
        path: PNG whose pixels are part indices 0-30 (``PART_NAMES`` order), 255 = background.
    """
    with Image.open(path) as image:
        if image.mode not in ("L", "P"):
            raise InputError(
                f"{path} is a {image.mode} image; label PNGs must be 8-bit single-channel "
                f"part indices 0-{len(PART_NAMES) - 1} with {_BACKGROUND_LABEL} for background"
            )
        labels = np.asarray(image).astype(np.int64)
    bad = (labels >= len(PART_NAMES)) & (labels != _BACKGROUND_LABEL)
    if bad.any():
        raise InputError(
            f"{path} has label values {sorted(set(labels[bad].tolist()))[:5]}; part indices are "
            f"0-{len(PART_NAMES) - 1} (PART_NAMES order) and {_BACKGROUND_LABEL} is background"
        )
    labels[labels == _BACKGROUND_LABEL] = IGNORE_LABEL
    return labels


def _files(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        path = Path(entry.path)
        if entry.is_file() and entry.name[0] != "." and path.suffix.lower() in suffixes:
            if path.stem in found:
                raise InputError(f"two frames in {folder} are named {path.stem!r}; keep one")
            found[path.stem] = path
    return found


def _frame_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` of a frame from its header, without decoding the pixels."""
    if path.suffix.lower() == ".npy":
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
        if len(shape) == 3 and 1 in (shape[0], shape[-1]):
            shape = shape[1:] if shape[0] == 1 else shape[:-1]
        return (int(shape[0]), int(shape[1])) if len(shape) == 2 else (-1, -1)
    with Image.open(path) as image:
        width, height = image.size
    return height, width


def _check_sizes(depth: list[Path], labels: list[Path] | None, native: tuple[int, int]) -> None:
    """Every depth frame has the first frame's size, and every label PNG its frame's,
    checked before training from the files' headers: a frame of another size would
    otherwise stop the run when a batch first reaches it."""
    odd = [(path, size) for path in depth if (size := _frame_size(path)) != native]
    if odd:
        shown = ", ".join(f"{path.name} ({h} x {w})" for path, (h, w) in odd[:3])
        raise InputError(
            f"{len(odd)} frame(s) in {depth[0].parent} differ in size from the first frame "
            f"{depth[0].name} ({native[0]} x {native[1]}): {shown}; all frames of a folder "
            f"must share one size (crop or resize them first)"
        )
    for label, frame in zip(labels, depth, strict=True) if labels is not None else ():
        if (size := _frame_size(label)) != native:
            raise InputError(
                f"{label} is {size[0]} x {size[1]} but its depth frame {frame.name} is "
                f"{native[0]} x {native[1]}"
            )


class _DepthFrames(Dataset):
    """Frames of a :class:`DepthFolder` at ``height x width`` (nearest-neighbour resize)."""

    def __init__(
        self,
        depth: Sequence[Path],
        labels: Sequence[Path] | None,
        height: int,
        width: int,
        native: tuple[int, int],
        intrinsics: Sequence[float],
        max_depth: float | None,
    ) -> None:
        self.depth, self.labels = list(depth), None if labels is None else list(labels)
        self.size, self.native, self.max_depth = (height, width), native, max_depth
        (h, w), (fx, fy, cx, cy) = native, intrinsics
        sx, sy = width / w, height / h
        self.intrinsics = torch.tensor(
            [fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5], dtype=torch.float32
        )

    def __len__(self) -> int:
        return len(self.depth)

    def __getitem__(self, index: int) -> Batch:
        path = self.depth[index]
        depth = read_depth(path)
        if depth.shape != self.native:
            raise InputError(
                f"{path} is {depth.shape[0]} x {depth.shape[1]} but the folder's first frame is "
                f"{self.native[0]} x {self.native[1]}; all frames of a folder must share one size"
            )
        if self.max_depth is not None:
            depth = np.where(depth > self.max_depth, 0.0, depth).astype(np.float32)
        labels = np.full(depth.shape, IGNORE_LABEL, dtype=np.int64)
        if self.labels is not None:
            labels = read_part_labels(self.labels[index])
            if labels.shape != depth.shape:
                raise InputError(
                    f"{self.labels[index]} is {labels.shape[0]} x {labels.shape[1]} but its depth "
                    f"frame {path.name} is {depth.shape[0]} x {depth.shape[1]}"
                )
        image = torch.from_numpy(depth)[None]
        label = torch.from_numpy(labels)
        if self.size != self.native:
            image = F.interpolate(image[None], size=self.size, mode="nearest-exact")[0]
            label = F.interpolate(label[None, None].float(), size=self.size, mode="nearest-exact")
            label = label[0, 0].long()
        label = torch.where(image[0] > 0, label, IGNORE_LABEL)
        item = make_sample(image, label, REAL)
        item[JOINTS] = torch.full((len(JOINT_NAMES), 3), float("nan"))
        item[INTRINSICS] = self.intrinsics.clone()
        item[VALID] = item[IMAGE][0] > 0
        return item


class DepthFolder(DepthSource):
    """Real depth frames from a folder (see the module docstring for the layout and units).

    Frames are taken in sorted-name order and split into contiguous blocks (train first,
    then val, then test), so neighbouring frames of one recording stay in one split.
    Frames whose size differs from the DataModule's are resized (nearest neighbour, the
    intrinsics follow) when the aspect ratio matches; other sizes are an error. Depth
    cameras see walls and floor: remove them first (depth 0), or cut them with
    ``max_depth``. Without ``labels/`` the frames are unlabelled (all ``-1``); with it,
    every frame needs its label PNG. Frames carry no joints (NaN).

    Args:
        root: folder holding ``depth/`` and optionally ``labels/``.
        val_fraction: share of the frames for validation.
        test_fraction: share of the frames for test (the last ones).
        intrinsics: ``fx, fy, cx, cy`` in pixels at the files' own resolution; ``None``
            assumes a Kinect v1 (58.5 degrees horizontal field of view, centred).
        max_depth: readings farther than this many metres become background; ``None``
            keeps all.
    """

    def __init__(
        self,
        root: str,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        intrinsics: tuple[float, float, float, float] | None = None,
        max_depth: float | None = None,
    ) -> None:
        if min(val_fraction, test_fraction) < 0 or val_fraction + test_fraction > 1:
            raise InputError(
                f"val_fraction and test_fraction must be >= 0 and sum to at most 1, got "
                f"{val_fraction} and {test_fraction}"
            )
        if intrinsics is not None and len(intrinsics) != 4:
            raise InputError(f"intrinsics must be (fx, fy, cx, cy), got {intrinsics}")
        self.root = Path(root)
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.intrinsics = None if intrinsics is None else tuple(float(v) for v in intrinsics)
        self.max_depth = max_depth
        self._scanned: tuple[list[Path], list[Path] | None, tuple[int, int]] | None = None

    def _scan(self) -> tuple[list[Path], list[Path] | None, tuple[int, int]]:
        if self._scanned is not None:
            return self._scanned
        if not self.root.is_dir():
            raise FileNotFoundError(f"depth folder {self.root} does not exist")
        folder = self.root / "depth"
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{self.root} has no depth/ folder; put the frames in {folder}/ "
                f"(16-bit PNG millimetres or .npy metres) and labels, if any, in labels/"
            )
        depth = _files(folder, (".png", ".npy"))
        if not depth:
            raise InputError(f"{folder} holds no .png or .npy depth frames")
        labels = None
        if (self.root / "labels").is_dir():
            found = _files(self.root / "labels", (".png",))
            missing = [name for name in depth if name not in found]
            if missing:
                raise InputError(
                    f"{self.root / 'labels'} lacks the label PNG of {len(missing)} of "
                    f"{len(depth)} depth frames (e.g. {', '.join(missing[:3])}); give every "
                    f"frame a label PNG with the same name, or remove labels/ to use the "
                    f"frames unlabelled"
                )
            labels = [found[name] for name in depth]
        native: tuple[int, int] = read_depth(next(iter(depth.values()))).shape  # type: ignore[assignment]
        _check_sizes(list(depth.values()), labels, native)
        self._scanned = (list(depth.values()), labels, native)
        return self._scanned

    def prepare(self) -> None:
        self._scan()

    def _native_intrinsics(self, native: tuple[int, int]) -> tuple[float, float, float, float]:
        if self.intrinsics is not None:
            return self.intrinsics  # type: ignore[return-value]
        height, width = native
        focal = (width / 2) / math.tan(math.radians(58.5) / 2)
        return (focal, focal, (width - 1) / 2, (height - 1) / 2)

    def dataset(self, stage: Stage, height: int, width: int) -> _DepthFrames:
        depth, labels, native = self._scan()
        if abs((native[0] / native[1]) / (height / width) - 1) > 0.01:
            raise InputError(
                f"the frames in {self.root} are {native[0]} x {native[1]}, whose aspect ratio "
                f"differs from the DataModule's {height} x {width}; crop the frames or set "
                f"height and width to the same aspect ratio"
            )
        count = len(depth)
        num_test = round(count * self.test_fraction)
        num_val = round(count * self.val_fraction)
        bounds = {
            "train": (0, count - num_val - num_test),
            "val": (count - num_val - num_test, count - num_test),
            "test": (count - num_test, count),
        }[stage]
        chosen = slice(*bounds)
        return _DepthFrames(
            depth[chosen],
            None if labels is None else labels[chosen],
            height,
            width,
            native,
            self._native_intrinsics(native),
            self.max_depth,
        )
