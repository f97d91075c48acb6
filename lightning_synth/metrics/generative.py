"""How good are generated images? FID and KID in a domain feature space, and GAN-train accuracy.

FID (Heusel et al., 2017) and KID (Binkowski et al., 2018) compare the distributions of
real and generated images in the feature space of a network. torchmetrics computes them
with Inception-v3 features by default, which needs ``torch-fidelity`` and downloaded
weights, and says little about 28x28 digits anyway. Here any image network serves: for
digits, the features of an ``ImageClassifier`` trained by this project on real digits
(:class:`DomainFeatures`). Inception stays available for users who are online
(:class:`InceptionFeatures`).

GAN-train accuracy (Shmelkov et al., 2018): train a classifier on generated, labelled
samples only and test it on real labelled data; compare with the same classifier trained
on real data (:func:`gan_train_accuracy`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from lightning_synth.errors import InputError
from lightning_synth.image_io import rgb_to_gray
from lightning_synth.nn.backbones import DigitConvNet

__all__ = [
    "DomainFeatures",
    "InceptionFeatures",
    "GenerativeScores",
    "GANTrainResult",
    "default_classifier",
    "train_classifier",
    "classifier_accuracy",
    "gan_train_accuracy",
]


def _convert(images: torch.Tensor, channels: int | None, image_size: int | None) -> torch.Tensor:
    if channels is not None and images.shape[1] != channels:
        if images.shape[1] == 1:
            images = images.expand(-1, channels, -1, -1)
        elif images.shape[1] == 3 and channels == 1:
            images = rgb_to_gray(images)
        else:
            raise ValueError(f"cannot turn {images.shape[1]}-channel images into {channels}")
    if image_size is not None and images.shape[-2:] != (image_size, image_size):
        images = F.interpolate(
            images, size=(image_size, image_size), mode="bilinear", antialias=True
        ).clamp(0, 1)
    return images


class DomainFeatures(nn.Module):
    """A trained network as FID/KID feature extractor: images in [0, 1] -> ``B x D`` float32.

    Uses ``network.features(images)`` when the network has it (an ``ImageClassifier``),
    else ``network(images)``. Images are brought to the network's channels and size first.
    The network is frozen and stays in eval mode (batch norm and dropout off) whatever
    mode its parent is put in, and runs in float32 with autocast off, so the features do
    not depend on the training precision.

    Args:
        network: the trained network.
        image_size: side of the images the network was trained on (``None``: as given).
        channels: channels the network expects (``None``: as given).
    """

    def __init__(
        self, network: nn.Module, image_size: int | None = None, channels: int | None = None
    ) -> None:
        super().__init__()
        self.network = network.eval().requires_grad_(False)
        self.image_size = image_size
        self.channels = channels
        probe = next(network.parameters(), torch.empty(0))
        dummy = torch.zeros(
            2, channels or 3, image_size or 32, image_size or 32, device=probe.device
        )
        #: Length of the feature vector (torchmetrics reads it instead of probing with 299x299).
        self.num_features = int(self._features(dummy).shape[1])

    def train(self, mode: bool = True) -> DomainFeatures:
        return super().train(False)

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        extract = getattr(self.network, "features", None)
        out = extract(images) if callable(extract) else self.network(images)
        if out.ndim != 2:
            raise ValueError(
                f"the feature network returns shape {tuple(out.shape)}; it must return B x D"
            )
        return out.float()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=images.device.type, enabled=False):
            return self._features(_convert(images.float(), self.channels, self.image_size))


class InceptionFeatures(nn.Module):
    """Inception-v3 pool features (2048), as in the FID paper; needs ``torch-fidelity`` and
    downloads the weights on first use. Images in [0, 1]; gray images are repeated to RGB."""

    def __init__(self) -> None:
        super().__init__()
        from torchmetrics.image.fid import NoTrainInceptionV3
        from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE

        if not _TORCH_FIDELITY_AVAILABLE:
            raise ModuleNotFoundError(
                "Inception features need torch-fidelity (pip install torch-fidelity) and "
                "internet access for the weights; offline, use a domain feature network"
            )
        self.network = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"])
        self.num_features = 2048

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        rgb = _convert(images.float(), 3, None)
        return self.network((rgb.clamp(0, 1) * 255).to(torch.uint8)).reshape(len(images), -1)


class _Given(nn.Module):
    """Features computed beforehand: torchmetrics gets them as its "images"."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


class _SeededKID(KernelInceptionDistance):
    """KID whose subsets are drawn from a fixed seed (repeatable, and the training's random
    stream is left alone) and whose subset size shrinks to the number of samples."""

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        size = self.subset_size
        counts = [sum(len(f) for f in state) if isinstance(state, list) else len(state)
                  for state in (self.real_features, self.fake_features)]  # fmt: skip
        try:
            self.subset_size = max(2, min(size, *counts))
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(0)
                return super().compute()
        finally:
            self.subset_size = size


