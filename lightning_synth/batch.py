"""The batch contract: every DataModule yields, and every task consumes, a dict.

| key | type | meaning |
|---|---|---|
| ``image`` | float ``B x C x H x W`` | RGB/grayscale in [0, 1], or depth in metres |
| ``label`` | long ``B`` or ``B x H x W`` | ``IGNORE_LABEL`` where unknown or hidden |
| ``domain`` | long ``B`` | ``RENDERED`` (0) or ``REAL`` (1) |

Optional keys: ``joints`` (``B x J x 3``), ``intrinsics`` (``B x 4``: fx, fy, cx, cy),
``valid`` (``B x H x W`` bool). The names live here, once; use the constants.

A domain source (:mod:`lightning_synth.datamodules.sources`) yields the same dicts one
sample at a time, without ``domain``: the DataModule sets it and collates the batch.
"""

from __future__ import annotations

from typing import Final, Literal

import torch

__all__ = [
    "IMAGE",
    "LABEL",
    "DOMAIN",
    "JOINTS",
    "INTRINSICS",
    "VALID",
    "REFERENCE",
    "STYLE",
    "NAME",
    "RENDERED",
    "REAL",
    "DOMAIN_NAMES",
    "IGNORE_LABEL",
    "Batch",
    "Stage",
    "make_sample",
    "check_batch",
]

IMAGE: Final = "image"
LABEL: Final = "label"
DOMAIN: Final = "domain"
JOINTS: Final = "joints"
INTRINSICS: Final = "intrinsics"
VALID: Final = "valid"
#: Image optimisation: clean ``B x C x H x W`` images to measure against, style images
#: (``S x C x H x W``), and the images' names (a list of ``str``, for output files).
REFERENCE: Final = "reference"
STYLE: Final = "style"
NAME: Final = "name"

RENDERED: Final = 0
REAL: Final = 1
#: Name of each domain code, as it appears in metric names (``val/real_acc``).
DOMAIN_NAMES: Final[dict[int, str]] = {RENDERED: "rendered", REAL: "real"}

#: Label value for "unknown or hidden"; losses and metrics skip it.
IGNORE_LABEL: Final = -1

Batch = dict[str, torch.Tensor]
#: The three stages whose metrics a task logs (``{stage}/{name}``).
Stage = Literal["train", "val", "test"]


def make_sample(image: torch.Tensor, label: int | torch.Tensor, domain: int) -> Batch:
    """Build one sample of the contract (the default collate stacks them).

    Args:
        image: ``C x H x W`` float tensor.
        label: class index, dense label map, or ``IGNORE_LABEL``.
        domain: ``RENDERED`` or ``REAL``.
    """
    return {
        IMAGE: image,
        LABEL: torch.as_tensor(label, dtype=torch.long),
        DOMAIN: torch.tensor(domain, dtype=torch.long),
    }


def check_batch(batch: Batch) -> None:
    """Raise a ``ValueError`` that names the problem if ``batch`` breaks the contract.

    Args:
        batch: a collated batch.
    """
    missing = [key for key in (IMAGE, LABEL, DOMAIN) if key not in batch]
    if missing:
        raise ValueError(
            f"batch is missing the key(s) {missing}; a DataModule must yield dicts with "
            f"{IMAGE!r}, {LABEL!r} and {DOMAIN!r} (see lightning_synth.batch)"
        )
    image = batch[IMAGE]
    if image.ndim != 4 or not image.is_floating_point():
        raise ValueError(
            f"batch[{IMAGE!r}] must be a float B x C x H x W tensor, got "
            f"{tuple(image.shape)} {image.dtype}"
        )
    if batch[LABEL].dtype != torch.long or batch[DOMAIN].dtype != torch.long:
        raise ValueError(f"batch[{LABEL!r}] and batch[{DOMAIN!r}] must be long tensors")
