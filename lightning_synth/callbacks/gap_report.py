"""``GapReport``: where rendered and real images differ, drawn to TensorBoard when a fit starts.

The picture of :mod:`lightning_synth.metrics.gap_report` (mean and std images, histograms
of ink coverage, box size and intensity, the samples a linear domain classifier finds
most rendered and most real, the proxy A-distance on pixels), made from the validation
set before the first training step, so a look at TensorBoard's Images tab tells
what adaptation has to bridge. The PNG and JSON also go into the run directory.
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from lightning_synth.batch import REAL, RENDERED
from lightning_synth.errors import InputError
from lightning_synth.metrics.gap_report import domain_samples, gap_report

__all__ = ["GapReport"]


class GapReport(Callback):
    """Draw the gap report of the validation set when ``fit`` starts (process 0 only).

    Logged as the image ``gap_report`` (and its headline as text) to every TensorBoard
    logger, and written as ``gap_report.png`` / ``gap_report.json`` into the run
    directory (``trainer.log_dir``) when there is one.

    Args:
        num_samples: validation images of each domain compared.
        num_examples: images in each strip of examples.
        seed: seed of the domain classifiers' splits.
    """

    def __init__(self, num_samples: int = 500, num_examples: int = 8, seed: int = 0) -> None:
        if num_samples < 4:
            raise InputError(f"num_samples must be at least 4, got {num_samples}")
        self.num_samples = num_samples
        self.num_examples = num_examples
        self.seed = seed
        #: Where the last report was written (``None`` before, or without a run directory).
        self.written: Path | None = None

    @rank_zero_only
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Process 0 alone: the others go on to their first step and wait for it there.
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "val_dataloader"):
            rank_zero_warn("GapReport needs a DataModule with a val_dataloader; no report drawn")
            return
        samples = domain_samples(datamodule.val_dataloader(), self.num_samples)
        (rendered, _), (real, _) = samples[RENDERED], samples[REAL]
        if min(len(rendered), len(real)) < 4:
            rendered_count, real_count = len(rendered), len(real)
            rank_zero_warn(
                f"GapReport: the validation set gave {rendered_count} rendered and "
                f"{real_count} real images, at least 4 of each are needed; no report drawn"
            )
            return
        report = gap_report(rendered, real, num_examples=self.num_examples, seed=self.seed)
        if trainer.log_dir:
            self.written = report.save(trainer.log_dir)[0]
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                step = trainer.global_step
                logger.experiment.add_figure("gap_report", report.figure(), global_step=step)
                summary = "; ".join([report.headline(), *report.biggest_differences()])
                logger.experiment.add_text("gap_report/summary", summary, global_step=step)
