"""``DANN``: the paper's recipe under its own name (Ganin & Lempitsky, 2015; Ganin et al., 2016).

A preset of :class:`~lightning_synth.tasks.ImageClassifier`: the paper's MNIST network
(:class:`~lightning_synth.nn.GaninDigitNet`), an MLP label classifier, and the
adaptation methods its arguments describe: :class:`~lightning_synth.adaptation.
DomainAdversarial` (or :class:`~lightning_synth.adaptation.CDAN` with ``conditioning:
multilinear``) and, when any of their weights is set,
:class:`~lightning_synth.adaptation.RealSampleTerms`. Everything it does, an
``ImageClassifier`` with ``adaptation: [...]`` does too; this class keeps the arguments
users of the paper know.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from lightning_synth.adaptation import (
    CDAN,
    AdaptationMethod,
    DomainAdversarial,
    RealSampleTerms,
)
from lightning_synth.errors import InputError
from lightning_synth.nn.backbones import feature_dim
from lightning_synth.nn.domain_adversarial import GaninDigitNet, MLPHead
from lightning_synth.tasks.classification import ImageClassifier

__all__ = ["DANN"]


class DANN(ImageClassifier):
    """Domain-adversarial neural network: a classifier whose features cannot tell rendered from real.

    Train it on a :class:`~lightning_synth.datamodules.MixedDomainDataModule` with
    ``real_fraction`` above 0 (the paper: half of each batch) and ``hide_real_labels:
    true``. The label loss uses the labelled samples only, the domain loss every sample.
    The reversal strength follows ``adaptation_weight * (2 / (1 + exp(-gamma p)) - 1)``
    with ``p`` the training progress (a resumed run continues it); the learning rate the
    paper's annealing (``scheduler: dann``).

    Logs ``train/label_loss``, ``train/domain_loss``, ``train/grl_lambda``, ``train/lr``,
    ``{stage}/domain_acc`` (0.5 means "cannot tell"), the per-domain accuracies
    (``val/real_acc`` when the real validation set has labels: evaluation only, never
    training), and through a :class:`~lightning_synth.callbacks.BoundReport` ``val/pad``
    and the bound's terms.

    Args:
        feature_extractor: images -> ``B x D`` features; default
            :class:`~lightning_synth.nn.GaninDigitNet`, the paper's MNIST network.
        classifier: features -> class logits; default an MLP with two hidden layers of 100.
        domain_classifier: the discriminator, features (or CDAN's multilinear map) ->
            "is real" logits; default one hidden layer of 100.
        consistency_augment: images -> augmented images for ``consistency_weight``; default
            :class:`~lightning_synth.nn.RandomAffine`.
        num_classes: number of classes.
        in_channels: channels of the input images (must match the DataModule).
        image_size: side of the input images (sizes the default heads).
        adaptation_weight: the largest reversal strength; 0 trains the source-only baseline
            (the discriminator still learns and reports ``domain_acc``).
        grl_schedule: ``dann`` ramps the strength up from 0 with the paper's schedule;
            ``constant`` holds it at ``adaptation_weight`` from the first step.
        grl_gamma: steepness of the ``dann`` schedule (the paper: 10).
        lr: learning rate (``mu0`` of the annealing).
        weight_decay: weight decay.
        optimizer: ``adam``, ``adamw`` or ``sgd`` (momentum 0.9; the paper's choice).
        scheduler: ``none``; ``cosine``; or ``dann``, ``lr / (1 + lr_alpha p) ** lr_beta``.
        lr_alpha: ``alpha`` of the ``dann`` annealing (the paper: 10).
        lr_beta: ``beta`` of the ``dann`` annealing (the paper: 0.75).
        conditioning: ``none`` (the paper) or ``multilinear`` (CDAN, Long et al. 2018).
        entropy_weight: weight of the real samples' mean prediction entropy (0: off).
        diversity_weight: weight of the entropy of their mean prediction, maximised (0: off).
        consistency_weight: weight of the pseudo-label consistency under augmentation (0: off).
        pseudo_label_threshold: the probability a real prediction needs to be a pseudo-label.
        pad_samples: samples per domain for the proxy A-distance and the bound (0: none).
        select_by: the label-free validator the CLI keeps the best checkpoint by
            (``val/select_im``, ...; see :class:`~lightning_synth.tasks.ImageClassifier`).
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
        select_by: Literal["im", "snd", "dev", "rendered_acc"] = "im",
        log_images: bool = True,
    ) -> None:
        if adaptation_weight < 0:
            raise InputError(
                f"adaptation_weight must be >= 0 (0 is the source-only baseline), got {adaptation_weight}"
            )
        if conditioning not in ("none", "multilinear"):
            raise InputError(f"conditioning must be 'none' or 'multilinear', got {conditioning!r}")
        if feature_extractor is None:
            feature_extractor = GaninDigitNet(in_channels)
        if classifier is None:
            dim = feature_dim(feature_extractor, in_channels, image_size)
            classifier = MLPHead(dim, num_classes, hidden=(100, 100))
        adversary = CDAN if conditioning == "multilinear" else DomainAdversarial
        methods: list[AdaptationMethod] = [
            adversary(
                discriminator=domain_classifier,
                weight=adaptation_weight,
                schedule=grl_schedule,
                gamma=grl_gamma,
            )
        ]
        if entropy_weight or diversity_weight or consistency_weight:
            methods.append(
                RealSampleTerms(
                    entropy_weight=entropy_weight,
                    diversity_weight=diversity_weight,
                    consistency_weight=consistency_weight,
                    threshold=pseudo_label_threshold,
                    augment=consistency_augment,
                    schedule=grl_schedule,
                    gamma=grl_gamma,
                )
            )
        super().__init__(
            feature_extractor=feature_extractor,
            classifier=classifier,
            adaptation=methods,
            num_classes=num_classes,
            in_channels=in_channels,
            image_size=image_size,
            lr=lr,
            weight_decay=weight_decay,
            optimizer=optimizer,
            scheduler=scheduler,
            lr_alpha=lr_alpha,
            lr_beta=lr_beta,
            pad_samples=pad_samples,
            select_by=select_by,
            log_images=log_images,
        )
