"""``BoundReport``: the domain discrepancy and the terms of the synthetic-to-real bound, per epoch.

At the end of each validation (and test) epoch it logs, for ``stage`` in ``val``/``test``:

==========================  ============================================================
``{stage}/pad``             proxy A-distance between rendered and real *features*
``{stage}/pad_pixels``      the same on raw pixels (what the network starts from)
``{stage}/bound_er_synth``  the model's error on rendered samples
``{stage}/bound_disc``      the discrepancy term (``{stage}/pad``)
``{stage}/bound_lambda``    held-out error of the best joint linear classifier
``{stage}/bound``           ``er_synth + disc + lambda``
``{stage}/bound_er_real``   the model's measured error on real samples, beside the bound
``{stage}/bound_slack``     ``bound - er_real``: how loose the bound is
==========================  ============================================================

``lambda``, ``bound``, ``er_real`` and ``slack`` need real labels; they are used for this
evaluation only. Errors count every labelled sample of the epoch; ``pad`` and ``lambda``
use the first ``num_samples`` samples of each domain.

Under DDP every process collects its share, the shares are gathered (every process takes
part in the same collectives, whatever it collected), process 0 fits the classifiers and
broadcasts the numbers, and every process logs them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_warn

from lightning_synth.batch import DOMAIN, IGNORE_LABEL, IMAGE, LABEL, REAL, RENDERED, Batch
from lightning_synth.errors import InputError
from lightning_synth.metrics.discrepancy import DEFAULT_CS, bound_terms, proxy_a_distance

__all__ = ["BoundReport", "gather_rows", "batch_features", "batch_predictions"]

_MIN_SAMPLES = 8  # per domain, below which no discrepancy is estimated


def gather_rows(trainer: Trainer, rows: torch.Tensor) -> torch.Tensor:
    """Concatenate every process's ``N_r x D`` rows (``N_r`` may differ, and be 0).

    Every process must call this, in the same order, with the same ``D``.

    Args:
        trainer: the running trainer (its strategy does the collectives).
        rows: this process's rows, 2-d.
    """
    if trainer.world_size == 1:
        return rows
    count = torch.tensor(rows.shape[0], device=rows.device)
    counts = trainer.strategy.all_gather(count).reshape(-1)
    longest = int(counts.max())
    padded = rows.new_zeros((longest, rows.shape[1]))
    padded[: rows.shape[0]] = rows
    gathered = trainer.strategy.all_gather(padded).reshape(-1, longest, rows.shape[1])
    return torch.cat([gathered[rank, : int(n)] for rank, n in enumerate(counts)])


def batch_features(
    pl_module: LightningModule, outputs: Any, images: torch.Tensor, keep: torch.Tensor
) -> torch.Tensor:
    """``K x D`` features of the ``keep`` samples of a batch: from the step's
    ``outputs["features"]`` when it returned them, else ``pl_module.features``;
    feature maps are averaged over their pixels.

    Args:
        pl_module: a task with a ``features(images)`` method (``ImageClassifier``, ``DANN``).
        outputs: what the step returned.
        images: the batch's images.
        keep: ``B`` bool mask of the samples wanted.
    """
    features = outputs.get("features") if isinstance(outputs, dict) else None
    if features is None:
        features = pl_module.features(images[keep])  # type: ignore[operator]
    else:
        features = features[keep]
    features = features.detach()
    return features.flatten(2).mean(2) if features.ndim > 2 else features


def batch_predictions(
    pl_module: LightningModule, outputs: Any, images: torch.Tensor
) -> torch.Tensor:
    """Predicted classes of a batch: ``outputs["preds"]``, else the argmax of ``pl_module(images)``.

    Args:
        pl_module: the task.
        outputs: what the step returned.
        images: the batch's images.
    """
    preds = outputs.get("preds") if isinstance(outputs, dict) else None
    return preds if preds is not None else pl_module(images).argmax(dim=1)


class _Collector:
    """What one stage's epoch has seen so far on this process."""

    def __init__(self) -> None:
        self.features: list[torch.Tensor] = []
        self.pixels: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.domains: list[torch.Tensor] = []
        self.kept = {RENDERED: 0, REAL: 0}
        #: correct and labelled counts: rendered correct, rendered labelled, real correct, real labelled
        self.counts: torch.Tensor | None = None


