"""benchmarks/model_selection.py on validation histories whose answers are known."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import benchmark_module

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "model_selection.py"


def _run(arm: str, seed: int, accuracies: list[float]) -> dict:
    """A run whose ``val/select_good`` follows the real accuracy, ``val/select_bad`` runs
    against it, and ``val/select_flat`` never changes."""
    history = [
        {
            "step": 100 * (i + 1),
            "val/real_acc": acc,
            "val/select_good": 2 * acc + seed,  # an offset per run: ranks within, not across
            "val/select_bad": -acc,
            "val/select_flat": 1.0,
        }
        for i, acc in enumerate(accuracies)
    ]
    return {"target": "mnist", "framing": "canonical", "arm": arm, "seed": seed, "history": history}


def test_correlations_picks_and_oracle_follow_the_histories() -> None:
    results = [
        _run("recipe", 0, [0.5, 0.7, 0.9, 0.8]),
        _run("dann", 1, [0.6, 0.4, 0.65, 0.3]),
        _run("train_on_real", 0, [0.99, 0.98, 0.97]),  # labelled: left out
    ]
    report = benchmark_module("model_selection").validator_report(results)
    entry = report["mnist/canonical"]
    assert entry["runs"] == 2 and entry["checkpoints"] == 8
    assert entry["oracle_real_acc"] == pytest.approx((0.9 + 0.65) / 2)
    assert entry["final_real_acc"] == pytest.approx((0.8 + 0.3) / 2)
    good, bad, flat = (entry["validators"][n] for n in ("good", "bad", "flat"))
    assert good["spearman_within_run"] == pytest.approx(1.0)
    assert bad["spearman_within_run"] == pytest.approx(-1.0)
    assert good["picked_real_acc"] == pytest.approx(entry["oracle_real_acc"])
    assert bad["picked_real_acc"] == pytest.approx((0.5 + 0.3) / 2)
    # pooled over runs the per-run offset of "good" spoils the ranks a little
    assert 0.0 < good["spearman_pooled"] < 1.0
    assert math.isnan(flat["spearman_within_run"]) and math.isnan(flat["spearman_pooled"])


def test_the_command_prints_a_table_and_writes_json(tmp_path: Path) -> None:
    source = tmp_path / "sim2real.json"
    source.write_text(json.dumps({"results": [_run("recipe", 0, [0.5, 0.7, 0.9])]}))
    out = tmp_path / "selection.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), str(source), "--json-out", str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    assert "| mnist/canonical | good | +1.00 |" in completed.stdout
    assert (
        json.loads(out.read_text())["mnist/canonical"]["validators"]["good"]["picked_real_acc"]
        == 0.9
    )
