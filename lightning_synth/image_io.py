"""Image files and gray levels: one decoder and one RGB-to-gray convention for the project.

Every image file the project reads goes through :func:`read_image`, which decodes with
torchvision's ``decode_image`` (PNG 1/8/16 bit, JPEG, GIF, WebP). BMP, which that
decoder does not read, is decoded by Pillow and then treated the same way.

Every RGB-to-gray conversion goes through :func:`rgb_to_gray`, with the ITU-R BT.601
luma weights ``0.299 R + 0.587 G + 0.114 B``. BT.601 is what Pillow's ``convert("L")``,
torchvision's ``rgb_to_grayscale`` and OpenCV's ``cvtColor`` use, so the gray images a
user made with the common tools (and real digit sets distributed as gray) match the ones
made here. scikit-image's ``rgb2gray`` uses BT.709 (0.2125, 0.7154, 0.0721) instead; the
two differ by up to 0.13 on saturated greens and agree on gray pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_image, read_file

from lightning_synth.errors import InputError

__all__ = [
    "LUMA_WEIGHTS",
    "PAIR_SUFFIXES",
    "rgb_to_gray",
    "to_channels",
    "read_image",
    "to_float",
    "dihedral",
]

#: ITU-R BT.601 luma weights of R, G and B (as Pillow's "L" and torchvision).
LUMA_WEIGHTS: Final[tuple[float, float, float]] = (0.299, 0.587, 0.114)
#: File-name suffixes of noisy photographs and their clean references, PolyU-style:
#: ``<name>_real.JPG`` / ``<name>_mean.JPG``, or ``<name>_noisy.*`` / ``<name>_clean.*``.
PAIR_SUFFIXES: Final[tuple[tuple[str, str], ...]] = (("_real", "_mean"), ("_noisy", "_clean"))

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_PALETTE = 3  # the IHDR colour type of palette PNGs
_BMP_SIGNATURE = b"BM"


def rgb_to_gray(images: torch.Tensor) -> torch.Tensor:
    """Luma (:data:`LUMA_WEIGHTS`) of ``... x 3 x H x W`` images, as ``... x 1 x H x W``.

    Args:
        images: RGB images, channels third from last.
    """
    if images.ndim < 3 or images.shape[-3] != 3:
        raise InputError(f"expected ... x 3 x H x W RGB images, got {tuple(images.shape)}")
    weights = torch.tensor(LUMA_WEIGHTS, dtype=images.dtype, device=images.device)
    return (images * weights.view(3, 1, 1)).sum(dim=-3, keepdim=True)


def to_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """``... x C x H x W`` images with ``channels`` channels: RGB becomes its luma
    (:func:`rgb_to_gray`), gray is repeated into RGB.

    Args:
        images: images with 1 or 3 channels, channels third from last.
        channels: 1 or 3.
    """
    have = images.shape[-3] if images.ndim >= 3 else None
    if have == channels:
        return images
    if have == 3 and channels == 1:
        return rgb_to_gray(images)
    if have == 1 and channels == 3:
        return images.expand(*images.shape[:-3], 3, *images.shape[-2:])
    raise InputError(f"cannot turn {have}-channel images into {channels} channels")


def read_image(path: str | Path) -> torch.Tensor:
    """A ``C x H x W`` float32 image in [0, 1] from a file (C is 1 for gray, 3 for colour).

    8-bit values are divided by 255 and 16-bit ones by 65535 (16-bit PNGs keep their
    precision); 1-bit images give 0 and 1. Palette images become RGB. Alpha is
    composited onto white (a transparent background reads as white paper).

    Args:
        path: a PNG, JPEG, GIF, WebP or BMP file.

    Raises:
        ValueError: the file cannot be decoded (unknown format, corrupt or truncated);
            the message names the file.
    """
    path = str(path)
    try:
        data = read_file(path)
        if data[:2].numpy().tobytes() == _BMP_SIGNATURE:
            image = _read_bmp(path)
        else:
            image = decode_image(data, mode=_decode_mode(data.numpy().tobytes()))
            if image.ndim == 4:  # an animated GIF: its first frame
                image = image[0]
    except (RuntimeError, OSError, SyntaxError) as error:
        raise InputError(f"cannot read {path} as an image: {error}") from error
    return to_float(image, path)


def to_float(pixels: torch.Tensor, name: str = "the image") -> torch.Tensor:
    """Decoded ``C x H x W`` pixels as float32 in [0, 1], alpha composited onto white.

    Args:
        pixels: uint8 (divided by 255), uint16 (by 65535) or float (clamped) values of a
            gray, gray+alpha, RGB or RGBA image.
        name: what the pixels came from, for error messages.
    """
    if pixels.dtype == torch.uint8:
        scaled = pixels.float() / 255.0
    elif pixels.dtype == torch.uint16:
        scaled = pixels.to(torch.int32).float() / 65535.0
    elif pixels.is_floating_point():
        scaled = pixels.float().clamp(0, 1)
    else:
        raise InputError(f"{name} has unsupported pixel type {pixels.dtype}")
    if scaled.shape[0] in (2, 4):
        alpha = scaled[-1:]
        scaled = scaled[:-1] * alpha + (1.0 - alpha)
    if scaled.shape[0] not in (1, 3):
        raise InputError(f"{name} has {scaled.shape[0]} channels; expected gray or RGB(A)")
    return scaled.contiguous()


def _decode_mode(data: bytes) -> ImageReadMode:
    """How to decode a file so that a palette PNG gives colours (``UNCHANGED`` gives its
    palette indices, and torchvision 0.29 scrambles ``RGB_ALPHA`` of a palette without
    transparency): ``RGB``, or ``RGB_ALPHA`` with a ``tRNS`` chunk; ``UNCHANGED`` for
    every other file."""
    if not data.startswith(_PNG_SIGNATURE) or len(data) < 26 or data[25] != _PNG_PALETTE:
        return ImageReadMode.UNCHANGED
    offset = len(_PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8]
        if kind == b"tRNS":
            return ImageReadMode.RGB_ALPHA
        if kind == b"IDAT":  # transparency comes before the pixels
            break
        offset += 12 + length
    return ImageReadMode.RGB


def _read_bmp(path: str) -> torch.Tensor:
    """A BMP file as a ``C x H x W`` uint8 tensor (1, 3 or 4 channels)."""
    from PIL import Image  # only BMP needs it: torchvision does not decode BMP

    with Image.open(path) as image:
        if image.mode not in ("1", "L", "RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.mode or image.mode == "P" else "RGB")
        array = np.asarray(image.convert("L") if image.mode == "1" else image, dtype=np.uint8)
    array = array[:, :, None] if array.ndim == 2 else array
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def dihedral(images: torch.Tensor, code: int, inverse: bool = False) -> torch.Tensor:
    """One of the 8 flips and quarter turns of images (``... x H x W``), or its inverse.

    Args:
        images: any tensor whose last two dimensions are height and width.
        code: 0-7; bit 2 mirrors left-right, ``code % 4`` quarter turns follow.
        inverse: undo the transform instead.
    """
    turns = code % 4
    if not inverse:
        images = images.flip(-1) if code & 4 else images
        return torch.rot90(images, turns, dims=(-2, -1))
    images = torch.rot90(images, -turns, dims=(-2, -1))
    return images.flip(-1) if code & 4 else images
