"""The discrepancy entry point: a config's domains measured without training, then with a model."""

from __future__ import annotations

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


def test_with_a_checkpoint_it_adds_features_and_the_bound(capsys, run_cli) -> None:
    run_dir = run_cli("fit", CONFIG, *FAST_TRAINER, *SMALL[:-1], "--model.init_args.pad_samples=0")
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    results = main([CONFIG, *SMALL, "--num_samples=24", f"--ckpt_path={checkpoint}"])
    assert 0.0 <= results["pad"] <= 2.0
    assert results["bound"] == pytest.approx(
        results["bound_er_synth"] + results["bound_disc"] + results["bound_lambda"]
    )
    out = capsys.readouterr().out
    assert f"features of {checkpoint}: {results['pad']:.3f}" in out and "bound: er_real" in out
