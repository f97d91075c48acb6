"""``ImageClassifier``: one label per image, accuracy reported per domain."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from lightning_synth.batch import DOMAIN, IGNORE_LABEL, IMAGE, LABEL, Batch, Stage
from lightning_synth.callbacks import labelled_image_grid, log_image
from lightning_synth.nn import DigitConvNet, feature_dim
from lightning_synth.tasks.base import StepOutput, SynthTask

__all__ = ["ImageClassifier", "masked_cross_entropy"]


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the labelled samples; exactly 0 (with a graph) when none are labelled.

    ``F.cross_entropy`` with ``ignore_index`` returns NaN for a batch without labels,
    which would poison the optimizer state; an all-hidden batch must train nothing.

    Args:
        logits: ``B x K`` (or ``B x K x H x W``) scores.
        labels: ``B`` (or ``B x H x W``) classes, ``IGNORE_LABEL`` where unknown.
    """
    if not bool((labels != IGNORE_LABEL).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_LABEL)


class ImageClassifier(SynthTask):
    """Classify whole images; train on the labelled samples of the mixed batch.

    ``backbone`` maps images to feature vectors and ``head`` features to class
    scores, so the features of a trained classifier can be reused (for the
    domain discrepancy, for FID) through :meth:`features`.

    Args:
        backbone: image -> ``B x D`` features; default :class:`DigitConvNet`.
        head: features -> ``B x num_classes`` logits; default a linear layer.
        num_classes: number of classes.
        in_channels: channels of the input images (must match the DataModule).
        image_size: side of the input images; used only to size ``head`` when the
            backbone does not declare ``out_features``.
        lr: learning rate.
        weight_decay: weight decay (L2 for Adam/SGD, decoupled for AdamW).
        optimizer: ``adam``, ``adamw`` or ``sgd`` (momentum 0.9).
        scheduler: ``none`` or ``cosine`` (over the whole run).
        log_images: draw a validation batch with predictions to TensorBoard each epoch.
    """

    monitor: ClassVar[str] = "val/real_acc"
    mode: ClassVar[Literal["min", "max"]] = "max"

    def __init__(
        self,
        backbone: nn.Module | None = None,
        head: nn.Module | None = None,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        optimizer: Literal["adam", "adamw", "sgd"] = "adam",
        scheduler: Literal["none", "cosine"] = "none",
        log_images: bool = True,
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        super().__init__(networks={"backbone": backbone, "head": head})

    def configure_models(
        self, backbone: nn.Module | None = None, head: nn.Module | None = None
    ) -> None:
        hparams = self.hparams
        self.backbone = backbone if backbone is not None else DigitConvNet(hparams.in_channels)
        if head is None:
            dim = feature_dim(self.backbone, hparams.in_channels, hparams.image_size)
            head = nn.Linear(dim, hparams.num_classes)
        self.head = head

    def configure_metrics(self) -> None:
        self.add_domain_metrics(
            MetricCollection(
                {
                    # micro: the share of images classified right (torchmetrics defaults to macro)
                    "acc": MulticlassAccuracy(
                        self.hparams.num_classes, average="micro", ignore_index=IGNORE_LABEL
                    )
                }
            )
        )

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``B x D`` features of ``images`` (the backbone's output)."""
        return self.backbone(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``B x num_classes`` logits of ``images``."""
        return self.head(self.backbone(images))

    def shared_step(self, batch: Batch, stage: Stage) -> StepOutput:
        logits = self(batch[IMAGE])
        labels = batch[LABEL]
        loss = masked_cross_entropy(logits, labels)
        batch_size = int((labels != IGNORE_LABEL).sum().clamp(min=1))
        self.log(
            f"{stage}/loss", loss, prog_bar=True, batch_size=batch_size, sync_dist=stage != "train"
        )
        self.log_domain_metrics(stage, logits.detach(), labels, batch[DOMAIN])
        return {"loss": loss, "preds": logits.detach().argmax(dim=1)}

    def on_validation_batch_end(
        self, outputs: Any, batch: Batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if batch_idx != 0 or not self.hparams.log_images or self.trainer.sanity_checking:
            return
        if not self.trainer.is_global_zero:
            return
        grid = labelled_image_grid(batch[IMAGE], outputs["preds"], batch[LABEL], batch[DOMAIN])
        log_image(self.loggers, "val/predictions", grid, self.global_step)

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> Batch:
        probabilities = self(batch[IMAGE]).softmax(dim=1)
        return {
            "probabilities": probabilities,
            "pred": probabilities.argmax(dim=1),
            LABEL: batch[LABEL],
            DOMAIN: batch[DOMAIN],
        }
