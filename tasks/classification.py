"""``ImageClassifier``: one label per image, accuracy reported per domain."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from lightning_synth.adaptation import AdaptationInputs
from lightning_synth.batch import DOMAIN, IGNORE_LABEL, IMAGE, LABEL, Batch, Stage
from lightning_synth.callbacks import labelled_image_grid, log_image
from lightning_synth.callbacks.bound_report import BoundReport
from lightning_synth.callbacks.model_selection import ModelSelection
from lightning_synth.errors import InputError
from lightning_synth.metrics.selection import selection_metric
from lightning_synth.nn import DigitConvNet, feature_dim
from lightning_synth.tasks.base import Adaptation, StepOutput, SynthTask

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
    """Classify whole images; train on the labelled samples of the mixed batch, adapt on all.

    ``feature_extractor`` maps images to feature vectors and ``classifier`` features to
    class scores, so the features of a trained classifier can be reused (for the domain
    discrepancy, for FID) through :meth:`features`. ``adaptation`` plugs in domain
    adaptation (:mod:`lightning_synth.adaptation`): the methods see the features and logits
    of every sample of the mixed batch, rendered and real, and their losses (logged as
    ``train/domain_loss``, ``train/mmd_loss``, ...) are added to the label loss.
    ``adaptation: null`` is the source-only classifier.

    Args:
        feature_extractor: images -> ``B x D`` features; default :class:`DigitConvNet`.
        classifier: features -> ``B x num_classes`` logits; default a linear layer.
        adaptation: a domain-adaptation method, a list of them, or ``null``.
        num_classes: number of classes.
        in_channels: channels of the input images (must match the DataModule).
        image_size: side of the input images; used only to size the default networks when
            the feature extractor does not declare ``out_features``.
        lr: learning rate.
        weight_decay: weight decay (L2 for Adam/SGD, decoupled for AdamW).
        optimizer: ``adam``, ``adamw`` or ``sgd`` (momentum 0.9).
        scheduler: ``none``; ``cosine`` over the whole run; or ``dann``, the annealing of
            Ganin et al. ``lr / (1 + lr_alpha p) ** lr_beta``.
        lr_alpha: ``alpha`` of the ``dann`` annealing (the paper: 10).
        lr_beta: ``beta`` of the ``dann`` annealing (the paper: 0.75).
        pad_samples: samples per domain for the proxy A-distance and the bound, logged at
            each validation end by a :class:`~lightning_synth.callbacks.BoundReport`; 0
            adds no report.
        select_by: the label-free validator the CLI keeps the best checkpoint by, logged
            as ``val/select_{select_by}`` by a
            :class:`~lightning_synth.callbacks.ModelSelection` the task adds (unless the
            Trainer has one): ``im`` (information maximisation of the real predictions),
            ``snd``, ``dev`` or ``rendered_acc``. Real labels are never used to choose.
        log_images: draw a validation batch with predictions to TensorBoard each epoch.
    """

    mode: ClassVar[Literal["min", "max"]] = "max"

    @property
    def monitor(self) -> str:  # type: ignore[override]
        """The metric the CLI keeps the best checkpoint by: a label-free validator."""
        return selection_metric(self.hparams.get("select_by", "im"))

    def __init__(
        self,
        feature_extractor: nn.Module | None = None,
        classifier: nn.Module | None = None,
        adaptation: Adaptation = None,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        optimizer: Literal["adam", "adamw", "sgd"] = "adam",
        scheduler: Literal["none", "cosine", "dann"] = "none",
        lr_alpha: float = 10.0,
        lr_beta: float = 0.75,
        pad_samples: int = 0,
        select_by: Literal["im", "snd", "dev", "rendered_acc"] = "im",
        log_images: bool = True,
    ) -> None:
        if num_classes < 2:
            raise InputError(f"num_classes must be at least 2, got {num_classes}")
        if pad_samples < 0:
            raise InputError(f"pad_samples must be >= 0 (0: no report), got {pad_samples}")
        super().__init__(
            networks={
                "feature_extractor": feature_extractor,
                "classifier": classifier,
                "adaptation": adaptation,
            }
        )

    def configure_models(
        self,
        feature_extractor: nn.Module | None = None,
        classifier: nn.Module | None = None,
        adaptation: Adaptation = None,
    ) -> None:
        hparams = self.hparams
        if feature_extractor is None:
            feature_extractor = DigitConvNet(hparams.in_channels)
        self.feature_extractor = feature_extractor
        dim = feature_dim(self.feature_extractor, hparams.in_channels, hparams.image_size)
        if classifier is None:
            classifier = nn.Linear(dim, hparams.num_classes)
        self.classifier = classifier
        self.configure_adaptation(adaptation, dim, hparams.num_classes)

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

    def configure_callbacks(self) -> list[Callback]:
        callbacks: list[Callback] = []
        samples = int(self.hparams.get("pad_samples", 0))
        if samples > 0:
            callbacks.append(BoundReport(num_samples=samples))
        # A Trainer's own ModelSelection (more validators, other settings) is kept: Lightning
        # would replace it by one returned here.
        if not any(isinstance(c, ModelSelection) for c in self.trainer.callbacks):
            callbacks.append(ModelSelection(validators=(self.hparams.get("select_by", "im"),)))
        return callbacks

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``B x D`` features of ``images`` (the feature extractor's output)."""
        return self.feature_extractor(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``B x num_classes`` logits of ``images``."""
        return self.classifier(self.feature_extractor(images))

    def shared_step(self, batch: Batch, stage: Stage) -> StepOutput:
        images, labels, domains = batch[IMAGE], batch[LABEL], batch[DOMAIN]
        features = self.feature_extractor(images)
        logits = self.classifier(features)
        label_loss = masked_cross_entropy(logits, labels)
        inputs = AdaptationInputs(
            features=features, domains=domains, logits=logits, images=images, classify=self
        )
        loss = label_loss + self.adaptation_loss(stage, inputs)
        on_step = stage == "train"
        options = {"on_step": on_step, "on_epoch": not on_step, "sync_dist": not on_step}
        batch_size = len(domains)
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=batch_size, **options)
        if len(self.adaptation):
            self.log(f"{stage}/label_loss", label_loss, batch_size=batch_size, **options)
        if on_step:
            self.log("train/lr", self.optimizer_lr(), batch_size=batch_size)
        self.log_domain_metrics(stage, logits.detach(), labels, domains)
        return {
            "loss": loss,
            "preds": logits.detach().argmax(dim=1),
            "features": features.detach(),
            "logits": logits.detach(),
        }

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
