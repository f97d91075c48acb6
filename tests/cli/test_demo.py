"""``lightning-synth demo`` end to end at a tiny budget: two fits, one table."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lightning_synth.cli import main

TINY = [
    "--steps=4",
    "--pad_samples=24",
    "--trainer.val_check_interval=2",
    "--trainer.limit_val_batches=2",
    "--trainer.enable_progress_bar=false",
    "--data.init_args.rendered.init_args.train_length=64",
    "--data.init_args.rendered.init_args.val_length=16",
    "--data.init_args.rendered.init_args.test_length=32",
    "--data.init_args.batch_size=8",
    "--data.init_args.num_workers=0",
]


def test_demo_runs_both_arms_and_prints_the_comparison(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    main(["demo", "--root=demo_runs", *TINY])
    out = capsys.readouterr().out
    table = out[out.index("Demo: rendered digits") :]
    assert "(4 training steps each)" in table
    for line in ("accuracy on real digits (test)", "proxy A-distance", "gain"):
        assert line in table
    assert "tensorboard --logdir demo_runs" in table
    for name in ("source_only", "adapted"):
        (run,) = (tmp_path / "demo_runs" / name).glob("version_*")
        assert (run / "checkpoints" / "last.ckpt").is_file()
        assert list(run.glob("events.out.tfevents.*"))
    # the adapted arm saw real digits with their labels hidden, the source-only arm none
    adapted = (tmp_path / "demo_runs" / "adapted" / "version_0" / "config.yaml").read_text()
    assert "real_fraction: 0.5" in adapted and "hide_real_labels: true" in adapted
    assert "MinimumClassConfusion" in adapted and "RealSampleTerms" in adapted
    source = (tmp_path / "demo_runs" / "source_only" / "version_0" / "config.yaml").read_text()
    assert "adaptation: null" in source and "real_fraction: 0.5" in source
    real = [float(v) for v in table.split("accuracy on real digits (test)")[1].split("%")[:2]]
    assert all(0 <= value <= 100 and not math.isnan(value) for value in real)
    # the distance is the task's own test/pad, measured on the --pad_samples test digits
    distances = table.split("proxy A-distance of features")[1].split()[:2]
    assert all(0 <= float(value) <= 2 for value in distances)
