"""Adapted tasks: ImageClassifier with adaptation components and the DANN preset: what they
log, schedules that resume, the reversal in the features, bf16, DDP, checkpoints."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from conftest import CONFIGS
from lightning.pytorch import Callback, Trainer
from torch import nn
from torch.utils.data import Dataset

from lightning_synth.adaptation import (
    CDAN,
    CORAL,
    MMD,
    DomainAdversarial,
    MinimumClassConfusion,
    RealSampleTerms,
    balanced_domain_loss,
)
from lightning_synth.batch import DOMAIN, IMAGE, LABEL, REAL, RENDERED
from lightning_synth.datamodules import MixedDomainDataModule
from lightning_synth.datamodules.sources import DomainSource
from lightning_synth.nn import DomainClassifier
from lightning_synth.nn.schedules import annealed_lr_factor, grl_lambda
from lightning_synth.tasks import DANN, ImageClassifier
from lightning_synth.tasks.classification import masked_cross_entropy

SIZE = 16


class _Items(Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])


class Squares(DomainSource):
    """Class ``k`` is a bright square at the ``k``-th position; the real domain is dimmer
    and noisier, so the two domains are easy to tell apart."""

    def __init__(self, real: bool, length: int = 48) -> None:
        generator = torch.Generator().manual_seed(int(real))
        labels = torch.arange(length) % 4
        images = torch.rand(length, 1, SIZE, SIZE, generator=generator) * (0.4 if real else 0.1)
        for i, label in enumerate(labels.tolist()):
            row, col = divmod(label, 2)
            images[i, 0, 2 + 7 * row : 7 + 7 * row, 2 + 7 * col : 7 + 7 * col] += (
                0.6 if real else 0.9
            )
        self._data = _Items(images.clamp(0, 1), labels)

    @property
    def num_classes(self) -> int:
        return 4

    def dataset(self, stage: str) -> Dataset:
        return self._data


def squares_datamodule(**overrides) -> MixedDomainDataModule:
    options = {
        "image_size": SIZE,
        "channels": 1,
        "batch_size": 8,
        "real_fraction": 0.5,
        "hide_real_labels": True,
        "num_workers": 0,
    } | overrides
    return MixedDomainDataModule(Squares(False), Squares(True), **options)


def tiny_dann(**overrides) -> DANN:
    options = {
        "num_classes": 4,
        "in_channels": 1,
        "image_size": SIZE,
        "pad_samples": 0,
        "log_images": False,
    } | overrides
    return DANN(**options)


def tiny_trainer(tmp_path: Path, **overrides) -> Trainer:
    options = {
        "accelerator": "cpu",
        "devices": 1,
        "max_steps": 4,
        "max_epochs": -1,
        "limit_val_batches": 3,
        "num_sanity_val_steps": 0,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": tmp_path,
    } | overrides
    return Trainer(**options)


def _batch() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {
        IMAGE: torch.rand(6, 1, SIZE, SIZE),
        LABEL: torch.tensor([0, 1, 2, -1, -1, -1]),
        DOMAIN: torch.tensor([RENDERED] * 3 + [REAL] * 3),
    }


def _feature_grads(model: DANN, loss: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad()
    loss.backward()
    return [p.grad.clone() for p in model.feature_extractor.parameters()]


def _step(model: DANN, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    with warnings.catch_warnings():  # self.log without a trainer
        warnings.simplefilter("ignore")
        return model.shared_step(batch, "train")


# -- the step ------------------------------------------------------------------------------


def test_weight_zero_is_source_only_no_domain_gradient_reaches_the_features() -> None:
    torch.manual_seed(0)
    model = tiny_dann(adaptation_weight=0.0)
    batch = _batch()
    total = _feature_grads(model, _step(model, batch)["loss"])
    adversary = model.adaptation[0]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in adversary.parameters()), (
        "the domain classifier must still learn (val/domain_acc of the baseline)"
    )
    label_only = _feature_grads(model, masked_cross_entropy(model(batch[IMAGE]), batch[LABEL]))
    for with_domain, without in zip(total, label_only, strict=True):
        assert torch.equal(with_domain, without)


def test_reversal_sends_minus_lambda_times_the_domain_gradient_into_the_features() -> None:
    torch.manual_seed(0)
    model = tiny_dann(adaptation_weight=0.7, grl_schedule="constant")
    batch = _batch()
    total = _feature_grads(model, _step(model, batch)["loss"])
    label = _feature_grads(model, masked_cross_entropy(model(batch[IMAGE]), batch[LABEL]))
    discriminator = model.adaptation[0].discriminator
    features = model.feature_extractor(batch[IMAGE])
    domain = _feature_grads(model, balanced_domain_loss(discriminator(features), batch[DOMAIN]))
    for got, lab, dom in zip(total, label, domain, strict=True):
        assert torch.allclose(got, lab - 0.7 * dom, atol=1e-6)
    assert any(d.abs().sum() > 0 for d in domain)


def test_hidden_real_labels_reach_nothing_but_their_features_through_adaptation() -> None:
    """Real samples train the network only through the adaptation terms: without them
    their images get no gradient; with them they do, and their label values never matter."""
    batch = _batch()
    plain = ImageClassifier(num_classes=4, in_channels=1, image_size=SIZE, log_images=False)
    plain.eval()  # batch statistics would tie every sample to every other
    images = batch[IMAGE].clone().requires_grad_(True)
    _step(plain, {**batch, IMAGE: images})["loss"].backward()
    assert float(images.grad[3:].abs().sum()) == 0.0
    adapted = ImageClassifier(
        num_classes=4,
        in_channels=1,
        image_size=SIZE,
        log_images=False,
        adaptation=[MMD(schedule="constant"), MinimumClassConfusion(schedule="constant")],
    )
    adapted.eval()
    images = batch[IMAGE].clone().requires_grad_(True)
    loss = _step(adapted, {**batch, IMAGE: images})["loss"]
    loss.backward()
    assert float(images.grad[3:].abs().sum()) > 0.0


def test_methods_combine_and_the_logs_name_each_of_them() -> None:
    logged: dict[str, float] = {}
    model = ImageClassifier(
        num_classes=4,
        in_channels=1,
        image_size=SIZE,
        log_images=False,
        adaptation=[
            DomainAdversarial(weight=0.5),
            CDAN(entropy_conditioning=True),
            CORAL(),
            MMD(),
            MinimumClassConfusion(),
            RealSampleTerms(consistency_weight=0.0),
        ],
    )

    def log(name: str, value: object, **kwargs: object) -> None:
        if isinstance(value, torch.Tensor):
            logged[name] = float(value)

    model.log = log  # type: ignore[method-assign]
    output = model.shared_step(_batch(), "train")
    assert torch.isfinite(output["loss"])
    for name in (
        "domain_loss",
        "cdan_loss",
        "domain_acc",
        "coral_loss",
        "mmd_loss",
        "mcc_loss",
        "real_entropy",
        "real_diversity",
        "adaptation_loss",
        "label_loss",
    ):
        assert f"train/{name}" in logged, sorted(logged)
    assert output["features"].shape[0] == 6 and output["logits"].shape == (6, 4)


def test_source_only_config_is_the_dann_config_with_weight_zero() -> None:
    dann = yaml.safe_load((CONFIGS / "dann_digits.yaml").read_text())
    source_only = yaml.safe_load((CONFIGS / "source_only_digits.yaml").read_text())
    assert dann["model"]["init_args"]["adaptation_weight"] > 0
    assert source_only["model"]["init_args"].pop("adaptation_weight") == 0
    dann["model"]["init_args"].pop("adaptation_weight")
    assert source_only == dann


def test_injected_discriminator_is_used_and_reloads() -> None:
    model = tiny_dann(domain_classifier=DomainClassifier(None, hidden=(7,)))
    assert not any(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters())
    twin = tiny_dann(domain_classifier=DomainClassifier(None, hidden=(7,)))
    twin.load_state_dict(model.state_dict())
    first = model.adaptation[0].discriminator.layers[0].weight
    assert first.shape[0] == 7
    assert torch.equal(twin.adaptation[0].discriminator.layers[0].weight, first)


def test_dann_preset_builds_the_methods_its_arguments_name() -> None:
    plain = tiny_dann()
    assert [type(m) for m in plain.adaptation] == [DomainAdversarial]
    full = tiny_dann(conditioning="multilinear", entropy_weight=0.3, consistency_weight=1.0)
    assert [type(m) for m in full.adaptation] == [CDAN, RealSampleTerms]
    assert full.adaptation[1].entropy_weight == 0.3
    with pytest.raises(ValueError, match="conditioning"):
        tiny_dann(conditioning="bilinear")
    with pytest.raises(ValueError, match="entropy_weight"):
        tiny_dann(entropy_weight=-1.0)


# -- training ------------------------------------------------------------------------------


class _Record(Callback):
    """What the user sees logged at each training step."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, float, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        metrics = trainer.callback_metrics
        self.rows.append(
            (
                trainer.global_step - 1,
                float(metrics["train/grl_lambda"]),
                float(metrics["train/lr"]),
            )
        )


