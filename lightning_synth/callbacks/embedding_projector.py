"""``EmbeddingProjector``: rendered and real features in TensorBoard's projector, to watch them merge.

Each reporting epoch writes the features of up to ``num_samples`` rendered and as many
real validation samples, with their domain and class as metadata and the images as a
sprite, so TensorBoard's *Projector* tab shows the two clouds (colour by ``domain``) in
PCA, t-SNE or UMAP: apart before domain-adversarial training, merged after it (Ganin et
al., 2016, figure 5). Files land in the logger's run directory: ``projector_config.pbtxt``
and ``<step>/<tag>/{tensors.tsv, metadata.tsv, sprite.png}``.

Only process 0 collects (from its own share of the validation set) and writes, so the
callback adds no collective operation under DDP.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from lightning_synth.batch import (
    DOMAIN,
    DOMAIN_NAMES,
    IGNORE_LABEL,
    IMAGE,
    LABEL,
    REAL,
    RENDERED,
    Batch,
)
from lightning_synth.callbacks.bound_report import batch_features
from lightning_synth.errors import InputError

__all__ = ["EmbeddingProjector"]

METADATA_HEADER = ["domain", "class"]


class EmbeddingProjector(Callback):
    """Write validation features of both domains to TensorBoard's embedding projector.

    Args:
        num_samples: samples of each domain to show (a few hundred is plenty for t-SNE).
        every_n_epochs: write every this many validation epochs.
        tag: name of the embedding in the projector.
        sprite_size: side in pixels of each image in the sprite (images are resized).
    """

    def __init__(
        self,
        num_samples: int = 300,
        every_n_epochs: int = 1,
        tag: str = "val/features",
        sprite_size: int = 28,
    ) -> None:
        if num_samples < 1:
            raise InputError(f"num_samples must be positive, got {num_samples}")
        if every_n_epochs < 1:
            raise InputError(f"every_n_epochs must be positive, got {every_n_epochs}")
        self.num_samples = num_samples
        self.every_n_epochs = every_n_epochs
        self.tag = tag
        self.sprite_size = sprite_size
        self._rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._kept = {RENDERED: 0, REAL: 0}
        #: Directories written so far (one per reporting epoch).
        self.written: list[str] = []

    def _active(self, trainer: Trainer) -> bool:
        return (
            trainer.is_global_zero
            and not trainer.sanity_checking
            and (trainer.current_epoch + 1) % self.every_n_epochs == 0
            and any(isinstance(logger, TensorBoardLogger) for logger in trainer.loggers)
        )

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._rows = []
        self._kept = {RENDERED: 0, REAL: 0}

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Batch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not self._active(trainer) or min(self._kept.values()) >= self.num_samples:
            return
        domains = batch[DOMAIN]
        keep = torch.zeros_like(domains, dtype=torch.bool)
        for code in (RENDERED, REAL):
            positions = (domains == code).nonzero().flatten()[: self.num_samples - self._kept[code]]
            keep[positions] = True
            self._kept[code] += len(positions)
        if not bool(keep.any()):
            return
        images = batch[IMAGE]
        features = batch_features(pl_module, outputs, images, keep)
        labels = batch[LABEL]
        labels = labels if labels.ndim == 1 else torch.full_like(domains, IGNORE_LABEL)
        sprites = torch.nn.functional.interpolate(
            images[keep].float(), size=(self.sprite_size,) * 2, mode="bilinear", antialias=True
        ).clamp(0, 1)
        self._rows.append(
            (features.float().cpu(), sprites.cpu(), labels[keep].cpu(), domains[keep].cpu())
        )

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._active(trainer) or not self._rows:
            return
        features, sprites, labels, domains = (
            torch.cat(part) for part in zip(*self._rows, strict=True)
        )
        metadata = [
            [DOMAIN_NAMES.get(int(d), str(int(d))), "?" if int(y) == IGNORE_LABEL else str(int(y))]
            for d, y in zip(domains, labels, strict=True)
        ]
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                writer = logger.experiment
                writer.add_embedding(
                    features,
                    metadata=metadata,
                    label_img=sprites,
                    global_step=trainer.global_step,
                    tag=self.tag,
                    metadata_header=METADATA_HEADER,
                )
                writer.flush()
                self.written.append(writer.get_logdir())
        self._rows = []
