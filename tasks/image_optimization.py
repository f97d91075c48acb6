"""The base of tasks whose parameters are the pixels of the images they make.

``fit`` is the optimisation: at its start (``setup``) the pixels become an
``nn.Parameter`` initialised from the first training batch (:meth:`initial_pixels`),
every training step is one optimizer iteration, and at its end the images are written
to ``<run directory>/results``. Subclasses give the loss (:meth:`loss_terms`) and,
if they like, their own optimizer (:meth:`configure_solver`).

Optimizers: ``adam`` (works with any ``--trainer.precision``) and ``lbfgs`` (one
L-BFGS iteration per step, the classic choice for style transfer). L-BFGS needs exact
losses and gradients: with a 16-bit or mixed precision the task stops at the start
with a ``ValueError`` that says what to use instead (Lightning itself refuses L-BFGS
under ``16-mixed``, and ``bf16`` rounding derails its line search and curvature pairs).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchvision.io import write_png
from torchvision.utils import make_grid

from lightning_synth.batch import IMAGE, NAME, Batch, Stage
from lightning_synth.callbacks import log_image
from lightning_synth.tasks.base import StepOutput, SynthTask

__all__ = ["ImageOptimizationTask", "ImagePixels", "write_image", "FULL_PRECISIONS"]

#: Trainer precisions under which L-BFGS is allowed.
FULL_PRECISIONS = ("32-true", "64-true", "32", "64")


class ImagePixels(nn.Module):
    """The images being optimised: one ``B x C x H x W`` parameter whose shape the data sets.

    Empty until :meth:`initialize`; loading a state dict resizes it to the saved images,
    so ``Task.load_from_checkpoint`` works without data.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pixels = nn.Parameter(torch.empty(0))

    @property
    def initialized(self) -> bool:
        return self.pixels.numel() > 0

    def initialize(self, images: torch.Tensor) -> None:
        """Start from ``images`` (copied); a new parameter, so call before the optimizer exists.

        Args:
            images: ``B x C x H x W`` float images.
        """
        self.pixels = nn.Parameter(images.detach().clone().to(self.pixels.device))

    def forward(self) -> torch.Tensor:
        return self.pixels

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        saved = state_dict.get(prefix + "pixels")
        if saved is not None and saved.shape != self.pixels.shape:
            self.pixels = nn.Parameter(
                torch.empty(saved.shape, dtype=self.pixels.dtype, device=self.pixels.device)
            )
        super()._load_from_state_dict(state_dict, prefix, *args)


