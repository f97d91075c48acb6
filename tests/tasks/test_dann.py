"""DANN: losses, the reversal's effect on the features, schedules, logging, resume, DDP, bf16."""

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

from lightning_synth.batch import DOMAIN, IMAGE, LABEL, REAL, RENDERED, VALID
from lightning_synth.datamodules import MixedDomainDataModule
from lightning_synth.datamodules.sources import DomainSource
from lightning_synth.nn import DomainClassifier
from lightning_synth.nn.schedules import annealed_lr_factor, grl_lambda
from lightning_synth.tasks import DANN
from lightning_synth.tasks.classification import masked_cross_entropy
from lightning_synth.tasks.dann import (
    balanced_domain_loss,
    marginal_entropy,
    masked_entropy,
    multilinear_map,
)

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


# -- the losses ---------------------------------------------------------------------------


def test_domain_loss_weighs_both_domains_equally_whatever_their_share() -> None:
    logits = torch.tensor([0.3, -1.0, 2.0, 0.5])
    domains = torch.tensor([RENDERED, RENDERED, RENDERED, REAL])
    bce = nn.functional.binary_cross_entropy_with_logits
    rendered = bce(logits[:3], torch.zeros(3))
    real = bce(logits[3:], torch.ones(1))
    assert balanced_domain_loss(logits, domains) == pytest.approx(float(rendered + real) / 2)
    # one domain only: its mean
    assert balanced_domain_loss(logits[:3], domains[:3]) == pytest.approx(float(rendered))
    # per-pixel logits: each image's pixels are averaged first
    pixels = logits[:, None, None].expand(4, 3, 2)
    assert balanced_domain_loss(pixels, domains) == pytest.approx(float(rendered + real) / 2)


def test_masked_pixels_and_empty_samples_do_not_count_in_the_domain_loss() -> None:
    bce = nn.functional.binary_cross_entropy_with_logits
    domains = torch.tensor([RENDERED, RENDERED, REAL])
    logits = torch.randn(3, 4, 5)
    mask = torch.zeros(3, 4, 5, dtype=torch.bool)
    mask[0, :2] = True  # 10 pixels of the first rendered frame
    mask[2, 1:, 3:] = True  # 6 pixels of the real frame; the second frame has none
    rendered = bce(logits[0][mask[0]], torch.zeros(10))
    real = bce(logits[2][mask[2]], torch.ones(6))
    got = balanced_domain_loss(logits, domains, mask)
    assert got == pytest.approx(float(rendered + real) / 2)
    # what happens outside the mask does not matter
    changed = torch.where(mask, logits, 100.0)
    assert balanced_domain_loss(changed, domains, mask) == pytest.approx(float(got))


def test_weight_zero_is_source_only_no_domain_gradient_reaches_the_features() -> None:
    torch.manual_seed(0)
    model = tiny_dann(adaptation_weight=0.0)
    model.grl.set_lambda(model.hparams.adaptation_weight)  # the largest value training sets
    batch = _batch()
    output = _step(model, batch)
    total = _feature_grads(model, output["loss"])
    domain_grads = [p.grad for p in model.domain_classifier.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in domain_grads), (
        "the domain classifier must still learn (val/domain_acc of the baseline)"
    )
    label_only = _feature_grads(model, masked_cross_entropy(model(batch[IMAGE]), batch[LABEL]))
    for with_domain, without in zip(total, label_only, strict=True):
        assert torch.equal(with_domain, without)


def test_reversal_sends_minus_lambda_times_the_domain_gradient_into_the_features() -> None:
    torch.manual_seed(0)
    model = tiny_dann(adaptation_weight=1.0)
    model.grl.set_lambda(0.7)
    batch = _batch()
    total = _feature_grads(model, _step(model, batch)["loss"])
    features = model.feature_extractor(batch[IMAGE])
    label = _feature_grads(model, masked_cross_entropy(model.classifier(features), batch[LABEL]))
    features = model.feature_extractor(batch[IMAGE])
    domain = _feature_grads(
        model, balanced_domain_loss(model.domain_classifier(features), batch[DOMAIN])
    )
    for got, lab, dom in zip(total, label, domain, strict=True):
        assert torch.allclose(got, lab - 0.7 * dom, atol=1e-6)
    assert any(d.abs().sum() > 0 for d in domain)


def test_source_only_config_is_the_dann_config_with_weight_zero() -> None:
    dann = yaml.safe_load((CONFIGS / "dann_digits.yaml").read_text())
    source_only = yaml.safe_load((CONFIGS / "source_only_digits.yaml").read_text())
    assert dann["model"]["init_args"]["adaptation_weight"] > 0
    assert source_only["model"]["init_args"].pop("adaptation_weight") == 0
    dann["model"]["init_args"].pop("adaptation_weight")
    assert source_only == dann


# -- networks ------------------------------------------------------------------------------