class BoundReport(Callback):
    """Log the proxy A-distance and the terms of ``er_real <= er_synth + disc + lambda``.

    Needs a task whose step returns ``preds`` (or whose ``forward`` gives logits) and
    that has ``features(images)`` (or returns ``features``), as ``ImageClassifier`` and
    ``DANN`` do. ``DANN`` adds one by itself (see its ``pad_samples``); add it to any other
    classifier through ``trainer.callbacks``.

    Args:
        num_samples: samples of each domain the classifiers are fitted on (per epoch);
            the fits take about a second for 500 on one CPU core.
        pixels: also log the discrepancy of the raw pixels (computed once per stage
            and sample count, then re-logged: the images do not change).
        every_n_epochs: report every this many validation epochs (test always reports).
        cs: regularisation strengths tried for the linear classifiers.
        folds: cross-validation folds for choosing among ``cs``.
        seed: seed of the splits.
        text: also write the bound as a line of text to TensorBoard.
    """

    def __init__(
        self,
        num_samples: int = 500,
        pixels: bool = True,
        every_n_epochs: int = 1,
        cs: Sequence[float] = DEFAULT_CS,
        folds: int = 3,
        seed: int = 0,
        text: bool = True,
    ) -> None:
        if num_samples < _MIN_SAMPLES:
            raise InputError(f"num_samples must be at least {_MIN_SAMPLES}, got {num_samples}")
        if every_n_epochs < 1:
            raise InputError(f"every_n_epochs must be positive, got {every_n_epochs}")
        self.num_samples = num_samples
        self.pixels = pixels
        self.every_n_epochs = every_n_epochs
        self.cs = tuple(cs)
        self.folds = folds
        self.seed = seed
        self.text = text
        self._collectors: dict[str, _Collector] = {}
        self._pixel_pad: dict[tuple[str, int, int], float] = {}
        self._warned = False

    # -- when -------------------------------------------------------------------------
    def _active(self, trainer: Trainer, stage: str) -> bool:
        if stage == "test":
            return True
        if trainer.sanity_checking:
            return False
        return (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._collectors["val"] = _Collector()

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._collectors["test"] = _Collector()

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Batch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._active(trainer, "val"):
            self._collect(self._collectors["val"], pl_module, outputs, batch)

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Batch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._collect(self._collectors["test"], pl_module, outputs, batch)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._active(trainer, "val"):
            self._report(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._report(trainer, pl_module, "test")

    # -- what ----------------------------------------------------------------------------
    def _collect(
        self, collector: _Collector, pl_module: LightningModule, outputs: Any, batch: Batch
    ) -> None:
        images, labels, domains = batch[IMAGE], batch[LABEL], batch[DOMAIN]
        preds = batch_predictions(pl_module, outputs, images)
        labelled = labels != IGNORE_LABEL
        correct = (preds == labels) & labelled
        correct, labelled = _per_sample(correct), _per_sample(labelled)
        counts = torch.stack(
            [
                count[domains == code].sum()
                for code in (RENDERED, REAL)
                for count in (correct, labelled)
            ]
        )
        collector.counts = counts if collector.counts is None else collector.counts + counts

        keep = torch.zeros_like(domains, dtype=torch.bool)
        for code in (RENDERED, REAL):
            positions = (
                (domains == code).nonzero().flatten()[: self.num_samples - collector.kept[code]]
            )
            keep[positions] = True
            collector.kept[code] += len(positions)
        if not bool(keep.any()):
            return
        collector.features.append(batch_features(pl_module, outputs, images, keep).float())
        collector.pixels.append(images[keep].flatten(1).float())
        # Dense labels: the image-level label is unknown; only the domain counts for ``pad``.
        image_labels = labels if labels.ndim == 1 else torch.full_like(domains, IGNORE_LABEL)
        collector.labels.append(image_labels[keep])
        collector.domains.append(domains[keep])

    def _stacked(
        self, trainer: Trainer, parts: list[torch.Tensor], width: int, device
    ) -> torch.Tensor:
        rows = torch.cat(parts) if parts else torch.zeros(0, width, device=device)
        return gather_rows(trainer, rows.reshape(rows.shape[0], -1))

    def _report(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        collector = self._collectors.get(stage) or _Collector()
        device = pl_module.device
        # Collectives, in the same order on every process, whatever each collected.
        widths = torch.tensor(
            [
                collector.features[0].shape[1] if collector.features else 0,
                collector.pixels[0].shape[1] if collector.pixels else 0,
            ],
            device=device,
        )
        if trainer.world_size > 1:
            widths = trainer.strategy.all_gather(widths).reshape(-1, 2).amax(0)
        counts = collector.counts if collector.counts is not None else torch.zeros(4, device=device)
        counts = trainer.strategy.reduce(counts.to(device).float(), reduce_op="sum")
        features = self._stacked(trainer, collector.features, int(widths[0]), device)
        pixels = self._stacked(trainer, collector.pixels, int(widths[1]), device)
        side = [
            self._stacked(trainer, [t[:, None].float() for t in parts], 1, device).flatten()
            for parts in (collector.labels, collector.domains)
        ]
        results: dict[str, float] = {}
        if trainer.is_global_zero:
            results = self._compute(stage, counts.cpu(), features.cpu(), pixels.cpu(), *side)
        results = trainer.strategy.broadcast(results, src=0)
        for name, value in results.items():
            pl_module.log(f"{stage}/{name}", value, sync_dist=True)
        if self.text and trainer.is_global_zero and "bound" in results:
            line = _bound_line(results)
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):
                    logger.experiment.add_text(
                        f"{stage}/bound", line, global_step=trainer.global_step
                    )

    def _compute(
        self,
        stage: str,
        counts: torch.Tensor,
        features: torch.Tensor,
        pixels: torch.Tensor,
        labels: torch.Tensor,
        domains: torch.Tensor,
    ) -> dict[str, float]:
        labels, domains = labels.cpu().long(), domains.cpu().long()
        rendered, real = domains == RENDERED, domains == REAL
        if min(int(rendered.sum()), int(real.sum())) < _MIN_SAMPLES:
            if not self._warned:
                rank_zero_warn(
                    f"BoundReport: {stage} epoch had {int(rendered.sum())} rendered and "
                    f"{int(real.sum())} real samples; at least {_MIN_SAMPLES} of each are needed "
                    f"for the domain discrepancy, so none is logged"
                )
                self._warned = True
            return {}
        results: dict[str, float] = {}
        if self.pixels:
            key = (stage, int(rendered.sum()), int(real.sum()))
            if key not in self._pixel_pad:
                self._pixel_pad[key] = proxy_a_distance(
                    pixels[rendered], pixels[real], self.cs, self.folds, self.seed
                )
            results["pad_pixels"] = self._pixel_pad[key]
        if features.shape[1] == 0:
            return results
        correct_synth, total_synth, correct_real, total_real = counts.tolist()
        er_real = 1.0 - correct_real / total_real if total_real else math.nan
        er_synth = 1.0 - correct_synth / total_synth if total_synth else math.nan
        terms = bound_terms(
            er_synth,
            features[rendered],
            features[real],
            labels[rendered],
            labels[real],
            er_real=er_real,
            cs=self.cs,
            folds=self.folds,
            seed=self.seed,
        )
        results["pad"] = terms.disc
        results.update({k: v for k, v in terms.as_metrics().items() if not math.isnan(v)})
        return results


def _per_sample(mask: torch.Tensor) -> torch.Tensor:
    """Count of ``True`` per sample (per pixel for dense masks)."""
    return mask.flatten(1).sum(1) if mask.ndim > 1 else mask.long()


def _bound_line(results: dict[str, float]) -> str:
    er_real = results.get("bound_er_real", math.nan)
    return (
        f"er_real {er_real:.4f} <= er_synth {results['bound_er_synth']:.4f} + "
        f"disc {results['bound_disc']:.4f} + lambda {results['bound_lambda']:.4f} "
        f"= {results['bound']:.4f} (slack {results.get('bound_slack', math.nan):.4f})"
    )
