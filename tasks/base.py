"""The template every task inherits: hooks to fill in, one shared step.

A task overrides :meth:`SynthTask.configure_models` (and, when it needs them,
``configure_losses`` / ``configure_metrics``) and :meth:`SynthTask.shared_step`;
the train/val/test steps, the optimizer and the per-domain metric plumbing are
written once, here.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.aggregation import SumMetric

from lightning_synth.batch import DOMAIN_NAMES, IGNORE_LABEL, Batch, Stage

__all__ = ["SynthTask", "StepOutput"]

StepOutput = dict[str, torch.Tensor]

_STAGES: tuple[Stage, ...] = ("train", "val", "test")


class SynthTask(LightningModule):
    """Base task: fill in the hooks, inherit the steps.

    Subclasses declare their own typed ``__init__`` (jsonargparse reads it for the
    CLI) with the hyper-parameters ``lr``, ``weight_decay``, ``optimizer`` and
    ``scheduler`` that :meth:`configure_optimizers` reads, and pass their injected
    networks on as ``networks``; :meth:`configure_models` receives them.

    Args:
        networks: the ``nn.Module`` arguments of the subclass, by name, handed to
            :meth:`configure_models` (``None`` means "use the default network").
    """

    #: Metric that the CLI's ``ModelCheckpoint`` keeps the best of.
    monitor: ClassVar[str] = "val/loss"
    #: Whether ``monitor`` improves downwards (``"min"``) or upwards (``"max"``).
    mode: ClassVar[Literal["min", "max"]] = "min"

    def __init__(self, networks: Mapping[str, nn.Module | None] | None = None) -> None:
        super().__init__()
        # Injected networks are saved in the state dict. Built by LightningCLI they arrive
        # as configs (given hyper-parameters), which ``load_from_checkpoint`` rebuilds them
        # from; built in Python they are objects, never to be saved as hyper-parameters:
        # the logger would pickle each, weights and all, into hparams.yaml (VGG19: 86 MB
        # and a minute before the first step).
        given = _given_hyperparameters.get()
        objects = [
            name
            for name, network in (networks or {}).items()
            if isinstance(network, nn.Module)
            and (given is None or isinstance(given.get(name), nn.Module))
        ]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`")
            self.save_hyperparameters(ignore=["networks", *objects])
        for name in [key for key, value in self.hparams.items() if isinstance(value, nn.Module)]:
            del self.hparams[name]  # a network passed some other way: the state dict has it
        self.configure_models(**dict(networks or {}))
        self.configure_losses()
        self.configure_metrics()

    # -- hooks -----------------------------------------------------------------------
    def configure_models(self, **networks: nn.Module | None) -> None:
        """Build or adopt the networks; ``networks`` holds the injected ones or ``None``."""
        raise NotImplementedError(f"{type(self).__name__} must implement configure_models")

    def configure_losses(self) -> None:
        """Set up loss modules (optional)."""

    def configure_metrics(self) -> None:
        """Set up metrics, e.g. with :meth:`add_domain_metrics` (optional)."""

    def shared_step(self, batch: Batch, stage: Stage) -> StepOutput:
        """Compute the loss of ``batch`` and log what ``stage`` reports.

        Returns a dict with at least ``"loss"``; extra entries reach the
        ``on_*_batch_end`` hooks (e.g. predictions to draw).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement shared_step")

    # -- the steps, written once ---------------------------------------------------------
    def training_step(self, batch: Batch, batch_idx: int) -> StepOutput:
        return self.shared_step(batch, "train")

    def validation_step(self, batch: Batch, batch_idx: int) -> StepOutput:
        return self.shared_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> StepOutput:
        return self.shared_step(batch, "test")

    # -- optimisation ---------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        """Adam, AdamW or SGD (momentum 0.9) from the ``optimizer`` hyper-parameter, with an
        optional cosine schedule over the run's total steps."""
        hparams = self.hparams
        lr = float(hparams.get("lr", 1e-3))
        weight_decay = float(hparams.get("weight_decay", 0.0))
        name = hparams.get("optimizer", "adam")
        parameters = [p for p in self.parameters() if p.requires_grad]
        if name == "adam":
            optimizer = torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
        elif name == "adamw":
            optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
        elif name == "sgd":
            optimizer = torch.optim.SGD(
                parameters, lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True
            )
        else:
            raise ValueError(f"optimizer must be 'adam', 'adamw' or 'sgd', got {name!r}")
        if hparams.get("scheduler", "none") == "cosine":
            total = max(1, int(self.trainer.estimated_stepping_batches))
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
            }
        return optimizer

    # -- per-domain metrics -------------------------------------------------------------------
    def add_domain_metrics(self, metrics: MetricCollection) -> None:
        """Keep a copy of ``metrics`` per stage and domain, named ``{stage}/{domain}_{name}``.

        Args:
            metrics: the metrics of one domain and stage, e.g.
                ``MetricCollection({"acc": MulticlassAccuracy(10, ignore_index=-1)})``.
        """
        self.domain_metrics = nn.ModuleDict(
            {
                f"{stage}_{domain}": metrics.clone(prefix=f"{stage}/{domain}_")
                for stage in _STAGES
                for domain in DOMAIN_NAMES.values()
            }
        )
        # How many labelled samples each domain had, summed over processes: a domain is
        # reported only if some process saw it, and then every process joins the sync.
        self.domain_counts = nn.ModuleDict(
            {
                f"{stage}_{domain}": SumMetric()
                for stage in _STAGES[1:]
                for domain in DOMAIN_NAMES.values()
            }
        )

    def log_domain_metrics(
        self, stage: Stage, preds: torch.Tensor, target: torch.Tensor, domain: torch.Tensor
    ) -> None:
        """Update the metrics of each domain present (with labels) in the batch.

        Training metrics are logged per step (this batch only); validation and test
        metrics accumulate and are computed at epoch end over all processes.

        Args:
            stage: ``"train"``, ``"val"`` or ``"test"``.
            preds: predictions (logits or probabilities), first dimension the batch.
            target: labels, ``IGNORE_LABEL`` where unknown; ``B`` or ``B x H x W``.
            domain: domain code per sample.
        """
        for code, name in DOMAIN_NAMES.items():
            selected = domain == code
            domain_target = target[selected]
            labelled = int((domain_target != IGNORE_LABEL).sum())
            key = f"{stage}_{name}"
            if stage != "train":
                self.domain_counts[key].update(torch.tensor(float(labelled), device=self.device))
            if not labelled:
                continue
            metrics = self.domain_metrics[key]
            if stage == "train":
                metrics(preds[selected], domain_target)
                self.log_dict(metrics, on_step=True, on_epoch=False)
            else:
                metrics.update(preds[selected], domain_target)

    def _log_domain_epoch_metrics(self, stage: Stage) -> None:
        if not hasattr(self, "domain_metrics"):
            return
        for name in DOMAIN_NAMES.values():
            key = f"{stage}_{name}"
            counts, metrics = self.domain_counts[key], self.domain_metrics[key]
            with warnings.catch_warnings():
                # A process that saw none of this domain still joins the sync with its
                # empty state; every process takes the same branches, so none waits forever.
                warnings.filterwarnings("ignore", message=".*compute.*before.*update")
                seen = float(counts.compute())
                values = metrics.compute() if seen > 0 else {}
            if values:
                # Already reduced over processes; sync_dist only averages equal values, and
                # keeps Lightning from warning that epoch-level logs are not synced.
                self.log_dict(values, sync_dist=True)
            counts.reset()
            metrics.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_domain_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_domain_epoch_metrics("test")
