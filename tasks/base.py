"""The template every task inherits: hooks to fill in, one shared step.

A task overrides :meth:`SynthTask.configure_models` (and, when it needs them,
``configure_losses`` / ``configure_metrics``) and :meth:`SynthTask.shared_step`;
the train/val/test steps, the optimizer and the per-domain metric plumbing are
written once, here.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.core.mixins import HyperparametersMixin
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.aggregation import SumMetric

from lightning_synth.adaptation import AdaptationInputs, AdaptationMethod
from lightning_synth.batch import DOMAIN_NAMES, IGNORE_LABEL, Batch, Stage
from lightning_synth.errors import InputError
from lightning_synth.nn.schedules import annealed_lr_factor, training_progress

__all__ = ["SynthTask", "StepOutput", "Adaptation"]

StepOutput = dict[str, torch.Tensor]

_STAGES: tuple[Stage, ...] = ("train", "val", "test")

#: What a task's ``adaptation:`` argument takes: one method, several, or none (source-only).
Adaptation = AdaptationMethod | list[AdaptationMethod] | None
Networks = nn.Module | list[nn.Module] | None


def _holds_module(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return any(isinstance(item, nn.Module) for item in value)
    return isinstance(value, nn.Module)


def _config_given() -> Mapping[str, Any] | None:
    """The configuration the task is being built from, when a LightningCLI builds it.

    ``save_hyperparameters`` records that configuration instead of the ``__init__``
    arguments; a throwaway mixin shows whether there is one, through public API only.
    """
    probe = _Probe()
    probe.save_hyperparameters(frame=inspect.currentframe(), logger=False)
    return dict(probe.hparams) or None


@dataclass
class _Probe(HyperparametersMixin):
    """Without a given configuration a dataclass saves its (no) fields: the frames of the
    task being built, networks and all, are never collected or copied."""


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

    def __init__(self, networks: Mapping[str, Networks] | None = None) -> None:
        super().__init__()
        self._save_task_hyperparameters(dict(networks or {}))
        self.adaptation = nn.ModuleList()
        self._total_steps = float("inf")
        self.configure_models(**dict(networks or {}))
        self.configure_losses()
        self.configure_metrics()

    def _save_task_hyperparameters(self, networks: dict[str, Networks]) -> None:
        """Save the arguments of the task's own ``__init__`` as hyper-parameters.

        Built by the CLI, injected networks arrive as configs, which
        ``load_from_checkpoint`` rebuilds them from; built in Python they are objects, and
        are left out (the state dict has their weights): the logger would otherwise pickle
        each, weights and all, into hparams.yaml (VGG19: 86 MB and a minute before the
        first step). Only the outermost class's arguments are kept, so a preset such as
        ``DANN`` reloads with its own signature.
        """
        given = _config_given()
        objects = [
            name
            for name, network in networks.items()
            if _holds_module(network) and (given is None or _holds_module(given.get(name)))
        ]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`")
            self.save_hyperparameters(ignore=["networks", *objects])
        own = set(inspect.signature(type(self).__init__).parameters) - {"self"}
        # Names with a leading underscore are Lightning's (the CLI's ``_instantiator``,
        # which ``load_from_checkpoint`` rebuilds injected networks with).
        foreign = [name for name in self.hparams if name not in own and not name.startswith("_")]
        self.remove_ignored_hparams(foreign)

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

    # -- domain adaptation ---------------------------------------------------------------
    def configure_adaptation(
        self, adaptation: Adaptation, feature_dim: int, num_classes: int | None = None
    ) -> None:
        """Adopt the task's adaptation methods and size them (call from ``configure_models``).

        Args:
            adaptation: one method, a list of them, or ``None`` (source-only).
            feature_dim: channels ``D`` of the features the task hands to the methods.
            num_classes: number of classes, ``None`` for tasks without classes.
        """
        if adaptation is None:
            methods: list[AdaptationMethod] = []
        elif isinstance(adaptation, AdaptationMethod):
            methods = [adaptation]
        else:
            methods = list(adaptation)
        for method in methods:
            if not isinstance(method, AdaptationMethod):
                raise TypeError(
                    f"adaptation takes methods from lightning_synth.adaptation, got {type(method).__name__}"
                )
            method.bind(feature_dim, num_classes)
        self.adaptation = nn.ModuleList(methods)

    @property
    def progress(self) -> float:
        """Training progress ``p`` in [0, 1]: ``global_step / estimated_stepping_batches``.

        Computed from the step counter, so a run resumed from a checkpoint continues every
        schedule where it stopped; 1 outside a fit.
        """
        try:
            step = self.trainer.global_step
        except RuntimeError:  # not attached to a Trainer
            return 1.0
        return training_progress(step, self._total_steps)

    def on_train_start(self) -> None:
        self._total_steps = float(self.trainer.estimated_stepping_batches)

    def adaptation_loss(self, stage: Stage, inputs: AdaptationInputs) -> torch.Tensor:
        """The summed, weighted and ramped losses of the adaptation methods; logs their values.

        Each method's values go to ``{stage}/{name}`` (e.g. ``train/domain_acc``,
        ``val/mmd_loss``) and the total to ``{stage}/adaptation_loss``. 0 without methods.

        Args:
            stage: ``train``, ``val`` or ``test``.
            inputs: features, domain codes and (where the task has them) logits of the batch.
        """
        if not len(self.adaptation):
            return inputs.features.new_zeros(())
        progress = self.progress if stage == "train" else 1.0
        on_step = stage == "train"
        options = {
            "on_step": on_step,
            "on_epoch": not on_step,
            "sync_dist": not on_step,
            "batch_size": len(inputs.domains),
        }
        total = inputs.features.new_zeros(()).float()
        for method in self.adaptation:
            output = method(inputs, progress)
            total = total + output.loss
            for name, value in output.logs.items():
                self.log(f"{stage}/{name}", value.float(), **options)
        self.log(f"{stage}/adaptation_loss", total.detach(), **options)
        return total

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
        optional schedule over the run's total steps: ``cosine``, or ``dann``, the annealing
        of Ganin et al. (``lr / (1 + lr_alpha p) ** lr_beta``)."""
        hparams = self.hparams
        lr = float(hparams.get("lr", 1e-3))
        weight_decay = float(hparams.get("weight_decay", 0.0))
        name = hparams.get("optimizer", "adam")
        parameters = [p for p in self.parameters() if p.requires_grad]
        if not parameters:
            raise InputError(
                f"{type(self).__name__} has nothing to train: none of its modules has a "
                "trainable parameter (a classical method in place of the network?); run "
                "predict, validate or test with it instead of fit"
            )
        if name == "adam":
            optimizer = torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
        elif name == "adamw":
            optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
        elif name == "sgd":
            optimizer = torch.optim.SGD(
                parameters, lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True
            )
        else:
            raise InputError(f"optimizer must be 'adam', 'adamw' or 'sgd', got {name!r}")
        schedule = hparams.get("scheduler", "none")
        if schedule == "dann":
            # Ganin et al. 2016: mu_p = lr / (1 + alpha p) ** beta, p the training progress.
            total = float(self.trainer.estimated_stepping_batches)
            alpha = float(hparams.get("lr_alpha", 10.0))
            beta = float(hparams.get("lr_beta", 0.75))
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer,
                lambda step: annealed_lr_factor(training_progress(step, total), alpha, beta),
            )
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
            }
        if schedule == "cosine":
            total = max(1, int(self.trainer.estimated_stepping_batches))
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
            }
        return optimizer

    def optimizer_lr(self) -> float:
        """The first optimizer's current learning rate (0 outside a fit)."""
        try:
            optimizers = self.trainer.optimizers
        except RuntimeError:  # not attached to a Trainer
            return 0.0
        return float(optimizers[0].param_groups[0]["lr"]) if optimizers else 0.0

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
