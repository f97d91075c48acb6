"""``TVDenoise``: total-variation (Rudin-Osher-Fatemi) denoising, the pixels as parameters.

Each image ``y`` is replaced by the minimiser of ``1/2 ||x - y||^2 + weight * TV(x)``,
scikit-image's ``denoise_tv_chambolle`` objective with the same ``weight`` (written as
``||x - y||^2 + lambda TV(x)``, ``lambda = 2 weight``).

* ``fit`` denoises the training batch (all images at once), one iteration per step,
  logging ``train/objective`` (per pixel), ``train/certified_rms``, and, when the
  batch has a clean ``reference``, ``train/psnr`` (and at the end ``train/ssim`` and
  ``train/noisy_psnr``), with progress images; it stops early once the duality gap
  certifies the result within ``tol`` of the exact solution, and writes the images
  to ``<run directory>/results``.
* ``test`` denoises each test image from scratch and reports ``test/psnr``,
  ``test/ssim``, ``test/noisy_psnr`` (the input's) and ``test/objective``.
* ``predict`` denoises each image (e.g. a folder) and writes
  ``<run directory>/denoised/<name>.png``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from lightning_synth.batch import IMAGE, NAME, REFERENCE, Batch, Stage
from lightning_synth.errors import InputError
from lightning_synth.nn.total_variation import (
    ChambollePockTV,
    default_tol,
    rof_objective,
    tv_denoise,
)
from lightning_synth.tasks.base import StepOutput
from lightning_synth.tasks.image_optimization import ImageOptimizationTask

__all__ = ["TVDenoise"]


class TVDenoise(ImageOptimizationTask):
    """Total-variation denoising of a batch of images (gray or colour, any size).

    Args:
        weight: strength of the TV term; scikit-image's ``weight`` (larger: smoother).
            About 0.8 times the noise's standard deviation is a good start.
        norm: ``isotropic`` (rotation invariant, the default) or ``anisotropic`` TV.
        coupled_channels: colour images: one gradient length over all channels
            (vectorial TV: colour edges stay aligned, 0.35-0.65 dB higher PSNR on the
            bundled photographs) instead of each channel on its own (scikit-image's
            choice; ``false``). Gray images are the same either way.
        optimizer: ``chambolle_pock`` (exact, certified, fastest: an accelerated
            primal-dual iteration per step), or ``adam`` / ``lbfgs`` on a smoothed TV.
        lr: learning rate of ``adam`` (default 0.02) or ``lbfgs`` (default 1).
        smoothing: ``eps`` of the smoothed TV ``sqrt(|grad x|^2 + eps^2) - eps`` that
            ``adam`` and ``lbfgs`` minimise.
        tol: stop when the duality gap certifies a root mean square distance to the exact
            solution of at most ``tol`` (``chambolle_pock`` in ``fit``; always in
            ``test``/``predict``). The default, ``weight / 16``, scales with the noise
            the weight removes (two 8-bit grey levels at weight 0.125; the actual
            distance is typically 0.4-0.5 of it). The result is the average of the
            image and the dual's image, which the gap certifies (see ``averaged_rms``).
        max_iter: most iterations per batch in ``test`` and ``predict``.
        log_images_every_n_steps: progress images to TensorBoard (0: only the result).
        bit_depth: bits per channel of the PNG files written (8 or 16).
    """

    monitor: ClassVar[str] = "train/objective"

    def __init__(
        self,
        weight: float = 0.1,
        norm: Literal["isotropic", "anisotropic"] = "isotropic",
        coupled_channels: bool = True,
        optimizer: Literal["chambolle_pock", "adam", "lbfgs"] = "chambolle_pock",
        lr: float | None = None,
        smoothing: float = 1e-3,
        tol: float | None = None,
        max_iter: int = 500,
        log_images_every_n_steps: int = 50,
        bit_depth: Literal[8, 16] = 8,
    ) -> None:
        if weight <= 0 or (tol is not None and tol <= 0) or max_iter < 1:
            raise InputError(
                f"weight and tol must be positive and max_iter at least 1, got weight "
                f"{weight}, tol {tol}, max_iter {max_iter}"
            )
        super().__init__()
        self.converged_at: int | None = None

    def configure_metrics(self) -> None:
        # During fit PSNR is measured at each logging step; SSIM (a few 11 x 11
        # convolutions, far dearer than an iteration) once at the end, with the final PSNR.
        self.train_psnr = PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3))
        self.eval_metrics = nn.ModuleDict(
            {
                stage: MetricCollection(
                    {
                        "psnr": PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3)),
                        "ssim": StructuralSimilarityIndexMeasure(data_range=1.0),
                        "noisy_psnr": PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3)),
                    },
                    prefix=f"{stage}/",
                    compute_groups=False,
                )
                for stage in ("val", "test")
            }
        )

    # -- the problem -----------------------------------------------------------------------------
    def objective(
        self, x: torch.Tensor, noisy: torch.Tensor, smoothing: float = 0.0
    ) -> torch.Tensor:
        """``(1/2 ||x - y||^2 + weight TV(x)) / (C H W)`` of each image (per pixel)."""
        hparams = self.hparams
        value = rof_objective(
            x, noisy.to(x.dtype), hparams.weight, hparams.norm, hparams.coupled_channels, smoothing
        )
        return value / x[0].numel()

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {"loss": self.objective(self.pixels, batch[IMAGE], self.hparams.smoothing)}

    def configure_solver(self, name: str) -> torch.optim.Optimizer | None:
        if name != "chambolle_pock":
            return None
        hparams = self.hparams
        return ChambollePockTV(
            [self.pixels], hparams.weight, hparams.norm, hparams.coupled_channels
        )

    @property
    def tol(self) -> float:
        """The certified RMS tolerance in use (``tol``, or ``weight / 16`` when unset)."""
        tol = self.hparams.get("tol")
        return default_tol(self.hparams.weight) if tol is None else float(tol)

    @torch.no_grad()
    def denoise(self, images: torch.Tensor) -> torch.Tensor:
        """Denoise ``images`` from scratch to ``tol`` (what ``test`` and ``predict`` do)."""
        hparams = self.hparams
        return tv_denoise(
            images.float(),
            hparams.weight,
            hparams.norm,
            hparams.coupled_channels,
            tol=self.tol,
            max_iter=hparams.max_iter,
        )

    # -- fit ----------------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        self.converged_at = None

    def _satisfy_grad_scaler(self) -> None:
        # 16-mixed: the GradScaler unscales and checks gradients before every step, and
        # gets its scale only when a loss is scaled. The Chambolle-Pock step has neither
        # loss nor gradients: give it zero gradients to check and a scale (without this the
        # first step failed on an H200).
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if scaler is None:
            return
        if self.pixels.grad is None:
            self.pixels.grad = torch.zeros_like(self.pixels)
        scaler.scale(torch.zeros((), device=self.pixels.device))

    def training_iteration(self, batch: Batch) -> StepOutput:
        noisy = batch[IMAGE]
        if self.global_step == 0:
            self.log_grid("train/noisy", noisy)
            if REFERENCE in batch:
                self.log_grid("train/reference", batch[REFERENCE])
        count = noisy.shape[0]
        if self.hparams.optimizer == "chambolle_pock":
            self._check_shape(batch)
            optimizer = self.optimizers()
            self._satisfy_grad_scaler()
            optimizer.step(target=noisy)
            solver = optimizer.optimizer
            objective, distance = solver.certificate(noisy)
            objective = objective / self.pixels[0].numel()
            distance = distance.max()
            self.log("train/certified_rms", distance.float(), batch_size=count)
            if float(distance) <= self.tol and self.converged_at is None:
                # The certificate is for the average of the image and the dual's image.
                solver.settle(noisy)
                objective = self.objective(self.pixels.detach(), noisy)
                self.converged_at = self.global_step
                self.trainer.should_stop = True
        else:
            self.gradient_step(batch)
            objective = self.objective(self.pixels.detach(), noisy)
        x = self.pixels.detach()
        self.log("train/objective", objective.float().mean(), prog_bar=True, batch_size=count)
        if REFERENCE in batch and self.writes_logs_now():
            self.train_psnr(x.float().clamp(0, 1), batch[REFERENCE].float())
            self.log("train/psnr", self.train_psnr, batch_size=count)
        self._last_batch = batch
        return {"loss": objective.sum()}

    def on_train_end(self) -> None:
        # The final quality, whatever the logging interval: to TensorBoard and the summary.
        self.final_quality: dict[str, float] = {}
        batch = getattr(self, "_last_batch", None)
        if batch is not None and REFERENCE in batch:
            self.final_quality = self._quality(
                self.current_images(), batch[IMAGE], batch[REFERENCE]
            )
            for logger in self.loggers:
                metrics = {f"train/{k}": v for k, v in self.final_quality.items()}
                logger.log_metrics(metrics, self.global_step)
        super().on_train_end()

    def summary(self) -> str:
        line = f"TVDenoise: {self.global_step} iterations"
        if self.converged_at is not None:
            line += f" (certified within {self.tol:.2g} RMS of the exact solution)"
        batch = getattr(self, "_last_batch", None)
        if batch is None:
            return line
        objective = float(self.objective(self.current_images(), batch[IMAGE]).mean())
        line += f"; objective {objective:.5g} per pixel"
        final = getattr(self, "final_quality", {})
        if final:
            line += (
                f"; PSNR {final['psnr']:.2f} dB (noisy {final['noisy_psnr']:.2f} dB), "
                f"SSIM {final['ssim']:.4f}"
            )
        return line

    @staticmethod
    def _quality(x: torch.Tensor, noisy: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
        reference = reference.float()
        return {
            "psnr": float(peak_signal_noise_ratio(x, reference, data_range=1.0, dim=(1, 2, 3))),
            "noisy_psnr": float(
                peak_signal_noise_ratio(noisy.float(), reference, data_range=1.0, dim=(1, 2, 3))
            ),
            "ssim": float(structural_similarity_index_measure(x, reference, data_range=1.0)),
        }

    # -- test and predict: each image from scratch --------------------------------------------------
    def evaluate(self, batch: Batch, stage: Stage) -> StepOutput:
        noisy = batch[IMAGE]
        denoised = self.denoise(noisy)
        objective = self.objective(denoised, noisy)
        count = noisy.shape[0]
        self.log(f"{stage}/objective", objective.mean(), batch_size=count, sync_dist=True)
        if REFERENCE in batch:
            reference = batch[REFERENCE].float()
            metrics = self.eval_metrics[stage]
            metrics["psnr"].update(denoised.clamp(0, 1), reference)
            metrics["ssim"].update(denoised.clamp(0, 1), reference)
            metrics["noisy_psnr"].update(noisy.float(), reference)
            self.log_dict(metrics, batch_size=count)
        return {"loss": objective.sum()}

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        noisy = batch[IMAGE]
        denoised = self.denoise(noisy)
        names = batch.get(NAME)
        if not isinstance(names, (list, tuple)) or len(names) != noisy.shape[0]:
            start = batch_idx * noisy.shape[0]
            names = [f"image{start + i:05d}" for i in range(noisy.shape[0])]
        self.write_results(denoised, names, "denoised")
        result = {"objective": self.objective(denoised, noisy)}
        if REFERENCE in batch:
            result["psnr"] = peak_signal_noise_ratio(
                denoised.clamp(0, 1),
                batch[REFERENCE].float(),
                data_range=1.0,
                dim=(1, 2, 3),
                reduction="none",
            )
        return result
