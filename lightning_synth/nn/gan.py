"""DCGAN generator and discriminator (Radford et al., 2015), optionally class-conditional.

Both networks size themselves from ``image_size``: the generator projects the latent code
to a ``base x base`` map (``base`` in 3..7, e.g. 4 for 32x32, 7 for 28x28) and doubles it
with strided transposed convolutions until it reaches ``image_size``; the discriminator
mirrors it with strided convolutions. DCGAN's guidelines: batch norm everywhere except at
the generator's output and the discriminator's input, ReLU and a Tanh output in G,
LeakyReLU 0.2 in D, weights drawn from N(0, 0.02).

The generator interface the GAN task and :func:`load_generator` rely on, so that any
network can be injected:

* unconditional: ``generator(z) -> B x C x H x W`` in [-1, 1], ``z`` of shape ``B x latent_dim``;
* conditional: ``generator(z, labels)`` with ``labels`` a long tensor ``B``;
* the discriminator returns one raw score (a logit) per image: ``discriminator(x)`` or
  ``discriminator(x, labels)`` -> ``B``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from lightning_synth.errors import InputError

__all__ = [
    "DCGANGenerator",
    "DCGANDiscriminator",
    "ConditionalBatchNorm2d",
    "ExponentialMovingAverage",
    "ema_warm_up_update",
    "dcgan_init_",
    "upsampling_plan",
    "LoadedGenerator",
    "load_generator",
    "GENERATOR_CHECKPOINT_KEY",
]

#: Key under which the GAN task stores how to rebuild its generator in a checkpoint.
GENERATOR_CHECKPOINT_KEY = "lightning_synth_generator"


def upsampling_plan(image_size: int) -> tuple[int, int]:
    """``(base, steps)`` with ``image_size == base * 2**steps``, ``base`` as small as 4 allows.

    Args:
        image_size: side of the square images (8, 16, 28, 32, 64, ...).
    """
    base, steps = image_size, 0
    while base % 2 == 0 and base // 2 >= 4:
        base //= 2
        steps += 1
    if steps == 0:
        raise ValueError(
            f"image_size {image_size} cannot be reached by doubling a map of 3 to 7 pixels; "
            f"use an even size of at least 8 (8, 16, 28, 32, 64, ...)"
        )
    return base, steps


def dcgan_init_(module: nn.Module) -> nn.Module:
    """DCGAN initialisation in place: convolution and linear weights N(0, 0.02), batch-norm
    scales N(1, 0.02), biases 0. Returns ``module``.

    Args:
        module: the network to initialise (every submodule is visited).
    """
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(layer.weight, 0.0, 0.02)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d | nn.GroupNorm) and layer.weight is not None:
            nn.init.normal_(layer.weight, 1.0, 0.02)
            nn.init.zeros_(layer.bias)
    return module


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm whose scale and shift are looked up per class (de Vries et al., 2017).

    Args:
        num_features: channels.
        num_classes: number of classes.
    """

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(num_features, affine=False)
        self.scale = nn.Embedding(num_classes, num_features)
        self.shift = nn.Embedding(num_classes, num_features)
        nn.init.normal_(self.scale.weight, 0.0, 0.02)  # scale = 1 + N(0, 0.02), as DCGAN's BN
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        scale = 1.0 + self.scale(labels)[:, :, None, None]
        return self.norm(x) * scale + self.shift(labels)[:, :, None, None]


def _check_labels(labels: torch.Tensor | None, num_classes: int | None) -> None:
    if num_classes is None:
        return
    if labels is None:
        raise ValueError(f"this network is class-conditional ({num_classes} classes): pass labels")


class DCGANGenerator(nn.Module):
    """``z`` (``B x latent_dim``) -> images ``B x channels x image_size x image_size`` in [-1, 1].

    Conditional (``num_classes`` set): a learnt class embedding is concatenated to ``z``
    and every batch norm takes a per-class scale and shift.

    Args:
        latent_dim: size of the latent code.
        channels: channels of the images (1 gray, 3 colour).
        image_size: side of the images (see :func:`upsampling_plan`).
        width: channels of the last hidden layer; each earlier layer has twice as many.
        num_classes: number of classes for class-conditional generation; ``None`` for none.
        embedding_dim: size of the class embedding concatenated to ``z``.
        class_norm: class-conditional batch norm (per-class scale and shift) when conditional.
    """

    def __init__(
        self,
        latent_dim: int = 100,
        channels: int = 3,
        image_size: int = 32,
        width: int = 64,
        num_classes: int | None = None,
        embedding_dim: int = 32,
        class_norm: bool = True,
    ) -> None:
        super().__init__()
        base, steps = upsampling_plan(image_size)
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        conditional = num_classes is not None
        in_dim = latent_dim + (embedding_dim if conditional else 0)
        widths = [width * 2 ** (steps - 1 - i) for i in range(steps)]  # e.g. 256, 128, 64
        self.embed = nn.Embedding(num_classes, embedding_dim) if conditional else None
        self.convs = nn.ModuleList([nn.ConvTranspose2d(in_dim, widths[0], base, 1, 0, bias=False)])
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            self.convs.append(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False))
        self.convs.append(nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1))
        self.norms = nn.ModuleList(
            [
                ConditionalBatchNorm2d(c, num_classes)  # type: ignore[arg-type]
                if conditional and class_norm
                else nn.BatchNorm2d(c)
                for c in widths
            ]
        )
        dcgan_init_(self)
        if self.embed is not None:
            # Weak at first: an embedding as strong as z (N(0, 1)) makes the generator
            # ignore z and draw one image per class (measured on MNIST; the class-conditional
            # batch norm carries the class from the start).
            nn.init.normal_(self.embed.weight, 0.0, 0.1)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        _check_labels(labels, self.num_classes)
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels).to(z.dtype)], dim=1)
        x = z.reshape(z.shape[0], -1, 1, 1)
        for conv, norm in zip(self.convs[:-1], self.norms, strict=True):
            x = conv(x)
            x = norm(x, labels) if isinstance(norm, ConditionalBatchNorm2d) else norm(x)
            x = F.relu(x)
        return torch.tanh(self.convs[-1](x))


