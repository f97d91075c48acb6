"""``NoisyImageDataModule``: clean photographs through a noise model, and real noisy ones.

The rendered side (domain 0) is a folder of clean photographs (by default scikit-image's
bundled ones, so every config runs offline) that a noise model from
:mod:`lightning_synth.rendering` turns into noisy/clean pairs. The real side (domain 1)
is :class:`NoisyPhotographs`: photographs with real noise in a ``root`` folder, with
clean references where known. Real photographs enter training *without* their
references (for adaptation and self-supervised terms); pairs with references are for
validation and test, and, when asked (``train_references``), those of other scenes are
training targets too.

Both sides are :class:`~lightning_synth.datamodules.DomainSource`\ s whose datasets hold
whole images; the DataModule (a :class:`~lightning_synth.datamodules.DomainDataModule`,
the project's one loader factory) crops them for training and adds the synthetic noise.
Samples follow the batch contract with ``image`` the noisy image, ``reference`` the clean
one, ``valid`` (``H x W`` bool) the pixels whose reference is known (all or none),
``label`` -1 and ``domain``; evaluation and prediction samples also carry ``name``.
Training takes random ``patch_size`` crops (with flips and quarter turns); evaluation and
prediction take whole images, which a task denoises in tiles.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data._utils.collate import default_collate

from lightning_synth.batch import (
    IGNORE_LABEL,
    IMAGE,
    LABEL,
    NAME,
    REAL,
    REFERENCE,
    RENDERED,
    VALID,
    Batch,
    Stage,
)
from lightning_synth.datamodules.base import DomainDataModule
from lightning_synth.datamodules.datasets import DomainDataset, InterleavedDataset
from lightning_synth.datamodules.images import (
    IMAGE_SUFFIXES,
    SKIMAGE_PREFIX,
    find_images,
    read_image,
    resize_image,
)
from lightning_synth.datamodules.sources import DomainSource
from lightning_synth.errors import InputError
from lightning_synth.image_io import PAIR_SUFFIXES, dihedral, to_channels
from lightning_synth.rendering.camera import CameraNoise
from lightning_synth.rendering.noise import GaussianNoise, Range, as_range, log_uniform
from lightning_synth.rendering.sampled_noise import SampledNoise

__all__ = [
    "CLEAN_PHOTOGRAPHS",
    "CleanPhotographs",
    "NoisyPair",
    "NoisyPhotographs",
    "NoisyImageDataModule",
    "scene_of",
]

#: scikit-image's bundled photographs (no download): the default clean images.
CLEAN_PHOTOGRAPHS = (
    "skimage:astronaut",
    "skimage:coffee",
    "skimage:rocket",
    "skimage:camera",
    "skimage:coins",
    "skimage:brick",
    "skimage:grass",
    "skimage:gravel",
)
#: Other bundled photographs, through another camera-noise seed, that stand in for real
#: noisy photographs when :class:`NoisyPhotographs` has no ``root``.
_STAND_INS = ("skimage:chelsea", "skimage:clock", "skimage:moon")
_CROP_NUMBER = re.compile(r"_\d+$")
# Items of each stage and domain use their own random streams.
_STAGE_SEED = {"train": 0, "val": 1_000_003, "test": 2_000_003}
_DOMAIN_SEED = 500_009
_NOISY_AS_CLEAN_SEED = 700_001


def scene_of(name: str) -> str:
    """The scene a photograph shows: its name without a trailing ``_<number>`` (the crop
    number of PolyU-style names, ``Canon5D2_..._chair_11`` -> ``Canon5D2_..._chair``).

    Args:
        name: the image's name (file name without its suffix and pair suffix).
    """
    return _CROP_NUMBER.sub("", name)


@dataclass(frozen=True)
class NoisyPair:
    """One real photograph: its name, noisy file and clean reference (``None``: unknown)."""

    name: str
    noisy: str
    reference: str | None = None


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _image_size(path: str) -> tuple[int, int]:
    """``(height, width)`` from the file's header, without decoding the pixels."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
    except OSError as error:
        raise InputError(f"cannot read {path!r} as an image: {error}") from error
    return height, width