class GenerativeScores(nn.Module):
    """FID and KID of generated against real images in the space of ``features``.

    Features are computed once per image and shared by both metrics; the metrics sync
    their states across DDP processes in :meth:`compute`.

    Args:
        features: images in [0, 1] -> ``B x D`` features, with a ``num_features`` attribute
            (:class:`DomainFeatures` or :class:`InceptionFeatures`).
        kid_subset_size: samples per KID subset (reduced to the number of samples when fewer).
        kid_subsets: number of KID subsets.
    """

    def __init__(
        self, features: nn.Module, kid_subset_size: int = 1000, kid_subsets: int = 100
    ) -> None:
        super().__init__()
        dim = int(getattr(features, "num_features", 0))
        if dim < 1:
            raise InputError("the feature extractor must declare num_features (an int)")
        self.features = features
        self.fid = FrechetInceptionDistance(feature=_Given(dim))
        with warnings.catch_warnings():  # it keeps the features: D floats per image, fine
            warnings.filterwarnings("ignore", message=".*will save all extracted features")
            self.kid = _SeededKID(
                feature=_Given(dim), subset_size=kid_subset_size, subsets=kid_subsets
            )

    @torch.no_grad()
    def update(self, images: torch.Tensor, real: bool) -> None:
        """Add a batch of real or generated images in [0, 1].

        Args:
            images: ``B x C x H x W`` in [0, 1].
            real: whether they are real.
        """
        features = self.features(images).double()
        self.fid.update(features, real=real)
        self.kid.update(features, real=real)

    def num_samples(self) -> tuple[int, int]:
        """Real and generated samples seen by this process so far."""
        return int(self.fid.real_features_num_samples), int(self.fid.fake_features_num_samples)

    def compute(self) -> dict[str, torch.Tensor]:
        """``{"fid": ..., "kid": ..., "kid_std": ...}`` over all processes (at least 2
        samples of each kind)."""
        kid, kid_std = self.kid.compute()
        return {"fid": self.fid.compute().float(), "kid": kid.float(), "kid_std": kid_std.float()}

    def reset(self) -> None:
        self.fid.reset()
        self.kid.reset()


# -- GAN-train accuracy -------------------------------------------------------------------------


def default_classifier(channels: int = 1, num_classes: int = 10) -> nn.Module:
    """The classifier GAN-train accuracy trains: :class:`DigitConvNet` and a linear head.

    Args:
        channels: channels of the images.
        num_classes: number of classes.
    """
    backbone = DigitConvNet(channels)
    return nn.Sequential(backbone, nn.Linear(backbone.out_features, num_classes))


Sampler = Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def train_classifier(
    network: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor] | Sampler,
    steps: int = 1000,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
) -> nn.Module:
    """Train ``network`` with Adam and cross-entropy (plain PyTorch, on the data's device).

    Args:
        network: image classifier (logits out).
        data: ``(images in [0, 1], labels)`` tensors to draw batches from, or a function
            ``(batch_size, generator) -> (images, labels)`` that makes each batch (fresh
            generated samples).
        steps: optimizer steps.
        batch_size: images per step.
        lr: Adam's learning rate (cosine-annealed to 0).
        seed: seed of the batch order.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    network.train()
    for _ in range(steps):
        if callable(data):
            images, labels = data(batch_size, generator)
        else:
            index = torch.randint(len(data[1]), (batch_size,), generator=generator)
            images, labels = data[0][index.to(data[0].device)], data[1][index.to(data[1].device)]
        loss = F.cross_entropy(network(images.float()), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return network.eval()


@torch.no_grad()
def classifier_accuracy(
    network: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500
) -> float:
    """Fraction of ``images`` that ``network`` classifies as ``labels``.

    Args:
        network: image classifier.
        images: ``N x C x H x W`` in [0, 1].
        labels: ``N`` classes.
        batch_size: images per forward pass.
    """
    network.eval()
    correct = 0
    for start in range(0, len(labels), batch_size):
        logits = network(images[start : start + batch_size].float())
        correct += int((logits.argmax(dim=1) == labels[start : start + batch_size]).sum())
    return correct / max(1, len(labels))


@dataclass
class GANTrainResult:
    """GAN-train accuracy beside real-train accuracy (same classifier, same budget).

    Attributes:
        gan_train_acc: accuracy on real test data of the classifier trained on generated data.
        real_train_acc: accuracy on the same test data of the classifier trained on real data.
    """

    gan_train_acc: float
    real_train_acc: float

    @property
    def ratio(self) -> float:
        """``gan_train_acc / real_train_acc`` (1.0: generated data is as good as real)."""
        return self.gan_train_acc / max(self.real_train_acc, 1e-12)


def gan_train_accuracy(
    make_classifier: Callable[[], nn.Module],
    generated: tuple[torch.Tensor, torch.Tensor] | Sampler,
    real_train: tuple[torch.Tensor, torch.Tensor],
    real_test: tuple[torch.Tensor, torch.Tensor],
    steps: int = 1000,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
) -> GANTrainResult:
    """Shmelkov et al.'s GAN-train: the same classifier, from the same initial weights and
    with the same budget, trained once on generated and once on real data, both tested on
    ``real_test``.

    Args:
        make_classifier: builds a fresh classifier (called twice, under the same seed).
        generated: generated ``(images in [0, 1], labels)``, or a sampler making each batch.
        real_train: real training ``(images, labels)``.
        real_test: real test ``(images, labels)``.
        steps: optimizer steps of each training.
        batch_size: images per step.
        lr: Adam's learning rate.
        seed: seed of the initial weights and the batch order.
    """
    accuracies = []
    for data in (generated, real_train):
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            network = make_classifier().to(real_test[0].device)
            train_classifier(network, data, steps, batch_size, lr, seed)
        accuracies.append(classifier_accuracy(network, *real_test))
    return GANTrainResult(gan_train_acc=accuracies[0], real_train_acc=accuracies[1])
