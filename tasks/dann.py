"""``DANN``: domain-adversarial training (Ganin & Lempitsky, 2015; Ganin et al., 2016, JMLR).

A feature extractor feeds a label classifier and, through a gradient-reversal layer, a
domain classifier. The label classifier learns from the labelled (rendered) samples; the
domain classifier learns to tell rendered from real on *every* sample of the mixed batch;
the reversed gradient pushes the features to make that impossible. Features the domain
classifier cannot separate carry what the label classifier learnt over to real images.

With ``adaptation_weight: 0`` the reversal is off and the same code and config train the
source-only baseline (the domain classifier still learns, and ``val/domain_acc`` says
how separable the baseline's features are).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from lightning_synth.batch import DOMAIN, IMAGE, LABEL, REAL, VALID, Batch, Stage
from lightning_synth.callbacks.bound_report import BoundReport
from lightning_synth.nn.domain_adversarial import DomainClassifier, GaninDigitNet, MLPHead
from lightning_synth.nn.gradient_reversal import GradientReversal
from lightning_synth.nn.schedules import annealed_lr_factor, grl_lambda, training_progress
from lightning_synth.tasks.base import StepOutput
from lightning_synth.tasks.classification import ImageClassifier, masked_cross_entropy

__all__ = ["DANN", "balanced_domain_loss", "domain_pixel_mask"]


def balanced_domain_loss(
    logits: torch.Tensor, domains: torch.Tensor, pixel_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Binary cross-entropy of "is real", each domain weighing the same whatever its share.

    The mean loss of the rendered samples and the mean loss of the real samples are
    averaged (over the domains present), so a batch of 3 real and 61 rendered images
    trains the domain classifier as much on real as on rendered. Per-pixel logits
    (``B x H x W``) are averaged over each image's pixels first, or over the pixels of
    ``pixel_mask`` (samples with none are left out).

    Args:
        logits: ``B`` (or ``B x ...``) domain logits, positive for "real".
        domains: ``B`` domain codes.
        pixel_mask: ``B x ...`` bool, the pixels that count (e.g. the person in a depth
            frame, not the empty background both domains share); ``None``: all.
    """
    is_real = (domains == REAL).long()
    target = is_real.to(torch.float32).view(-1, *([1] * (logits.ndim - 1))).expand(logits.shape)
    per_pixel = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")
    per_pixel = per_pixel.reshape(len(domains), -1)
    if pixel_mask is None:
        per_sample = per_pixel.mean(dim=1)
        counted = torch.ones_like(per_sample, dtype=torch.bool)
    else:
        mask = pixel_mask.reshape(len(domains), -1).to(per_pixel.dtype)
        pixels = mask.sum(dim=1)
        per_sample = (per_pixel * mask).sum(dim=1) / pixels.clamp(min=1)
        counted = pixels > 0
    counts = torch.bincount(is_real[counted], minlength=2).to(per_sample.dtype)
    present = (counts > 0).sum().clamp(min=1)
    weights = torch.where(counted, 1.0 / counts[is_real].clamp(min=1), 0.0)
    return (per_sample * weights).sum() / present


def domain_pixel_mask(batch: Batch, domain_logits: torch.Tensor) -> torch.Tensor | None:
    """The batch's ``valid`` pixels at the resolution of per-pixel domain logits.

    ``None`` for per-image logits or batches without ``valid``: every pixel counts.
    """
    if domain_logits.ndim < 3 or VALID not in batch:
        return None
    valid = batch[VALID]
    if valid.shape[-2:] != domain_logits.shape[-2:]:
        resized = F.interpolate(valid[:, None].float(), size=domain_logits.shape[-2:])
        valid = resized[:, 0] > 0.5
    return valid


def _probe_channels(network: nn.Module, in_channels: int, image_size: int) -> int:
    """Channels (dim 1) of what ``network`` returns for one image; eval mode, no gradient."""
    declared = getattr(network, "out_features", None)
    if isinstance(declared, int):
        return declared
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            probe = next(network.parameters(), torch.empty(0))
            output = network(
                torch.zeros(1, in_channels, image_size, image_size, device=probe.device)
            )
    finally:
        network.train(was_training)
    return int(output.shape[1])


