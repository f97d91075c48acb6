"""The embedding projector: files TensorBoard's projector reads, served by its own plugin."""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from torch.utils.data import Dataset

from lightning_synth.callbacks import BoundReport, EmbeddingProjector
from lightning_synth.datamodules import MixedDomainDataModule
from lightning_synth.datamodules.sources import DomainSource
from lightning_synth.tasks import ImageClassifier


class _Noise(DomainSource):
    def __init__(self, level: float, length: int = 32) -> None:
        generator = torch.Generator().manual_seed(int(level * 10))
        self.images = torch.rand(length, 1, 12, 12, generator=generator) * level
        self.labels = torch.arange(length) % 3

    def dataset(self, stage: str) -> Dataset:
        return list(zip(self.images, self.labels.tolist(), strict=True))  # type: ignore[return-value]


def _plugin_client(logdir: Path):
    """TensorBoard's projector plugin over ``logdir``, as the server builds it, and a WSGI client."""
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.projector.projector_plugin import ProjectorPlugin
    from werkzeug import Response
    from werkzeug.test import Client

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    plugin = ProjectorPlugin(base_plugin.TBContext(logdir=str(logdir), data_provider=provider))
    apps = plugin.get_plugin_apps()

    def get(route: str, **query: str):
        response = Client(apps[route], Response).get(route, query_string=query)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_data()

    return get


def test_features_of_both_domains_reach_the_projector_plugin(tmp_path: Path) -> None:
    projector = EmbeddingProjector(num_samples=10, sprite_size=16)
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=4,
        num_sanity_val_steps=0,
        logger=TensorBoardLogger(tmp_path, name="run"),
        callbacks=[projector, BoundReport(num_samples=10)],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    datamodule = MixedDomainDataModule(
        _Noise(0.3), _Noise(1.0), image_size=12, channels=1, batch_size=8, num_workers=0
    )
    trainer.fit(ImageClassifier(num_classes=3, in_channels=1, log_images=False), datamodule)

    run = Path(trainer.log_dir)
    assert projector.written == [str(run)]
    config = (run / "projector_config.pbtxt").read_text()
    assert "tensor_path" in config and "metadata_path" in config and "sprite" in config
    (embedding,) = run.glob("00002/*")
    tensors = (embedding / "tensors.tsv").read_text().splitlines()
    assert len(tensors) == 20 and len(tensors[0].split("\t")) == 128  # DigitConvNet features
    metadata = (embedding / "metadata.tsv").read_text().splitlines()
    assert metadata[0] == "domain\tclass" and len(metadata) == 21
    domains = [line.split("\t")[0] for line in metadata[1:]]
    assert domains.count("rendered") == 10 and domains.count("real") == 10
    assert {line.split("\t")[1] for line in metadata[1:]} == {"0", "1", "2"}
    with Image.open(embedding / "sprite.png") as sprite:
        assert sprite.size == (5 * 16, 5 * 16)  # ceil(sqrt(20)) images of 16 px a side

    # What the Projector tab asks TensorBoard's projector plugin for.
    get = _plugin_client(tmp_path)
    runs = json.loads(get("/runs"))
    assert runs, "the projector plugin found no run with embeddings"
    info = json.loads(get("/info", run=runs[0]))
    (shown,) = info["embeddings"]
    assert [int(n) for n in shown["tensorShape"]] == [20, 128]
    served = get("/metadata", run=runs[0], name=shown["tensorName"]).decode()
    assert served.splitlines()[0] == "domain\tclass" and served.count("real\t") == 10
    values = get("/tensor", run=runs[0], name=shown["tensorName"])
    assert len(values) == 20 * 128 * 4  # float32
    sprite = get("/sprite_image", run=runs[0], name=shown["tensorName"])
    with Image.open(io.BytesIO(sprite)) as image:
        assert image.size == (80, 80)
