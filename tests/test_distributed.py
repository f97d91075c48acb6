"""DDP with two real CPU processes, and bf16 mixed precision, on the quickstart job."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from conftest import CONFIGS, FAST_TRAINER
from lightning.pytorch import Trainer

from lightning_synth.datamodules import MixedDomainDataModule, RenderedDigitsSource, SklearnDigits
from lightning_synth.tasks import ImageClassifier

QUICK = str(CONFIGS / "quickstart.yaml")
SMALL_DATA = [
    "--data.init_args.rendered.init_args.train_length=128",
    "--data.init_args.rendered.init_args.val_length=32",
    "--data.init_args.rendered.init_args.test_length=32",
    "--data.init_args.batch_size=8",
    "--data.init_args.num_workers=0",
]


def test_ddp_spawn_two_processes_in_process(tmp_path: Path) -> None:
    datamodule = MixedDomainDataModule(
        RenderedDigitsSource(
            train_length=128, val_length=32, test_length=32, image_size=16, channels=1
        ),
        SklearnDigits(),
        image_size=16,
        channels=1,
        batch_size=8,
        real_fraction=0.25,
        num_workers=0,
    )
    model = ImageClassifier(in_channels=1, log_images=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_steps=3,
        limit_val_batches=2,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule)
    # ddp_spawn copies the trained weights back into the main process's model
    changed = [
        k
        for k, v in model.state_dict().items()
        if v.is_floating_point() and not torch.equal(v, before[k])
    ]
    assert changed, "no weight changed after 3 DDP steps"
    assert trainer.world_size == 2


def test_ddp_through_the_cli_in_subprocesses(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    command = [
        sys.executable, "-m", "lightning_synth", "fit", f"--config={QUICK}", *FAST_TRAINER, *SMALL_DATA,
        "--trainer.devices=2", "--trainer.strategy=ddp",
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in result.stderr + result.stdout
    (run_dir,) = (tmp_path / "runs" / "quickstart").glob("version_*")
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert "accuracy on real images" in result.stdout
    checkpoint = torch.load(
        run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    assert checkpoint["global_step"] == 3


def test_bf16_mixed_precision_trains(run_cli) -> None:
    run_dir = run_cli(
        "fit", f"--config={QUICK}", *FAST_TRAINER, *SMALL_DATA, "--trainer.precision=bf16-mixed"
    )
    checkpoint = torch.load(
        run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    assert checkpoint["global_step"] == 3
    weights = [v for v in checkpoint["state_dict"].values() if v.is_floating_point()]
    assert all(torch.isfinite(v).all() for v in weights)
    # master weights stay float32 under mixed precision
    assert all(v.dtype == torch.float32 for v in weights)


def test_every_process_closes_its_process_group_at_exit(tmp_path: Path) -> None:
    # A process that leaves a gloo group open ends with it closed, by the package's exit
    # handler (ddp_spawn workers run it too). Exit handlers run last-registered first, so
    # the report, registered before the package is imported, runs after the package's.
    store = (tmp_path / "store").as_posix()
    script = f"""
import atexit, torch.distributed as dist
atexit.register(lambda: print("open at exit:", dist.is_initialized()))
import lightning_synth
dist.init_process_group("gloo", init_method="file://{store}", rank=0, world_size=1)
print("open before exit:", dist.is_initialized())
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "open before exit: True" in result.stdout
    assert "open at exit: False" in result.stdout
