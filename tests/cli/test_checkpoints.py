"""Checkpoints a user can trust: last.ckpt is the end of the fit, and resuming continues it."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import CONFIGS, FAST_TRAINER

from lightning_synth.tasks import ImageClassifier

QUICK = str(CONFIGS / "quickstart.yaml")
SMALL_DATA = [
    "--data.init_args.rendered.init_args.train_length=64",
    "--data.init_args.rendered.init_args.val_length=16",
    "--data.init_args.rendered.init_args.test_length=16",
    "--data.init_args.batch_size=8",
    "--data.init_args.num_workers=0",
    "--model.init_args.log_images=false",
]
#: Global step of the first train batch of every fit that ran in this process.
STARTED_AT: list[int] = []


class WorseningClassifier(ImageClassifier):
    """An ``ImageClassifier`` whose monitored score is best after the first epoch and
    worse after every later one, so the best checkpoint is never the last state."""

    monitor = "val/score"
    mode = "max"

    def on_train_start(self) -> None:
        STARTED_AT.append(self.trainer.global_step)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self.log("val/score", -float(self.current_epoch))


def _steps(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=False)["global_step"]


def test_last_checkpoint_is_the_final_state_and_resume_continues_it(tmp_path: Path, run_cli):
    task = ["--model=test_checkpoints.WorseningClassifier", "--model.init_args.in_channels=1"]
    args = ["fit", f"--config={QUICK}", *task, *FAST_TRAINER, *SMALL_DATA]
    run_dir = run_cli(*args, "--trainer.max_epochs=3")
    folder = run_dir / "checkpoints"
    (best,) = folder.glob("best-*.ckpt")
    assert best.name == "best-0-3.ckpt"  # the first epoch's score was the best
    assert _steps(best) == 3
    assert _steps(folder / "last.ckpt") == 9  # 3 epochs of 3 batches: the end of the fit

    STARTED_AT.clear()
    resumed = run_cli(*args, "--trainer.max_epochs=4", f"--ckpt_path={folder / 'last.ckpt'}")
    assert resumed != run_dir
    assert STARTED_AT == [9]  # continued from the end of the first fit, not from its best
    assert _steps(resumed / "checkpoints" / "last.ckpt") == 12


def test_default_root_dir_places_the_run(tmp_path: Path, run_cli) -> None:
    elsewhere = tmp_path / "elsewhere"
    run_cli(
        "fit",
        f"--config={QUICK}",
        *FAST_TRAINER,
        *SMALL_DATA,
        f"--trainer.default_root_dir={elsewhere}",
    )
    assert not (tmp_path / "runs").exists()
    (run_dir,) = (elsewhere / "quickstart").glob("version_*")
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "config.yaml").is_file()
