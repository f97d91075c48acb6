"""``DANN``: domain-adversarial training (Ganin & Lempitsky, 2015; Ganin et al., 2016, JMLR).

A feature extractor feeds a label classifier and, through a gradient-reversal layer, a
domain classifier. The label classifier learns from the labelled (rendered) samples; the
domain classifier learns to tell rendered from real on *every* sample of the mixed batch;
the reversed gradient pushes the features to make that impossible. Features the domain
classifier cannot separate carry what the label classifier learnt over to real images.

Four options go beyond the paper. ``conditioning: multilinear`` feeds the domain classifier
the outer product of features and (detached) class probabilities, as CDAN does (Long et
al., 2018): rendered and real features are then aligned class by class instead of as two
clouds, which keeps a rendered "3" from being matched with a real "2". ``entropy_weight``
adds the mean prediction entropy of the real (unlabelled) samples to the loss (Grandvalet
& Bengio, 2005): the decision boundaries move out of dense regions of real data;
``diversity_weight`` subtracts the entropy of their mean prediction, so that entropy
minimisation cannot settle on a few classes (information maximisation, as in SHOT, Liang
et al., 2020). ``consistency_weight`` trains on the real samples' own confident
predictions: a real image the model already classifies with probability of at least
``pseudo_label_threshold`` must keep that class under a random rotation, zoom and shift
(FixMatch's pseudo-labelled consistency, Sohn et al., 2020).

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
from lightning_synth.nn.augment import RandomAffine
from lightning_synth.nn.domain_adversarial import DomainClassifier, GaninDigitNet, MLPHead
from lightning_synth.nn.gradient_reversal import GradientReversal
from lightning_synth.nn.schedules import annealed_lr_factor, grl_lambda, training_progress
from lightning_synth.tasks.base import StepOutput
from lightning_synth.tasks.classification import ImageClassifier, masked_cross_entropy

__all__ = [
    "DANN",
    "balanced_domain_loss",
    "domain_pixel_mask",
    "multilinear_map",
    "masked_entropy",
    "marginal_entropy",
]


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


def multilinear_map(features: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
    """Outer product of features and class probabilities per sample (or per pixel): CDAN's map.

    ``B x D`` and ``B x C`` give ``B x (D * C)``; ``B x D x H x W`` and ``B x C x H x W``
    give ``B x (D * C) x H x W``. Channel ``d * C + c`` is feature ``d`` times the
    probability of class ``c``.

    Args:
        features: ``B x D`` (or ``B x D x ...``) features.
        probabilities: ``B x C`` (or ``B x C x ...``) class probabilities, same trailing
            shape as ``features``.
    """
    if features.shape[0] != probabilities.shape[0] or features.shape[2:] != probabilities.shape[2:]:
        raise ValueError(
            f"features {tuple(features.shape)} and probabilities {tuple(probabilities.shape)} "
            "must agree in every dimension but the channels (dim 1)"
        )
    product = features.unsqueeze(2) * probabilities.unsqueeze(1).to(features.dtype)
    return product.flatten(1, 2)


def masked_entropy(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of the class distributions of the samples (or pixels) in ``mask``.

    Exactly 0 (with a graph) when the mask is empty.

    Args:
        logits: ``B x C`` (or ``B x C x H x W``) class scores.
        mask: ``B`` (or ``B x H x W``) bool, which predictions count.
    """
    log_probabilities = F.log_softmax(logits.float(), dim=1)
    entropy = -(log_probabilities.exp() * log_probabilities).sum(dim=1)
    weights = mask.to(entropy.dtype)
    return (entropy * weights).sum() / weights.sum().clamp(min=1.0)


