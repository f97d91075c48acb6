"""GeneratedSource: samples of a GAN checkpoint as a domain of MixedDomainDataModule."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader, Dataset

from lightning_synth.batch import DOMAIN, IGNORE_LABEL, IMAGE, LABEL, RENDERED
from lightning_synth.datamodules import GeneratedSource, MixedDomainDataModule
from lightning_synth.datamodules.sources import DomainSource
from lightning_synth.tasks import GAN, ImageClassifier

SIZE = 16


class _Blobs(DomainSource):
    """4 classes of 16x16 images: a bright quadrant on noise."""

    def __init__(self, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(32) % 4
        self.images = torch.rand(32, 1, SIZE, SIZE, generator=generator) * 0.3
        for i, label in enumerate(self.labels.tolist()):
            row, col = divmod(label, 2)
            self.images[i, 0, 8 * row : 8 * row + 8, 8 * col : 8 * col + 8] += 0.6

    @property
    def num_classes(self) -> int:
        return 4

    def dataset(self, stage: str) -> Dataset:
        return list(zip(self.images.clamp(0, 1), self.labels.tolist(), strict=True))  # type: ignore[return-value]


def _data(rendered: DomainSource, real_fraction: float = 1.0) -> MixedDomainDataModule:
    return MixedDomainDataModule(
        rendered, _Blobs(1), image_size=SIZE, channels=1, batch_size=8,
        real_fraction=real_fraction, num_workers=0,
    )  # fmt: skip


def _fit(model, data, max_steps: int, root: Path) -> Trainer:
    trainer = Trainer(
        accelerator="cpu", max_steps=max_steps, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=root,
    )  # fmt: skip
    trainer.fit(model, data)
    return trainer


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gan")
    paths = {}
    for name, num_classes in (("conditional", 4), ("unconditional", None)):
        model = GAN(
            latent_dim=8, channels=1, image_size=SIZE, num_classes=num_classes,
            generator_width=8, discriminator_width=8, log_images_every_n_steps=0,
        )  # fmt: skip
        trainer = _fit(model, _data(_Blobs(0)), 40, root)
        paths[name] = root / f"{name}.ckpt"
        trainer.save_checkpoint(paths[name])
    return paths


def _images(source: GeneratedSource, stage: str = "train") -> torch.Tensor:
    dataset = source.dataset(stage)  # type: ignore[arg-type]
    return torch.stack([dataset[i][IMAGE] for i in range(len(dataset))])


def test_items_depend_on_their_index_only(checkpoints) -> None:
    path = str(checkpoints["conditional"])
    small = GeneratedSource(path, train_length=10, batch_size=1)
    large = GeneratedSource(path, train_length=23, batch_size=7)
    images = _images(small)
    assert images.shape == (10, 1, SIZE, SIZE) and images.dtype == torch.float32
    assert torch.equal(images, _images(large)[:10])  # any batch size, any length
    assert torch.equal(images, _images(GeneratedSource(path, train_length=10)))  # any run
    assert not torch.equal(images, _images(GeneratedSource(path, train_length=10, seed=1)))
    val = _images(GeneratedSource(path, train_length=10, val_length=10), "val")
    assert not torch.equal(images, val)  # stages never share noise
    assert not any(torch.equal(images[i], images[i + 1]) for i in range(9))


def test_images_are_the_generators_samples(checkpoints) -> None:
    source = GeneratedSource(str(checkpoints["conditional"]), train_length=6)
    z, labels = source.noise_and_labels("train", range(6))
    expected = source.generator.sample(z, labels)
    images = _images(source)
    assert (images - expected).abs().max() <= 0.5 / 255 + 1e-6  # stored as 8-bit values
    assert torch.equal(images * 255, (images * 255).round())
    assert source.generator.ema  # the moving average is what is sampled
    raw = GeneratedSource(str(checkpoints["conditional"]), train_length=6, use_ema=False)
    assert not torch.equal(_images(raw), images)


def test_labels_balanced_random_or_unknown(checkpoints) -> None:
    conditional = str(checkpoints["conditional"])
    balanced = GeneratedSource(conditional, train_length=12).dataset("train")
    assert [int(balanced[i][LABEL]) for i in range(12)] == [i % 4 for i in range(12)]
    first = GeneratedSource(conditional, train_length=40, labels="random").dataset("train")
    again = GeneratedSource(conditional, train_length=40, labels="random").dataset("train")
    drawn = [int(first[i][LABEL]) for i in range(40)]
    assert drawn == [int(again[i][LABEL]) for i in range(40)] and set(drawn) == {0, 1, 2, 3}
    assert drawn != [i % 4 for i in range(40)]
    # the class changes the image: same noise, other label
    source = GeneratedSource(conditional, train_length=2)
    z, _ = source.noise_and_labels("train", range(1))
    assert not torch.equal(
        source.generator.sample(z, torch.tensor([0])), source.generator.sample(z, torch.tensor([3]))
    )
    unconditional = GeneratedSource(str(checkpoints["unconditional"]), train_length=5)
    assert {int(unconditional.dataset("train")[i][LABEL]) for i in range(5)} == {IGNORE_LABEL}
    assert GeneratedSource(conditional).num_classes == 4


def test_trains_a_classifier_as_the_rendered_domain(checkpoints, tmp_path: Path) -> None:
    source = GeneratedSource(str(checkpoints["conditional"]), train_length=64, val_length=16)
    data = _data(source, real_fraction=0.0)
    batch = next(iter(data.train_dataloader()))
    assert batch[IMAGE].shape == (8, 1, SIZE, SIZE) and set(batch[DOMAIN].tolist()) == {RENDERED}
    assert set(batch[LABEL].tolist()) <= {0, 1, 2, 3}
    model = ImageClassifier(num_classes=4, in_channels=1, image_size=SIZE, log_images=False)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = _fit(model, data, 3, tmp_path)
    assert trainer.global_step == 3
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    # batched fetching returns what single fetching does
    dataset = source.dataset("train")
    loader = DataLoader(dataset, batch_size=5)
    batch = next(iter(loader))
    assert torch.equal(batch[IMAGE][3], dataset[3][IMAGE])
    assert int(batch[LABEL][3]) == int(dataset[3][LABEL])


def test_pickles_without_images_or_network(checkpoints) -> None:
    source = GeneratedSource(str(checkpoints["conditional"]), train_length=500)
    source.dataset("train")
    copy = pickle.loads(pickle.dumps(source))
    assert len(pickle.dumps(source)) < 2_000
    assert torch.equal(_images(copy)[:3], _images(source)[:3])  # rebuilt on demand


def test_clear_errors_for_wrong_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        GeneratedSource(str(tmp_path / "missing.ckpt"))
    classifier = ImageClassifier(num_classes=4, in_channels=1, image_size=SIZE, log_images=False)
    trainer = _fit(classifier, _data(_Blobs(0)), 1, tmp_path)
    trainer.save_checkpoint(tmp_path / "classifier.ckpt")
    with pytest.raises(ValueError, match="not a checkpoint of the GAN task"):
        GeneratedSource(str(tmp_path / "classifier.ckpt"))
