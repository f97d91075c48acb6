"""``lightning-synth seeds``: each config run with several seeds, one table of mean ± std."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import CONFIGS, FAST_TRAINER

from lightning_synth.seeds import markdown_table, summarize

TINY = [
    *FAST_TRAINER,
    "--trainer.limit_train_batches=2",
    "--data.init_args.rendered.init_args.train_length=32",
    "--data.init_args.rendered.init_args.val_length=16",
    "--data.init_args.rendered.init_args.test_length=16",
    "--data.init_args.batch_size=16",
    "--data.init_args.num_workers=0",
    "--model.init_args.log_images=false",
]


def test_two_seeds_of_a_config_give_one_table(capsys, tmp_path: Path, monkeypatch) -> None:
    from lightning_synth.cli import main

    monkeypatch.chdir(tmp_path)
    selection = '{"class_path": "lightning_synth.callbacks.ModelSelection", "init_args": {"num_samples": 16}}'
    main(
        ["seeds", f"--config={CONFIGS / 'quickstart.yaml'}", "--seeds=2", "--out=out",
         "--in_process", "--", *TINY, f"--trainer.callbacks+={selection}"]
    )  # fmt: skip
    results = json.loads((tmp_path / "out" / "seeds.json").read_text())
    assert [(run["seed"], run["status"]) for run in results["runs"]] == [(0, 0), (1, 0)]
    for run in results["runs"]:
        assert Path(run["run_dir"], "checkpoints", "last.ckpt").is_file()
        # the final validation's real and selection metrics, the test's real ones
        assert {"val/real_acc", "test/real_acc", "val/select_snd", "val/select_im"} <= set(
            run["metrics"]
        )
        assert not any("rendered_acc" in m and "select" not in m for m in run["metrics"])
    accuracy = results["summary"]["quickstart"]["test/real_acc"]
    values = [run["metrics"]["test/real_acc"] for run in results["runs"]]
    assert accuracy["values"] == values and accuracy["n"] == 2
    assert accuracy["mean"] == pytest.approx(sum(values) / 2)
    assert accuracy["std"] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2))
    table = (tmp_path / "out" / "seeds.md").read_text()
    row = f"| test/real_acc (%) | {100 * accuracy['mean']:.1f} ± {100 * accuracy['std']:.1f} |"
    assert row in table and "| metric | quickstart (n=2) |" in table
    assert row in capsys.readouterr().out


def test_table_has_a_column_per_config_and_marks_missing_metrics() -> None:
    runs = [
        {"config": "a", "metrics": {"test/real_acc": 0.5, "val/select_snd": 2.0}},
        {"config": "a", "metrics": {"test/real_acc": 0.7, "val/select_snd": 3.0}},
        {"config": "b", "metrics": {"test/real_acc": 0.9}},
    ]
    summary = summarize(runs)
    assert summary["b"]["test/real_acc"]["std"] is None
    lines = markdown_table(summary, seeds=2).splitlines()
    assert lines[2] == "| metric | a (n=2) | b (n=1) |"
    assert lines[4] == "| test/real_acc (%) | 60.0 ± 14.1 | 90.0 |"
    assert lines[5] == "| val/select_snd | 2.5000 ± 0.7071 | - |"


def test_runs_go_to_subprocesses_by_default_and_failures_are_reported(
    capsys, tmp_path: Path, monkeypatch
) -> None:
    from lightning_synth.seeds import main

    monkeypatch.chdir(tmp_path)
    quickstart = f"--config={CONFIGS / 'quickstart.yaml'}"
    results = main([quickstart, "--seeds=1", "--first_seed=7", "--out=sub", "--", *TINY])
    (run,) = results["runs"]
    assert run["seed"] == 7 and run["status"] == 0 and "test/real_acc" in run["metrics"]
    assert Path(run["run_dir"]).name == "seed_7"

    with pytest.raises(SystemExit) as exit:
        main([quickstart, "--seeds=1", "--out=bad", "--in_process", "--", *TINY,
              "--model.init_args.num_classes=1"])  # fmt: skip
    assert exit.value.code == 1
    assert "Failed runs (left out): quickstart seed 0" in capsys.readouterr().out
    failed = json.loads((tmp_path / "bad" / "seeds.json").read_text())
    assert failed["runs"][0]["status"] != 0 and failed["summary"] == {}