class _StopAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def test_training_logs_the_named_metrics_and_follows_the_schedules(tmp_path: Path) -> None:
    record = _Record()
    model = tiny_dann(pad_samples=16, lr=0.01)
    trainer = tiny_trainer(
        tmp_path, callbacks=[record], max_steps=-1, max_epochs=1, limit_train_batches=5
    )
    trainer.fit(model, squares_datamodule())
    metrics = trainer.callback_metrics
    for name in (
        "train/label_loss",
        "train/domain_loss",
        "train/grl_lambda",
        "train/lr",
        "train/domain_acc",
        "val/domain_acc",
        "val/real_acc",
        "val/rendered_acc",
        "val/pad",
        "val/pad_pixels",
        "val/bound",
    ):
        assert name in metrics, f"{name} not logged; got {sorted(metrics)}"
    assert 0.0 <= float(metrics["val/domain_acc"]) <= 1.0
    assert [row[0] for row in record.rows] == [0, 1, 2, 3, 4]
    for step, lambda_, lr in record.rows:
        assert lambda_ == pytest.approx(grl_lambda(step / 5))
        assert lr == pytest.approx(0.01 * annealed_lr_factor(step / 5))


@pytest.mark.filterwarnings("ignore:You're resuming from a checkpoint that ended before")
def test_resumed_run_continues_the_schedule_where_it_stopped(tmp_path: Path) -> None:
    first = tiny_trainer(tmp_path, max_steps=6, callbacks=[_StopAt(3)], limit_val_batches=0)
    first.fit(tiny_dann(lr=0.01), squares_datamodule())
    assert first.global_step == 3
    checkpoint = tmp_path / "step3.ckpt"
    first.save_checkpoint(checkpoint)
    record = _Record()
    second = tiny_trainer(tmp_path, max_steps=6, callbacks=[record], limit_val_batches=0)
    second.fit(tiny_dann(lr=0.01), squares_datamodule(), ckpt_path=checkpoint)
    assert [row[0] for row in record.rows] == [3, 4, 5]
    for step, lambda_, lr in record.rows:
        assert lambda_ == pytest.approx(grl_lambda(step / 6)), "lambda restarted from p=0"
        assert lr == pytest.approx(0.01 * annealed_lr_factor(step / 6))


