"""``GAN``: a generator and a discriminator trained in turn (Goodfellow et al., 2014).

**Schedule.** The task uses Lightning's manual optimization: each training batch makes
one discriminator step; every ``d_steps_per_g_step``-th batch also makes one generator
step (on a fresh noise batch of the same size, with the batch's labels when conditional).
Lightning counts *every* ``optimizer.step()`` in ``trainer.global_step``, so with the
default 1:1 schedule one batch advances ``global_step`` by 2, and with ``k`` D steps per G
step, ``k`` batches advance it by ``k + 1``. Set ``max_steps`` accordingly: 10,000
generator steps at 1:1 is ``max_steps: 20000``. :attr:`GAN.generator_steps` and
:attr:`GAN.discriminator_steps` give the two counts (saved in checkpoints).

**Precision and DDP.** Both optimizers go through the trainer's precision plugin, so under
``16-mixed`` the one GradScaler scales both losses, skips a step whose gradients
overflowed and updates its scale after every step. Under DDP every parameter of the other
network is unused in each backward pass, so DDP must look for unused parameters: pass
``--trainer.strategy ddp_find_unused_parameters_true`` (or
``ddp_spawn_find_unused_parameters_true``, or ``DDPStrategy(find_unused_parameters=True)``).
With plain ``ddp`` the discriminator's first step would use gradients that were never
averaged and the next backward pass would fail, so the task stops at the start of
``fit`` and says what to pass. (One backward pass that feeds both networks would need
no unused parameters, but it would step both networks at once, which is a different
algorithm than alternating steps.) ``--trainer.sync_batchnorm true`` is optional:
without it each process normalises over its own batch, as DCGAN on one device with
that batch.

**EMA.** With ``ema_decay`` set, ``generator_ema`` (a frozen
``torch.optim.swa_utils.AveragedModel`` of the generator, in the checkpoint; see
:class:`~lightning_synth.nn.ExponentialMovingAverage`) follows the generator's weights
after every generator step; validation, the image grid, ``predict`` and checkpoint
sampling (:func:`lightning_synth.nn.load_generator`) use it. Lightning's
``EMAWeightAveraging`` callback is not used: it averages the whole LightningModule (the
discriminator too), swaps the averages in for validation and writes them over the trained
weights when fit ends.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torchvision.utils import make_grid

from lightning_synth.batch import DOMAIN, IGNORE_LABEL, IMAGE, LABEL, REAL, RENDERED, Batch, Stage
from lightning_synth.callbacks import log_image
from lightning_synth.errors import InputError
from lightning_synth.metrics.generative import DomainFeatures, GenerativeScores, InceptionFeatures
from lightning_synth.nn.gan import (
    GENERATOR_CHECKPOINT_KEY,
    DCGANDiscriminator,
    DCGANGenerator,
    ExponentialMovingAverage,
)
from lightning_synth.nn.gan_losses import (
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    r1_penalty,
)
from lightning_synth.tasks.base import StepOutput, SynthTask
from lightning_synth.tasks.classification import ImageClassifier

__all__ = ["GAN", "load_feature_network"]

_DOMAINS: dict[str, int | None] = {"real": REAL, "rendered": RENDERED, "both": None}


def load_feature_network(checkpoint: str) -> DomainFeatures:
    """The features of a classifier checkpoint of this project, as a FID/KID extractor.

    Any ``ImageClassifier`` (or subclass, e.g. ``DANN``) checkpoint works; its class is
    read from the checkpoint when the CLI wrote it.

    Args:
        checkpoint: path of the ``.ckpt`` file.
    """
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    class_path = state.get("hyper_parameters", {}).get("_class_path")
    cls: Any = ImageClassifier
    if class_path:
        import importlib

        module, _, name = class_path.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
    model = cls.load_from_checkpoint(checkpoint, map_location="cpu")
    hparams = model.hparams
    return DomainFeatures(model, hparams.get("image_size"), hparams.get("in_channels"))


class GAN(SynthTask):
    """Generative adversarial network, DCGAN by default, optionally class-conditional.

    Trains on the images of the domain ``train_on`` in each batch (images in [0, 1] are
    scaled to [-1, 1], the range of the generator's Tanh). With ``num_classes`` set, the
    generator and the discriminator are class-conditional (class embedding and
    class-conditional batch norm in G, a projection discriminator, optionally an AC-GAN
    class head: ``class_loss_weight``) and learn from the labels of the batch, which must
    then be known. :meth:`sample` draws images; ``GeneratedSource`` (datamodules) serves a
    checkpoint's samples as a training domain.

    Logs ``train/d_loss``, ``train/g_loss``, ``train/d_real`` and ``train/d_fake`` (the
    discriminator's mean raw score on real and generated images; a logit for the
    non-saturating loss), ``train/gp`` / ``train/r1`` when used, and a grid of images from
    fixed noise (one row per class when conditional) as ``train/samples`` every
    ``log_images_every_n_steps`` steps. Validation and test log ``{stage}/d_real``,
    ``{stage}/d_fake`` and, with a feature network, ``{stage}/fid`` and ``{stage}/kid``;
    the best checkpoint is then the one with the lowest ``val/fid`` (else the last).

    Args:
        generator: ``z`` (``B x latent_dim``) [and labels] -> images in [-1, 1]; default
            :class:`~lightning_synth.nn.DCGANGenerator` sized by ``channels``/``image_size``.
        discriminator: images [and labels] -> ``B`` raw scores; default
            :class:`~lightning_synth.nn.DCGANDiscriminator` (batch norm; layer norm for
            ``wgan_gp``; no norm with ``spectral_norm``).
        feature_network: a trained network whose features measure FID and KID (e.g. an
            ``ImageClassifier`` trained on real images); not saved in checkpoints.
        latent_dim: size of the noise vector ``z``.
        channels: channels of the images; must match the DataModule.
        image_size: side of the images; must match the DataModule.
        num_classes: number of classes for class-conditional generation; ``None`` for
            unconditional.
        generator_width: channels of the default generator's last hidden layer.
        discriminator_width: channels of the default discriminator's first layer.
        loss: ``non_saturating`` (with logits), ``hinge``, or ``wgan_gp`` (Wasserstein loss
            with gradient penalty).
        gp_weight: weight of the gradient penalty (``wgan_gp`` only).
        r1_gamma: R1 penalty on real images, ``gamma / 2 * E||grad D(x)||^2``; 0 is off.
        class_loss_weight: AC-GAN auxiliary classification (conditional only; 0 is off): the
            discriminator also learns to classify real images, and the generator to make
            images it classifies as their label; weight of both cross-entropies. Needs a
            discriminator with ``scores_and_class_logits`` (the default gets a class head).
        spectral_norm: spectral normalisation in the default discriminator.
        d_steps_per_g_step: discriminator steps (batches) per generator step (5 is usual
            for ``wgan_gp``).
        lr_g: generator learning rate (Adam).
        lr_d: discriminator learning rate (Adam).
        betas: Adam's betas for both (DCGAN: 0.5, 0.999).
        ema_decay: decay of the generator's exponential moving average; ``None`` disables it.
        train_on: domain(s) of the batch to learn: ``real``, ``rendered`` or ``both``.
        feature_checkpoint: path of a classifier checkpoint whose features measure FID and
            KID (the YAML-friendly form of ``feature_network``); read when evaluation starts.
        fid_features: ``domain`` (the feature network, if any) or ``inception``
            (Inception-v3; needs torch-fidelity and downloads weights).
        kid_subset_size: samples per KID subset (fewer when fewer samples were seen).
        grid_columns: images per row of the fixed-noise grid (rows: the classes, or as many
            rows as columns).
        log_images_every_n_steps: how often (in ``global_step``) the grid is logged; 0: only
            when training ends.
    """

    mode: ClassVar[Literal["min", "max"]] = "min"

    def __init__(
        self,
        generator: nn.Module | None = None,
        discriminator: nn.Module | None = None,
        feature_network: nn.Module | None = None,
        latent_dim: int = 100,
        channels: int = 3,
        image_size: int = 32,
        num_classes: int | None = None,
        generator_width: int = 64,
        discriminator_width: int = 64,
        loss: Literal["non_saturating", "hinge", "wgan_gp"] = "non_saturating",
        gp_weight: float = 10.0,
        r1_gamma: float = 0.0,
        class_loss_weight: float = 0.0,
        spectral_norm: bool = False,
        d_steps_per_g_step: int = 1,
        lr_g: float = 2e-4,
        lr_d: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        ema_decay: float | None = 0.999,
        train_on: Literal["real", "rendered", "both"] = "real",
        feature_checkpoint: str | None = None,
        fid_features: Literal["domain", "inception"] = "domain",
        kid_subset_size: int = 1000,
        grid_columns: int = 8,
        log_images_every_n_steps: int = 500,
    ) -> None:
        if d_steps_per_g_step < 1:
            raise InputError(f"d_steps_per_g_step must be at least 1, got {d_steps_per_g_step}")
        if num_classes is not None and num_classes < 2:
            raise InputError(f"num_classes must be None or at least 2, got {num_classes}")
        if train_on not in _DOMAINS:
            raise InputError(f"train_on must be one of {tuple(_DOMAINS)}, got {train_on!r}")
        if loss not in ("non_saturating", "hinge", "wgan_gp"):
            raise InputError(f"loss must be non_saturating, hinge or wgan_gp, got {loss!r}")
        if class_loss_weight < 0 or (class_loss_weight > 0 and num_classes is None):
            raise InputError("class_loss_weight must be >= 0, and > 0 only with num_classes set")
        if feature_network is not None and feature_checkpoint is not None:
            raise InputError("give feature_network or feature_checkpoint, not both")
        super().__init__(networks={"generator": generator, "discriminator": discriminator})
        # Evaluation only: kept out of the module tree, so neither the state dict, DDP nor
        # the optimizers see it (it is moved to the task's device when used).
        object.__setattr__(self, "_feature_network", feature_network)
        self._scores: dict[str, GenerativeScores] = {}
        self.automatic_optimization = False
        self.register_buffer("num_d_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("num_g_steps", torch.zeros((), dtype=torch.long))
        rows = num_classes if num_classes is not None else grid_columns
        noise = torch.randn(grid_columns, latent_dim, generator=torch.Generator().manual_seed(0))
        self.register_buffer("grid_noise", noise.repeat(rows, 1))
        self.register_buffer("grid_labels", torch.arange(rows).repeat_interleave(grid_columns))
        self._last_grid_step = 0

    # -- networks ------------------------------------------------------------------------------
    def configure_models(
        self, generator: nn.Module | None = None, discriminator: nn.Module | None = None
    ) -> None:
        h = self.hparams
        self._generator_config: dict[str, Any] | None = None
        if generator is None:
            init_args = {
                "latent_dim": h.latent_dim,
                "channels": h.channels,
                "image_size": h.image_size,
                "width": h.generator_width,
                "num_classes": h.num_classes,
            }
            generator = DCGANGenerator(**init_args)
            self._generator_config = {
                "class_path": "lightning_synth.nn.gan.DCGANGenerator",
                "init_args": init_args,
            }
        elif isinstance(h.get("generator"), dict) and "class_path" in h["generator"]:
            self._generator_config = dict(h["generator"])  # the CLI saved its config
        if discriminator is None:
            norm = "none" if h.spectral_norm else "layer" if h.loss == "wgan_gp" else "batch"
            discriminator = DCGANDiscriminator(
                h.channels,
                h.image_size,
                h.discriminator_width,
                h.num_classes,
                norm,
                h.spectral_norm,
                auxiliary_classifier=h.class_loss_weight > 0,
            )
        elif h.class_loss_weight > 0 and not hasattr(discriminator, "scores_and_class_logits"):
            raise ValueError(
                "class_loss_weight > 0 needs a discriminator with a scores_and_class_logits(images, "
                "labels) -> (scores, class logits) method, like DCGANDiscriminator"
            )
        self.generator = generator
        self.discriminator = discriminator
        self.generator_ema = (
            ExponentialMovingAverage(generator, h.ema_decay) if h.ema_decay is not None else None
        )

    @property
    def conditional(self) -> bool:
        return self.hparams.num_classes is not None

    @property
    def sampler(self) -> nn.Module:
        """The network that makes images for evaluation: the EMA copy, else the generator."""
        return self.generator_ema if self.generator_ema is not None else self.generator

    @property
    def generator_steps(self) -> int:
        """Generator steps taken (``global_step`` counts these plus the discriminator's)."""
        return int(self.num_g_steps)

    @property
    def discriminator_steps(self) -> int:
        """Discriminator steps taken."""
        return int(self.num_d_steps)

    def generate(
        self,
        z: torch.Tensor,
        labels: torch.Tensor | None = None,
        network: nn.Module | None = None,
    ) -> torch.Tensor:
        """Images in [-1, 1] from codes ``z`` (and ``labels`` when conditional).

        Args:
            z: ``B x latent_dim`` codes.
            labels: ``B`` classes (conditional only).
            network: the generator to use; :attr:`generator` when ``None``.
        """
        network = self.generator if network is None else network
        return network(z, labels) if self.conditional else network(z)

    def noise(self, num: int) -> torch.Tensor:
        """``num`` codes ``z ~ N(0, I)`` on the task's device, in its dtype.

        Args:
            num: how many.
        """
        return torch.randn(num, self.hparams.latent_dim, device=self.device, dtype=self.dtype)

    @torch.no_grad()
    def sample(
        self, num: int, labels: torch.Tensor | None = None, z: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``num`` images in [0, 1] from :attr:`sampler`, in eval mode (its mode is restored).

        Args:
            num: how many images.
            labels: ``num`` classes (conditional only); ``arange(num) % num_classes`` if ``None``.
            z: ``num x latent_dim`` codes; fresh ones if ``None``.
        """
        if self.conditional and labels is None:
            labels = torch.arange(num, device=self.device) % self.hparams.num_classes
        return self._sample_eval(self.noise(num) if z is None else z, labels)

    @torch.no_grad()
    def _sample_eval(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Images in [0, 1] from :attr:`sampler` in eval mode (its mode is restored)."""
        sampler = self.sampler
        was_training = sampler.training
        try:
            return self._to_unit(self.generate(z, labels, sampler.eval()))
        finally:
            sampler.train(was_training)

    @staticmethod
    def _to_unit(images: torch.Tensor) -> torch.Tensor:
        return ((images.float() + 1) / 2).clamp(0, 1)

    def _discriminate(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return (
            self.discriminator(images, labels) if self.conditional else self.discriminator(images)
        )

    def _scores_and_class_loss(
        self, images: torch.Tensor, labels: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """D's scores, and the auxiliary cross-entropy of ``images`` as ``labels`` (if on)."""
        if self.hparams.class_loss_weight <= 0:
            return self._discriminate(images, labels), None
        scores, logits = self.discriminator.scores_and_class_logits(images, labels)
        return scores, F.cross_entropy(logits.float(), labels)

    # -- data ------------------------------------------------------------------------------------
    def _select(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The images (scaled to [-1, 1]) and labels (conditional) of the trained domain(s)."""
        images, labels, domains = batch[IMAGE], batch[LABEL], batch[DOMAIN]
        h = self.hparams
        if images.shape[1:] != (h.channels, h.image_size, h.image_size):
            raise ValueError(
                f"the GAN makes {h.channels} x {h.image_size} x {h.image_size} images but the "
                f"batch holds {tuple(images.shape[1:])}; set the model's channels/image_size to "
                f"the DataModule's"
            )
        if h.train_on != "both":
            keep = domains == _DOMAINS[h.train_on]
            if not bool(keep.any()):
                raise ValueError(
                    f"a batch has no {h.train_on} images but the GAN trains on train_on="
                    f"{h.train_on!r}; with MixedDomainDataModule set real_fraction (1.0 trains "
                    f"on real images only, 0.0 on rendered) or change train_on"
                )
            images, labels = images[keep], labels[keep]
        if not self.conditional:
            return images * 2 - 1, None
        if labels.ndim != 1 or bool((labels == IGNORE_LABEL).any()):
            raise ValueError(
                "a conditional GAN (num_classes set) needs a class label for every image it "
                "trains on; the batch has hidden labels (hide_real_labels?) or dense labels"
            )
        if bool((labels >= h.num_classes).any()) or bool((labels < 0).any()):
            raise ValueError(f"labels must lie in 0..{h.num_classes - 1}")
        return images * 2 - 1, labels

    # -- training --------------------------------------------------------------------------------
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        h = self.hparams
        betas = tuple(h.betas)
        return [
            torch.optim.Adam(self.generator.parameters(), lr=h.lr_g, betas=betas),
            torch.optim.Adam(self.discriminator.parameters(), lr=h.lr_d, betas=betas),
        ]

    def shared_step(self, batch: Batch, stage: Stage) -> StepOutput:
        real, labels = self._select(batch)
        if stage == "train":
            return self._training_step(real, labels)
        return self._evaluation_step(real, labels, stage)

    def _training_step(self, real: torch.Tensor, labels: torch.Tensor | None) -> StepOutput:
        h = self.hparams
        g_opt, d_opt = self.optimizers()  # type: ignore[misc]
        count = real.shape[0]
        g_turn = (int(self.num_d_steps) + 1) % h.d_steps_per_g_step == 0
        z = self.noise(count)
        # One fake batch serves both steps: detached for D, through G for G's step.
        with torch.set_grad_enabled(g_turn):
            fake = self.generate(z, labels)
        kind = "wgan" if h.loss == "wgan_gp" else h.loss
        logs: dict[str, torch.Tensor] = {}

        with self.toggled_optimizer(d_opt):
            real_scores, real_class_loss = self._scores_and_class_loss(real, labels)
            fake_scores = self._discriminate(fake.detach(), labels)
            d_loss = discriminator_loss(real_scores, fake_scores, kind)
            if real_class_loss is not None:  # AC-GAN; its classifier learns from real images
                logs["d_class_loss"] = real_class_loss.detach()
                d_loss = d_loss + h.class_loss_weight * real_class_loss
            if h.loss == "wgan_gp":
                penalty = gradient_penalty(self._discriminate, real, fake, labels)
                logs["gp"] = penalty.detach()
                d_loss = d_loss + h.gp_weight * penalty
            if h.r1_gamma > 0:
                penalty = r1_penalty(self._discriminate, real, labels)
                logs["r1"] = penalty.detach()
                d_loss = d_loss + h.r1_gamma / 2 * penalty
            d_opt.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            d_opt.step()
        self.num_d_steps += 1
        logs.update(
            d_loss=d_loss.detach(),
            d_real=real_scores.detach().float().mean(),
            d_fake=fake_scores.detach().float().mean(),
        )

        if g_turn:
            with self.toggled_optimizer(g_opt):
                fake_scores, fake_class_loss = self._scores_and_class_loss(fake, labels)
                g_loss = generator_loss(fake_scores, kind)
                if fake_class_loss is not None:
                    logs["g_class_loss"] = fake_class_loss.detach()
                    g_loss = g_loss + h.class_loss_weight * fake_class_loss
                g_opt.zero_grad(set_to_none=True)
                self.manual_backward(g_loss)
                g_opt.step()
            self.num_g_steps += 1
            if self.generator_ema is not None:
                self.generator_ema.update(self.generator)
            logs["g_loss"] = g_loss.detach()

        for name, value in logs.items():
            self.log(f"train/{name}", value, prog_bar=name.endswith("loss"), batch_size=count)
        return {"loss": logs["d_loss"]}

    def on_train_batch_end(self, outputs: Any, batch: Batch, batch_idx: int) -> None:
        every = int(self.hparams.log_images_every_n_steps)
        if every > 0 and self.global_step // every > self._last_grid_step // every:
            self.log_sample_grid()

    def on_train_end(self) -> None:
        if self._last_grid_step != self.global_step:
            self.log_sample_grid()

    @torch.no_grad()
    def sample_grid(self) -> torch.Tensor:
        """The fixed-noise grid, ``3 x H x W`` in [0, 1]: one row per class when conditional."""
        images = self._sample_eval(self.grid_noise, self.grid_labels if self.conditional else None)
        return make_grid(images.cpu(), nrow=self.hparams.grid_columns, padding=2, pad_value=1)

    def log_sample_grid(self) -> None:
        """Send the fixed-noise grid to TensorBoard as ``train/samples`` (main process)."""
        self._last_grid_step = self.global_step
        if self.global_rank == 0 and self.loggers:
            log_image(self.loggers, "train/samples", self.sample_grid(), self.global_step)

    # -- evaluation ------------------------------------------------------------------------------
    def _evaluation_step(
        self, real: torch.Tensor, labels: torch.Tensor | None, stage: Stage
    ) -> StepOutput:
        h = self.hparams
        count = real.shape[0]
        z = self.noise(count)
        fake = self.generate(z, labels, self.sampler)
        real_scores = self._discriminate(real, labels).float()
        fake_scores = self._discriminate(fake, labels).float()
        kind = "wgan" if h.loss == "wgan_gp" else h.loss
        d_loss = discriminator_loss(real_scores, fake_scores, kind)
        values = {"d_loss": d_loss, "d_real": real_scores.mean(), "d_fake": fake_scores.mean()}
        for name, value in values.items():
            self.log(f"{stage}/{name}", value, batch_size=count, sync_dist=True)
        scores = self._generative_scores()
        if scores is not None:
            scores.update(self._to_unit(real), real=True)
            scores.update(self._to_unit(fake), real=False)
        return {"loss": d_loss}

    def _generative_scores(self) -> GenerativeScores | None:
        """FID/KID metrics, built on first use and kept out of the state dict."""
        if "scores" not in self._scores:
            h = self.hparams
            features: nn.Module | None = self._feature_network
            if features is None and h.feature_checkpoint:
                features = load_feature_network(h.feature_checkpoint)
            elif features is not None and not hasattr(features, "num_features"):
                features = DomainFeatures(features, h.image_size, h.channels)
            elif features is None and h.fid_features == "inception":
                features = InceptionFeatures()
            if features is None:
                return None
            self._scores["scores"] = GenerativeScores(features, h.kid_subset_size)
        return self._scores["scores"].to(self.device)

    def _log_generative_scores(self, stage: Stage) -> None:
        scores = self._scores.get("scores")
        if scores is None:
            return
        if min(scores.num_samples()) >= 2:
            values = scores.compute()
            self.log(f"{stage}/fid", values["fid"], sync_dist=False)
            self.log(f"{stage}/kid", values["kid"], sync_dist=False)
        scores.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_generative_scores("val")

    def on_test_epoch_end(self) -> None:
        self._log_generative_scores("test")

    @property
    def monitor(self) -> str | None:  # type: ignore[override]
        """``val/fid`` when FID is measured, else ``None`` (the CLI keeps the last checkpoint)."""
        h = self.hparams
        measured = self._feature_network is not None or h.feature_checkpoint
        return "val/fid" if measured or h.fid_features == "inception" else None

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> Batch:
        """Generated images in [0, 1], as many as the batch has, with its labels when
        conditional (``IGNORE_LABEL`` otherwise)."""
        count = batch[IMAGE].shape[0]
        labels = batch[LABEL] if self.conditional else None
        if labels is not None and bool((labels < 0).any()):
            labels = torch.arange(count, device=self.device) % self.hparams.num_classes
        images = self._to_unit(self.generate(self.noise(count), labels, self.sampler))
        if labels is None:
            labels = torch.full((count,), IGNORE_LABEL, device=self.device)
        return {IMAGE: images, LABEL: labels}

    # -- set-up and checkpoints ----------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        h = self.hparams
        for name, expected in (("image_size", h.image_size), ("channels", h.channels)):
            given = getattr(datamodule, name, None)
            if isinstance(given, int) and given != expected:
                raise ValueError(
                    f"the DataModule makes images with {name}={given} but the GAN was built "
                    f"for {name}={expected}; set model.init_args.{name}: {given}"
                )

    def on_fit_start(self) -> None:
        # The strategy has wrapped the task by now; its public DDP module says how.
        wrapped = self.trainer.strategy.model
        if isinstance(wrapped, DistributedDataParallel) and not wrapped.find_unused_parameters:
            raise RuntimeError(
                "GAN under DDP needs find_unused_parameters (each backward pass leaves the "
                "other network's parameters unused): pass --trainer.strategy "
                "ddp_find_unused_parameters_true (ddp_spawn_find_unused_parameters_true "
                "for ddp_spawn), or DDPStrategy(find_unused_parameters=True) from Python"
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        h = self.hparams
        checkpoint[GENERATOR_CHECKPOINT_KEY] = {
            "config": self._generator_config,
            "latent_dim": h.latent_dim,
            "num_classes": h.num_classes,
            "channels": h.channels,
            "image_size": h.image_size,
            "ema": self.generator_ema is not None,
        }
