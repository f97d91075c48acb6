"""Images to optimise: files (8/16 bit), folders, scikit-image samples, noise, batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_synth.batch import DOMAIN, IGNORE_LABEL, IMAGE, LABEL, NAME, REAL, REFERENCE, STYLE
from lightning_synth.datamodules.images import (
    ImageOptimizationDataModule,
    StyleTransferDataModule,
    find_images,
    read_image,
)


def _write(path: Path, array: np.ndarray) -> str:
    Image.fromarray(array).save(path)
    return str(path)


def test_reads_8_and_16_bit_png_and_jpeg(tmp_path: Path) -> None:
    gray16 = np.full((6, 8), 32768, dtype=np.uint16)
    gray16[0, 0] = 65535
    image = read_image(_write(tmp_path / "gray16.png", gray16))
    assert image.shape == (1, 6, 8) and image.dtype == torch.float32
    assert float(image[0, 0, 0]) == 1.0
    assert float(image[0, 1, 1]) == pytest.approx(32768 / 65535, abs=1e-7)  # not 8-bit rounded
    rgba = np.zeros((4, 5, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 10
    colour = read_image(_write(tmp_path / "rgba.png", rgba))
    assert colour.shape == (3, 4, 5) and float(colour[0].min()) == 1.0  # alpha dropped
    jpeg = read_image(_write(tmp_path / "photo.jpg", np.full((8, 8, 3), 128, np.uint8)))
    assert jpeg.shape == (3, 8, 8) and float(jpeg.mean()) == pytest.approx(128 / 255, abs=0.01)


def test_folders_globs_and_samples(tmp_path: Path) -> None:
    for name in ("b", "a"):
        _write(tmp_path / f"{name}.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    assert [Path(p).name for p in find_images([str(tmp_path)])] == ["a.png", "b.png"]
    assert len(find_images([str(tmp_path / "*.png"), "skimage:camera"])) == 3
    with pytest.raises(FileNotFoundError, match="skimage:NAME"):
        find_images([str(tmp_path / "missing.png")])
    camera = read_image("skimage:camera")
    assert camera.shape == (1, 512, 512) and 0 <= float(camera.min()) < float(camera.max()) <= 1
    with pytest.raises(ValueError, match="no sample image"):
        read_image("skimage:not_a_sample")


def test_noise_reference_and_contract_keys() -> None:
    data = ImageOptimizationDataModule(images=["skimage:camera"], noise_sigma=0.1, size=64, seed=3)
    (sample,) = data.samples()
    assert sample[IMAGE].shape == (1, 64, 64)
    assert int(sample[LABEL]) == IGNORE_LABEL and int(sample[DOMAIN]) == REAL
    assert sample[NAME] == "camera"
    residual = sample[IMAGE] - sample[REFERENCE]
    assert float(residual.std()) == pytest.approx(0.1, rel=0.15)  # some noise is clipped
    assert 0 <= float(sample[IMAGE].min()) and float(sample[IMAGE].max()) <= 1
    again = ImageOptimizationDataModule(images=["skimage:camera"], noise_sigma=0.1, size=64, seed=3)
    assert torch.equal(again.samples()[0][IMAGE], sample[IMAGE])  # reproducible


def test_fit_repeats_one_batch_of_all_images(tmp_path: Path) -> None:
    gray = _write(tmp_path / "gray.png", np.full((32, 48), 100, np.uint8))
    data = ImageOptimizationDataModule(
        images=[gray, "skimage:astronaut"], size=(16, 24), steps_per_epoch=3, noise_sigma=0.05
    )
    data.setup("fit")
    batches = list(data.train_dataloader())
    assert len(batches) == 3 and all(batch is batches[0] for batch in batches)
    batch = batches[0]
    assert batch[IMAGE].shape == (2, 3, 16, 24)  # gray repeated to RGB next to colour
    assert batch[REFERENCE].shape == (2, 3, 16, 24) and batch[NAME] == ["gray", "astronaut"]
    # test / predict: one image at a time, each at its own size
    mixed = ImageOptimizationDataModule(images=[gray, "skimage:coffee"], size=40, gray=True)
    shapes = [tuple(b[IMAGE].shape) for b in mixed.predict_dataloader()]
    assert shapes == [(1, 1, 27, 40), (1, 1, 27, 40)]
    different = ImageOptimizationDataModule(images=[gray, "skimage:camera"])
    with pytest.raises(ValueError, match="share a size"):
        different.fit_batch()


def test_references_given_as_files(tmp_path: Path) -> None:
    noisy = _write(tmp_path / "noisy.png", np.full((8, 8), 90, np.uint8))
    clean = _write(tmp_path / "clean.png", np.full((8, 8), 100, np.uint8))
    (sample,) = ImageOptimizationDataModule(images=[noisy], references=[clean]).samples()
    assert float(sample[REFERENCE].mean()) == pytest.approx(100 / 255)
    assert float(sample[IMAGE].mean()) == pytest.approx(90 / 255)


def test_style_images_are_cropped_to_the_content_shape() -> None:
    data = StyleTransferDataModule(
        content=["skimage:coffee"], styles=["skimage:camera", "skimage:astronaut"], size=60
    )
    batch = data.fit_batch()
    assert batch[IMAGE].shape == (1, 3, 40, 60)
    assert batch[STYLE].shape == (2, 3, 40, 60)  # gray camera repeated to RGB
    half = StyleTransferDataModule(content=["skimage:coffee"], size=60, style_scale=0.5)
    assert half.fit_batch()[STYLE].shape == (1, 3, 20, 30)
    (test_batch,) = list(data.test_dataloader())
    assert test_batch is batch