def test_constant_schedule_and_weight_scale_lambda(tmp_path: Path) -> None:
    record = _Record()
    model = tiny_dann(grl_schedule="constant", adaptation_weight=0.3, scheduler="none")
    tiny_trainer(tmp_path, max_steps=2, callbacks=[record], limit_val_batches=0).fit(
        model, squares_datamodule()
    )
    assert [row[1] for row in record.rows] == pytest.approx([0.3, 0.3])
    assert [row[2] for row in record.rows] == pytest.approx([1e-3, 1e-3])


def test_trains_under_bf16_mixed_precision(tmp_path: Path) -> None:
    model = tiny_dann()
    before = model.feature_extractor.layers[0].weight.detach().clone()
    trainer = tiny_trainer(tmp_path, precision="bf16-mixed", max_steps=2, limit_val_batches=1)
    trainer.fit(model, squares_datamodule())
    assert math.isfinite(float(trainer.callback_metrics["train/domain_loss"]))
    assert not torch.equal(before, model.feature_extractor.layers[0].weight)


def test_ddp_two_processes_with_the_bound_report_do_not_deadlock(tmp_path: Path) -> None:
    # The two processes see different numbers of rendered and real validation samples
    # (the interleaved set is split between them), which the report's gathers must absorb.
    model = tiny_dann(pad_samples=9)
    trainer = tiny_trainer(
        tmp_path,
        devices=2,
        strategy="ddp_fork",  # as ddp_spawn, without re-importing torch in each process
        max_steps=-1,
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=2,
    )
    trainer.fit(model, squares_datamodule(batch_size=6))
    assert trainer.world_size == 2
    assert "val/pad" in trainer.callback_metrics and "val/bound" in trainer.callback_metrics
    assert 0.0 <= float(trainer.callback_metrics["val/pad"]) <= 2.0


def test_adapted_classifier_reloads_from_its_checkpoint_with_every_method(tmp_path: Path) -> None:
    model = ImageClassifier(
        num_classes=4,
        in_channels=1,
        image_size=SIZE,
        log_images=False,
        adaptation=[CDAN(max_map_dim=64), MMD()],
    )
    trainer = tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0)
    trainer.fit(model, squares_datamodule())
    path = tmp_path / "adapted.ckpt"
    trainer.save_checkpoint(path)
    # Built in Python, the methods are state: a reload names them again.
    twin = ImageClassifier.load_from_checkpoint(
        path, adaptation=[CDAN(max_map_dim=64), MMD()], map_location="cpu"
    )
    images = torch.rand(3, 1, SIZE, SIZE)
    model.eval(), twin.eval()
    torch.testing.assert_close(twin(images), model(images))
