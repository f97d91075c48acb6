"""The ``lightning-synth`` command: a thin ``LightningCLI`` with the project's defaults.

``cli.py`` is the one core module that imports ``tasks`` and ``datamodules``: doing
so registers every task and source, so YAML can name them by their short class
names (``class_path: ImageClassifier``).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

import lightning_synth.datamodules  # noqa: F401  (registers short class names)
import lightning_synth.tasks  # noqa: F401  (registers short class names)
from lightning_synth import __version__
from lightning_synth.callbacks import FailureMarker, PredictionWriter
from lightning_synth.checkpoints import SPECIAL_CKPT_PATHS, read_checkpoint
from lightning_synth.distributed import close_process_group
from lightning_synth.errors import USER_ERRORS, InputError, find_user_error
from lightning_synth.memory import keep_freed_memory_from_env
from lightning_synth.parse_errors import summarize

__all__ = ["LightningSynthCLI", "main", "announce", "describe_metrics", "USER_ERRORS"]

#: Default logger; ``name`` is replaced by the stem of the first ``--config`` file.
_AUTO_NAME = "auto"
#: Default logger folder, replaced by ``--trainer.default_root_dir`` when that is given.
_DEFAULT_SAVE_DIR = "runs"
_TRAINER_DEFAULTS: dict[str, Any] = {
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        # No "hp_metric" placeholder at -1: _BestMonitorAsHparamMetric writes a real one.
        "init_args": {
            "save_dir": _DEFAULT_SAVE_DIR,
            "name": _AUTO_NAME,
            "default_hp_metric": False,
        },
    },
}
_METRIC_NAME = re.compile(r"^(train|val|test)/(?:(rendered|real)_)?(\w+)$")
_WORDS = {"acc": "accuracy", "loss": "loss", "pad": "proxy A-distance", "iou": "mean IoU"}


def describe_metrics(metrics: dict[str, Any], stage: str) -> list[str]:
    """Plain-language lines for the ``{stage}/...`` metrics, e.g. ``accuracy on real images: 71.2%``.

    Args:
        metrics: logged metric values by name (``trainer.callback_metrics``).
        stage: which stage to describe (``val`` or ``test``).
    """
    lines = []
    for name in sorted(metrics):
        match = _METRIC_NAME.match(name)
        if not match or match.group(1) != stage:
            continue
        _, domain, metric = match.groups()
        value = float(metrics[name])
        words = _WORDS.get(metric, metric.replace("_", " "))
        where = f" on {domain} images" if domain else ""
        shown = f"{100 * value:.1f}%" if metric.endswith("acc") else f"{value:.4f}"
        lines.append(f"  {words}{where}: {shown}")
    return lines


class _BestMonitorAsHparamMetric(Callback):
    """At the end of a fit, log the hyper-parameters with the best value of the task's
    monitored metric (``best/val/select_im``, ...) to every TensorBoard logger, so that
    TensorBoard's HPARAMS tab compares runs by the metric their best checkpoint was
    chosen by.

    Args:
        monitor: the task's monitored metric.
    """

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor

    @rank_zero_only
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        best = None
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.monitor == self.monitor:
                best = callback.best_model_score
        if best is None:
            best = trainer.callback_metrics.get(self.monitor)
        if best is None:
            return
        metrics = {f"best/{self.monitor}": float(best)}
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.log_hyperparams(logger.hparams, metrics, step=trainer.global_step)
                logger.save()


class _ArgumentParser(LightningArgumentParser):
    """Parser whose errors start with the key and the problem, not with the usage text."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error or os.environ.get("LIGHTNING_SYNTH_DEBUG"):
            super().error(message, ex)
        details = "\n".join(f"  {line[:200]}" for line in message.strip().splitlines())
        sys.stderr.write(
            f"lightning-synth: error: {summarize(message)}\n{details}\n"
            f"(lightning-synth SUBCOMMAND --help lists every option, with its doc)\n"
        )
        self.exit(2)