def marginal_entropy(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of the mean class distribution of the predictions in ``mask``.

    High when the predictions spread over the classes, 0 when all pick the same class;
    exactly 0 (with a graph) when the mask is empty.

    Args:
        logits: ``B x C`` (or ``B x C x H x W``) class scores.
        mask: ``B`` (or ``B x H x W``) bool, which predictions count.
    """
    probabilities = F.softmax(logits.float(), dim=1).movedim(1, -1)[mask]
    if len(probabilities) == 0:
        return logits.sum() * 0.0
    mean = probabilities.mean(dim=0)
    return -(mean * mean.clamp(min=1e-12).log()).sum()


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
        consistency_augment: images -> augmented images for ``consistency_weight``; default
            :class:`~lightning_synth.nn.RandomAffine` (up to 10 degrees, 10 % shift, zoom
            0.9-1.1).
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
        conditioning: what the domain classifier sees: ``none``, the features (the
            paper); ``multilinear``, the outer product of features and detached class
            probabilities (CDAN, Long et al. 2018), for class-by-class alignment. A
            default domain classifier is sized for either; an injected one must take
            ``D * num_classes`` channels for ``multilinear``.
        entropy_weight: weight of the mean prediction entropy of the real samples
            (unlabelled; valid pixels for dense tasks) in the loss, ramped up with the
            reversal's schedule shape (0: off).
        diversity_weight: weight of the entropy of the real samples' mean prediction,
            subtracted from the loss (ramped like ``entropy_weight``; 0: off): keeps
            entropy minimisation from collapsing onto a few classes.
        consistency_weight: weight of the cross-entropy between the class a real image is
            predicted with (at least ``pseudo_label_threshold`` probability) and the
            prediction for its augmented copy (ramped like ``entropy_weight``; 0: off).
            Per-image classifiers only.
        pseudo_label_threshold: the probability a real prediction needs to count as a
            pseudo-label.
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
        consistency_augment: nn.Module | None = None,
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
        conditioning: Literal["none", "multilinear"] = "none",
        entropy_weight: float = 0.0,
        diversity_weight: float = 0.0,
        consistency_weight: float = 0.0,
        pseudo_label_threshold: float = 0.95,
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
        real_sample_weights = {
            "entropy_weight": entropy_weight,
            "diversity_weight": diversity_weight,
            "consistency_weight": consistency_weight,
        }
        for name, weight in real_sample_weights.items():
            if weight < 0:
                raise ValueError(f"{name} must be >= 0 (0 turns it off), got {weight}")
        if not 0 <= pseudo_label_threshold <= 1:
            raise ValueError(
                f"pseudo_label_threshold must be in [0, 1], got {pseudo_label_threshold}"
            )
        if conditioning not in ("none", "multilinear"):
            raise ValueError(f"conditioning must be 'none' or 'multilinear', got {conditioning!r}")
        # ImageClassifier's __init__ takes ``backbone``/``head``; DANN names its networks
        # itself, so it hands them straight to SynthTask (which saves DANN's arguments).
        super(ImageClassifier, self).__init__(
            networks={
                "feature_extractor": feature_extractor,
                "classifier": classifier,
                "domain_classifier": domain_classifier,
                "consistency_augment": consistency_augment,
            }
        )
        self._total_steps = float("inf")
        self._lambda = 0.0
        self._ramp = 1.0

    # -- hooks of SynthTask ------------------------------------------------------------
    def configure_models(
        self,
        feature_extractor: nn.Module | None = None,
        classifier: nn.Module | None = None,
        domain_classifier: nn.Module | None = None,
        consistency_augment: nn.Module | None = None,
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
            if hparams.get("conditioning", "none") == "multilinear":
                dim *= hparams.num_classes
            domain_classifier = DomainClassifier(dim, hidden=(100,))
        self.domain_classifier = domain_classifier
        self.grl = GradientReversal(0.0)
        self.consistency_augment = (
            consistency_augment if consistency_augment is not None else RandomAffine()
        )
        if any(isinstance(p, nn.parameter.UninitializedParameter) for p in self.parameters()):
            # Lazy layers (``in_features: null``) take their size from one dummy pass, here,
            # before DDP wraps the model or a checkpoint is loaded into it.
            was_training = self.training
            self.eval()
            with torch.no_grad():
                dummy = torch.zeros(2, hparams.in_channels, hparams.image_size, hparams.image_size)
                features = self.feature_extractor(dummy)
                self.domain_classifier(self.domain_input(features, self.classifier(features)))
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

    def domain_input(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """What the domain classifier sees: the reversed features, times the detached class
        probabilities with ``conditioning: multilinear``."""
        reversed_features = self.grl(features)
        if self.hparams.get("conditioning", "none") != "multilinear":
            return reversed_features
        return multilinear_map(reversed_features, logits.detach().softmax(dim=1))

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

    def schedule_ramp(self) -> float:
        """The schedule's shape at the current progress, from 0 to 1 (1 for ``constant``)."""
        if self.hparams.grl_schedule == "constant":
            return 1.0
        return grl_lambda(self.progress, self.hparams.grl_gamma)

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        self._ramp = self.schedule_ramp()
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

    def real_prediction_terms(
        self, logits: torch.Tensor, domains: torch.Tensor, pixel_mask: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """``real_entropy`` (mean prediction entropy) and ``real_diversity`` (entropy of the
        mean prediction) of the real samples, those whose weight is set; valid pixels only
        for dense tasks."""
        terms: dict[str, torch.Tensor] = {}
        weights = self.real_term_weights()
        wanted = {"real_entropy": masked_entropy, "real_diversity": marginal_entropy}
        wanted = {name: term for name, term in wanted.items() if weights[name] != 0}
        if not wanted:
            return terms
        real_mask = (domains == REAL).view(-1, *([1] * (logits.ndim - 2)))
        real_mask = real_mask.expand(len(domains), *logits.shape[2:])
        if pixel_mask is not None and pixel_mask.shape == real_mask.shape:
            real_mask = real_mask & pixel_mask
        for name, term in wanted.items():
            terms[name] = term(logits, real_mask)
        return terms

    def real_term_weights(self) -> dict[str, float]:
        """Signed loss weights of the terms on the real samples (0: off); diversity is
        maximised, so its weight enters negated."""
        hparams = self.hparams
        return {
            "real_entropy": float(hparams.get("entropy_weight", 0.0)),
            "real_diversity": -float(hparams.get("diversity_weight", 0.0)),
            "consistency_loss": float(hparams.get("consistency_weight", 0.0)),
        }

    def real_samples_loss(self, real_terms: dict[str, torch.Tensor]) -> torch.Tensor | float:
        """The weighted, ramped sum of the entropy, diversity and consistency terms."""
        weights = self.real_term_weights()
        return sum(
            (
                weights[name] * self._ramp * value
                for name, value in real_terms.items()
                if name in weights
            ),
            0.0,
        )

    def consistency_terms(
        self, images: torch.Tensor, logits: torch.Tensor, domains: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``consistency_loss``: cross-entropy between the confident real predictions (the
        pseudo-labels) and the predictions for augmented copies, averaged over all real
        samples (FixMatch); ``pseudo_label_fraction``: the share of real samples confident
        enough."""
        if logits.ndim != 2:
            raise ValueError(
                "consistency_weight needs per-image predictions (B x classes); this classifier "
                f"gives {tuple(logits.shape)}. Set consistency_weight: 0 for dense tasks."
            )
        is_real = domains == REAL
        probabilities = logits.detach()[is_real].float().softmax(dim=1)
        confidence, pseudo_labels = probabilities.max(dim=1)
        confident = confidence >= float(self.hparams.pseudo_label_threshold)
        fraction = confident.float().mean() if len(confident) else logits.new_zeros(())
        if not bool(confident.any()):
            return {"consistency_loss": logits.sum() * 0.0, "pseudo_label_fraction": fraction}
        augmented = self.consistency_augment(images[is_real][confident])
        augmented_logits = self.classifier(self.feature_extractor(augmented))
        per_sample = F.cross_entropy(
            augmented_logits.float(), pseudo_labels[confident], reduction="sum"
        )
        return {"consistency_loss": per_sample / len(confident), "pseudo_label_fraction": fraction}

    # -- the step ----------------------------------------------------------------------------
    def shared_step(self, batch: Batch, stage: Stage) -> StepOutput:
        images, labels, domains = batch[IMAGE], batch[LABEL], batch[DOMAIN]
        features = self.feature_extractor(images)
        logits = self.classifier(features)
        domain_logits = self.domain_classifier(self.domain_input(features, logits))
        label_loss = masked_cross_entropy(logits, labels)
        # Dense tasks: the background (no depth reading) looks the same in both domains and
        # would teach the domain classifier nothing but "background"; only valid pixels count.
        pixel_mask = domain_pixel_mask(batch, domain_logits)
        domain_loss = balanced_domain_loss(domain_logits, domains, pixel_mask)
        real_terms = self.real_prediction_terms(logits, domains, pixel_mask)
        loss = label_loss + domain_loss
        if stage == "train":
            if self.real_term_weights()["consistency_loss"] > 0:
                real_terms.update(self.consistency_terms(images, logits, domains))
            loss = loss + self.real_samples_loss(real_terms)

        on_step, sync = stage == "train", stage != "train"
        log = {"on_step": on_step, "on_epoch": not on_step, "sync_dist": sync}
        batch_size = len(domains)
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=batch_size, **log)
        self.log(f"{stage}/label_loss", label_loss, batch_size=batch_size, **log)
        self.log(f"{stage}/domain_loss", domain_loss, batch_size=batch_size, **log)
        for name, value in real_terms.items():
            self.log(f"{stage}/{name}", value, batch_size=batch_size, **log)
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
