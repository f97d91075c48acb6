"""Shared helpers: run the real CLI entry point in a temporary directory."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

#: Trainer overrides that turn any config into a few-step run on the CPU.
FAST_TRAINER = [
    "--trainer.accelerator=cpu",
    "--trainer.devices=1",
    "--trainer.max_epochs=1",
    "--trainer.max_steps=-1",
    "--trainer.limit_train_batches=3",
    "--trainer.limit_val_batches=2",
    "--trainer.limit_test_batches=2",
    "--trainer.limit_predict_batches=2",
    "--trainer.num_sanity_val_steps=0",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
]

# Keep the suite inside its time budget on 2 cores: one intra-op thread per process.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config: pytest.Config) -> None:
    import torch

    torch.set_num_threads(1)
    # Autograd decides once, at a process's first backward, whether to start worker
    # threads for the device types registered by then; once it has, forked processes
    # (the ddp_fork tests) cannot run backward. torch.export (the forest's export test)
    # registers one without any GPU, so a backward after it would start them: take the
    # first backward here, before any test, so test order cannot break ddp_fork.
    weight = torch.ones(1, requires_grad=True)
    (2 * weight).sum().backward()


@pytest.fixture
def run_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Run ``lightning-synth ARGS`` in ``tmp_path``; return the newest run directory.

    Relative paths (``runs/``) land in ``tmp_path``; configs are read from the repository.
    """
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> Path:
        from lightning_synth.cli import main

        main(list(args))
        runs = sorted((tmp_path / "runs").glob("*/version_*"), key=lambda p: p.stat().st_mtime)
        return runs[-1] if runs else tmp_path / "runs"

    return run


def benchmark_module(name: str) -> ModuleType:
    """The script ``benchmarks/<name>.py`` as a module (the benchmarks are not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_body_datamodule(height: int, width: int, **options: object):  # noqa: ANN201
    """A ``BodyDepthDataModule`` of a few small frames: clean renders (seed 0) and
    sensor-model frames (seed 1), 4 per batch, no workers; ``options`` override."""
    from lightning_synth.datamodules import BodyDepthDataModule, RenderedBodySource
    from lightning_synth.rendering.sensor import DepthSensorNoise

    lengths = options.pop("lengths", {"train_length": 8, "val_length": 4, "test_length": 4})
    settings = {
        "rendered": RenderedBodySource(seed=0, **lengths),
        "real": RenderedBodySource(seed=1, noise=DepthSensorNoise(), **lengths),
        "height": height,
        "width": width,
        "batch_size": 4,
        "num_workers": 0,
    }
    return BodyDepthDataModule(**{**settings, **options})
