"""Image grids for TensorBoard: a validation batch with its predictions drawn on it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import make_grid

from lightning_synth.batch import DOMAIN_NAMES, IGNORE_LABEL

__all__ = ["labelled_image_grid", "log_image"]

_CORRECT = (40, 200, 80)
_WRONG = (230, 40, 40)
_UNLABELLED = (150, 150, 150)


def labelled_image_grid(
    images: torch.Tensor,
    preds: torch.Tensor,
    labels: torch.Tensor,
    domains: torch.Tensor,
    max_images: int = 32,
    tile_size: int = 64,
    columns: int = 8,
) -> torch.Tensor:
    """Draw each image with ``pred/label`` and its domain, framed green (right) or red (wrong).

    Args:
        images: ``B x C x H x W`` in [0, 1] (values outside are clipped).
        preds: ``B`` predicted classes.
        labels: ``B`` true classes, ``IGNORE_LABEL`` where unknown (grey frame).
        domains: ``B`` domain codes.
        max_images: at most this many images are drawn.
        tile_size: each image is resized to this many pixels per side.
        columns: images per row.

    Returns:
        ``3 x H x W`` uint8 tensor, ready for ``SummaryWriter.add_image``.
    """
    count = min(max_images, images.shape[0])
    tiles = images[:count].detach().float().clamp(0, 1).cpu()
    if tiles.shape[1] == 1:
        tiles = tiles.expand(-1, 3, -1, -1)
    tiles = F.interpolate(tiles, size=(tile_size, tile_size), mode="nearest")
    font = ImageFont.load_default()
    drawn = []
    for index in range(count):
        pil = Image.fromarray((tiles[index].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
        draw = ImageDraw.Draw(pil)
        pred, label = int(preds[index]), int(labels[index])
        colour = _UNLABELLED if label == IGNORE_LABEL else _CORRECT if pred == label else _WRONG
        draw.rectangle((0, 0, tile_size - 1, tile_size - 1), outline=colour, width=3)
        truth = "?" if label == IGNORE_LABEL else str(label)
        domain = DOMAIN_NAMES.get(int(domains[index]), "?")[:4]
        draw.rectangle((3, tile_size - 14, tile_size - 4, tile_size - 4), fill=(0, 0, 0))
        draw.text((5, tile_size - 15), f"{pred}/{truth} {domain}", fill=colour, font=font)
        drawn.append(torch.from_numpy(np.array(pil)).permute(2, 0, 1))
    return make_grid(torch.stack(drawn), nrow=columns, padding=2, pad_value=255)


def log_image(loggers: Sequence[Logger], tag: str, image: torch.Tensor, step: int) -> bool:
    """Send a ``3 x H x W`` image to every TensorBoard logger; ``True`` if one took it.

    Args:
        loggers: the trainer's loggers (others are skipped).
        tag: TensorBoard tag, e.g. ``"val/predictions"``.
        image: ``3 x H x W`` uint8 or float in [0, 1].
        step: global step to file it under.
    """
    logged = False
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(tag, image, global_step=step, dataformats="CHW")
            logged = True
    return logged