class DCGANDiscriminator(nn.Module):
    """Images -> one raw score per image (``B``; a logit for the non-saturating loss).

    Conditional (``num_classes`` set): a projection discriminator (Miyato & Koyama, 2018)
    adds ``<embed(label), sum of the last feature map>`` to the score.

    Args:
        channels: channels of the images.
        image_size: side of the images (see :func:`upsampling_plan`).
        width: channels of the first layer; each later layer has twice as many.
        num_classes: number of classes for a projection discriminator; ``None`` for none.
        norm: normalisation after each hidden convolution but the first: ``batch``
            (DCGAN), ``layer`` (one-group group norm; for WGAN-GP, whose per-sample gradient
            penalty batch norm would couple), or ``none``.
        spectral_norm: spectral normalisation of every weight (Miyato et al., 2018).
        auxiliary_classifier: add a class head on the last feature map (AC-GAN, Odena et
            al., 2017), read by :meth:`scores_and_class_logits`; needs ``num_classes``.
    """

    def __init__(
        self,
        channels: int = 3,
        image_size: int = 32,
        width: int = 64,
        num_classes: int | None = None,
        norm: Literal["batch", "layer", "none"] = "batch",
        spectral_norm: bool = False,
        auxiliary_classifier: bool = False,
    ) -> None:
        super().__init__()
        base, steps = upsampling_plan(image_size)
        if auxiliary_classifier and num_classes is None:
            raise InputError("an auxiliary classifier needs num_classes")
        self.num_classes = num_classes
        widths = [width * 2**i for i in range(steps)]  # e.g. 64, 128, 256
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2)]
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers.append(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=norm == "none"))
            if norm == "batch":
                layers.append(nn.BatchNorm2d(c_out))
            elif norm == "layer":
                layers.append(nn.GroupNorm(1, c_out))
            elif norm != "none":
                raise InputError(f"norm must be 'batch', 'layer' or 'none', got {norm!r}")
            layers.append(nn.LeakyReLU(0.2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(widths[-1], 1, base, 1, 0)
        self.embed = nn.Embedding(num_classes, widths[-1]) if num_classes is not None else None
        # like ``head``, a linear map of the whole last feature map (class needs the layout)
        self.classifier = (
            nn.Conv2d(widths[-1], num_classes, base)
            if auxiliary_classifier and num_classes
            else None
        )
        dcgan_init_(self)
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, 0.02)
        if spectral_norm:
            for module in list(self.modules()):
                if isinstance(module, nn.Conv2d | nn.Embedding):
                    _spectral_norm(module)

    def scores_and_class_logits(
        self, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw scores ``B`` and, with ``auxiliary_classifier``, class logits ``B x K``.

        Args:
            images: ``B x C x H x W`` in [-1, 1].
            labels: ``B`` classes (conditional only).
        """
        _check_labels(labels, self.num_classes)
        h = self.features(images)
        score = self.head(h).flatten()
        if self.embed is not None:
            score = score + (self.embed(labels) * h.sum(dim=(2, 3))).sum(dim=1)
        logits = self.classifier(h).flatten(1) if self.classifier is not None else None
        return score, logits

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.scores_and_class_logits(images, labels)[0]


def ema_warm_up_update(
    averaged: list[torch.Tensor],
    current: list[torch.Tensor],
    num_averaged: torch.Tensor,
    decay: float = 0.999,
) -> None:
    """``AveragedModel``'s ``multi_avg_fn``: an EMA step whose decay warms up.

    The decay is ``min(decay, (1 + n) / (10 + n))`` after ``n`` averages, so the first
    hundred or so updates do not keep the near-random early weights (at a constant 0.999,
    90 % of the average after 100 generator steps would still be the first step's weights).

    Args:
        averaged: the averaged tensors (updated in place).
        current: the network's tensors, in the same order.
        num_averaged: ``n``, the updates made so far.
        decay: the largest decay.
    """
    n = int(num_averaged)
    get_ema_multi_avg_fn(min(decay, (1.0 + n) / (10.0 + n)))(averaged, current, num_averaged)


class ExponentialMovingAverage(AveragedModel):
    """A frozen copy of a network whose weights follow the network's by an exponential
    moving average (``torch.optim.swa_utils.AveragedModel``). Sample from it (in eval
    mode), train the original.

    The first :meth:`update` copies the weights; later ones move each weight
    ``w_ema <- d * w_ema + (1 - d) * w`` with ``d = min(decay, (1 + n) / (10 + n))``
    after ``n`` updates (:func:`ema_warm_up_update`). Buffers (batch-norm statistics) are
    copied, not averaged: they follow the trained network, as in StyleGAN's ``G_ema``.
    The copy (``module.*``) and ``n`` (``n_averaged``) are saved in the state dict.

    Args:
        network: the network to average (copied now).
        decay: the largest decay; 0.999 averages over about the last 1,000 updates.
    """

    def __init__(self, network: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise InputError(f"the EMA decay must lie in [0, 1), got {decay}")
        # A partial of a module-level function (not a closure), so that ddp_spawn can
        # pickle the task.
        super().__init__(
            network, multi_avg_fn=partial(ema_warm_up_update, decay=decay), use_buffers=False
        )
        self.decay = decay
        # Frozen: no optimizer holds it, and DDP must not wait for gradients of it.
        self.module.requires_grad_(False)

    @property
    def num_updates(self) -> int:
        """Updates made so far."""
        return int(self.n_averaged)

    def current_decay(self) -> float:
        """The decay the next :meth:`update` uses (0 for the first, which copies)."""
        n = self.num_updates
        return 0.0 if n == 0 else min(self.decay, (1.0 + n) / (10.0 + n))

    def update(self, network: nn.Module) -> None:
        """Move the average towards the current weights of ``network``.

        Args:
            network: the trained network (same architecture as the copy).
        """
        self.update_parameters(network)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # Checkpoints written before the average was an AveragedModel named the count
        # ``num_updates``; the weights were already under ``module.``.
        old = state_dict.pop(prefix + "num_updates", None)
        if old is not None and prefix + "n_averaged" not in state_dict:
            state_dict[prefix + "n_averaged"] = old
        super()._load_from_state_dict(state_dict, prefix, *args)


@dataclass
class LoadedGenerator:
    """A generator read back from a GAN checkpoint, with what sampling it needs.

    Attributes:
        network: the generator (eval mode, frozen); outputs images in [-1, 1].
        latent_dim: size of ``z``.
        num_classes: number of classes when conditional, else ``None``.
        channels: channels of the images.
        image_size: side of the images.
        ema: whether ``network`` holds the exponential moving average of the weights.
    """

    network: nn.Module
    latent_dim: int
    num_classes: int | None
    channels: int
    image_size: int
    ema: bool

    @torch.no_grad()
    def sample(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1] for the codes ``z`` (and ``labels`` when conditional).

        Args:
            z: ``B x latent_dim`` codes.
            labels: ``B`` classes (conditional generators only).
        """
        out = self.network(z) if self.num_classes is None else self.network(z, labels)
        return ((out.float() + 1) / 2).clamp(0, 1)


def _instantiate(config: dict[str, Any]) -> nn.Module:
    module_name, _, class_name = str(config["class_path"]).rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**dict(config.get("init_args") or {}))


def load_generator(
    checkpoint: str | Path,
    use_ema: bool = True,
    generator: nn.Module | None = None,
    map_location: str | torch.device = "cpu",
) -> LoadedGenerator:
    """Read the generator of a checkpoint written by the ``GAN`` task, without the task.

    Args:
        checkpoint: path of a ``.ckpt`` file of the ``GAN`` task.
        use_ema: load the exponential moving average of the weights when the checkpoint
            has one (what the task samples with), else the raw weights.
        generator: the network to load the weights into; needed only when the generator was
            injected from Python (the checkpoint then cannot say how to build it).
        map_location: where to load the weights.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"generator checkpoint {path} does not exist")
    state = torch.load(path, map_location=map_location, weights_only=False)
    spec = state.get(GENERATOR_CHECKPOINT_KEY)
    if spec is None:
        raise ValueError(
            f"{path} is not a checkpoint of the GAN task (it has no {GENERATOR_CHECKPOINT_KEY!r} "
            f"entry); train a generator with `lightning-synth fit --config configs/gan_digits.yaml`"
        )
    if generator is None:
        if spec["config"] is None:
            raise ValueError(
                f"the generator in {path} was injected from Python and cannot be rebuilt from "
                f"the checkpoint; pass the same network as `generator`"
            )
        generator = _instantiate(spec["config"])
    ema = bool(use_ema and spec["ema"])
    prefix = "generator_ema.module." if ema else "generator."
    weights = {k[len(prefix) :]: v for k, v in state["state_dict"].items() if k.startswith(prefix)}
    generator.load_state_dict(weights)
    generator.eval().requires_grad_(False)
    return LoadedGenerator(
        network=generator.to(map_location),
        latent_dim=int(spec["latent_dim"]),
        num_classes=spec["num_classes"],
        channels=int(spec["channels"]),
        image_size=int(spec["image_size"]),
        ema=ema,
    )