def write_image(path: str | Path, image: torch.Tensor, bit_depth: Literal[8, 16] = 8) -> Path:
    """Write a ``C x H x W`` image in [0, 1] (values outside are clipped) as PNG.

    Args:
        path: file to write (folders are created).
        image: 1 (gray) or 3 (RGB) channels.
        bit_depth: 8 or 16 bits per channel.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = image.detach().float().clamp(0, 1).cpu()
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected a 1 or 3 x H x W image, got {tuple(image.shape)}")
    if bit_depth == 8:
        write_png((image * 255).round().to(torch.uint8), str(path))
        return path
    if bit_depth != 16:
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    # torchvision encodes 8-bit PNG only; 16-bit is a few lines of zlib.
    pixels = (image * 65535).round().to(torch.int32).permute(1, 2, 0).numpy().astype(">u2")
    height, width, channels = pixels.shape
    rows = pixels.reshape(height, -1).view(np.uint8)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 16, 0 if channels == 1 else 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )
    return path


class ImageOptimizationTask(SynthTask):
    """Base task: the pixels are the parameters; one training step is one iteration.

    Subclasses declare ``optimizer``, ``lr``, ``log_images_every_n_steps`` and
    ``bit_depth`` hyper-parameters and implement :meth:`loss_terms`.
    """

    monitor: ClassVar[str] = "train/loss"
    mode: ClassVar[Literal["min", "max"]] = "min"
    #: Learning rate of each optimizer when ``lr`` is ``None``.
    default_lr: ClassVar[dict[str, float]] = {"adam": 0.02, "lbfgs": 1.0}

    @property
    def automatic_optimization(self) -> bool:  # type: ignore[override]
        return False  # one optimizer iteration per step, written out in the step

    def configure_models(self, **networks: nn.Module | None) -> None:
        self.image = ImagePixels()
        self.output_names: list[str] = []
        self.first_batch: Batch = {}
        self._batch_number = 0  # the training batch being processed (see shared_step)

    @property
    def pixels(self) -> nn.Parameter:
        """The images being optimised (``B x C x H x W``)."""
        return self.image.pixels

    # -- hooks -------------------------------------------------------------------------------
    def initial_pixels(self, batch: Batch) -> torch.Tensor:
        """Where the optimisation starts, from the first training batch (default its images)."""
        return batch[IMAGE].float()

    def pixel_shape(self, batch: Batch) -> torch.Size:
        """The shape of the pixels ``batch`` calls for (default that of :meth:`initial_pixels`)."""
        return self.initial_pixels(batch).shape

    def result_names(self, batch: Batch) -> list[str]:
        """File names (without suffix) of the images being optimised."""
        names = batch.get(NAME)
        count = self.pixel_shape(batch)[0]
        if isinstance(names, Sequence) and len(names) == count:
            return [str(name) for name in names]
        return [f"image{index:03d}" for index in range(count)]

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Per-image losses of the current pixels: ``loss`` (what is minimised) and parts."""
        raise NotImplementedError(f"{type(self).__name__} must implement loss_terms")

    def configure_solver(self, name: str) -> torch.optim.Optimizer | None:
        """An optimizer of the subclass's own for ``optimizer: name`` (``None``: not one)."""
        return None

    # -- set-up ------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        batch = self._first_training_batch()
        self.image.initialize(self.initial_pixels(batch))
        self.output_names = self.result_names(batch)
        self.first_batch = batch

    def _first_training_batch(self) -> Batch:
        # The pixels must exist before the optimizer and the DDP wrapper do, which is before
        # Lightning builds the training loader: a DataModule is the public way to reach it.
        datamodule = self.trainer.datamodule
        if datamodule is None:
            raise RuntimeError(
                f"{type(self).__name__} reads the images it starts from when fit starts, "
                f"before Lightning builds the training loader: pass the data as a "
                f"LightningDataModule (ImageOptimizationDataModule, StyleTransferDataModule, "
                f"or any DataModule whose train_dataloader() returns your loader), not as "
                f"train_dataloaders"
            )
        batch = next(iter(datamodule.train_dataloader()))
        if not isinstance(batch, dict) or IMAGE not in batch:
            raise ValueError(
                f"training batches must be dicts with {IMAGE!r} (lightning_synth.batch)"
            )
        return batch

    def configure_optimizers(self) -> torch.optim.Optimizer:
        name = str(self.hparams.get("optimizer", "adam"))
        if not self.image.initialized:
            raise RuntimeError("the pixels are set up at the start of fit; call trainer.fit")
        precision = str(self.trainer.precision) if self._trainer is not None else "32-true"
        if name == "lbfgs" and precision not in FULL_PRECISIONS:
            raise ValueError(
                f"optimizer 'lbfgs' cannot run with precision {precision!r}: L-BFGS needs "
                f"exact losses and gradients (Lightning refuses it under 16-mixed, and "
                f"bf16 rounding derails its line search). Use --model.init_args.optimizer=adam "
                f"for mixed precision, or --trainer.precision=32-true for L-BFGS."
            )
        solver = self.configure_solver(name)
        if solver is not None:
            return solver
        lr = self.hparams.get("lr")
        lr = float(self.default_lr.get(name, 0.01) if lr is None else lr)
        if name == "adam":
            return torch.optim.Adam([self.pixels], lr=lr)
        if name == "lbfgs":
            iterations = self.iterations_per_step
            # max_iter iterations take max_iter closure calls; L-BFGS's default budget
            # (max_iter * 5 // 4) would cut the step short.
            return torch.optim.LBFGS(
                [self.pixels], lr=lr, max_iter=iterations, max_eval=iterations + 1, history_size=100
            )
        raise ValueError(f"unknown optimizer {name!r}")

    # -- steps -----------------------------------------------------------------------------
    def shared_step(self, batch: Batch, stage: Stage) -> StepOutput:
        if stage == "train":
            # Every training batch makes one optimizer step, so this batch's number (from 1,
            # counted over the whole run as Lightning's logger counts) is the step count + 1.
            self._batch_number = self.trainer.global_step + 1
            return self.training_iteration(batch)
        return self.evaluate(batch, stage)

    def training_iteration(self, batch: Batch) -> StepOutput:
        """One optimizer iteration; logs ``train/loss`` and the parts (override to add)."""
        terms = self.gradient_step(batch)
        self.log_terms("train", terms if self.writes_logs_now() else {"loss": terms["loss"]})
        return {"loss": terms["loss"].sum()}

    def writes_logs_now(self) -> bool:
        """Whether the logger writes this training step's metrics: every
        ``log_every_n_steps``-th batch and when the trainer is stopping (Lightning's own
        rule), and at the last step of the run or the epoch (so that the values left in
        ``trainer.callback_metrics`` are the final ones).

        Lightning collects every ``self.log`` call but writes only then; collecting four
        terms at every step cost about 1 ms (measured on a CPU at a tiny image size),
        which counts where a GPU style-transfer step takes about 10 ms. ``train/loss``
        (the progress bar) is logged always, the other terms only when this is true.
        """
        trainer = self._trainer
        if trainer is None:
            return True
        every = trainer.log_every_n_steps
        if trainer.should_stop or (every > 0 and self._batch_number % every == 0):
            return True
        last_step = 0 < trainer.max_steps <= trainer.global_step
        return last_step or trainer.is_last_batch

    @property
    def iterations_per_step(self) -> int:
        """L-BFGS iterations per training step (the ``iterations_per_step``
        hyper-parameter where a subclass has one, else 1)."""
        return int(self.hparams.get("iterations_per_step", 1))

    def gradient_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One Adam step, or one L-BFGS step of :attr:`iterations_per_step` iterations, on
        :meth:`loss_terms`; returns the terms (detached) of the last evaluation."""
        self._check_shape(batch)
        optimizer = self.optimizers()
        last: dict[str, torch.Tensor] = {}

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            terms = self.loss_terms(batch)
            loss = terms["loss"].sum()
            self.manual_backward(loss)
            last.update({key: value.detach() for key, value in terms.items()})
            return loss

        optimizer.step(closure=closure)
        return last

    def evaluate(self, batch: Batch, stage: Stage) -> StepOutput:
        """``val``/``test``: the losses of the current pixels on ``batch``."""
        self._check_shape(batch)
        with torch.no_grad():
            terms = {key: value.detach() for key, value in self.loss_terms(batch).items()}
        self.log_terms(stage, terms)
        return {"loss": terms["loss"].sum()}

    def log_terms(self, stage: Stage, terms: dict[str, torch.Tensor]) -> None:
        """Log each term's mean over the images as ``{stage}/{name}``."""
        for key, value in terms.items():
            self.log(
                f"{stage}/{key}",
                value.float().mean(),
                prog_bar=key == "loss",
                batch_size=value.numel(),
                sync_dist=stage != "train",
            )

    def _check_shape(self, batch: Batch) -> None:
        if not self.image.initialized:
            raise RuntimeError(
                f"{type(self).__name__} has no images yet: run fit first, or load a checkpoint"
            )
        expected = self.pixel_shape(batch)
        if self.pixels.shape != expected:
            raise ValueError(
                f"the batch asks for images of shape {tuple(expected)} but the task holds "
                f"{tuple(self.pixels.shape)}: use the data the task was fitted on"
            )

    # -- images out ---------------------------------------------------------------------------
    def current_images(self) -> torch.Tensor:
        """The current result, clipped to [0, 1] (``B x C x H x W``, float32)."""
        return self.pixels.detach().float().clamp(0, 1)

    def log_grid(self, tag: str, images: torch.Tensor, step: int | None = None) -> None:
        """Send ``images`` as one grid to TensorBoard (on the main process)."""
        if self.global_rank != 0 or not self.loggers:
            return
        grid = make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=4, padding=4, pad_value=1)
        log_image(self.loggers, tag, grid, self.global_step if step is None else step)

    def on_train_batch_end(self, outputs: Any, batch: Batch, batch_idx: int) -> None:
        every = int(self.hparams.get("log_images_every_n_steps", 0))
        if every > 0 and self.global_step % every == 0:
            self.log_grid("train/result", self.current_images())

    def on_train_end(self) -> None:
        self.log_grid("train/result", self.current_images())
        root = self.run_dir()  # on every process: under DDP this is a collective call
        if not self.trainer.is_global_zero:
            return
        written = self.write_results(self.current_images(), self.output_names, "results", root)
        rank_zero_info(self.summary() + f"\nResults written to {written[0].parent}")

    def summary(self) -> str:
        """One line about the finished optimisation (printed when fit ends)."""
        metrics = self.trainer.callback_metrics
        shown = ", ".join(
            f"{name.split('/', 1)[1]} {float(value):.4g}"
            for name, value in sorted(metrics.items())
            if name.startswith("train/")
        )
        return f"{type(self).__name__}: {self.global_step} iterations; {shown}"

    def run_dir(self) -> Path:
        """The run directory (the logger's). Under DDP every process must ask together."""
        return Path(self.trainer.log_dir or self.trainer.default_root_dir)

    def write_results(
        self, images: torch.Tensor, names: Sequence[str], folder: str, root: Path | None = None
    ) -> list[Path]:
        """Write each image as ``<run directory>/<folder>/<name>.png``.

        Args:
            images: ``B x C x H x W`` in [0, 1].
            names: one file name (without suffix) per image.
            folder: sub-folder of the run directory.
            root: the run directory, if already known (see :meth:`run_dir`).
        """
        folder_path = (root or self.run_dir()) / folder
        bit_depth = int(self.hparams.get("bit_depth", 8))
        return [
            write_image(folder_path / f"{name}.png", image, bit_depth)  # type: ignore[arg-type]
            for image, name in zip(images, names, strict=True)
        ]