class DANN(ImageClassifier):
    """Domain-adversarial neural network: a classifier whose features cannot tell rendered from real.

    Train it on a :class:`~lightning_synth.datamodules.MixedDomainDataModule` with
    ``real_fraction`` above 0 (the paper: half of each batch) and ``hide_real_labels:
    true``. The label loss uses the labelled samples only, the domain loss every sample
    (rendered = 0, real = 1, balanced). The reversal strength follows the paper's
    schedule ``lambda_p = adaptation_weight * (2 / (1 + exp(-gamma p)) - 1)``, with ``p``
    the training progress from ``trainer.global_step / trainer.estimated_stepping_batches``
    (so a resumed run continues the schedule).

    Logs ``train/label_loss``, ``train/domain_loss``, ``train/grl_lambda``, ``train/lr``,
    ``{stage}/domain_acc`` (mean of the two domains' accuracies: 0.5 means "cannot tell"),
    the per-domain accuracies of ``ImageClassifier`` (``val/real_acc`` when the real
    validation set has labels: evaluation only, never training), and through a
    :class:`~lightning_synth.callbacks.BoundReport` ``val/pad`` and the bound's terms.

    The best checkpoint is chosen by ``val/real_acc``, which uses real labels; for a
    model selection that never sees a real label, monitor e.g. ``val/rendered_acc`` or
    ``val/pad`` with your own ``ModelCheckpoint`` in ``trainer.callbacks``.

    Networks act on ``B x D`` features or ``B x D x H x W`` feature maps alike: with maps,
    the classifier and the default domain classifier give one prediction per pixel (a
    per-pixel domain loss), as a dense task needs; when the batch has ``valid`` masks
    (depth frames: the person), only those pixels enter the domain loss and accuracy.

    Args:
        feature_extractor: images -> ``B x D`` (or ``B x D x H x W``) features; default
            :class:`~lightning_synth.nn.GaninDigitNet`, the paper's MNIST network.
        classifier: features -> class logits; default an MLP with two hidden layers of 100.
        domain_classifier: features -> "is real" logits (``B`` or ``B x H x W``); default
            :class:`~lightning_synth.nn.DomainClassifier` with one hidden layer of 100.
        num_classes: number of classes.
        in_channels: channels of the input images (must match the DataModule).
        image_size: side of the input images (sizes the default heads).
        adaptation_weight: the largest reversal strength; 0 trains the source-only baseline.
        grl_schedule: ``dann`` ramps the strength up from 0 with the paper's schedule;
            ``constant`` holds it at ``adaptation_weight`` from the first step.
        grl_gamma: steepness of the ``dann`` schedule (the paper: 10).
        lr: learning rate (``mu0`` of the annealing).
        weight_decay: weight decay.
        optimizer: ``adam``, ``adamw`` or ``sgd`` (momentum 0.9; the paper's choice).
        scheduler: ``none``; ``cosine`` over the run; or ``dann``, the paper's annealing
            ``mu_p = lr / (1 + lr_alpha p) ** lr_beta``.
        lr_alpha: ``alpha`` of the ``dann`` annealing (the paper: 10).
        lr_beta: ``beta`` of the ``dann`` annealing (the paper: 0.75).
        pad_samples: samples per domain for the proxy A-distance and the bound, logged at
            each validation end by a :class:`~lightning_synth.callbacks.BoundReport`;
            0 adds no report.
        log_images: draw a validation batch with predictions to TensorBoard each epoch.
    """

    def __init__(
        self,
        feature_extractor: nn.Module | None = None,
        classifier: nn.Module | None = None,
        domain_classifier: nn.Module | None = None,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
        adaptation_weight: float = 1.0,
        grl_schedule: Literal["dann", "constant"] = "dann",
        grl_gamma: float = 10.0,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: Literal["adam", "adamw", "sgd"] = "adam",
        scheduler: Literal["none", "cosine", "dann"] = "dann",
        lr_alpha: float = 10.0,
        lr_beta: float = 0.75,
        pad_samples: int = 500,
        log_images: bool = True,
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if adaptation_weight < 0:
            raise ValueError(
                f"adaptation_weight must be >= 0 (0 is the source-only baseline), got {adaptation_weight}"
            )
        if pad_samples < 0:
            raise ValueError(f"pad_samples must be >= 0, got {pad_samples}")
        # ImageClassifier's __init__ takes ``backbone``/``head``; DANN names its networks
        # itself, so it hands them straight to SynthTask (which saves DANN's arguments).
        super(ImageClassifier, self).__init__(
            networks={
                "feature_extractor": feature_extractor,
                "classifier": classifier,
                "domain_classifier": domain_classifier,
            }
        )
        self._total_steps = float("inf")
        self._lambda = 0.0

    # -- hooks of SynthTask ------------------------------------------------------------
    def configure_models(
        self,
        feature_extractor: nn.Module | None = None,
        classifier: nn.Module | None = None,
        domain_classifier: nn.Module | None = None,
    ) -> None:
        hparams = self.hparams
        if feature_extractor is None:
            feature_extractor = GaninDigitNet(hparams.in_channels)
        self.feature_extractor = feature_extractor
        dim = _probe_channels(feature_extractor, hparams.in_channels, hparams.image_size)
        if classifier is None:
            classifier = MLPHead(dim, hparams.num_classes, hidden=(100, 100))
        self.classifier = classifier
        if domain_classifier is None:
            domain_classifier = DomainClassifier(dim, hidden=(100,))
        self.domain_classifier = domain_classifier
        self.grl = GradientReversal(0.0)
        if any(isinstance(p, nn.parameter.UninitializedParameter) for p in self.parameters()):
            # Lazy layers (``in_features: null``) take their size from one dummy pass, here,
            # before DDP wraps the model or a checkpoint is loaded into it.
            was_training = self.training
            self.eval()
            with torch.no_grad():
                dummy = torch.zeros(2, hparams.in_channels, hparams.image_size, hparams.image_size)
                features = self.feature_extractor(dummy)
                self.classifier(features)
                self.domain_classifier(features)
            self.train(was_training)

    def configure_metrics(self) -> None:
        super().configure_metrics()
        self.domain_accuracy = nn.ModuleDict(
            {
                f"{stage}_domain": MulticlassAccuracy(2, average="macro")
                for stage in ("train", "val", "test")
            }
        )

    # -- the networks --------------------------------------------------------------------
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Features of ``images`` (the feature extractor's output)."""
        return self.feature_extractor(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits of ``images``."""
        return self.classifier(self.feature_extractor(images))

    # -- the schedule ----------------------------------------------------------------------
    @property
    def progress(self) -> float:
        """Training progress ``p`` in [0, 1]: ``global_step / estimated_stepping_batches``."""
        return training_progress(self.trainer.global_step, self._total_steps)

    def current_lambda(self) -> float:
        """The reversal strength for the current step (``adaptation_weight`` times the schedule)."""
        hparams = self.hparams
        if hparams.grl_schedule == "constant":
            return float(hparams.adaptation_weight)
        return float(hparams.adaptation_weight) * grl_lambda(self.progress, hparams.grl_gamma)

    def on_train_start(self) -> None:
        self._total_steps = float(self.trainer.estimated_stepping_batches)

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        self._lambda = self.current_lambda()
        self.grl.set_lambda(self._lambda)

    def configure_optimizers(self) -> Any:
        config = super().configure_optimizers()
        if self.hparams.scheduler != "dann":
            return config
        total = float(self.trainer.estimated_stepping_batches)
        alpha, beta = float(self.hparams.lr_alpha), float(self.hparams.lr_beta)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            config,
            lambda step: annealed_lr_factor(training_progress(step, total), alpha, beta),
        )
        return {"optimizer": config, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_callbacks(self) -> list[Callback]:
        if self.hparams.pad_samples <= 0:
            return []
        return [BoundReport(num_samples=int(self.hparams.pad_samples))]

    # -- the step ----------------------------------------------------------------------------
    def shared_step(self, batch: Batch, stage: Stage) -> StepOutput:
        images, labels, domains = batch[IMAGE], batch[LABEL], batch[DOMAIN]
        features = self.feature_extractor(images)
        logits = self.classifier(features)
        domain_logits = self.domain_classifier(self.grl(features))
        label_loss = masked_cross_entropy(logits, labels)
        # Dense tasks: the background (no depth reading) looks the same in both domains and
        # would teach the domain classifier nothing but "background"; only valid pixels count.
        pixel_mask = domain_pixel_mask(batch, domain_logits)
        domain_loss = balanced_domain_loss(domain_logits, domains, pixel_mask)
        loss = label_loss + domain_loss

        on_step, sync = stage == "train", stage != "train"
        log = {"on_step": on_step, "on_epoch": not on_step, "sync_dist": sync}
        batch_size = len(domains)
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=batch_size, **log)
        self.log(f"{stage}/label_loss", label_loss, batch_size=batch_size, **log)
        self.log(f"{stage}/domain_loss", domain_loss, batch_size=batch_size, **log)
        domain_preds = (domain_logits.detach() > 0).long().reshape(len(domains), -1)
        domain_target = (domains == REAL).long()[:, None].expand_as(domain_preds)
        accuracy = self.domain_accuracy[f"{stage}_domain"]
        if pixel_mask is None:
            accuracy(domain_preds.flatten(), domain_target.flatten())
        else:
            flat_mask = pixel_mask.reshape(len(domains), -1)
            accuracy(domain_preds[flat_mask], domain_target[flat_mask])
        self.log(f"{stage}/domain_acc", accuracy, batch_size=batch_size, **log)
        if stage == "train":
            self.log("train/grl_lambda", self._lambda, batch_size=batch_size)
            optimizers = self.trainer.optimizers if self._trainer is not None else []
            if optimizers:
                self.log("train/lr", optimizers[0].param_groups[0]["lr"], batch_size=batch_size)
        self.log_domain_metrics(stage, logits.detach(), labels, domains)
        return {"loss": loss, "preds": logits.detach().argmax(dim=1), "features": features.detach()}
