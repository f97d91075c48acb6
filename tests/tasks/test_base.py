"""SynthTask: networks injected from Python are state, not hyper-parameters."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from test_dann import squares_datamodule, tiny_dann
from torch import nn


def test_injected_networks_stay_out_of_the_hyper_parameters_and_hparams_yaml(
    tmp_path: Path,
) -> None:
    extractor = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten())
    model = tiny_dann(feature_extractor=extractor, adaptation_weight=0.5)
    assert "feature_extractor" not in model.hparams
    assert "feature_extractor" not in model.hparams_initial
    assert model.hparams.adaptation_weight == 0.5
    trainer = Trainer(
        accelerator="cpu",
        max_steps=1,
        logger=TensorBoardLogger(tmp_path, name="run"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(model, squares_datamodule())
    saved = (tmp_path / "run" / "version_0" / "hparams.yaml").read_text()
    # Before: the logger pickled every injected network, weights and all, into this file.
    assert "python/object" not in saved and "adaptation_weight: 0.5" in saved
