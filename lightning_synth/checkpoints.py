"""Reading a checkpoint a user points at, with one clear error when it is not one."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from lightning_synth.errors import InputError

__all__ = ["read_checkpoint", "checkpoint_class_path"]

#: ``ckpt_path`` values that Lightning resolves itself instead of reading a file.
SPECIAL_CKPT_PATHS = frozenset({"best", "last", "hpc", "registry"})


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The contents of the Lightning checkpoint ``path``, tensors memory-mapped (not read).

    Raises ``FileNotFoundError`` when there is no such file and :class:`InputError` (one
    line naming the file) when it is truncated, not a PyTorch file, or a PyTorch file that
    Lightning did not write (e.g. a bare ``state_dict`` of weights).

    Args:
        path: the checkpoint file (``.ckpt``).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise InputError(f"checkpoint {path} is not a file")
    if not zipfile.is_zipfile(path):
        raise InputError(
            f"{path} is not a checkpoint: not a file written by torch.save (truncated, or "
            f"another kind of file)"
        )
    try:
        # weights_only, as Lightning reads the hyper-parameters of a ckpt_path; mmap, so a
        # large checkpoint's tensors are not read just to check it.
        contents = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError) as error:
        if "weights only" in str(error).lower():
            # Readable, but holds objects that the safe loader refuses; Lightning loads
            # the full checkpoint later, so only the check is skipped.
            contents = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        else:
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise InputError(f"{path} cannot be read as a checkpoint ({first})") from error
    if not isinstance(contents, dict) or "state_dict" not in contents:
        keys = list(contents)[:3] if isinstance(contents, dict) else type(contents).__name__
        raise InputError(
            f"{path} is not a Lightning checkpoint (it holds {keys}, no 'state_dict'); pass a "
            f".ckpt written by a lightning-synth run, e.g. runs/<config>/version_N/"
            f"checkpoints/last.ckpt"
        )
    return contents


def checkpoint_class_path(checkpoint: dict[str, Any]) -> str | None:
    """The import path of the task that wrote ``checkpoint``, when the CLI recorded it."""
    hparams = checkpoint.get("hyper_parameters") or {}
    value = hparams.get("_class_path")
    return str(value) if value else None
