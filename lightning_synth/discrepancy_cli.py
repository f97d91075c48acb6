"""``lightning-synth-discrepancy``: how far apart the two domains of a config are, without training.

Reads the ``data`` section of a config (and, for the features, its ``model`` section and a
checkpoint), takes up to ``--num_samples`` rendered and real images of the validation (or
test) set, and prints their proxy A-distance on raw pixels and, with ``--ckpt_path``,
through the checkpoint's features, with the terms of ``er_real <= er_synth + disc + lambda``;
with ``--report DIR`` it also draws where the domains differ (``DIR/gap_report.png``, numbers
in ``DIR/gap_report.json``; :mod:`lightning_synth.metrics.gap_report`):

    lightning-synth-discrepancy --config configs/dann_digits.yaml
    lightning-synth-discrepancy --config configs/dann_digits.yaml --ckpt_path runs/.../last.ckpt
    lightning-synth discrepancy --config configs/dann_digits.yaml --report gap/   # + picture
    python -m lightning_synth.discrepancy_cli --config ...        # the same, as a module

Any other ``--key value`` overrides the config as in ``lightning-synth fit``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule, LightningModule

from lightning_synth.batch import IGNORE_LABEL, REAL, RENDERED
from lightning_synth.errors import InputError
from lightning_synth.metrics.discrepancy import bound_terms, proxy_a_distance
from lightning_synth.metrics.gap_report import domain_samples, gap_report

__all__ = ["measure", "main", "console"]


def _collect(
    datamodule: LightningDataModule, stage: str, num_samples: int
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Up to ``num_samples`` images and labels of each domain, in loader order."""
    datamodule.prepare_data()
    datamodule.setup("validate" if stage == "val" else "test")
    loader = datamodule.val_dataloader() if stage == "val" else datamodule.test_dataloader()
    return domain_samples(loader, num_samples)


def measure(
    datamodule: LightningDataModule,
    model: LightningModule | None = None,
    stage: str = "val",
    num_samples: int = 500,
    seed: int = 0,
    report: str | Path | None = None,
    source: str | None = None,
) -> dict[str, float]:
    """The discrepancy of ``datamodule``'s two domains on pixels and, given a model, features.

    Args:
        datamodule: yields batches of the contract (both domains in its val/test loader).
        model: a trained task with ``features(images)`` and class logits from ``forward``;
            ``None`` measures the pixels only.
        stage: ``val`` or ``test``: which loader the samples come from.
        num_samples: samples per domain.
        seed: seed of the classifiers' splits.
        report: a folder to write the gap report into (``gap_report.png`` and
            ``gap_report.json``, see :mod:`lightning_synth.metrics.gap_report`).
        source: what the model came from (a checkpoint path), named in the report.

    Returns:
        ``pad_pixels`` and, with a model, ``pad`` and the bound's terms (``bound_*``;
        errors are measured on the same samples).
    """
    data = _collect(datamodule, stage, num_samples)
    (images_s, labels_s), (images_r, labels_r) = data[RENDERED], data[REAL]
    if min(len(images_s), len(images_r)) < 4:
        raise InputError(
            f"the {stage} set gave {len(images_s)} rendered and {len(images_r)} real images; "
            f"the discrepancy needs at least 4 of each"
        )
    results = {
        "num_rendered": float(len(images_s)),
        "num_real": float(len(images_r)),
        "pad_pixels": proxy_a_distance(images_s.flatten(1), images_r.flatten(1), seed=seed),
    }
    if model is None:
        if report is not None:
            _write_report(report, images_s, images_r, None, results, seed, source)
        return results
    model.eval()
    with torch.no_grad():
        outputs = {}
        for code, images in ((RENDERED, images_s), (REAL, images_r)):
            images = images.to(model.device)
            features = model.features(images)  # type: ignore[operator]
            features = features.flatten(2).mean(2) if features.ndim > 2 else features
            outputs[code] = (features.float().cpu(), model(images).argmax(1).cpu())

    def error(preds: torch.Tensor, labels: torch.Tensor) -> float:
        known = labels != IGNORE_LABEL
        return float((preds[known] != labels[known]).float().mean()) if known.any() else math.nan

    terms = bound_terms(
        error(outputs[RENDERED][1], labels_s),
        outputs[RENDERED][0],
        outputs[REAL][0],
        labels_s,
        labels_r,
        er_real=error(outputs[REAL][1], labels_r),
        seed=seed,
    )
    results["pad"] = terms.disc
    results.update(terms.as_metrics())
    if report is not None:
        features = (outputs[RENDERED][0], outputs[REAL][0])
        _write_report(report, images_s, images_r, features, results, seed, source)
    return results