def test_dense_networks_get_a_per_pixel_domain_loss() -> None:
    extractor = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())
    model = tiny_dann(feature_extractor=extractor, classifier=nn.Conv2d(8, 4, 1))
    batch = _batch()
    batch[LABEL] = torch.randint(0, 4, (6, SIZE, SIZE))
    batch[LABEL][3:] = -1
    assert model.domain_classifier(model.features(batch[IMAGE])).shape == (6, SIZE, SIZE)
    output = _step(model, batch)
    assert output["preds"].shape == (6, SIZE, SIZE) and torch.isfinite(output["loss"])
    output["loss"].backward()
    assert extractor[0].weight.grad.abs().sum() > 0


def test_dense_domain_loss_uses_the_valid_pixels_only() -> None:
    torch.manual_seed(0)
    extractor = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())
    model = tiny_dann(feature_extractor=extractor, classifier=nn.Conv2d(8, 4, 1))
    batch = _batch()
    batch[LABEL] = torch.randint(0, 4, (6, SIZE, SIZE))
    batch[VALID] = torch.zeros(6, SIZE, SIZE, dtype=torch.bool)
    batch[VALID][:, 4:-4, 4:-4] = True  # "the person"; the border is background
    logits = model.domain_classifier(model.features(batch[IMAGE]))
    expected = balanced_domain_loss(logits, batch[DOMAIN], batch[VALID])
    output = _step(model, batch)
    label_loss = masked_cross_entropy(model(batch[IMAGE]), batch[LABEL])
    assert float(output["loss"]) == pytest.approx(float(label_loss + expected), rel=1e-5)
    # The background does not reach the features through the domain loss.
    model.zero_grad()
    model.grl.set_lambda(1.0)
    images = batch[IMAGE].clone().requires_grad_(True)
    features = model.features(images)
    domain_logits = model.domain_classifier(model.grl(features))
    balanced_domain_loss(domain_logits, batch[DOMAIN], batch[VALID]).backward()
    background_grad = images.grad[:, 0, :2, :2]  # more than a 3x3 receptive field from valid
    assert background_grad.abs().sum() == 0 and images.grad.abs().sum() > 0


def test_lazy_domain_classifier_is_sized_at_construction_and_reloads() -> None:
    model = tiny_dann(domain_classifier=DomainClassifier(None, hidden=(7,)))
    assert not any(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters())
    twin = tiny_dann(domain_classifier=DomainClassifier(None, hidden=(7,)))
    twin.load_state_dict(model.state_dict())
    assert torch.equal(
        twin.domain_classifier.layers[0].weight, model.domain_classifier.layers[0].weight
    )


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


# -- conditioning (CDAN) and entropy ----------------------------------------------------------


def test_multilinear_map_is_the_outer_product_per_sample_and_per_pixel() -> None:
    features, probabilities = torch.rand(3, 5), torch.rand(3, 4)
    mapped = multilinear_map(features, probabilities)
    assert mapped.shape == (3, 20)
    assert torch.allclose(mapped[1].view(5, 4), torch.outer(features[1], probabilities[1]))
    maps = multilinear_map(torch.rand(2, 5, 3, 3), torch.rand(2, 4, 3, 3))
    assert maps.shape == (2, 20, 3, 3)
    with pytest.raises(ValueError, match="must agree"):
        multilinear_map(torch.rand(2, 5, 3, 3), torch.rand(2, 4))


def test_masked_entropy_counts_the_masked_predictions_only() -> None:
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]], requires_grad=True)
    assert float(masked_entropy(logits, torch.tensor([True, False]))) == pytest.approx(math.log(4))
    assert float(masked_entropy(logits, torch.tensor([False, True]))) == pytest.approx(
        0.0, abs=1e-6
    )
    empty = masked_entropy(logits, torch.tensor([False, False]))
    empty.backward()
    assert float(empty) == 0.0 and logits.grad is not None


def test_multilinear_conditioning_sizes_the_domain_classifier_and_spares_the_classifier() -> None:
    model = tiny_dann(conditioning="multilinear", grl_schedule="constant")
    dim = model.feature_extractor(torch.zeros(1, 1, SIZE, SIZE)).shape[1]
    assert model.domain_classifier.layers[0].in_features == dim * 4
    batch = _batch()
    batch[LABEL][:] = -1  # no label loss: every gradient comes from the domain loss
    model.grl.set_lambda(1.0)
    output = _step(model, batch)
    output["loss"].backward()
    # The probabilities enter the map detached: the domain loss trains the features, not
    # the label classifier.
    assert all(p.grad is None or not p.grad.any() for p in model.classifier.parameters())
    assert any(p.grad.abs().sum() > 0 for p in model.feature_extractor.parameters())