class LightningSynthCLI(LightningCLI):
    """``LightningCLI`` with TensorBoard, checkpoints by the task's ``monitor``, and a summary.

    Adds ``--test_after_fit`` (test the best checkpoint when ``fit`` ends) and prints
    the run directory at the start and the results in words at the end.
    """

    def __init__(self, args: Any = None, run: bool = True) -> None:
        super().__init__(
            model_class=LightningModule,
            datamodule_class=None,
            subclass_mode_model=True,
            seed_everything_default=0,
            trainer_defaults=_TRAINER_DEFAULTS,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"version": __version__},
            parser_class=_ArgumentParser,
            args=args,
            run=run,
        )

    def _parse_ckpt_path(self) -> None:
        """Check ``--ckpt_path`` and read its task's hyper-parameters into the config.

        Lightning (2.6) reads the hyper-parameters of ``--ckpt_path`` into the config so
        that the task is rebuilt as it was trained; this does the same after checking the
        file (a corrupt or foreign file is named in one line) and that it holds the
        config's task. A checkpoint without the task's class path (a task built in
        Python) is read as one of the config's task.
        """
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        ckpt_path = self.config[subcommand].get("ckpt_path")
        if not ckpt_path or str(ckpt_path) in SPECIAL_CKPT_PATHS:
            return
        checkpoint = read_checkpoint(ckpt_path)
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        configured = getattr(self.config[subcommand].get("model"), "class_path", None)
        written = hparams.pop("_class_path", None)
        if written and configured and written != configured:
            raise InputError(
                f"{ckpt_path} is a checkpoint of {written.rsplit('.', 1)[-1]}, but the config "
                f"builds {configured.rsplit('.', 1)[-1]}; pass the config the checkpoint "
                f"was trained with"
            )
        if not hparams:
            return
        class_path = written or configured
        model = {"class_path": class_path, "dict_kwargs": hparams} if class_path else hparams
        self.config = self.parser.parse_object({subcommand: {"model": model}}, self.config)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=False,
            help="After fit, run test with the best checkpoint and print the results.",
        )

    def before_instantiate_classes(self) -> None:
        config = (
            self.config.get(str(self.subcommand), self.config) if self.subcommand else self.config
        )
        trainer = config.get("trainer", {})
        logger = trainer.get("logger")
        init_args = getattr(logger, "init_args", None)
        if init_args is None:
            return
        if init_args.get("name") == _AUTO_NAME:
            files = config.get("config") or []
            init_args["name"] = Path(str(files[0])).stem if files else "lightning_synth"
        # The logger's save_dir decides where runs (and their checkpoints) go; Lightning
        # reads default_root_dir only when there is no logger, so pass it on.
        root = trainer.get("default_root_dir")
        if root is not None and init_args.get("save_dir") == _DEFAULT_SAVE_DIR:
            init_args["save_dir"] = str(root)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        if trainer.checkpoint_callback is not None and not _user_configured_checkpoint(self):
            # Replace Lightning's default (last epoch only) by the best checkpoint by the
            # task's own monitored metric plus a last.ckpt that is always the final state.
            trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, ModelCheckpoint)]
            trainer.callbacks.extend(self._checkpoint_callbacks())
        monitor = getattr(self.model, "monitor", None)
        if self.subcommand == "fit" and monitor:
            trainer.callbacks.append(_BestMonitorAsHparamMetric(monitor))
        if self.subcommand == "predict":
            trainer.callbacks.append(PredictionWriter())
        trainer.callbacks.append(FailureMarker())
        return trainer

    def _checkpoint_callbacks(self) -> list[ModelCheckpoint]:
        # Since Lightning 2.6, ModelCheckpoint(save_last=True) with a monitor writes
        # last.ckpt only when it also writes a top-k checkpoint, so after the monitored
        # metric stops improving last.ckpt is an old state. A second callback without a
        # monitor and with the fixed name "last" overwrites last.ckpt at every epoch end
        # (and Lightning's ckpt_path="last" finds it by its name). The best one comes
        # first: trainer.checkpoint_callback, and so ckpt_path="best", is that one.
        # Saved when each training epoch ends, not at validation: a config that validates
        # every N epochs (the GANs) must still leave its final state behind.
        last = ModelCheckpoint(
            filename="last", enable_version_counter=False, save_on_train_epoch_end=True
        )
        monitor = getattr(self.model, "monitor", None)
        if not monitor:
            return [last]
        best = ModelCheckpoint(
            monitor=monitor,
            mode=getattr(self.model, "mode", "min"),
            filename="best-{epoch}-{step}",
            auto_insert_metric_name=False,
        )
        return [best, last]

    def before_fit(self) -> None:
        _announce(f"Run directory: {self.trainer.log_dir}")

    def after_fit(self) -> None:
        if self.trainer.interrupted:
            return
        config = self.config.get("fit", {})
        lines = describe_metrics(self.trainer.callback_metrics, "val")
        if lines:
            _announce("Validation results:\n" + "\n".join(lines))
        if config.get("test_after_fit"):
            ckpt = "best" if self._has_best_checkpoint() else None
            chosen = self._chosen_checkpoint() if ckpt else "the final weights"
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt)
            lines = describe_metrics(self.trainer.callback_metrics, "test")
            if lines:
                _announce(f"Test results of {chosen}:\n" + "\n".join(lines))
        _announce(
            f"Checkpoints and config are in {self.trainer.log_dir}; "
            f"watch the run with: tensorboard --logdir {Path(self.trainer.log_dir or '.').parent}"
        )

    def _chosen_checkpoint(self) -> str:
        """Which checkpoint ``test_after_fit`` tests and how it was chosen, in words."""
        callback = self.trainer.checkpoint_callback
        path = Path(getattr(callback, "best_model_path", "") or "?")
        monitor = getattr(callback, "monitor", None)
        if not monitor:
            return f"{path.name}"
        score = getattr(callback, "best_model_score", None)
        value = f" = {float(score):.4f}" if score is not None else ""
        uses = "uses real labels" if "/real_" in monitor else "no real labels used"
        mode = getattr(callback, "mode", "min")
        return f"{path.name}, the best by {monitor} ({mode}{value}; {uses})"

    def after_test(self) -> None:
        lines = describe_metrics(self.trainer.callback_metrics, "test")
        if lines:
            _announce("Test results:\n" + "\n".join(lines))

    def after_validate(self) -> None:
        lines = describe_metrics(self.trainer.callback_metrics, "val")
        if lines:
            _announce("Validation results:\n" + "\n".join(lines))

    def after_predict(self) -> None:
        for callback in self.trainer.callbacks:
            if isinstance(callback, PredictionWriter) and callback.written:
                _announce(f"Predictions written to {callback.written[-1]}")

    def _has_best_checkpoint(self) -> bool:
        callback = self.trainer.checkpoint_callback
        return bool(callback is not None and getattr(callback, "best_model_path", ""))