def find_pairs(root: str | Path) -> list[NoisyPair]:
    """The noisy photographs in ``root`` and their references, sorted by name.

    Layouts, tried in order: ``noisy/`` and ``clean/`` subfolders (files matched by name
    without suffix; a noisy file without a clean one has no reference); PolyU-style
    ``<name>_real.*`` with ``<name>_mean.*`` (or ``_noisy``/``_clean``); otherwise every
    image in ``root`` is a noisy photograph without reference.

    Args:
        root: the folder.
    """
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {str(root)!r} of noisy photographs")
    kinds = "/".join(IMAGE_SUFFIXES)
    if (folder / "noisy").is_dir():
        noisy = _image_files(folder / "noisy")
        clean_dir = folder / "clean"
        clean = {p.stem: p for p in _image_files(clean_dir)} if clean_dir.is_dir() else {}
        pairs = [
            NoisyPair(p.stem, str(p), str(clean[p.stem]) if p.stem in clean else None)
            for p in noisy
        ]
        where = f"{folder / 'noisy'}"
    else:
        files = _image_files(folder)
        by_stem = {p.stem: p for p in files}
        pairs = []
        for noisy_suffix, clean_suffix in PAIR_SUFFIXES:
            for path in files:
                if path.stem.endswith(noisy_suffix):
                    name = path.stem[: -len(noisy_suffix)]
                    clean_path = by_stem.get(name + clean_suffix)
                    pairs.append(
                        NoisyPair(name, str(path), str(clean_path) if clean_path else None)
                    )
            if pairs:
                break
        if not pairs:  # a plain folder of noisy photographs
            pairs = [NoisyPair(p.stem, str(p)) for p in files]
        where = str(folder)
    if not pairs:
        raise FileNotFoundError(
            f"folder {where!r} has no {kinds} images; expected noisy photographs, PolyU-style "
            f"<name>_real/<name>_mean pairs, or noisy/ and clean/ subfolders"
        )
    for pair in pairs:
        if pair.reference is not None:
            noisy_size, clean_size = _image_size(pair.noisy), _image_size(pair.reference)
            if noisy_size != clean_size:
                raise InputError(
                    f"the noisy image {pair.noisy!r} is {noisy_size[0]} x {noisy_size[1]} but "
                    f"its reference {pair.reference!r} is {clean_size[0]} x {clean_size[1]}; "
                    f"pairs must match pixel for pixel"
                )
    return sorted(pairs, key=lambda pair: pair.name)


