"""GapReport callback: the report reaches TensorBoard and the run directory when a fit starts."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import Dataset

from lightning_synth.callbacks import GapReport
from lightning_synth.datamodules import MixedDomainDataModule
from lightning_synth.datamodules.sources import DomainSource
from lightning_synth.tasks import ImageClassifier


class _Boxes(DomainSource):
    """Two classes of 12 x 12 images: a bright box, small and centred (rendered) or
    filling the frame's height (real)."""

    def __init__(self, real: bool) -> None:
        generator = torch.Generator().manual_seed(int(real))
        self.images = 0.1 * torch.rand(24, 1, 12, 12, generator=generator)
        rows = slice(0, 12) if real else slice(4, 8)
        self.images[:, :, rows, 4:8] += 0.8
        self.labels = (torch.arange(24) % 2).tolist()

    @property
    def num_classes(self) -> int:
        return 2

    def dataset(self, stage: str) -> Dataset:
        return list(zip(self.images, self.labels, strict=True))  # type: ignore[return-value]


def test_report_is_logged_to_tensorboard_when_the_fit_starts(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    datamodule = MixedDomainDataModule(
        _Boxes(False), _Boxes(True), image_size=12, channels=1, batch_size=8, num_workers=0
    )
    callback = GapReport(num_samples=16, num_examples=4)
    trainer = Trainer(
        accelerator="cpu", max_steps=1, limit_val_batches=1, num_sanity_val_steps=0,
        logger=TensorBoardLogger(tmp_path, name="run"), callbacks=[callback],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(ImageClassifier(num_classes=2, in_channels=1, log_images=False), datamodule)

    events = EventAccumulator(trainer.log_dir, size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    (image,) = events.Images("gap_report")
    assert image.step == 0 and image.width == 1500 and image.height == 1000
    (summary,) = events.Tensors("gap_report/summary/text_summary")
    text = summary.tensor_proto.string_val[0].decode()
    assert text.startswith("proxy A-distance on pixels 2.00")
    assert "ink bounding-box height: median 0.33 rendered vs 1.00 real" in text
    assert callback.written == Path(trainer.log_dir) / "gap_report.png"
    found = json.loads((Path(trainer.log_dir) / "gap_report.json").read_text())
    assert found["num_rendered"] == found["num_real"] == 16
