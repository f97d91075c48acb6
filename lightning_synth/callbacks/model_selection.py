"""``ModelSelection``: label-free validators logged at each validation end.

Logs ``val/select_snd``, ``val/select_dev``, ``val/select_im`` and
``val/select_rendered_acc`` (see :mod:`lightning_synth.metrics.selection`), every one
signed so that higher is better. Choose checkpoints by one of them and real labels
stay for evaluation::

    trainer:
      callbacks:
        - class_path: lightning_synth.callbacks.ModelSelection
        - class_path: lightning.pytorch.callbacks.ModelCheckpoint
          init_args: {monitor: val/select_snd, mode: max, save_last: true}

Only rendered labels are read; real labels, where the validation set has them, are
never looked at. The task's validation step may return ``"features"`` (``B x D``) and
``"logits"`` (``B x C``); without them the callback computes them with
``pl_module.features(images)`` and ``pl_module(images)``.

Under DDP every process keeps its share, the shares are gathered (every process takes
part in the same collectives), process 0 computes the scores and broadcasts them, and
every process logs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn

from lightning_synth.batch import DOMAIN, IGNORE_LABEL, IMAGE, LABEL, REAL, RENDERED, Batch
from lightning_synth.callbacks.bound_report import batch_features, gather_rows
from lightning_synth.errors import InputError
from lightning_synth.metrics.selection import (
    VALIDATORS,
    Validator,
    deep_embedded_validation,
    information_maximization,
    selection_metric,
    soft_neighborhood_density,
)

__all__ = ["ModelSelection"]

_MIN_SAMPLES = 8  # per domain, below which SND, IM and DEV are not estimated


class ModelSelection(Callback):
    """Log label-free validators as ``val/select_<name>`` (higher is better for all).

    Args:
        validators: which to compute, from ``snd``, ``dev``, ``im``, ``rendered_acc``.
        num_samples: validation samples of each domain that SND, IM and DEV use (the
            first ones in loader order; under DDP, process 0's first); the rendered
            accuracy counts every rendered validation sample.
        temperature: SND's temperature (0.05 as published).
        dev_folds: cross-fitting folds of DEV's domain classifier.
        seed: seed of DEV's folds.
    """

    def __init__(
        self,
        validators: Sequence[Validator] = ("snd", "dev", "im", "rendered_acc"),
        num_samples: int = 500,
        temperature: float = 0.05,
        dev_folds: int = 2,
        seed: int = 0,
    ) -> None:
        unknown = sorted(set(validators) - set(VALIDATORS))
        if unknown or not validators:
            raise InputError(f"unknown validators {unknown}; choose from {sorted(VALIDATORS)}")
        if num_samples < _MIN_SAMPLES:
            raise InputError(f"num_samples must be at least {_MIN_SAMPLES}, got {num_samples}")
        self.validators = tuple(dict.fromkeys(validators))
        self.num_samples = num_samples
        self.temperature = temperature
        self.dev_folds = dev_folds
        self.seed = seed
        self._rows: list[torch.Tensor] = []
        self._kept = {RENDERED: 0, REAL: 0}
        self._counts = torch.zeros(2)  # rendered correct, rendered labelled
        self._dims = (0, 0)  # feature size (0 without DEV), number of classes
        self._warned: set[str] = set()

    @property
    def monitors(self) -> dict[str, str]:
        """Logged name of each validator (``{"snd": "val/select_snd", ...}``); all ``mode="max"``."""
        return {name: selection_metric(name) for name in self.validators}

    def _needs_features(self) -> bool:
        return "dev" in self.validators

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._rows = []
        self._kept = {RENDERED: 0, REAL: 0}
        self._counts = torch.zeros(2, device=pl_module.device)
        self._dims = (0, 0)

    @torch.no_grad()
    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Batch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking:
            return
        images, domains = batch[IMAGE], batch[DOMAIN]
        logits = outputs.get("logits") if isinstance(outputs, dict) else None
        if logits is None:
            logits = pl_module(images)
        logits = logits.detach()
        if logits.ndim != 2:
            self._warn(
                "shape",
                f"ModelSelection needs B x C class logits, got {tuple(logits.shape)}; "
                f"no val/select_* is logged",
            )
            return
        # Rendered labels only: real labels, if the loader has them, stay unread.
        rendered = domains == RENDERED
        labels = torch.where(rendered, batch[LABEL], torch.full_like(batch[LABEL], IGNORE_LABEL))
        labelled = labels != IGNORE_LABEL
        correct = (logits.argmax(dim=1) == labels) & labelled
        self._counts += torch.stack([correct.sum(), labelled.sum()]).to(self._counts)

        # Each process keeps up to ``num_samples`` of each domain: a DDP shard may hold one
        # domain only (a sampler that deals interleaved samples out in turn does that).
        keep = torch.zeros_like(rendered)
        for code in (RENDERED, REAL):
            mine = (domains == code).nonzero().flatten()[: self.num_samples - self._kept[code]]
            keep[mine] = True
            self._kept[code] += len(mine)
        if not bool(keep.any()):
            return
        parts = [logits[keep].float(), labels[keep, None].float(), domains[keep, None].float()]
        if self._needs_features():
            parts.insert(0, batch_features(pl_module, outputs, images, keep).float())
        self._dims = (parts[0].shape[1] if self._needs_features() else 0, logits.shape[1])
        self._rows.append(torch.cat(parts, dim=1))

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        device = pl_module.device
        # Collectives in the same order on every process, whatever each collected.
        dims = torch.tensor(self._dims, device=device)
        if trainer.world_size > 1:
            dims = trainer.strategy.all_gather(dims).reshape(-1, 2).amax(0)
        features_dim, num_classes = (int(d) for d in dims)
        width = features_dim + num_classes + 2 if num_classes else 0
        rows = torch.cat(self._rows) if self._rows else torch.zeros(0, width, device=device)
        rows = gather_rows(trainer, rows)
        counts = trainer.strategy.reduce(self._counts.float(), reduce_op="sum")
        results: dict[str, float] = {}
        if trainer.is_global_zero:
            results = self._compute(rows.cpu(), counts.cpu(), features_dim, num_classes)
        results = trainer.strategy.broadcast(results, src=0)
        for name, value in results.items():
            pl_module.log(selection_metric(name), value, sync_dist=True)
        self._rows = []

    def _compute(
        self, rows: torch.Tensor, counts: torch.Tensor, features_dim: int, num_classes: int
    ) -> dict[str, float]:
        results: dict[str, float] = {}
        if "rendered_acc" in self.validators and counts[1] > 0:
            results["rendered_acc"] = float(counts[0] / counts[1])
        if not num_classes:
            return results
        # A row: features (only when DEV is on), logits, label, domain.
        features = rows[:, :features_dim]
        logits = rows[:, features_dim : features_dim + num_classes]
        labels, domains = rows[:, -2].long(), rows[:, -1].long()
        real = (domains == REAL).nonzero().flatten()[: self.num_samples]
        rendered = (domains == RENDERED).nonzero().flatten()[: self.num_samples]
        if len(real) < _MIN_SAMPLES:
            self._warn("real", f"ModelSelection: only {len(real)} real validation samples")
            # NaN, not nothing: a ModelCheckpoint monitoring the validator must find its key
            # (it ranks NaN last) rather than stop the fit on a small validation set.
            results.update(
                {name: float("nan") for name in self.validators if name != "rendered_acc"}
            )
            return results
        if "snd" in self.validators:
            results["snd"] = soft_neighborhood_density(logits[real], self.temperature)
        if "im" in self.validators:
            results["im"] = information_maximization(logits[real])
        if "dev" in self.validators:
            rendered = rendered[labels[rendered] != IGNORE_LABEL]
            if len(rendered) < max(_MIN_SAMPLES, 2 * self.dev_folds):
                self._warn("dev", f"ModelSelection: only {len(rendered)} labelled rendered samples")
            else:
                risk = deep_embedded_validation(
                    features[rendered],
                    logits[rendered],
                    labels[rendered],
                    features[real],
                    folds=self.dev_folds,
                    seed=self.seed,
                )
                results["dev"] = -risk
        return results

    def _warn(self, key: str, message: str) -> None:
        if key not in self._warned:
            rank_zero_warn(message + "; those validators are not logged this epoch")
            self._warned.add(key)
