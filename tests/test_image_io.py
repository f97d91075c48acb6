"""One image decoder and one gray convention: every file kind a user brings reads right."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_synth.image_io import LUMA_WEIGHTS, read_image, rgb_to_gray, to_channels


def _colours() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)


def test_palette_pngs_give_their_colours_not_their_indices(tmp_path: Path) -> None:
    image = Image.fromarray(_colours()).convert("P")
    image.save(tmp_path / "palette.png")
    expected = torch.from_numpy(np.asarray(image.convert("RGB"))).permute(2, 0, 1) / 255
    torch.testing.assert_close(read_image(tmp_path / "palette.png"), expected)
    # with a transparent palette entry: those pixels read as white
    image.save(tmp_path / "transparent.png", transparency=int(np.asarray(image)[0, 0]))
    clear = torch.from_numpy(np.asarray(image) == np.asarray(image)[0, 0])
    read = read_image(tmp_path / "transparent.png")
    assert (read[:, clear] == 1.0).all() and torch.equal(read[:, ~clear], expected[:, ~clear])


def test_alpha_is_composited_onto_white(tmp_path: Path) -> None:
    gray_alpha = np.zeros((3, 4, 2), np.uint8)
    gray_alpha[..., 1] = [[0], [255], [51]]  # transparent, opaque, 20 % opaque
    Image.fromarray(gray_alpha, "LA").save(tmp_path / "la.png")
    image = read_image(tmp_path / "la.png")
    assert image.shape == (1, 3, 4)
    torch.testing.assert_close(image[0, :, 0], torch.tensor([1.0, 0.0, 0.8]))


def test_bmp_16_bit_rgb_and_1_bit_files(tmp_path: Path) -> None:
    colours = _colours()
    Image.fromarray(colours).save(tmp_path / "rgb.bmp")
    expected = torch.from_numpy(colours).permute(2, 0, 1) / 255
    torch.testing.assert_close(read_image(tmp_path / "rgb.bmp"), expected)
    Image.fromarray(colours[..., 0] > 127).save(tmp_path / "bits.png")
    bits = read_image(tmp_path / "bits.png")
    assert set(bits.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(bits[0], torch.from_numpy(colours[..., 0] > 127).float())
    deep = np.full((4, 4), 40000, np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert float(read_image(tmp_path / "deep.png")[0, 0, 0]) == pytest.approx(40000 / 65535)


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="x.png"):
        read_image(tmp_path / "x.png")


def test_one_gray_convention_bt601() -> None:
    assert LUMA_WEIGHTS == (0.299, 0.587, 0.114)
    red_green_blue = torch.eye(3)[:, :, None, None].expand(3, 3, 2, 2)  # 3 images, one colour each
    gray = rgb_to_gray(red_green_blue)
    assert gray.shape == (3, 1, 2, 2)
    torch.testing.assert_close(gray[:, 0, 0, 0], torch.tensor(LUMA_WEIGHTS))
    # as Pillow's "L" (which rounds to 8 bits)
    colours = _colours()
    pillow = np.asarray(Image.fromarray(colours).convert("L"), dtype=np.float32) / 255
    ours = to_channels(torch.from_numpy(colours).permute(2, 0, 1) / 255, 1)[0]
    assert (ours - torch.from_numpy(pillow)).abs().max() <= 1 / 255
    assert to_channels(torch.rand(1, 4, 4), 3).shape == (3, 4, 4)
    with pytest.raises(ValueError, match="2-channel"):
        to_channels(torch.rand(2, 4, 4), 1)