def _write_report(
    directory: str | Path,
    rendered: torch.Tensor,
    real: torch.Tensor,
    features: tuple[torch.Tensor, torch.Tensor] | None,
    results: dict[str, float],
    seed: int,
    source: str | None,
) -> None:
    """Write the gap report of these samples, reusing the distances already measured."""
    found = gap_report(
        rendered,
        real,
        *(features or (None, None)),
        seed=seed,
        pad_pixels=results["pad_pixels"],
        pad_features=results.get("pad"),
        source=source,
    )
    found.save(directory)
    for name, value in found.effect_sizes().items():
        results[f"effect_{name}"] = value


def main(args: list[str] | None = None) -> dict[str, float]:
    """Entry point of ``lightning-synth-discrepancy``; prints and returns the measurements.

    Args:
        args: command-line arguments; the process's own when ``None``.
    """
    parser = argparse.ArgumentParser(
        prog="lightning-synth-discrepancy",
        description="Print the proxy A-distance between the rendered and real images of a "
        "config, on pixels and (with --ckpt_path) on a trained model's features.",
        epilog="Other arguments (--config, --data.*, --model.*) are read as by "
        "`lightning-synth fit`.",
    )
    parser.add_argument("--ckpt_path", default=None, help="checkpoint whose features to use")
    parser.add_argument("--num_samples", type=int, default=500, help="samples per domain")
    parser.add_argument("--stage", choices=("val", "test"), default="val")
    parser.add_argument("--seed", type=int, default=0, help="seed of the classifiers' splits")
    parser.add_argument(
        "--report",
        default=None,
        metavar="DIR",
        help="also write DIR/gap_report.png and DIR/gap_report.json: mean and std images, "
        "histograms of ink coverage, box size and intensity, the samples a domain classifier "
        "finds most rendered and most real",
    )
    own, rest = parser.parse_known_args(args)

    from lightning_synth.cli import LightningSynthCLI  # registers the short class names

    cli = LightningSynthCLI(args=rest, run=False)
    model: Any = None
    if own.ckpt_path:
        model = type(cli.model).load_from_checkpoint(own.ckpt_path, map_location="cpu")
    results = measure(
        cli.datamodule, model, own.stage, own.num_samples, own.seed, own.report, own.ckpt_path
    )
    print(_report(results, own), flush=True)
    return results


def _report(results: dict[str, float], own: argparse.Namespace) -> str:
    lines = [
        f"[lightning-synth] domain discrepancy (proxy A-distance: 0 = cannot be told apart, "
        f"2 = linearly separable) on the {own.stage} set, {int(results['num_rendered'])} rendered "
        f"and {int(results['num_real'])} real images:",
        f"  raw pixels: {results['pad_pixels']:.3f}",
    ]
    if "pad" in results:
        lines.append(f"  features of {own.ckpt_path}: {results['pad']:.3f}")
        lines.append(
            f"  bound: er_real {results['bound_er_real']:.4f} <= er_synth "
            f"{results['bound_er_synth']:.4f} + disc {results['bound_disc']:.4f} + lambda "
            f"{results['bound_lambda']:.4f} = {results['bound']:.4f}"
        )
    if own.report:
        report = Path(own.report)
        lines.append(f"  gap report: {report / 'gap_report.png'} (numbers: gap_report.json)")
    return "\n".join(lines)


def console() -> None:
    """Console-script entry: like :func:`main`, with exit status 0 (``main`` returns a dict,
    which ``sys.exit`` would print and turn into status 1)."""
    main()


if __name__ == "__main__":
    console()
