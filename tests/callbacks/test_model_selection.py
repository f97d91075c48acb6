"""ModelSelection: label-free validators logged in a real fit, one process and two."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import Dataset

from lightning_synth.batch import DOMAIN, IGNORE_LABEL, IMAGE, LABEL, REAL, RENDERED
from lightning_synth.callbacks import ModelSelection
from lightning_synth.datamodules import MixedDomainDataModule
from lightning_synth.datamodules.sources import DomainSource
from lightning_synth.metrics.selection import (
    deep_embedded_validation,
    information_maximization,
    soft_neighborhood_density,
)
from lightning_synth.tasks import ImageClassifier

SELECT = ["val/select_snd", "val/select_dev", "val/select_im", "val/select_rendered_acc"]
KEPT = 16  # samples per domain the validators use


class _Bands(DomainSource):
    """Three classes of 12 x 12 images (a bright band at a class-dependent row); 40 per
    stage, so a 2-process validation splits evenly and no sample is repeated."""

    def __init__(self, real: bool, labelled: bool = True) -> None:
        generator = torch.Generator().manual_seed(int(real))
        self.labels = torch.arange(40) % 3
        self.images = torch.rand(40, 1, 12, 12, generator=generator) * (0.5 if real else 0.2)
        for i, label in enumerate(self.labels.tolist()):
            self.images[i, 0, 1 + 4 * label : 3 + 4 * label] += 0.5
        self.images = self.images.clamp(0, 1)
        if not labelled:
            self.labels = torch.full_like(self.labels, IGNORE_LABEL)

    @property
    def num_classes(self) -> int:
        return 3

    def dataset(self, stage: str) -> Dataset:
        return list(zip(self.images, self.labels.tolist(), strict=True))  # type: ignore[return-value]


def _datamodule(real_labelled: bool = True) -> MixedDomainDataModule:
    return MixedDomainDataModule(
        _Bands(False), _Bands(True, real_labelled), image_size=12, channels=1, batch_size=8,
        hide_real_labels=True, num_workers=0,
    )  # fmt: skip


def _trainer(tmp_path: Path, callbacks: list, **options: object) -> Trainer:
    settings = {
        "accelerator": "cpu", "max_epochs": 1, "limit_train_batches": 3,
        "num_sanity_val_steps": 0, "logger": False, "enable_checkpointing": False,
        "enable_progress_bar": False, "enable_model_summary": False, "default_root_dir": tmp_path,
    }  # fmt: skip
    return Trainer(callbacks=callbacks, **{**settings, **options})


def _model() -> ImageClassifier:
    torch.manual_seed(0)
    return ImageClassifier(num_classes=3, in_channels=1, image_size=12, log_images=False)


@torch.no_grad()
def _by_hand(model: ImageClassifier, datamodule: MixedDomainDataModule) -> dict[str, float]:
    """The validators on the first ``KEPT`` samples of each domain, in loader order."""
    model.eval()
    seen: dict[int, list] = {RENDERED: [], REAL: []}
    for batch in datamodule.val_dataloader():
        for i in range(len(batch[IMAGE])):
            seen[int(batch[DOMAIN][i])].append((batch[IMAGE][i], int(batch[LABEL][i])))
    images = {code: torch.stack([image for image, _ in seen[code][:KEPT]]) for code in seen}
    labels = torch.tensor([label for _, label in seen[RENDERED][:KEPT]])
    logits = {code: model(images[code]) for code in seen}
    features = {code: model.features(images[code]) for code in seen}
    all_rendered = torch.stack([image for image, _ in seen[RENDERED]])
    rendered_labels = torch.tensor([label for _, label in seen[RENDERED]])
    return {
        "val/select_snd": soft_neighborhood_density(logits[REAL]),
        "val/select_im": information_maximization(logits[REAL]),
        "val/select_dev": -deep_embedded_validation(
            features[RENDERED], logits[RENDERED], labels, features[REAL]
        ),
        "val/select_rendered_acc": float(
            (model(all_rendered).argmax(1) == rendered_labels).float().mean()
        ),
    }


def test_logged_validators_match_their_definitions(tmp_path: Path) -> None:
    datamodule, model = _datamodule(), _model()
    trainer = _trainer(tmp_path, [ModelSelection(num_samples=KEPT)])
    trainer.fit(model, datamodule)
    logged = {name: float(trainer.callback_metrics[name]) for name in SELECT}
    for name, value in _by_hand(model, datamodule).items():
        assert logged[name] == pytest.approx(value, rel=1e-4, abs=1e-5), name
    # The task's own rendered accuracy counts the same samples.
    assert logged["val/select_rendered_acc"] == pytest.approx(
        float(trainer.callback_metrics["val/rendered_acc"])
    )


def test_real_labels_are_never_read(tmp_path: Path) -> None:
    values = []
    for real_labelled in (True, False):
        trainer = _trainer(tmp_path, [ModelSelection(num_samples=KEPT)])
        trainer.fit(_model(), _datamodule(real_labelled))
        values.append({name: float(trainer.callback_metrics[name]) for name in SELECT})
    assert values[0] == pytest.approx(values[1], rel=1e-5)


def test_a_checkpoint_is_chosen_by_a_validator(tmp_path: Path) -> None:
    checkpoint = ModelCheckpoint(tmp_path / "ckpt", monitor="val/select_snd", mode="max")
    selection = ModelSelection(validators=["snd"], num_samples=KEPT)
    assert selection.monitors == {"snd": "val/select_snd"}
    trainer = _trainer(tmp_path, [selection, checkpoint], max_epochs=2, enable_checkpointing=True)
    trainer.fit(_model(), _datamodule())
    assert Path(checkpoint.best_model_path).is_file()
    assert float(checkpoint.best_model_score) == pytest.approx(  # type: ignore[arg-type]
        max(float(score) for score in checkpoint.best_k_models.values())
    )
    assert set(trainer.callback_metrics) >= {"val/select_snd"}
    assert "val/select_dev" not in trainer.callback_metrics


def test_validators_need_class_logits_and_known_names() -> None:
    with pytest.raises(ValueError, match="unknown validators"):
        ModelSelection(validators=["accuracy"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="at least 8"):
        ModelSelection(num_samples=4)


def test_two_ddp_processes_log_what_one_process_logs(tmp_path: Path) -> None:
    datamodule, model = _datamodule(), _model()
    _trainer(tmp_path, [], max_epochs=3).fit(model, datamodule)
    # Every sample is kept (40 per domain), so both runs score the same set. (Validation
    # alone: in a DDP fit each process keeps its own batch-norm statistics, so the
    # processes' predictions differ unless batch norm is synced, which needs CUDA.)
    scores = []
    for options in ({"devices": 2, "strategy": "ddp_spawn"}, {"devices": 1}):
        trainer = _trainer(tmp_path, [ModelSelection(num_samples=40)], **options)
        trainer.validate(model, datamodule, verbose=False)
        scores.append({name: float(trainer.callback_metrics[name]) for name in SELECT})
        assert trainer.world_size == options["devices"]
    assert scores[0] == pytest.approx(scores[1], rel=1e-4, abs=1e-5)
    assert scores[0]["val/select_snd"] > 0.0 and scores[0]["val/select_dev"] < 0.0