def _user_configured_checkpoint(cli: LightningSynthCLI) -> bool:
    config = cli.config.get(str(cli.subcommand), cli.config)
    callbacks = config.get("trainer", {}).get("callbacks") or []
    return any("ModelCheckpoint" in str(getattr(c, "class_path", "")) for c in callbacks)


@rank_zero_only
def announce(message: str) -> None:
    """Print ``message`` as ``[lightning-synth] message`` (on the first process only).

    Args:
        message: what to say.
    """
    print(f"[lightning-synth] {message}", flush=True)


_announce = announce


def main(args: list[str] | None = None) -> None:
    """Entry point of ``lightning-synth`` and ``python -m lightning_synth``.

    ``lightning-synth discrepancy --config X [--ckpt_path C]`` prints the proxy A-distance
    between the two domains of a config (see :mod:`lightning_synth.discrepancy_cli`).

    Input errors (a bad config value, a missing or corrupt file) exit with status 2 and a
    first line that names the problem; set ``LIGHTNING_SYNTH_DEBUG=1`` to see the
    traceback instead. Other errors keep their traceback: they are bugs to report.
    On glibc, freed CPU memory is kept for reuse (:mod:`lightning_synth.memory`; off
    with ``LIGHTNING_SYNTH_KEEP_FREED_MEMORY=0``).

    Args:
        args: command-line arguments; the process's own when ``None``.
    """
    argv = sys.argv[1:] if args is None else list(args)
    keep_freed_memory_from_env()
    if argv[:1] == ["discrepancy"]:
        # `lightning-synth discrepancy --config ...`: measure the gap without training
        from lightning_synth.discrepancy_cli import main as discrepancy

        discrepancy(argv[1:])
        return
    if argv[:1] == ["seeds"]:
        # `lightning-synth seeds --config A [--config B] --seeds N -- overrides`
        from lightning_synth.seeds import main as seeds

        seeds(argv[1:])
        return
    if argv[:1] == ["export"]:
        # `lightning-synth export --config ... --ckpt_path ... --format onnx|pt2`
        from lightning_synth.export_cli import main as export

        _exit_on_input_error(export, argv[1:])
        return
    if argv[:1] == ["demo"]:
        # `lightning-synth demo`: source-only, then adapted, on rendered -> real digits
        from lightning_synth.demo import main as demo

        _exit_on_input_error(demo, argv[1:])
        return
    try:
        _exit_on_input_error(LightningSynthCLI, args=args)
    finally:
        close_process_group()


def _exit_on_input_error(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``function``; a user input error ends the process with status 2 and one line.

    Other errors keep their traceback (set ``LIGHTNING_SYNTH_DEBUG=1`` to see it for
    input errors too).
    """
    try:
        return function(*args, **kwargs)
    except Exception as error:
        user_error = find_user_error(error)
        if user_error is None or os.environ.get("LIGHTNING_SYNTH_DEBUG"):
            raise
        print(f"lightning-synth: error: {user_error}", file=sys.stderr)
        print("(set LIGHTNING_SYNTH_DEBUG=1 to see the traceback)", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
