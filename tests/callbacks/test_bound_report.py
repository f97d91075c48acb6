"""BoundReport: logged values that satisfy their definitions, recomputed by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import Dataset

from lightning_synth.batch import DOMAIN, IGNORE_LABEL, IMAGE, LABEL, REAL, RENDERED
from lightning_synth.callbacks import BoundReport
from lightning_synth.datamodules import MixedDomainDataModule
from lightning_synth.datamodules.sources import DomainSource
from lightning_synth.metrics import joint_error, proxy_a_distance
from lightning_synth.tasks import ImageClassifier

KEPT = 12  # samples per domain the report fits its classifiers on


class _Digits(DomainSource):
    """Three classes of 12 x 12 images (a bright band at a class-dependent row)."""

    def __init__(self, real: bool, labelled: bool = True, length: int = 40) -> None:
        generator = torch.Generator().manual_seed(int(real))
        self.labels = torch.arange(length) % 3
        self.images = torch.rand(length, 1, 12, 12, generator=generator) * (0.5 if real else 0.2)
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


def _fit(tmp_path: Path, real_labelled: bool = True, logger=False):
    datamodule = MixedDomainDataModule(
        _Digits(False),
        _Digits(True, labelled=real_labelled),
        image_size=12,
        channels=1,
        batch_size=8,
        num_workers=0,
    )
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=3,
        num_sanity_val_steps=0,
        logger=logger,
        callbacks=[BoundReport(num_samples=KEPT)],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    model = ImageClassifier(num_classes=3, in_channels=1, log_images=False)
    trainer.fit(model, datamodule)
    return trainer, model, datamodule


@torch.no_grad()
def _by_hand(model: ImageClassifier, datamodule: MixedDomainDataModule) -> dict[str, object]:
    """Errors over the whole validation set; pixels, features and labels of the first
    ``KEPT`` samples of each domain in loader order (what the report keeps)."""
    model.eval()
    wrong = {RENDERED: [], REAL: []}
    kept = {RENDERED: [], REAL: []}
    for batch in datamodule.val_dataloader():
        preds = model(batch[IMAGE]).argmax(1)
        for code in (RENDERED, REAL):
            mine = batch[DOMAIN] == code
            wrong[code] += (preds[mine] != batch[LABEL][mine]).tolist()
            kept[code] += [
                (batch[IMAGE][i], int(batch[LABEL][i])) for i in mine.nonzero().flatten()
            ]
    out: dict[str, object] = {
        "er_synth": sum(wrong[RENDERED]) / len(wrong[RENDERED]),
        "er_real": sum(wrong[REAL]) / len(wrong[REAL]),
    }
    for code in (RENDERED, REAL):
        images = torch.stack([image for image, _ in kept[code][:KEPT]])
        out[code] = (
            images.flatten(1),
            model.features(images),
            torch.tensor([label for _, label in kept[code][:KEPT]]),
        )
    return out


def test_logged_terms_satisfy_their_definitions(tmp_path: Path) -> None:
    trainer, model, datamodule = _fit(tmp_path)
    logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
    hand = _by_hand(model, datamodule)
    (pix_s, feat_s, y_s), (pix_r, feat_r, y_r) = hand[RENDERED], hand[REAL]

    assert logged["val/bound_er_synth"] == pytest.approx(hand["er_synth"])
    assert logged["val/bound_er_real"] == pytest.approx(hand["er_real"])
    assert logged["val/pad_pixels"] == pytest.approx(proxy_a_distance(pix_s, pix_r))
    assert logged["val/pad"] == pytest.approx(proxy_a_distance(feat_s, feat_r), abs=1e-5)
    assert logged["val/bound_disc"] == logged["val/pad"]
    assert logged["val/bound_lambda"] == pytest.approx(
        sum(joint_error(feat_s, y_s, feat_r, y_r)), abs=1e-5
    )
    terms = logged["val/bound_er_synth"] + logged["val/pad"] + logged["val/bound_lambda"]
    assert logged["val/bound"] == pytest.approx(terms)
    assert logged["val/bound_slack"] == pytest.approx(logged["val/bound"] - hand["er_real"])
    assert 0.0 <= logged["val/pad"] <= 2.0 and 0.0 <= logged["val/bound_lambda"] <= 2.0


def test_without_real_labels_only_the_discrepancy_is_logged(tmp_path: Path) -> None:
    trainer, _, _ = _fit(tmp_path, real_labelled=False)
    metrics = trainer.callback_metrics
    assert {"val/pad", "val/pad_pixels", "val/bound_er_synth", "val/bound_disc"} <= set(metrics)
    assert not {"val/bound", "val/bound_lambda", "val/bound_er_real"} & set(metrics)


def test_bound_is_written_as_text_for_tensorboard(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer, _, _ = _fit(tmp_path, logger=TensorBoardLogger(tmp_path, name="run"))
    events = EventAccumulator(trainer.log_dir, size_guidance={"tensors": 0})
    events.Reload()
    (text,) = [tag for tag in events.Tags()["tensors"] if tag.startswith("val/bound")]
    line = events.Tensors(text)[-1].tensor_proto.string_val[0].decode()
    assert line.startswith("er_real ") and "<= er_synth" in line and "lambda" in line
    assert "val/bound" in events.Tags()["scalars"] and "val/pad" in events.Tags()["scalars"]


def test_too_few_samples_warn_instead_of_failing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 8"):
        BoundReport(num_samples=4)
    datamodule = MixedDomainDataModule(
        _Digits(False), _Digits(True), image_size=12, channels=1, batch_size=4, num_workers=0
    )
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        callbacks=[BoundReport(num_samples=KEPT)],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    with pytest.warns(UserWarning, match="at least 8 of each"):
        trainer.fit(ImageClassifier(num_classes=3, in_channels=1, log_images=False), datamodule)
    assert "val/pad" not in trainer.callback_metrics
