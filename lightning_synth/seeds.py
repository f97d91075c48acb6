"""``lightning-synth seeds``: run configs with several seeds, report mean +- std.

One number from one run says little about a domain-adaptation recipe: runs of the same
config differ by several points of real accuracy from seed to seed. This command fits
each config once per seed through the real CLI and prints one Markdown table of the
mean and standard deviation of the final real and label-free-selection metrics::

    lightning-synth seeds --config configs/source_only_digits.yaml \\
        --config configs/dann_digits.yaml --seeds 3 --out seeds/ -- --trainer.max_epochs=5

Everything after ``--`` (and any argument this command does not know) is passed to
every run, as to ``lightning-synth fit``. Each run logs to ``OUT/runs/<config>/seed_<n>``;
``OUT/seeds.json`` holds every run's numbers and the summary, ``OUT/seeds.md`` the table.

Which numbers: the ``val/...`` values of the last validation (the final weights) and
the ``test/...`` values of the test that ``test_after_fit: true`` runs (on the
checkpoint the CLI chose). By default the metrics named ``{val,test}/real_*`` and
``val/select_*``; ``--metrics REGEX`` picks others.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

__all__ = ["FinalMetrics", "main", "summarize", "markdown_table", "DEFAULT_METRICS"]

#: Metrics collected unless ``--metrics`` says otherwise.
DEFAULT_METRICS = r"^(val|test)/(real_|select_)"


class FinalMetrics(Callback):
    """Write the last validation and test metrics to a JSON file (first process only).

    Added to each run by ``lightning-synth seeds``; the file is rewritten after every
    validation (not the sanity check) and test, so it holds the final values.

    Args:
        path: the JSON file to write.
        pattern: regular expression the metric names must match (``re.search``).
    """

    def __init__(self, path: str, pattern: str = DEFAULT_METRICS) -> None:
        self.path = Path(path)
        self.pattern = re.compile(pattern)
        self.values: dict[str, float] = {}

    def _record(self, trainer: Trainer, stage: str) -> None:
        for name, value in trainer.callback_metrics.items():
            if name.startswith(f"{stage}/") and self.pattern.search(name):
                self.values[name] = float(value)
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.values, indent=2, sort_keys=True) + "\n")

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._record(trainer, "val")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._record(trainer, "test")


def _run_arguments(config: Path, name: str, seed: int, out: Path, pattern: str) -> list[str]:
    """``lightning-synth fit`` arguments of one run (before the user's overrides)."""
    metrics = out / "runs" / name / f"seed_{seed}" / "metrics.json"
    callback = {
        "class_path": "lightning_synth.seeds.FinalMetrics",
        "init_args": {"path": str(metrics), "pattern": pattern},
    }
    return [
        "fit",
        f"--config={config}",
        f"--seed_everything={seed}",
        f"--trainer.logger.init_args.save_dir={out / 'runs'}",
        f"--trainer.logger.init_args.name={name}",
        f"--trainer.logger.init_args.version=seed_{seed}",
        f"--trainer.callbacks+={json.dumps(callback)}",
    ]


def _run(arguments: list[str], in_process: bool) -> int:
    """Run ``lightning-synth ARGUMENTS``; its exit status."""
    if not in_process:
        command = [sys.executable, "-m", "lightning_synth", *arguments]
        return subprocess.run(command, env=os.environ.copy(), check=False).returncode
    from lightning_synth.cli import main as cli_main

    # A failed run ends that run, not the series (as a failed subprocess would).
    try:
        cli_main(arguments)
    except SystemExit as exit:  # input errors exit with status 2
        return int(exit.code or 0) if not isinstance(exit.code, str) else 1
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        return 1
    return 0


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Mean, sample standard deviation and count of each metric per config.

    Args:
        runs: ``{"config": name, "metrics": {name: value}}`` of every run.

    Returns:
        ``{config: {metric: {"mean", "std", "n", "values"}}}``; ``std`` is ``None`` for
        one value (JSON has no NaN).
    """
    values: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        metrics = values.setdefault(run["config"], {})
        for metric, value in run["metrics"].items():
            metrics.setdefault(metric, []).append(float(value))
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for config, metrics in values.items():
        summary[config] = {}
        for metric, numbers in sorted(metrics.items()):
            mean = sum(numbers) / len(numbers)
            std = None
            if len(numbers) > 1:
                std = math.sqrt(sum((x - mean) ** 2 for x in numbers) / (len(numbers) - 1))
            summary[config][metric] = {
                "mean": mean,
                "std": std,
                "n": len(numbers),
                "values": numbers,
            }
    return summary


def _cell(entry: dict[str, Any] | None, percent: bool) -> str:
    if entry is None:
        return "-"
    scale = 100.0 if percent else 1.0
    digits = 1 if percent else 4
    text = f"{scale * entry['mean']:.{digits}f}"
    if entry["std"] is not None:
        text += f" ± {scale * entry['std']:.{digits}f}"
    return text


def markdown_table(summary: dict[str, dict[str, dict[str, Any]]], seeds: int) -> str:
    """One Markdown table: a row per metric, a column per config, ``mean ± std`` cells
    (accuracies in %).

    Args:
        summary: what :func:`summarize` returns.
        seeds: how many seeds each config was run with (for the header).
    """
    configs = list(summary)
    metrics = sorted({metric for entries in summary.values() for metric in entries})
    # Test numbers first (what a paper reports), then validation, then the validators.
    metrics.sort(key=lambda m: (not m.startswith("test/"), "/select_" in m, m))
    counts = {
        config: max((e["n"] for e in summary[config].values()), default=0) for config in configs
    }
    header = ["metric", *(f"{config} (n={counts[config]})" for config in configs)]
    lines = [
        f"Mean ± standard deviation over {seeds} seeds (sample std; accuracies in %).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * len(configs)) + "|",
    ]
    for metric in metrics:
        percent = metric.endswith("acc")
        label = f"{metric} (%)" if percent else metric
        cells = [_cell(summary[config].get(metric), percent) for config in configs]
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return "\n".join(lines)


def _names(configs: list[Path]) -> list[str]:
    """Each config's name (its file stem), made unique."""
    names: list[str] = []
    for config in configs:
        name, count = config.stem, 2
        while name in names:
            name, count = f"{config.stem}_{count}", count + 1
        names.append(name)
    return names


def main(args: list[str] | None = None) -> dict[str, Any]:
    """Entry point of ``lightning-synth seeds``; prints the table, returns runs and summary.

    Args:
        args: command-line arguments (after ``seeds``); the process's own when ``None``.
    """
    argv = sys.argv[1:] if args is None else list(args)
    extra: list[str] = []
    if "--" in argv:
        argv, extra = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    parser = argparse.ArgumentParser(
        prog="lightning-synth seeds",
        description="Fit each config with several seeds and print mean ± std of its real "
        "and label-free-selection metrics as one Markdown table (JSON too).",
        epilog="Arguments after `--` (and unknown ones) are passed to every "
        "`lightning-synth fit` run, e.g. -- --trainer.max_epochs=5.",
    )
    parser.add_argument("--config", action="append", required=True, help="config (repeatable)")
    parser.add_argument("--seeds", type=int, default=3, help="runs per config")
    parser.add_argument("--first_seed", type=int, default=0, help="seeds are first_seed, +1, ...")
    parser.add_argument("--out", default="seeds", help="folder for the runs and results")
    parser.add_argument(
        "--metrics", default=DEFAULT_METRICS, help="regular expression of the metrics to report"
    )
    parser.add_argument(
        "--in_process",
        action="store_true",
        help="run the fits in this process (cheaper for small CPU runs; not for DDP "
        "strategies, which relaunch the command)",
    )
    own, unknown = parser.parse_known_args(argv)
    if own.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {own.seeds}")
    overrides = [*unknown, *extra]
    out = Path(own.out).resolve()
    configs = [Path(config).resolve() for config in own.config]
    for config in configs:
        if not config.is_file():
            parser.error(f"config not found: {config}")
    seeds = list(range(own.first_seed, own.first_seed + own.seeds))
    runs: list[dict[str, Any]] = []
    for config, name in zip(configs, _names(configs), strict=True):
        for seed in seeds:
            arguments = _run_arguments(config, name, seed, out, own.metrics) + overrides
            print(f"[lightning-synth] seeds: {name}, seed {seed}", flush=True)
            status = _run(arguments, own.in_process)
            run_dir = out / "runs" / name / f"seed_{seed}"
            metrics_file = run_dir / "metrics.json"
            metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
            runs.append(
                {"config": name, "path": str(config), "seed": seed, "status": status,
                 "run_dir": str(run_dir), "metrics": metrics}
            )  # fmt: skip
    summary = summarize([run for run in runs if run["status"] == 0])
    table = markdown_table(summary, len(seeds))
    failed = [f"{run['config']} seed {run['seed']}" for run in runs if run["status"] != 0]
    if failed:
        table += "\n\nFailed runs (left out): " + ", ".join(failed)
    out.mkdir(parents=True, exist_ok=True)
    results = {"seeds": seeds, "overrides": overrides, "runs": runs, "summary": summary}
    (out / "seeds.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "seeds.md").write_text(table + "\n")
    print(table, flush=True)
    print(f"[lightning-synth] seeds: results in {out / 'seeds.md'} and {out / 'seeds.json'}")
    if failed:
        raise SystemExit(1)
    return results


if __name__ == "__main__":
    main()
