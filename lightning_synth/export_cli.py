"""``lightning-synth export``: a trained checkpoint to ONNX or ``.pt2``, checked after writing.

::

    lightning-synth export --config configs/body_parts.yaml \\
        --ckpt_path runs/body_parts/version_0/checkpoints/last.ckpt --format onnx

The task is rebuilt from the checkpoint (its class and hyper-parameters); the config gives
the data the example input comes from (see :mod:`lightning_synth.export`). Other
arguments override the config as in ``fit`` (``--data.init_args.height=240``). The file
goes beside the checkpoint (``last.onnx``) unless ``--output`` names another.
"""

from __future__ import annotations

import argparse
import copy
import logging
import warnings
from pathlib import Path

import torch

from lightning_synth.checkpoints import checkpoint_class_path, read_checkpoint
from lightning_synth.errors import InputError
from lightning_synth.export import (
    compare,
    example_inputs,
    export_model,
    exportable,
    run_exported,
)

__all__ = ["main"]

#: Share of output values that must match the task's own within the tolerance. Nearest-pixel
#: depth probes may round the other way on a handful of pixels (float rounding of the probe
#: position), so not all of them need to.
_MIN_MATCHING = 0.999


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lightning-synth export",
        description="Export a trained task to ONNX or torch.export's .pt2 for inference "
        "without Lightning; the exported model is run and compared with the task.",
        epilog="Other --key=value arguments override the config, as in fit.",
    )
    parser.add_argument("--config", "-c", action="append", required=True, help="config file(s)")
    parser.add_argument("--ckpt_path", required=True, help="checkpoint to export")
    parser.add_argument("--format", choices=["onnx", "pt2"], default="onnx", help="file format")
    parser.add_argument("--output", help="file to write; default: beside the checkpoint")
    return parser


def main(args: list[str]) -> Path:
    """Run ``lightning-synth export ARGS``; returns the file written.

    Args:
        args: the arguments after ``export``.
    """
    from lightning_synth.cli import LightningSynthCLI, announce

    options, overrides = _parser().parse_known_args(args)
    ckpt_path = Path(options.ckpt_path)
    checkpoint = read_checkpoint(ckpt_path)
    configs = [f"--config={config}" for config in options.config]
    # Only the task and the data are used: no logger, and no trainer messages.
    quiet = logging.getLogger("lightning.pytorch")
    level, quiet.level = quiet.level, logging.WARNING
    try:
        with warnings.catch_warnings():
            # the task is built from Python with explicit arguments, as intended
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            cli = LightningSynthCLI(
                args=[*configs, *overrides, "--trainer.logger=false", "--trainer.accelerator=cpu"],
                run=False,
            )
    finally:
        quiet.setLevel(level)
    task_class = type(cli.model)
    configured = cli.config.get("model", {}).get("class_path") or task_class.__qualname__
    written = checkpoint_class_path(checkpoint)
    if written and written != configured:
        raise InputError(
            f"{ckpt_path} is a checkpoint of {written.rsplit('.', 1)[-1]}, but the config "
            f"builds {configured.rsplit('.', 1)[-1]}; pass the config it was trained with"
        )
    if checkpoint.get("hyper_parameters"):
        model = task_class.load_from_checkpoint(ckpt_path, map_location="cpu")
    else:  # built in Python without saved hyper-parameters: the config's architecture
        model = cli.model
        model.load_state_dict(checkpoint["state_dict"])
    model.eval()

    inputs = example_inputs(model, cli.datamodule)
    network = exportable(copy.deepcopy(model))
    suffix = f".{options.format}"
    output = Path(options.output) if options.output else ckpt_path.with_suffix(suffix)
    # Two samples to export with: a batch of one could fix the batch size in the graph.
    example = tuple(item[:2] if len(item) >= 2 else torch.cat([item, item]) for item in inputs)
    export_model(network, example, output, options.format)

    with torch.no_grad():
        expected = model(*inputs)
    actual = run_exported(output, inputs)
    largest, matching = compare(expected, actual)
    runtime = "onnxruntime" if options.format == "onnx" else "torch.export.load"
    shapes = ", ".join(f"batch x {' x '.join(map(str, item.shape[1:]))}" for item in inputs)
    announce(
        f"Exported {task_class.__name__} ({ckpt_path.name}, step {checkpoint.get('global_step', '?')}) "
        f"to {output}\n  input: {shapes} ({str(inputs[0].dtype).removeprefix('torch.')}); output: batch x "
        f"{' x '.join(map(str, expected.shape[1:]))}\n  checked with {runtime} on "
        f"{len(inputs[0])} samples: largest difference from the task {largest:.2g}, "
        f"{100 * matching:.3f}% of values within 1e-4"
    )
    if matching < _MIN_MATCHING:
        raise RuntimeError(
            f"the exported model {output} differs from the task on {100 * (1 - matching):.2f}% "
            f"of the output values (largest difference {largest:.3g}); please report this"
        )
    return output
