"""How well do the label-free validators choose checkpoints? Read from the validation
histories that ``benchmarks/sim2real_digits.py`` records.

Every run of that benchmark validates every ``--val-every`` steps and records, beside the
label-free validators (``val/select_<name>``: SND, DEV, IM, rendered accuracy), the
accuracy on the real validation images (``val/real_acc``, the last 1,000 images of the
real pool: labels the validators never see, and never the evaluation half). Over the
checkpoints of each run this script reports, per target and validator:

* the Spearman rank correlation between the validator and the real accuracy, within each
  run (the question a user asks of one fit: which of its checkpoints?), averaged over
  runs;
* the same correlation over all checkpoints of all adapted and source-only runs of the
  target pooled (the question of choosing between methods and settings);
* the real accuracy of the checkpoint the validator picks, against the oracle's (the best
  checkpoint by real accuracy) and the final checkpoint's, averaged over runs.

Train-on-real runs are left out (their labels make label-free selection moot)::

    python benchmarks/model_selection.py benchmarks/results/sim2real_digits.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from scipy.stats import spearmanr

__all__ = ["validator_report", "print_report"]

REAL = "val/real_acc"
PREFIX = "val/select_"
LABELLED_ARMS = ("train_on_real",)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _spearman(scores: list[float], accuracies: list[float]) -> float:
    """Rank correlation, NaN where either side is constant or there are under 3 points."""
    if len(scores) < 3 or len(set(scores)) < 2 or len(set(accuracies)) < 2:
        return float("nan")
    return float(spearmanr(scores, accuracies).statistic)


def _mean(values: list[float]) -> float:
    values = [v for v in values if _finite(v)]
    return statistics.mean(values) if values else float("nan")


def validator_report(results: list[dict]) -> dict:
    """Per ``target/framing``: for each validator, the mean within-run and the pooled rank
    correlation with real accuracy, and the mean real accuracy of its pick; and the mean
    real accuracy of the oracle's and the final checkpoints.

    Args:
        results: the ``results`` list of a ``sim2real_digits`` JSON (each with a
            ``history`` of validation rows).
    """
    groups: dict[str, list[dict]] = {}
    for result in results:
        if result["arm"] in LABELLED_ARMS or not result.get("history"):
            continue
        groups.setdefault(f"{result['target']}/{result['framing']}", []).append(result)
    report: dict = {}
    for key, runs in sorted(groups.items()):
        names = sorted(
            {
                name
                for run in runs
                for row in run["history"]
                for name in row
                if name.startswith(PREFIX)
            }
        )
        entry: dict = {
            "runs": len(runs),
            "checkpoints": sum(len(run["history"]) for run in runs),
            "oracle_real_acc": _mean([max(row[REAL] for row in run["history"]) for run in runs]),
            "final_real_acc": _mean([run["history"][-1][REAL] for run in runs]),
            "validators": {},
        }
        for name in names:
            within, picks, pooled_scores, pooled_accuracies = [], [], [], []
            for run in runs:
                rows = [row for row in run["history"] if _finite(row.get(name))]
                if not rows:
                    continue
                scores = [row[name] for row in rows]
                accuracies = [row[REAL] for row in rows]
                within.append(_spearman(scores, accuracies))
                picks.append(max(rows, key=lambda row: row[name])[REAL])
                pooled_scores += scores
                pooled_accuracies += accuracies
            entry["validators"][name.removeprefix(PREFIX)] = {
                "spearman_within_run": _mean(within),
                "spearman_pooled": _spearman(pooled_scores, pooled_accuracies),
                "picked_real_acc": _mean(picks),
            }
        report[key] = entry
    return report


def print_report(report: dict) -> None:
    """The report as one Markdown table."""
    print(
        "| target | validator | rank corr. within run | rank corr. pooled | "
        "picked real acc | oracle | final |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for key, entry in report.items():
        for name, row in entry["validators"].items():
            print(
                f"| {key} | {name} | {row['spearman_within_run']:+.2f} | "
                f"{row['spearman_pooled']:+.2f} | {100 * row['picked_real_acc']:.1f} % | "
                f"{100 * entry['oracle_real_acc']:.1f} % | {100 * entry['final_real_acc']:.1f} % |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, nargs="+", help="sim2real_digits JSON files")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    results = [r for path in args.results for r in json.loads(path.read_text())["results"]]
    report = validator_report(results)
    print_report(report)
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
