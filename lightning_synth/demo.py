"""``lightning-synth demo`` (``make demo``): the synthetic-to-real gap, and closing it, in minutes.

Two fits through the command line of ``configs/sim2real_digits.yaml``, the recipe for
rendered -> real digits: handwriting-like rendered digits (``StrokeDigitsSource``, varied
style) -> scikit-learn's 1,797 real handwritten digits, both framed the same way
(``framing: canonical``); the same network, batches and number of steps; then one table:

1. **source-only**: ``adaptation: null``: only the rendered half of each batch, with its
   labels, trains the network;
2. **adapted**: the recipe's adaptation components also learn from the real half of each
   batch, whose labels stay hidden: ``MinimumClassConfusion`` (MCC) and
   ``RealSampleTerms`` (entropy, diversity, pseudo-label consistency).

Both models are tested as they are when training ends (no checkpoint is chosen with
real labels), and the proxy A-distance between rendered and real test digits is measured
on each model's features (the task's ``test/pad``): how far apart the two domains still
look to it.

It is a demonstration with a small budget (800 steps each, a quarter of what the recipe
trains for) and one seed, not a benchmark: ``docs/benchmarks.md`` has measured,
multi-seed figures. Any other ``--key=value`` is passed to both fits
(``--trainer.max_epochs=2``).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import torch

__all__ = ["main", "DemoArm"]

_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _config_path(name: str) -> Path:
    """A config of the repository (``make demo`` runs from the checkout)."""
    for folder in (Path.cwd() / "configs", _CONFIGS):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"configs/{name} not found; run the demo from the repository root")


#: The recipe, as shipped.
RECIPE = "sim2real_digits.yaml"
#: What turns it into the source-only arm: no adaptation. The batches stay the same (half
#: rendered with labels, half real with labels hidden, which then add nothing), so the
#: two arms differ in the adaptation losses alone.
SOURCE_ONLY = ["--model.init_args.adaptation=null"]


class DemoArm:
    """One fit of the demo and what it measured.

    Args:
        name: run name (the TensorBoard run under the demo's folder).
        label: how the table names it.
        args: the ``lightning-synth fit`` arguments.
    """

    def __init__(self, name: str, label: str, args: list[str]) -> None:
        self.name, self.label, self.args = name, label, args
        self.results: dict[str, float] = {}
        self.seconds = 0.0
        self.run_dir = ""

    def run(self) -> None:
        """Fit, then test the final model (accuracies and the domains' distance)."""
        from lightning_synth.cli import LightningSynthCLI, announce

        announce(f"{self.label}: lightning-synth fit {' '.join(self.args)}")
        start = time.perf_counter()
        with warnings.catch_warnings():
            # the fits are meant to be run from Python with explicit arguments
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            cli = LightningSynthCLI(args=["fit", *self.args])
        trainer, model, data = cli.trainer, cli.model, cli.datamodule
        trainer.test(model, datamodule=data, verbose=False)
        metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
        self.seconds = time.perf_counter() - start
        self.run_dir = str(trainer.log_dir)
        self.results = {
            "real_acc": metrics.get("test/real_acc", float("nan")),
            "rendered_acc": metrics.get("test/rendered_acc", float("nan")),
            "pad": metrics.get("test/pad", float("nan")),
            "pad_pixels": metrics.get("test/pad_pixels", float("nan")),
            "steps": float(trainer.global_step),
        }


def _table(arms: list[DemoArm], root: Path) -> str:
    source, adapted = arms
    gain = 100 * (adapted.results["real_acc"] - source.results["real_acc"])
    width = 44

    def row(name: str, values: list[str], note: str = "") -> str:
        cells = "".join(f"{value:>14}" for value in values)
        return f"  {name:<{width}}{cells}{note}"

    lines = [
        "Demo: rendered digits -> scikit-learn's real handwritten digits "
        f"({int(source.results['steps'])} training steps each)",
        row("", ["source-only", "adapted"]),
        row(
            "accuracy on real digits (test)",
            [f"{100 * arm.results['real_acc']:.1f} %" for arm in arms],
            f"   gain {gain:+.1f} points",
        ),
        row(
            "accuracy on rendered digits (test)",
            [f"{100 * arm.results['rendered_acc']:.1f} %" for arm in arms],
        ),
        row(
            "discrepancy: proxy A-distance of features",
            [f"{arm.results['pad']:.2f}" for arm in arms],
            "   (0: alike, 2: separable)",
        ),
        row("run time", [f"{arm.seconds:.0f} s" for arm in arms]),
        f"  (on pixels the two domains are {source.results['pad_pixels']:.2f} apart; the "
        f"adapted model saw the real digits without labels)",
        f"Watch both runs: tensorboard --logdir {root}",
    ]
    return "\n".join(lines)


def main(args: list[str] | None = None) -> list[DemoArm]:
    """Run the demo; returns its two arms with their results.

    Args:
        args: ``--steps N`` (training steps per arm), ``--root DIR`` (where the runs go),
            ``--pad_samples N`` (digits per domain for the distance), and any
            ``--key=value`` for both fits.
    """
    from lightning_synth.cli import announce

    parser = argparse.ArgumentParser(
        prog="lightning-synth demo",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="Other --key=value arguments are passed to both fits.",
    )
    parser.add_argument("--steps", type=int, default=800, help="training steps per arm")
    parser.add_argument("--root", default="runs/demo", help="folder of the two runs")
    parser.add_argument(
        "--pad_samples",
        type=int,
        default=300,
        help="digits per domain for the distance (validation and test)",
    )
    options, extra = parser.parse_known_args(args)
    root = Path(options.root)
    # One intra-op thread: the networks are small, and the DataLoader worker renders the
    # digits on the other core. Two threads beside a worker on 2 cores ran several times
    # slower (the threads wait on each other whenever the worker holds a core).
    torch.set_num_threads(1)
    common = [
        f"--config={_config_path(RECIPE)}",
        f"--trainer.default_root_dir={root}",
        f"--trainer.max_steps={options.steps}",
        "--trainer.max_epochs=-1",
        # Two validations per arm: each one also fits the linear classifiers of the
        # distance and the bound (seconds apiece on a CPU), which would otherwise rival
        # the training steps in a run this short.
        f"--trainer.val_check_interval={max(1, options.steps // 2)}",
        "--trainer.check_val_every_n_epoch=null",
        "--trainer.enable_model_summary=false",
        "--test_after_fit=false",
        f"--model.init_args.pad_samples={options.pad_samples}",
        # The recipe's label-free checkpoint selection and gap report are left out: the
        # demo tests the final weights, and the two fits stay within minutes.
        "--trainer.callbacks=[]",
    ]
    arms = [
        DemoArm(
            "source_only",
            "source-only",
            [*common, *SOURCE_ONLY, "--trainer.logger.init_args.name=source_only", *extra],
        ),
        DemoArm(
            "adapted",
            "adapted",
            [*common, "--trainer.logger.init_args.name=adapted", *extra],
        ),
    ]
    for arm in arms:
        arm.run()
    announce(_table(arms, root))
    return arms