class NoisyPhotographs(DomainSource):
    """Photographs with real noise, and their clean references where known.

    Training uses every noisy photograph, references hidden unless ``train_references``;
    validation and test use the pairs with references: all of them in both, or, with
    ``val_scenes``, those scenes for validation and the rest (or ``test_scenes``) for
    test (scenes, not crops, so no scene is in both; see :func:`scene_of`). ``predict``
    denoises every noisy photograph.

    With ``train_references`` the references of the pairs outside ``val_scenes`` and
    ``test_scenes`` become training targets too (supervised learning on real pairs, e.g.
    a few pairs of your own camera beside the synthetic noise); the other photographs
    still enter training without theirs.

    Without ``root``, scikit-image photographs through camera noise of another seed stand
    in (so configs run offline); that is *not* real noise. Point ``root`` at your photos.

    Args:
        root: folder of noisy photographs (see :func:`find_pairs` for the layouts).
        val_scenes: scenes (or names) held out for validation; empty: validate on all
            pairs.
        test_scenes: scenes (or names) to test on; empty: the pairs outside
            ``val_scenes`` (all pairs without ``val_scenes``).
        train_references: train on the references of the pairs outside ``val_scenes``
            and ``test_scenes`` (both must then be given, so that no score comes from a
            photograph whose reference was learnt).
        stand_in_noise: noise of the stand-in photographs (without ``root``); default a
            :class:`~lightning_synth.rendering.camera.CameraNoise` (each photograph seeded
            by its name).
    """

    def __init__(
        self,
        root: str | None = None,
        val_scenes: Sequence[str] = (),
        test_scenes: Sequence[str] = (),
        train_references: bool = False,
        stand_in_noise: nn.Module | None = None,
    ) -> None:
        if train_references and not (val_scenes and test_scenes):
            raise InputError(
                "train_references learns the references of every pair outside val_scenes and "
                "test_scenes, so both must name held-out scenes (else validation or test would "
                "score photographs whose references were learnt): set val_scenes and test_scenes"
            )
        self.root = root
        self.val_scenes = tuple(val_scenes)
        self.test_scenes = tuple(test_scenes)
        self.train_references = train_references
        self.stand_in_noise = stand_in_noise
        self._pairs: list[NoisyPair] | None = None

    def prepare(self) -> None:
        self.pairs()

    def dataset(self, stage: Stage | Literal["predict"]) -> _PairImages:
        """Whole images of ``stage`` (see :meth:`stage_pairs`); in training, references only
        of the :meth:`taught_pairs`."""
        shown = {p.name for p in self.taught_pairs()} if stage == "train" else None
        return _PairImages(self, self.stage_pairs(stage), shown)

    def pairs(self) -> list[NoisyPair]:
        """Every photograph of the source (found once, then cached)."""
        if self._pairs is None:
            if self.root is None:
                stems = [name[len(SKIMAGE_PREFIX) :] for name in _STAND_INS]
                self._pairs = [
                    NoisyPair(s, f"{SKIMAGE_PREFIX}{s}", f"{SKIMAGE_PREFIX}{s}") for s in stems
                ]
            else:
                self._pairs = find_pairs(self.root)
            known = {scene_of(p.name) for p in self._pairs} | {p.name for p in self._pairs}
            for option, scenes in (
                ("val_scenes", self.val_scenes),
                ("test_scenes", self.test_scenes),
            ):
                unknown = [scene for scene in scenes if scene not in known]
                if unknown:
                    raise InputError(f"{option} {unknown} are not among the photographs' scenes")
        return self._pairs

    def stage_pairs(self, stage: Stage | Literal["predict"]) -> list[NoisyPair]:
        """The photographs of ``stage`` (training and predict: all; val/test: pairs)."""
        pairs = self.pairs()
        if stage in ("train", "predict"):
            return pairs
        paired = [p for p in pairs if p.reference is not None]
        if stage == "test" and self.test_scenes:
            return _of_scenes(paired, self.test_scenes)
        if not self.val_scenes:
            return paired
        in_val = _of_scenes(paired, self.val_scenes)
        return in_val if stage == "val" else [p for p in paired if p not in in_val]

    def taught_pairs(self) -> list[NoisyPair]:
        """The pairs whose references training learns: with ``train_references``, those
        outside ``val_scenes`` and ``test_scenes``; otherwise none."""
        if not self.train_references:
            return []
        held = set(self.stage_pairs("val")) | set(self.stage_pairs("test"))
        return [p for p in self.pairs() if p.reference is not None and p not in held]

    def load(self, pair: NoisyPair) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The noisy image and its reference (``C x H x W`` in [0, 1]; ``None``: unknown)."""
        if self.root is None:  # the stand-in: noise made here, a fixed seed per image
            clean = read_image(pair.noisy)
            noise = self.stand_in_noise or CameraNoise(seed=1)
            generator = torch.Generator().manual_seed(sum(map(ord, pair.name)))
            return noise(clean[None], generator)[0], clean
        noisy = read_image(pair.noisy)
        reference = None if pair.reference is None else read_image(pair.reference)
        if reference is not None and reference.shape[-2:] != noisy.shape[-2:]:
            raise InputError(f"{pair.noisy!r} and its reference {pair.reference!r} differ in size")
        return noisy, reference


def _of_scenes(pairs: list[NoisyPair], scenes: Sequence[str]) -> list[NoisyPair]:
    """The pairs of ``scenes`` (scene names or photograph names)."""
    held = set(scenes)
    return [p for p in pairs if scene_of(p.name) in held or p.name in held]


class CleanPhotographs(DomainSource):
    """Clean photographs, whole, for the rendered side (noise is added by the DataModule).

    Args:
        images: files, folders, globs or ``skimage:NAME`` for training.
        val_images: photographs for validation and test; ``None``: ``images`` again.
        eval_count: most photographs (the first ones) validation and test use; 0: all.
    """

    def __init__(
        self,
        images: Sequence[str] = CLEAN_PHOTOGRAPHS,
        val_images: Sequence[str] | None = None,
        eval_count: int = 0,
    ) -> None:
        if not images:
            raise InputError("give at least one clean photograph")
        if eval_count < 0:
            raise InputError(f"eval_count must be >= 0 (0: all), got {eval_count}")
        self.images = list(images)
        self.val_images = None if val_images is None else list(val_images)
        self.eval_count = eval_count

    def files(self, stage: Stage) -> list[str]:
        """The photographs of ``stage``."""
        if stage == "train":
            return find_images(self.images)
        files = find_images(self.images if self.val_images is None else self.val_images)
        return files[: self.eval_count] if self.eval_count else files

    def prepare(self) -> None:
        self.files("train")
        self.files("val")

    def dataset(self, stage: Stage) -> Dataset:
        return _CleanImages(self.files(stage))


class _Cached:
    """Decoded images by index, per process (each DataLoader worker keeps its own)."""

    def __init__(self) -> None:
        self.cache: dict[int, Batch] = {}

    def item(self, index: int) -> Batch:
        if index not in self.cache:
            self.cache[index] = self.load(index)
        return dict(self.cache[index])

    def load(self, index: int) -> Batch:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Batch:
        return self.item(index)


class _CleanImages(_Cached, Dataset):
    """Whole clean photographs: ``image`` (clean), ``name``."""

    def __init__(self, files: list[str]) -> None:
        super().__init__()
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> Batch:
        file = self.files[index]
        name = file[len(SKIMAGE_PREFIX) :] if file.startswith(SKIMAGE_PREFIX) else Path(file).stem
        return {IMAGE: read_image(file), NAME: name}  # type: ignore[dict-item]


class _PairImages(_Cached, Dataset):
    """Whole real photographs: ``image`` (noisy), ``reference`` (``None`` when unknown or
    hidden: ``shown`` names the photographs whose references are kept, ``None`` all),
    ``name``."""

    def __init__(
        self, source: NoisyPhotographs, pairs: list[NoisyPair], shown: set[str] | None = None
    ) -> None:
        super().__init__()
        self.source, self.pairs, self.shown = source, pairs, shown

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> Batch:
        pair = self.pairs[index]
        noisy, reference = self.source.load(pair)
        if self.shown is not None and pair.name not in self.shown:
            reference = None
        return {IMAGE: noisy, REFERENCE: reference, NAME: pair.name}  # type: ignore[dict-item]


class _PseudoClean(_Cached, Dataset):
    """Whole photographs, in ``channels`` channels, through a denoiser: ``image``
    (denoised), ``name``."""

    def __init__(self, photographs: _PairImages, denoiser: nn.Module, channels: int) -> None:
        super().__init__()
        self.photographs, self.denoiser, self.channels = photographs, denoiser, channels

    def __len__(self) -> int:
        return len(self.photographs)

    def load(self, index: int) -> Batch:
        # Uncached: only the denoised photograph is kept.
        item = self.photographs.load(index)
        # A denoiser for colour (luma/chroma TV) must see gray photographs as colour too.
        image = to_channels(item[IMAGE], self.channels)
        with torch.no_grad():
            denoised = self.denoiser(image[None].float())[0]
        return {IMAGE: denoised, NAME: item[NAME]}


def _random_crop(
    images: Sequence[torch.Tensor], size: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """The same random ``size`` crop of each image (mirrored up to ``size`` if smaller)."""
    height, width = images[0].shape[-2:]
    top = int(torch.randint(max(height - size, 0) + 1, (1,), generator=generator))
    left = int(torch.randint(max(width - size, 0) + 1, (1,), generator=generator))
    crops = []
    for image in images:
        crop = image[..., top : top + size, left : left + size]
        pad_h, pad_w = size - crop.shape[-2], size - crop.shape[-1]
        if pad_h or pad_w:
            mode = "reflect" if pad_h < crop.shape[-2] and pad_w < crop.shape[-1] else "replicate"
            crop = F.pad(crop[None], (0, pad_w, 0, pad_h), mode=mode)[0]
        crops.append(crop)
    return crops


def _sample(noisy: torch.Tensor, reference: torch.Tensor | None) -> Batch:
    known = reference is not None
    return {
        IMAGE: noisy.contiguous(),
        REFERENCE: reference.contiguous() if known else torch.zeros_like(noisy),
        VALID: torch.full(noisy.shape[-2:], known, dtype=torch.bool),
        LABEL: torch.tensor(IGNORE_LABEL),
    }


class _Noisy(Dataset):
    """A whole-image dataset as denoising samples, in ``channels`` channels.

    With ``noise`` (the rendered side) the image is the clean reference and the noise is
    drawn from a generator seeded with ``seed + index``; without, the image is already
    noisy and its ``reference`` is kept (``None``: unknown). With ``length`` it yields that
    many random ``patch_size`` crops (with flips and quarter turns) of the images in turn.
    With ``own_noise`` the noise (a :class:`SampledNoise` fitted to these very images) is
    that of the image each crop comes from.
    """

    def __init__(
        self,
        images: Dataset,
        channels: int,
        noise: nn.Module | None,
        seed: int,
        length: int | None = None,
        patch_size: int = 64,
        zoom: tuple[float, float] = (1.0, 1.0),
        own_noise: bool = False,
    ) -> None:
        self.images, self.channels, self.noise, self.seed = images, channels, noise, seed
        self.length, self.patch_size, self.zoom = length, patch_size, zoom
        self.own_noise = own_noise
        self.count = len(images)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.count if self.length is None else self.length

    def __getitem__(self, index: int) -> Batch:
        generator = torch.Generator().manual_seed(self.seed + index)
        item = self.images[index % self.count]
        reference = item[IMAGE] if self.noise is not None else item.get(REFERENCE)
        noisy = None if self.noise is not None else item[IMAGE]
        pictures = [to_channels(x, self.channels) for x in (noisy, reference) if x is not None]
        if self.length is not None:
            code = int(torch.randint(8, (1,), generator=generator))
            factor = self.zoom[0]
            if self.zoom[1] != self.zoom[0]:  # a fixed zoom draws nothing: same crops as before
                factor = float(log_uniform(self.zoom, 1, generator, torch.device("cpu")))
            side = max(2, round(self.patch_size / factor))
            crops = _random_crop(pictures, side, generator)
            if side != self.patch_size:
                crops = [resize_image(x, (self.patch_size,) * 2, "bicubic") for x in crops]
            pictures = [dihedral(x, code) for x in crops]
        if self.noise is not None:
            (reference,) = pictures
            if self.own_noise:
                assert isinstance(self.noise, SampledNoise)
                photograph = index % self.count
                noisy = self.noise.of_photograph(reference[None], generator, photograph)[0]
            else:
                noisy = self.noise(reference[None], [generator])[0]
        else:
            noisy, reference = pictures[0], pictures[1] if len(pictures) > 1 else None
        sample = _sample(noisy, reference)
        if self.length is None:
            sample[NAME] = item[NAME]
        return sample


def _collate_whole_images(samples: list[Batch]) -> Batch:
    sizes = {tuple(sample[IMAGE].shape) for sample in samples}
    if len(sizes) > 1:
        raise InputError(
            f"whole images of different sizes {sorted(sizes)} cannot share a batch: "
            f"set eval_batch_size: 1"
        )
    return default_collate(samples)


class NoisyImageDataModule(DomainDataModule):
    """Clean photographs with synthetic noise (domain 0) and real noisy photographs (1).

    Training batches hold ``round(batch_size * real_fraction)`` real crops (references
    hidden, unless the real source has ``train_references``) and the rest rendered crops,
    composed as every mixed-domain DataModule composes them
    (:class:`~lightning_synth.datamodules.DomainDataModule`). Validation and test
    hold whole images of both domains: ``val_clean`` (or ``clean``) with fixed noise, and
    the real source's pairs; ``predict`` denoises every real noisy photograph.

    Args:
        clean: clean photographs (files, folders, globs or ``skimage:NAME``).
        noise: the noise model (a module of :mod:`lightning_synth.rendering`, e.g.
            ``GaussianNoise``, ``CameraNoise`` or ``SampledNoise``, which ``setup`` fits
            to the real photographs, references unused); default ``GaussianNoise()``.
        real: the real noisy photographs; default :class:`NoisyPhotographs` (stand-ins
            without a ``root``).
        val_clean: clean photographs for the rendered validation and test images (whole,
            fixed noise); ``None`` uses ``clean`` with other noise.
        val_count: most of those photographs (the first ones) to validate and test on;
            0: all of them.
        channels: 1 (gray) or 3 (colour); images are converted before the noise is added.
        patch_size: side of the training crops.
        zoom: scale of the clean photographs in the training crops, a number or a range
            drawn log-uniformly per crop (a crop of ``patch_size / zoom`` pixels resampled
            to ``patch_size``; validation images are never resampled). Above 1 the
            content is softer at pixel scale, as in full-resolution crops from cameras of
            many megapixels, while the noise stays at pixel scale; 1: as the files are.
        train_length: rendered crops per epoch (crop ``i`` depends only on ``seed`` and
            ``i``, so epochs repeat them: raise this rather than the number of epochs);
            the real side gives as many batches' worth.
        batch_size: training crops per batch and process.
        real_fraction: share of each training batch that is real (0: the rendered side
            only, a source-only run).
        noisy_as_clean: share of the rendered training crops cut from the real noisy
            photographs instead of the clean ones, at their own scale, with the noise
            model's noise on top and the photograph itself as the target (Noisy-As-Clean,
            Xu et al. 2020): the network sees the real photographs' content. Their own
            noise stays in the target, so the network learns to remove part of it only:
            for noise that is weak against what it has to remove elsewhere; 1 with
            ``Denoiser(correction="noisier2noise")`` undoes that, and so does ``pseudo_clean``.
            0: none.
        pseudo_clean: a classical denoiser (e.g.
            :class:`~lightning_synth.nn.total_variation.TVSmoothing`) that makes each real
            photograph's ``noisy_as_clean`` target: the photograph's content with most of
            its noise gone, so the network learns to remove the whole noise model's noise
            from such content, with no correction. Applied once per photograph and
            process. ``None``: the noisy photograph itself is the target.
        eval_batch_size: whole images per validation/test/predict batch (1 allows any
            mix of sizes).
        num_workers: DataLoader worker processes.
        seed: seed of crops, noise and batch composition.
    """

    def __init__(
        self,
        clean: Sequence[str] = CLEAN_PHOTOGRAPHS,
        noise: nn.Module | None = None,
        real: NoisyPhotographs | None = None,
        val_clean: Sequence[str] | None = None,
        val_count: int = 8,
        channels: Literal[1, 3] = 3,
        patch_size: int = 64,
        zoom: Range = 1.0,
        train_length: int = 4096,
        batch_size: int = 16,
        real_fraction: float = 0.0,
        noisy_as_clean: float = 0.0,
        pseudo_clean: nn.Module | None = None,
        eval_batch_size: int = 1,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(
            CleanPhotographs(clean, val_clean, val_count),
            real if real is not None else NoisyPhotographs(),
            batch_size=batch_size,
            real_fraction=real_fraction,
            num_workers=num_workers,
            seed=seed,
        )
        if eval_batch_size < 1 or train_length < 1 or patch_size < 8:
            raise InputError(
                "eval_batch_size and train_length must be positive and patch_size at least "
                f"8, got {eval_batch_size}, {train_length}, {patch_size}"
            )
        if not 0 <= noisy_as_clean <= 1:
            raise InputError(f"noisy_as_clean must lie in [0, 1], got {noisy_as_clean}")
        self.noisy_as_clean = float(noisy_as_clean)
        if channels not in (1, 3):
            raise InputError(f"channels must be 1 or 3, got {channels}")
        self.noise = noise if noise is not None else GaussianNoise()
        if pseudo_clean is not None and not noisy_as_clean:
            raise InputError(
                "pseudo_clean makes the targets of the noisy_as_clean crops, and "
                "noisy_as_clean is 0: set noisy_as_clean above 0 or drop pseudo_clean"
            )
        if getattr(self.real, "train_references", False) and not real_fraction:
            # The references are learnt from the real crops of each batch, and there are none.
            raise InputError(
                "train_references needs real crops in training, and real_fraction is 0: "
                "set real_fraction above 0 (e.g. 0.25)"
            )
        self.pseudo_clean = pseudo_clean
        self.channels, self.patch_size, self.train_length = channels, patch_size, train_length
        self.zoom = as_range(zoom, "zoom", low=1e-3)
        self.eval_batch_size = eval_batch_size

    def setup(self, stage: str) -> None:
        # Find the files and check the pairs now, not after an epoch of training.
        self.rendered.prepare()
        self.real.prepare()
        fit = getattr(self.noise, "fit_if_needed", None)
        if callable(fit):  # a noise model learnt from the real photographs (SampledNoise)
            photographs = self.real.dataset("train")
            fit(
                to_channels(photographs[i][IMAGE], self.channels)
                for i in range(len(photographs))  # type: ignore[arg-type]
            )

    def _seed(self, stage: str, domain: int) -> int:
        return self.seed * 10_000_019 + _STAGE_SEED.get(stage, 3_000_017) + domain * _DOMAIN_SEED

    def source_dataset(self, stage: Stage, domain: int) -> Dataset:
        images = self.source(domain).dataset(stage)
        noise = self.noise if domain == RENDERED else None
        if stage != "train":
            return _Noisy(images, self.channels, noise, self._seed(stage, domain))
        length = self.train_length
        if domain == REAL and self.real_fraction < 1:
            # As many batches' worth as the rendered side: one epoch is one pass of both.
            share = self.real_fraction / (1 - self.real_fraction)
            length = max(1, round(self.train_length * share))
        # Real photographs are cropped as they are: their scale is the one to denoise at.
        zoom = self.zoom if domain == RENDERED else (1.0, 1.0)
        seed = self._seed(stage, domain)
        if domain == REAL or not self.noisy_as_clean:
            return _Noisy(images, self.channels, noise, seed, length, self.patch_size, zoom)
        as_clean = max(1, round(length * self.noisy_as_clean))
        # SampledNoise fitted (by setup) to these photographs can give each crop the noise
        # of its own photograph.
        own_noise = (
            isinstance(noise, SampledNoise) and noise.per_photograph and noise.photographs is None
        )
        photographs = self.real.dataset("train")  # their references unused
        targets: Dataset = photographs
        if self.pseudo_clean is not None:
            targets = _PseudoClean(photographs, self.pseudo_clean, self.channels)
        noisy_targets = _Noisy(
            targets,
            self.channels,
            noise,
            seed + _NOISY_AS_CLEAN_SEED,
            as_clean,
            self.patch_size,
            own_noise=own_noise,
        )
        if as_clean >= length:
            return noisy_targets
        return InterleavedDataset(
            _Noisy(images, self.channels, noise, seed, length - as_clean, self.patch_size, zoom),
            noisy_targets,
        )

    def _whole_images(self, dataset: Dataset) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.eval_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            collate_fn=_collate_whole_images,
        )

    def evaluation_loader(self, stage: Stage) -> DataLoader:
        both = InterleavedDataset(
            self.domain_dataset(stage, RENDERED), self.domain_dataset(stage, REAL)
        )
        return self._whole_images(both)

    def predict_dataloader(self) -> DataLoader:
        """Every real noisy photograph, whole (with its reference where known)."""
        photos = _Noisy(self.real.dataset("predict"), self.channels, None, 0)
        return self._whole_images(DomainDataset(photos, REAL))
