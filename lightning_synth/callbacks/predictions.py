"""Write what ``predict`` returns to the run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

__all__ = ["PredictionWriter"]


class PredictionWriter(BasePredictionWriter):
    """Concatenate the dicts of tensors returned by ``predict_step`` and save them.

    Each process writes ``predictions-rank{R}.pt`` (a ``dict[str, Tensor]``) into
    ``output_dir`` (the run directory when ``None``).

    Args:
        output_dir: where to write; the trainer's ``log_dir`` when ``None``.
    """

    def __init__(self, output_dir: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.output_dir = output_dir
        self.written: list[Path] = []

    def write_on_epoch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        predictions: Any,
        batch_indices: Any,
    ) -> None:
        batches = (
            predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        )
        batches = [batch for batch in batches if isinstance(batch, dict)]
        if not batches:
            return
        merged = {
            key: torch.cat([batch[key].detach().cpu() for batch in batches])
            for key in batches[0]
            if isinstance(batches[0][key], torch.Tensor)
        }
        folder = Path(self.output_dir or trainer.log_dir or ".")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"predictions-rank{trainer.global_rank}.pt"
        torch.save(merged, path)
        self.written.append(path)
