"""The discrepancy entry point: a config's domains measured without training, then with a model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CONFIGS, FAST_TRAINER

from lightning_synth.discrepancy_cli import main

CONFIG = f"--config={CONFIGS / 'dann_digits.yaml'}"
SMALL = [
    "--data.init_args.rendered.init_args.train_length=64",
    "--data.init_args.rendered.init_args.val_length=64",
    "--data.init_args.batch_size=16",
    "--data.init_args.num_workers=0",
    "--trainer.logger=false",
]


def test_prints_the_pixel_discrepancy_of_a_config(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    results = main([CONFIG, *SMALL, "--num_samples=24"])
    assert results["num_rendered"] == 24 and results["num_real"] == 24
    assert 1.0 < results["pad_pixels"] <= 2.0  # rendered print vs 8x8 handwriting: far apart
    out = capsys.readouterr().out
    assert f"raw pixels: {results['pad_pixels']:.3f}" in out
    assert "pad" not in results


def _report(directory: Path) -> dict:
    assert (directory / "gap_report.png").stat().st_size > 10_000
    return json.loads((directory / "gap_report.json").read_text())


def test_report_draws_where_the_domains_differ(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    results = main([CONFIG, *SMALL, "--num_samples=24", "--report", "gap"])
    found = _report(tmp_path / "gap")
    assert found["num_rendered"] == found["num_real"] == 24
    assert found["pad_pixels"] == results["pad_pixels"] and found["pad_features"] is None
    for name, numbers in found["statistics"].items():
        for domain in ("rendered", "real"):
            assert 0.0 <= numbers[domain]["p10"] <= numbers[domain]["p90"] <= 1.0, name
        assert results[f"effect_{name}"] == pytest.approx(numbers["effect_size"])
    # scikit-learn's 8x8 digits are cropped to fill the frame; rendered ones are not.
    heights = found["statistics"]["bbox_height"]
    assert heights["real"]["median"] > heights["rendered"]["median"]
    assert "gap report: gap/gap_report.png" in capsys.readouterr().out


def test_with_a_checkpoint_it_adds_features_and_the_bound(capsys, run_cli) -> None:
    run_dir = run_cli("fit", CONFIG, *FAST_TRAINER, *SMALL[:-1], "--model.init_args.pad_samples=0")
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    report = run_dir / "gap"
    results = main(
        [CONFIG, *SMALL, "--num_samples=24", f"--ckpt_path={checkpoint}", f"--report={report}"]
    )
    assert 0.0 <= results["pad"] <= 2.0
    assert results["bound"] == pytest.approx(
        results["bound_er_synth"] + results["bound_disc"] + results["bound_lambda"]
    )
    out = capsys.readouterr().out
    assert f"features of {checkpoint}: {results['pad']:.3f}" in out and "bound: er_real" in out
    found = _report(report)
    assert found["pad_features"] == results["pad"] and found["features_from"] == str(checkpoint)
