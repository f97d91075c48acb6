"""``Denoiser``: a learned denoiser trained on synthetic noise, measured on real noise.

Training batches mix noisy/clean crops of clean photographs through a noise model
(domain 0) with crops of real noisy photographs whose references stay hidden (domain 1).
The network learns from the rendered pairs (L1 or L2); the real crops reach it in two
optional ways: through ``adaptation`` (a method of :mod:`lightning_synth.adaptation` on
the network's middle feature maps, one sample per pixel) and through a self-supervised
term on the real images alone (Neighbor2Neighbor or Noise2Self).

Validation and test denoise whole images (in tiles) and report, per domain, ``psnr``,
``ssim`` and the input's ``noisy_psnr``: ``val/real_psnr``, ``test/rendered_ssim``, ...
``predict`` writes each denoised image to ``<run directory>/denoised/<name>.png``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.functional.image import peak_signal_noise_ratio
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure
from torchvision.utils import make_grid

from lightning_synth.adaptation import AdaptationInputs
from lightning_synth.batch import (
    DOMAIN,
    DOMAIN_NAMES,
    IMAGE,
    NAME,
    REAL,
    REFERENCE,
    VALID,
    Batch,
    Stage,
)
from lightning_synth.callbacks import log_image
from lightning_synth.errors import InputError
from lightning_synth.image_io import dihedral
from lightning_synth.nn.denoisers import DnCNN, neighbor2neighbor_loss, noise2self_loss, tiled
from lightning_synth.tasks.base import Adaptation, StepOutput, SynthTask
from lightning_synth.tasks.image_optimization import write_image

__all__ = ["Denoiser"]


class Denoiser(SynthTask):
    """Learned image denoising, trained on synthetic noise, adapted to real noise.

    Args:
        network: noisy images -> denoised images of the same shape; default a
            :class:`~lightning_synth.nn.denoisers.DnCNN`. Adaptation needs its
            ``forward_with_features`` (images -> denoised, ``B x D x H x W`` features) and
            ``feature_dim``, as the project's denoisers have.
        adaptation: a domain-adaptation method on the network's middle features (one
            that needs no classes: ``DomainAdversarial``, ``CORAL``, ``MMD``), a list of
            them, or ``null``.
        in_channels: 1 (gray) or 3 (colour); must match the DataModule.
        loss: ``l1`` or ``l2`` between the denoised and the clean rendered images.
        self_supervised: a loss on the real noisy images alone: ``neighbor2neighbor``
            (Huang et al. 2021: the denoised half of each 2 x 2 cell predicts the other
            half), ``noise2self`` (Batson & Royer 2019: masked pixels predicted from their
            neighbours), or ``none``.
        self_supervised_weight: its weight in the loss.
        neighbor_gamma: Neighbor2Neighbor's regulariser weight (the paper: 1 to 2).
        correction: ``noisier2noise`` when the training targets are themselves noisy
            photographs with the noise model's noise on top (``NoisyImageDataModule``'s
            ``noisy_as_clean: 1``): the network then learns ``E[y | y + m]``, and the
            image is estimated as ``2 f(y) - y`` (Moran et al. 2020, "Noisier2Noise",
            with the network applied to the photograph itself); ``none``: ``f(y)``.
        tile_size: side of the tiles whole images are denoised in (validation, test,
            predict); bounds the memory used on large photographs.
        tile_overlap: pixels shared by neighbouring tiles (blended).
        self_ensemble: denoise each image in its 8 flips and quarter turns and average
            (validation, test, predict; 8 times the time, a common small gain); the
            exported model denoises once.
        lr: learning rate.
        weight_decay: weight decay.
        optimizer: ``adam``, ``adamw`` or ``sgd``.
        scheduler: ``none``, ``cosine`` (over the run) or ``dann``.
        bit_depth: bits per channel of the PNG files ``predict`` writes (8 or 16).
        log_images: send a validation image (noisy, denoised, clean) to TensorBoard.
    """

    mode: ClassVar[Literal["min", "max"]] = "max"

    @property
    def monitor(self) -> str | None:  # type: ignore[override]
        """``val/rendered_psnr``; ``None`` (the CLI keeps the last checkpoint) with the
        Noisier2Noise correction, whose rendered validation images (clean photographs plus
        noise) are not what its estimator learns from."""
        if self.hparams.get("correction", "none") == "noisier2noise":
            return None
        return "val/rendered_psnr"

    def __init__(
        self,
        network: nn.Module | None = None,
        adaptation: Adaptation = None,
        in_channels: int = 3,
        loss: Literal["l1", "l2"] = "l1",
        self_supervised: Literal["none", "neighbor2neighbor", "noise2self"] = "none",
        self_supervised_weight: float = 1.0,
        neighbor_gamma: float = 1.0,
        correction: Literal["none", "noisier2noise"] = "none",
        tile_size: int = 256,
        tile_overlap: int = 32,
        self_ensemble: bool = False,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: Literal["adam", "adamw", "sgd"] = "adam",
        scheduler: Literal["none", "cosine", "dann"] = "cosine",
        bit_depth: Literal[8, 16] = 8,
        log_images: bool = True,
    ) -> None:
        if loss not in ("l1", "l2"):
            raise InputError(f"loss must be 'l1' or 'l2', got {loss!r}")
        if self_supervised not in ("none", "neighbor2neighbor", "noise2self"):
            raise InputError(
                "self_supervised must be 'none', 'neighbor2neighbor' or 'noise2self', "
                f"got {self_supervised!r}"
            )
        if correction not in ("none", "noisier2noise"):
            raise InputError(f"correction must be 'none' or 'noisier2noise', got {correction!r}")
        if self_supervised_weight < 0 or neighbor_gamma < 0:
            raise InputError("self_supervised_weight and neighbor_gamma must be >= 0")
        if not 0 <= tile_overlap < tile_size:
            raise InputError(f"need 0 <= tile_overlap < tile_size, got {tile_overlap}, {tile_size}")
        if bit_depth not in (8, 16):
            raise InputError(f"bit_depth must be 8 or 16, got {bit_depth}")
        super().__init__(networks={"network": network, "adaptation": adaptation})

    # -- hooks ---------------------------------------------------------------------------------
    def configure_models(
        self, network: nn.Module | None = None, adaptation: Adaptation = None
    ) -> None:
        channels = int(self.hparams.in_channels)
        self.network = network if network is not None else DnCNN(channels)
        dim = getattr(self.network, "feature_dim", None)
        if adaptation and (dim is None or not hasattr(self.network, "forward_with_features")):
            raise InputError(
                f"adaptation needs the network's features: {type(self.network).__name__} has "
                "no forward_with_features/feature_dim (DnCNN and UNetDenoiser have them)"
            )
        self.configure_adaptation(adaptation, feature_dim=int(dim or 1), num_classes=None)
        # What the model summary traces (any size works; see export_example for export).
        self.example_input_array = torch.zeros(1, channels, 64, 64)

    def configure_metrics(self) -> None:
        self.add_domain_metrics(
            MetricCollection(
                {
                    # Per image, then averaged: the usual denoising benchmark figure.
                    "psnr": PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3)),
                    "ssim": StructuralSimilarityIndexMeasure(data_range=1.0),
                },
                compute_groups=False,
            )
        )
        # The noisy input's PSNR, the figure the denoiser improves on (val and test).
        self.input_psnr = nn.ModuleDict(
            {
                f"{stage}_{domain}": PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3))
                for stage in ("val", "test")
                for domain in DOMAIN_NAMES.values()
            }
        )

    # -- the network -----------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The denoised ``images`` (``B x C x H x W`` in [0, 1], not clipped)."""
        estimate = self.network(images)
        if self.hparams.get("correction", "none") == "noisier2noise":
            # The network predicts the noisy photograph, half-way between it and the image.
            return 2 * estimate - images
        return estimate

    def export_example(self, datamodule: Any = None) -> torch.Tensor:
        """The input ``lightning-synth export`` traces: two ``tile_size`` square tiles.

        The exported network denoises tiles of that size (any batch); larger photographs
        are denoised tile by tile, as :meth:`denoise` does.

        Args:
            datamodule: unused (the tile size is the task's own).
        """
        side = int(self.hparams.tile_size)
        generator = torch.Generator().manual_seed(0)
        return torch.rand(2, int(self.hparams.in_channels), side, side, generator=generator)

    @torch.no_grad()
    def denoise(self, images: torch.Tensor) -> torch.Tensor:
        """Denoise images of any size in overlapping tiles; the result is clipped to [0, 1]."""
        hparams = self.hparams
        size, overlap = int(hparams.tile_size), int(hparams.tile_overlap)
        if not hparams.get("self_ensemble", False):
            return tiled(self.forward, images, size, overlap).float().clamp(0, 1)
        total = torch.zeros_like(images, dtype=torch.float32)
        for code in range(8):
            turned = dihedral(images, code)
            total += dihedral(tiled(self.forward, turned, size, overlap), code, inverse=True)
        return (total / 8).clamp(0, 1)

    # -- the step ----------------------------------------------------------------------------------
    def shared_step(self, batch: Batch, stage: Stage) -> StepOutput:
        if stage == "train":
            return self._training_step(batch)
        return self._evaluation_step(batch, stage)

    def _pixel_loss(self, denoised: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        if self.hparams.loss == "l1":
            return F.l1_loss(denoised.float(), reference.float())
        return F.mse_loss(denoised.float(), reference.float())

    def _training_step(self, batch: Batch) -> StepOutput:
        noisy, reference, domain = batch[IMAGE], batch[REFERENCE], batch[DOMAIN]
        known = batch[VALID].flatten(1).any(1)
        real = domain == REAL
        use_features = len(self.adaptation) > 0
        if use_features:
            denoised, features = self.network.forward_with_features(noisy)
        else:
            denoised = self.network(noisy)
        count = int(known.sum())
        if count:
            loss = self._pixel_loss(denoised[known], reference[known])
            self.log("train/supervised_loss", loss.detach(), batch_size=count)
        else:  # a batch of real images only: no supervised term, and no NaN
            loss = denoised.sum() * 0.0
        if use_features:
            inputs = AdaptationInputs(features=features, domains=domain)
            loss = loss + self.adaptation_loss("train", inputs)
        mode = self.hparams.self_supervised
        if mode != "none" and bool(real.any()):
            real_noisy = noisy[real]
            if mode == "neighbor2neighbor":
                term = neighbor2neighbor_loss(
                    self.network, real_noisy, denoised[real].detach(), self.hparams.neighbor_gamma
                )
            else:
                term = noise2self_loss(self.network, real_noisy)
            self.log("train/self_supervised_loss", term.detach(), batch_size=int(real.sum()))
            loss = loss + self.hparams.self_supervised_weight * term
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=len(noisy))
        if count:
            self.log_domain_metrics(
                "train",
                denoised[known].detach().float().clamp(0, 1),
                reference[known],
                domain[known],
            )
        return {"loss": loss}

    def _evaluation_step(self, batch: Batch, stage: Stage) -> StepOutput:
        noisy, reference, domain = batch[IMAGE], batch[REFERENCE].float(), batch[DOMAIN]
        known = batch[VALID].flatten(1).any(1)
        denoised = self.denoise(noisy)
        count = int(known.sum())
        if count:
            loss = self._pixel_loss(denoised[known], reference[known])
            self.log(f"{stage}/loss", loss, batch_size=count, sync_dist=True)
        else:
            loss = denoised.new_zeros(())
        self.log_domain_metrics(stage, denoised[known], reference[known], domain[known])
        for code, name in DOMAIN_NAMES.items():
            chosen = known & (domain == code)
            if bool(chosen.any()):
                self.input_psnr[f"{stage}_{name}"].update(noisy[chosen].float(), reference[chosen])
        return {"loss": loss, "denoised": denoised}

    def on_validation_batch_end(
        self, outputs: Any, batch: Batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if batch_idx != 0 or not self.hparams.log_images or self.trainer.sanity_checking:
            return
        if not self.trainer.is_global_zero:
            return
        rows = [batch[IMAGE][:1].float(), outputs["denoised"][:1], batch[REFERENCE][:1].float()]
        grid = make_grid(torch.cat(rows).clamp(0, 1).cpu(), nrow=3, padding=4, pad_value=1)
        log_image(self.loggers, "val/noisy_denoised_clean", grid, self.global_step)

    # -- epoch ends: the input's PSNR beside the denoised one ---------------------------------
    def _log_input_psnr(self, stage: Stage) -> None:
        for name in DOMAIN_NAMES.values():
            key = f"{stage}_{name}"
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*compute.*before.*update")
                # Summed over processes: every process takes the same branch.
                seen = float(self.domain_counts[key].compute())
                if seen > 0:
                    value = self.input_psnr[key].compute()
                    self.log(f"{stage}/{name}_noisy_psnr", value, sync_dist=True)
            self.input_psnr[key].reset()

    def on_validation_epoch_end(self) -> None:
        self._log_input_psnr("val")
        super().on_validation_epoch_end()

    def on_test_epoch_end(self) -> None:
        self._log_input_psnr("test")
        super().on_test_epoch_end()

    # -- predict: denoised files ------------------------------------------------------------------
    def on_predict_start(self) -> None:
        # Every process asks together (under DDP the run directory is agreed on).
        self._output_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "denoised"

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> Batch:
        noisy = batch[IMAGE]
        denoised = self.denoise(noisy)
        names = batch.get(NAME)
        if not isinstance(names, (list, tuple)) or len(names) != len(noisy):
            start = batch_idx * len(noisy)
            names = [f"image{start + i:05d}" for i in range(len(noisy))]
        folder = getattr(self, "_output_dir", None) or Path("denoised")
        bit_depth = int(self.hparams.bit_depth)
        for image, name in zip(denoised, names, strict=True):
            write_image(folder / f"{name}.png", image, bit_depth)  # type: ignore[arg-type]
        # What was removed, per image; and the PSNR where a reference is known (else NaN).
        removed = (noisy.float() - denoised).flatten(1).std(dim=1)
        psnr = torch.full_like(removed, float("nan"))
        known = (
            batch[VALID].flatten(1).any(1) if VALID in batch else torch.zeros_like(removed).bool()
        )
        if bool(known.any()):
            psnr[known] = peak_signal_noise_ratio(
                denoised[known],
                batch[REFERENCE][known].float(),
                data_range=1.0,
                dim=(1, 2, 3),
                reduction="none",
            )
        return {"removed_std": removed, "psnr": psnr}