def test_conditioning_entropy_and_diversity_train_dense_networks() -> None:
    extractor = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())
    model = tiny_dann(
        feature_extractor=extractor,
        classifier=nn.Conv2d(8, 4, 1),
        conditioning="multilinear",
        entropy_weight=0.5,
        diversity_weight=0.5,
    )
    batch = _batch()
    batch[LABEL] = torch.randint(0, 4, (6, SIZE, SIZE))
    batch[LABEL][3:] = -1
    batch[VALID] = torch.zeros(6, SIZE, SIZE, dtype=torch.bool)
    batch[VALID][:, 4:-4, 4:-4] = True
    output = _step(model, batch)
    assert output["preds"].shape == (6, SIZE, SIZE) and torch.isfinite(output["loss"])
    # The real samples' person pixels only: the background's predictions do not count.
    logits = model(batch[IMAGE])
    real_pixels = (batch[DOMAIN] == REAL)[:, None, None] & batch[VALID]
    terms = model.real_prediction_terms(logits, batch[DOMAIN], batch[VALID])
    assert float(terms["real_entropy"]) == pytest.approx(float(masked_entropy(logits, real_pixels)))
    assert float(terms["real_diversity"]) == pytest.approx(
        float(marginal_entropy(logits, real_pixels))
    )


def test_entropy_weight_adds_the_real_samples_entropy_to_the_loss() -> None:
    batch = _batch()
    plain = tiny_dann(grl_schedule="constant")
    torch.manual_seed(0)
    with_entropy = tiny_dann(grl_schedule="constant", entropy_weight=0.5)
    with_entropy.load_state_dict(plain.state_dict())
    logits = plain(batch[IMAGE])
    expected = 0.5 * masked_entropy(logits, batch[DOMAIN] == REAL)
    difference = _step(with_entropy, batch)["loss"] - _step(plain, batch)["loss"]
    assert float(difference) == pytest.approx(float(expected), rel=1e-5)


def test_bad_conditioning_and_entropy_weight_are_refused() -> None:
    with pytest.raises(ValueError, match="conditioning"):
        tiny_dann(conditioning="bilinear")
    with pytest.raises(ValueError, match="entropy_weight"):
        tiny_dann(entropy_weight=-1.0)


def test_marginal_entropy_is_high_for_spread_and_zero_for_collapsed_predictions() -> None:
    spread = torch.eye(4) * 100.0
    collapsed = torch.zeros(4, 4)
    collapsed[:, 2] = 100.0
    everyone = torch.ones(4, dtype=torch.bool)
    assert float(marginal_entropy(spread, everyone)) == pytest.approx(math.log(4))
    assert float(marginal_entropy(collapsed, everyone)) == pytest.approx(0.0, abs=1e-6)
    assert float(marginal_entropy(spread, ~everyone)) == 0.0


def test_diversity_weight_subtracts_the_entropy_of_the_mean_real_prediction() -> None:
    batch = _batch()
    plain = tiny_dann(grl_schedule="constant")
    diverse = tiny_dann(grl_schedule="constant", diversity_weight=0.5)
    diverse.load_state_dict(plain.state_dict())
    expected = -0.5 * marginal_entropy(plain(batch[IMAGE]), batch[DOMAIN] == REAL)
    difference = _step(diverse, batch)["loss"] - _step(plain, batch)["loss"]
    assert float(difference) == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ValueError, match="diversity_weight"):
        tiny_dann(diversity_weight=-0.1)


def test_consistency_trains_augmented_real_images_towards_their_confident_class() -> None:
    batch = _batch()
    plain = tiny_dann(grl_schedule="constant")
    # Identity augmentation: the loss is the real samples' cross-entropy with their own argmax.
    consistent = tiny_dann(
        grl_schedule="constant",
        consistency_weight=2.0,
        pseudo_label_threshold=0.0,
        consistency_augment=nn.Identity(),
    )
    consistent.load_state_dict(plain.state_dict())
    real_logits = plain(batch[IMAGE])[batch[DOMAIN] == REAL]
    expected = 2.0 * torch.nn.functional.cross_entropy(real_logits, real_logits.argmax(dim=1))
    difference = _step(consistent, batch)["loss"] - _step(plain, batch)["loss"]
    assert float(difference) == pytest.approx(float(expected), rel=1e-5)


def test_consistency_skips_real_images_below_the_threshold() -> None:
    model = tiny_dann(consistency_weight=1.0, pseudo_label_threshold=1.0)
    terms = model.consistency_terms(
        _batch()[IMAGE], torch.zeros(6, 4, requires_grad=True), _batch()[DOMAIN]
    )
    assert float(terms["consistency_loss"]) == 0.0 and float(terms["pseudo_label_fraction"]) == 0.0
    terms["consistency_loss"].backward()  # still part of the graph


def test_consistency_refuses_dense_predictions_with_a_clear_message() -> None:
    extractor = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())
    model = tiny_dann(
        feature_extractor=extractor, classifier=nn.Conv2d(8, 4, 1), consistency_weight=1.0
    )
    batch = _batch()
    batch[LABEL] = torch.randint(0, 4, (6, SIZE, SIZE))
    with pytest.raises(ValueError, match="per-image predictions"):
        _step(model, batch)
    with pytest.raises(ValueError, match="pseudo_label_threshold"):
        tiny_dann(pseudo_label_threshold=1.5)
