"""BodyPartClassifier: loss on foreground only, the backbones (a forest too), learning, metrics
and the TB picture."""

from __future__ import annotations

import io
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_body_datamodule
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from torch.utils.data import default_collate

from lightning_synth.adaptation import (
    CORAL,
    MMD,
    AdaptationInputs,
    DomainAdversarial,
    MinimumClassConfusion,
)
from lightning_synth.batch import DOMAIN, IGNORE_LABEL, IMAGE, JOINTS, LABEL, REAL, RENDERED
from lightning_synth.errors import InputError
from lightning_synth.nn import DepthComparisonFeatures, DepthFCN, DepthForest, PixelClassifier
from lightning_synth.rendering.body import PART_PALETTE, BodyRenderer, RenderedBodies
from lightning_synth.tasks import BodyPartClassifier
from lightning_synth.tasks.body_parts import _concatenate_emptying, part_map_grid

H, W = 30, 40


def _batch(count: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    frames = RenderedBodies(count, BodyRenderer(H, W, seed=seed)).__getitems__(range(count))
    return default_collate(frames)


def _adaptation() -> list:
    return [DomainAdversarial(weight=0.3), MinimumClassConfusion()]


def _small(**options) -> BodyPartClassifier:
    extractor = options.pop("feature_extractor", DepthComparisonFeatures(num_features=32))
    return BodyPartClassifier(feature_extractor=extractor, hidden=(32,), **options)


@pytest.mark.parametrize("backbone", ["depth_features", "fcn"])
def test_all_background_batch_gives_zero_loss_not_nan(backbone: str) -> None:
    task = BodyPartClassifier(backbone=backbone)
    batch = _batch(2)
    batch[IMAGE] = torch.zeros_like(batch[IMAGE])
    batch[LABEL] = torch.full_like(batch[LABEL], IGNORE_LABEL)
    loss = task.shared_step(batch, "val")["loss"]
    assert loss.item() == 0.0
    loss.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in task.parameters())


@pytest.mark.parametrize("backbone", ["depth_features", "fcn"])
def test_loss_ignores_background_pixels(backbone: str) -> None:
    torch.manual_seed(0)
    task = BodyPartClassifier(backbone=backbone).eval()
    batch = _batch(2)
    loss = task.shared_step(batch, "val")["loss"]
    logits = task(batch[IMAGE])
    foreground = batch[LABEL] != IGNORE_LABEL
    expected = torch.nn.functional.cross_entropy(
        logits.movedim(1, -1)[foreground], batch[LABEL][foreground]
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("backbone", ["depth_features", "fcn"])
def test_foreground_only_classifies_the_same_as_every_pixel(backbone: str) -> None:
    torch.manual_seed(0)

    def extractor() -> torch.nn.Module:
        if backbone == "fcn":
            return DepthFCN(widths=(4, 8), out_features=8)
        return DepthComparisonFeatures(num_features=32)

    fast = _small(feature_extractor=extractor()).eval()
    dense = _small(feature_extractor=extractor(), foreground_only=False).eval()
    dense.load_state_dict(fast.state_dict())
    batch = _batch(2)
    foreground = batch[IMAGE][:, 0] > 0
    assert fast._sparse() and not dense._sparse()
    assert torch.allclose(
        fast(batch[IMAGE]).movedim(1, -1)[foreground],
        dense(batch[IMAGE]).movedim(1, -1)[foreground],
        atol=1e-5,
    )
    parts = fast.predict_parts(batch[IMAGE])
    assert torch.equal(parts[foreground], fast(batch[IMAGE]).argmax(dim=1)[foreground])


def test_backbones_are_chosen_by_name_or_injected() -> None:
    assert isinstance(BodyPartClassifier(backbone="fcn").feature_extractor, DepthFCN)
    default = BodyPartClassifier()
    assert isinstance(default.feature_extractor, DepthComparisonFeatures)
    assert isinstance(default.classifier, PixelClassifier)
    learnable = _small(feature_extractor=DepthComparisonFeatures(8, learnable=True))
    optimizer = learnable.configure_optimizers()
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert id(learnable.feature_extractor.offsets) in trained
    assert learnable.classifier.in_features == 8  # the head sized itself from the extractor


@pytest.mark.parametrize("backbone", ["depth_features", "fcn"])
def test_classifier_learns_body_parts(backbone: str) -> None:
    torch.manual_seed(0)
    task = BodyPartClassifier(backbone=backbone, lr=0.01, hidden=(64,))
    task.log = task.log_dict = lambda *args, **kwargs: None  # no trainer attached
    batch = _batch(4)
    optimizer = task.configure_optimizers()
    labelled = batch[LABEL] != IGNORE_LABEL

    def accuracy() -> float:
        preds = task.shared_step(batch, "train")["preds"]
        return (preds[labelled] == batch[LABEL][labelled]).float().mean().item()

    before = accuracy()
    for _ in range(40):
        optimizer.zero_grad()
        task.shared_step(batch, "train")["loss"].backward()
        optimizer.step()
    # 31 parts: chance is ~3%, the largest part ~15% of the pixels
    assert accuracy() > max(0.4, before + 0.2)


def test_part_map_grid_puts_depth_truth_and_prediction_side_by_side() -> None:
    batch = _batch(2)
    preds = torch.where(batch[LABEL] >= 0, batch[LABEL], 5)
    domains = torch.tensor([RENDERED, REAL])
    grid = part_map_grid(batch[IMAGE], batch[LABEL], preds, domains, min_width=W)
    assert grid.shape[0] == 3 and grid.dtype == torch.uint8
    assert grid.shape[2] == 3 * W + 4 and grid.shape[1] == 12 + 2 * (H + 2)
    truth = grid[:, 12 : 12 + H, W + 2 : 2 * W + 2]
    prediction = grid[:, 12 : 12 + H, 2 * W + 4 :]
    y, x = (batch[LABEL][0] >= 0).nonzero()[len((batch[LABEL][0] >= 0).nonzero()) // 2]
    part = int(batch[LABEL][0, y, x])
    assert truth[:, y, x].tolist() == PART_PALETTE[part].tolist()
    # right predictions look like the truth on the body, background stays background
    assert torch.equal(truth[:, y, x], prediction[:, y, x])
    assert prediction[:, 0, -1].tolist() == [0, 0, 0]


def test_fit_logs_per_domain_metrics_joint_map_and_the_part_picture(tmp_path: Path) -> None:
    datamodule = tiny_body_datamodule(H, W)
    task = _small(joint_frames=4)
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=2,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        logger=TensorBoardLogger(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(task, datamodule=datamodule)
    logged = trainer.callback_metrics
    for domain in ("rendered", "real"):
        for name in ("acc", "class_acc", "iou", "lr_confusion"):
            value = float(logged[f"val/{domain}_{name}"])
            assert 0.0 <= value <= 1.0
    assert 0.0 <= float(logged["val/joint_map"]) <= 1.0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next(tmp_path.rglob("events.out.tfevents.*"))), {"images": 0})
    events.Reload()
    picture = events.Images("val/parts")[-1]
    image = np.array(Image.open(io.BytesIO(picture.encoded_image_string)))
    scale = -(-160 // W)  # enlarged to at least 160 pixels per tile
    assert image.shape[1] == scale * (3 * W + 4) and image.shape[0] > 4 * scale * H
    # the three columns hold different things: grey depth, colour parts
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 10
    test = trainer.test(task, datamodule=datamodule, verbose=False)[0]
    assert "test/joint_map" in test and "test/real_class_acc" in test


# -- robustness: bad depth, bf16, resume, DDP -------------------------------------------------


@pytest.mark.parametrize("backbone", ["depth_features", "fcn"])
def test_nan_infinite_and_negative_depth_count_as_no_reading(backbone: str) -> None:
    torch.manual_seed(0)
    task = _small() if backbone == "depth_features" else BodyPartClassifier(backbone="fcn")
    task.eval()
    batch = _batch(3)
    broken = batch[IMAGE].clone()
    person = broken.gt(0).nonzero()
    bad = person[::3]
    broken[bad[:, 0], bad[:, 1], bad[:, 2], bad[:, 3]] = float("nan")
    broken[0, 0, 0, :4] = float("inf")
    broken[1, 0, 0, :4] = -1.0
    broken[2] = 0.0  # a frame with no person at all, but labels still on it
    loss = task.shared_step({**batch, IMAGE: broken}, "val")["loss"]
    # the same as the frames with those pixels unread and unlabelled
    cleaned = batch[IMAGE].clone()
    cleaned[bad[:, 0], bad[:, 1], bad[:, 2], bad[:, 3]] = 0.0
    cleaned[0, 0, 0, :4] = cleaned[1, 0, 0, :4] = cleaned[2] = 0.0
    labels = batch[LABEL].masked_fill(cleaned[:, 0] == 0, IGNORE_LABEL)
    expected = task.shared_step({**batch, IMAGE: cleaned, LABEL: labels}, "val")["loss"]
    assert torch.isfinite(loss) and loss.item() == pytest.approx(expected.item(), rel=1e-5)
    task.train()
    task.shared_step({**batch, IMAGE: broken}, "train")["loss"].backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in task.parameters())
    assert torch.isfinite(task(broken)).all()


def _trainer(tmp_path: Path, **options) -> Trainer:
    settings = {
        "accelerator": "cpu",
        "max_epochs": 1,
        "limit_val_batches": 1,
        "num_sanity_val_steps": 0,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": tmp_path,
    }
    return Trainer(**{**settings, **options})


def test_bf16_mixed_trains_and_a_checkpoint_resumes(tmp_path: Path) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    checkpoints = ModelCheckpoint(tmp_path / "checkpoints", save_last=True)
    task = _small(joint_frames=4, adaptation=_adaptation())
    trainer = _trainer(tmp_path, precision="bf16-mixed", max_steps=2, callbacks=[checkpoints])
    trainer.fit(task, datamodule=tiny_body_datamodule(H, W))
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.is_file()
    saved = torch.load(last, weights_only=False)["state_dict"]
    started: dict = {}

    class AtStart(Callback):
        def on_train_start(self, trainer: Trainer, pl_module: BodyPartClassifier) -> None:
            started["step"] = trainer.global_step
            started["state"] = {k: v.clone() for k, v in pl_module.state_dict().items()}

    resumed = _small(joint_frames=4, adaptation=_adaptation())
    trainer = _trainer(
        tmp_path, precision="bf16-mixed", max_steps=4, max_epochs=-1, callbacks=[AtStart()]
    )
    trainer.fit(resumed, datamodule=tiny_body_datamodule(H, W), ckpt_path=last)
    # it went on from step 2 with the checkpoint's weights, and trained
    assert started["step"] == 2 and trainer.global_step == 4
    assert all(torch.equal(saved[k], started["state"][k]) for k in saved)
    assert not torch.equal(saved["classifier.layers.0.weight"], resumed.classifier.layers[0].weight)
    assert math.isfinite(float(trainer.callback_metrics["val/real_class_acc"]))
    assert math.isfinite(float(trainer.callback_metrics["train/domain_loss"]))


@pytest.mark.parametrize(
    ("stop", "workers", "every_step", "devices"),
    [(2, 0, 1, 1), (12, 1, 1, 1), (14, 1, 1, 1), (2, 1, 0, 1), (4, 0, 1, 2)],
)
def test_a_run_resumed_mid_epoch_sees_the_batches_an_unbroken_run_sees(
    tmp_path: Path, stop: int, workers: int, every_step: int, devices: int
) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    class Fingerprints(Callback):
        """Each process writes what it trained on (DDP processes are forks)."""

        def __init__(self, folder: Path) -> None:
            self.folder, self.seen = folder, []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self.seen.append(float(batch[JOINTS].nansum()))

        def on_train_end(self, trainer, pl_module) -> None:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / f"seen{trainer.global_rank}.json").write_text(json.dumps(self.seen))

    # 12 batches an epoch (6 per process with 2): step 12 ends the first epoch
    lengths = {"train_length": 24, "val_length": 4, "test_length": 4}

    def run(max_steps: int, folder: Path, resume: Path | None = None) -> list[list[float]]:
        # every step, or as the CLI does: when the epoch ends (or max_steps ends it)
        last = ModelCheckpoint(folder, save_last=True, every_n_train_steps=every_step)
        options = {"devices": devices, "strategy": "ddp_fork"} if devices > 1 else {}
        trainer = _trainer(
            folder,
            max_steps=max_steps,
            max_epochs=-1,
            callbacks=[Fingerprints(folder), last],
            **options,
        )
        # a cosine schedule asks for the step count before Lightning restores the loader
        task = _small(joint_frames=0, scheduler="cosine")
        data = tiny_body_datamodule(H, W, lengths=lengths, num_workers=workers)
        with warnings.catch_warnings():
            warnings.filterwarnings("error", ".*dataloader is not resumable.*")
            trainer.fit(task, data, ckpt_path=resume)
        return [json.loads((folder / f"seen{rank}.json").read_text()) for rank in range(devices)]

    steps = 16 if devices == 1 else 8
    unbroken = run(steps, tmp_path / "unbroken")
    assert all(len(set(seen)) == steps for seen in unbroken)
    assert run(stop, tmp_path / "broken") == [seen[:stop] for seen in unbroken]
    resumed = run(steps, tmp_path / "broken", resume=tmp_path / "broken" / "last.ckpt")
    if every_step:
        assert resumed == [seen[stop:] for seen in unbroken]
    else:
        # Lightning counts an epoch that max_steps ended as done and resumes with the next
        # one: it must come whole, in its own order
        assert resumed[0][:4] == unbroken[0][12:16]


@pytest.mark.parametrize("adapted", [False, True])
def test_ddp_two_processes_rendering_on_their_device(tmp_path: Path, adapted: bool) -> None:
    task = _small(joint_frames=4, adaptation=_adaptation() if adapted else None)
    trainer = _trainer(
        tmp_path,
        devices=2,
        strategy="ddp_fork",  # as ddp_spawn, without re-importing torch in each process
        limit_train_batches=2,
        limit_val_batches=2,
    )
    trainer.fit(task, datamodule=tiny_body_datamodule(H, W, render_on="device", num_workers=1))
    assert trainer.world_size == 2
    for name in ("val/rendered_class_acc", "val/real_class_acc", "val/joint_map"):
        assert 0.0 <= float(trainer.callback_metrics[name]) <= 1.0
    if adapted:
        assert 0.0 <= float(trainer.callback_metrics["val/domain_acc"]) <= 1.0


def test_predict_gives_parts_and_joints_of_the_real_test_frames() -> None:
    torch.manual_seed(0)
    task = _small(joint_frames=4).eval()
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    (out,) = trainer.predict(task, datamodule=tiny_body_datamodule(H, W, render_on="device"))
    frames = next(iter(tiny_body_datamodule(H, W).predict_dataloader()))
    assert (frames[DOMAIN] == REAL).all()
    assert torch.equal(out["parts"], task(frames[IMAGE]).argmax(dim=1))
    assert out[JOINTS].shape == (4, 21, 3) and torch.isfinite(out["joint_confidence"]).all()


# -- adaptation on the person's pixels ----------------------------------------------------------


@pytest.mark.parametrize("backbone", ["depth_features", "fcn"])
def test_adaptation_sees_the_person_pixels_of_both_domains_only(backbone: str) -> None:
    """The methods get one sample per foreground pixel (sparse or dense backbone), with its
    frame's domain; the background, which both domains share, never reaches them."""
    seen: list[AdaptationInputs] = []

    class Spy(CORAL):
        def compute(self, inputs, strength):  # noqa: ANN001, ANN202
            seen.append(inputs)
            return super().compute(inputs, strength)

    task = BodyPartClassifier(backbone=backbone, adaptation=[Spy(), MMD()])
    batch = _batch(4)
    batch[DOMAIN] = torch.tensor([RENDERED, RENDERED, REAL, REAL])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a trainer
        output = task.shared_step(batch, "train")
    output["loss"].backward()
    (inputs,) = seen
    person = batch[IMAGE][:, 0] > 0
    features, _, domains = Spy(max_samples=0).samples(inputs)
    assert len(features) == int(person.sum())
    expected = (person.flatten(1).sum(1) * torch.tensor([1, 1, 0, 0])).sum()
    assert int((domains == RENDERED).sum()) == int(expected)
    grads = [p.grad for p in task.feature_extractor.parameters() if p.grad is not None]
    assert backbone == "depth_features" or grads  # the FCN's features learn from it


def test_adapted_body_parts_keep_joints_and_the_part_picture(tmp_path: Path) -> None:
    datamodule = tiny_body_datamodule(H, W)
    task = _small(joint_frames=4, adaptation=_adaptation())
    trainer = _trainer(tmp_path, limit_train_batches=2, limit_val_batches=2)
    trainer.fit(task, datamodule=datamodule)
    logged = trainer.callback_metrics
    for name in ("val/joint_map", "val/domain_acc", "train/domain_loss", "train/mcc_loss"):
        assert name in logged and math.isfinite(float(logged[name])), sorted(logged)


# -- Shotton's decision forest: grown from sampled pixels in `fit` ----------------------------


def _forest(**options) -> BodyPartClassifier:
    options = {"pixels_per_image": 100, "forest_depth": 10, "joint_frames": 4, **options}
    return BodyPartClassifier(
        backbone="forest", feature_extractor=DepthComparisonFeatures(num_features=16), **options
    )


def test_forest_backbone_builds_a_forest_on_the_features_and_refuses_adaptation() -> None:
    task = BodyPartClassifier(backbone="forest", forest_trees=2, forest_depth=7)
    assert isinstance(task.feature_extractor, DepthComparisonFeatures)
    forest = task.classifier
    assert isinstance(forest, DepthForest) and task.grows_forest
    assert (forest.in_features, forest.num_trees, forest.max_depth) == (128, 2, 7)
    assert task.configure_optimizers() is None
    assert not BodyPartClassifier().grows_forest
    with pytest.raises(InputError, match="adaptation: null"):
        BodyPartClassifier(backbone="forest", adaptation=MMD())


def test_forest_samples_up_to_pixels_per_image_labelled_person_pixels_of_each_frame() -> None:
    torch.manual_seed(0)
    task = _forest(pixels_per_image=50)
    batch = _batch(3)
    batch[IMAGE][2] = 0.0  # a frame without a person: it gives no pixel
    batch[LABEL][1, : H // 2] = IGNORE_LABEL  # unknown labels are never sampled
    extractor, asked = task.feature_extractor, []

    def probe(depth: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        asked.append(index)
        return DepthComparisonFeatures.probe(extractor, depth, index)

    extractor.probe = probe
    task._sample_pixels(batch)
    (index,), (features,), (labels,) = asked, task._forest_features, task._forest_labels
    depth = batch[IMAGE][:, 0]
    known = ((depth > 0) & (batch[LABEL] != IGNORE_LABEL)).flatten()
    assert bool(known[index].all()) and len(index.unique()) == len(index)
    per_frame = torch.bincount(index // (H * W), minlength=3)
    available = known.view(3, -1).sum(1)
    assert available[1] < 50 < available[0]  # one frame has fewer than asked for
    assert per_frame.tolist() == available.clamp_max(50).tolist()
    assert torch.equal(features, DepthComparisonFeatures.probe(extractor, depth, index))
    assert torch.equal(labels, batch[LABEL].flatten()[index])
    torch.manual_seed(1)
    task._sample_pixels(batch)  # another draw picks other pixels of the large frame
    assert not torch.equal(asked[1], index)


class _AtValidation(Callback):
    """Records, at each validation, whether the forest was grown."""

    def __init__(self) -> None:
        self.fitted: list[tuple[bool, bool]] = []

    def on_validation_start(self, trainer: Trainer, pl_module: BodyPartClassifier) -> None:
        self.fitted.append((trainer.sanity_checking, pl_module.classifier.fitted))


def test_forest_fit_grows_it_before_validation_and_its_best_checkpoint_reloads(
    tmp_path: Path,
) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    torch.manual_seed(0)
    best = ModelCheckpoint(tmp_path / "ckpt", monitor="val/rendered_class_acc", mode="max")
    spy = _AtValidation()
    task = _forest()
    trainer = _trainer(tmp_path, max_epochs=3, num_sanity_val_steps=1, callbacks=[best, spy])
    # 16 training frames: people of 1.2-2.0 m leave fewer pixels per frame than 8 can teach
    lengths = {"train_length": 16, "val_length": 4, "test_length": 4}
    datamodule = tiny_body_datamodule(H, W, lengths=lengths)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(task, datamodule=datamodule)
    messages = " ".join(str(w.message) for w in caught)
    # no gradient step, no "returned None" warnings, and no "not fitted" one in the sanity check
    assert "returned `None`" not in messages and "not fitted" not in messages
    assert task.classifier.fitted and spy.fitted == [(True, False), (False, True)]
    assert trainer.current_epoch == 1  # nothing left to train after the first epoch
    logged = trainer.callback_metrics
    for name in ("val/rendered_class_acc", "val/real_lr_confusion", "val/joint_map"):
        assert 0.0 <= float(logged[name]) <= 1.0
    # chance is ~3% per class; the grown forest does better even on these few frames
    assert float(logged["val/rendered_acc"]) > 0.1
    # networks built in Python are not hyper-parameters: the same extractor is passed again
    loaded = BodyPartClassifier.load_from_checkpoint(
        best.best_model_path, feature_extractor=DepthComparisonFeatures(num_features=16)
    )
    assert loaded.classifier.fitted
    frames = next(iter(datamodule.val_dataloader()))[IMAGE]
    assert torch.equal(loaded.predict_parts(frames), task.predict_parts(frames))
    assert torch.equal(loaded(frames), task(frames))
    test = trainer.test(loaded, datamodule=datamodule, verbose=False)[0]
    assert 0.0 <= test["test/real_lr_confusion"] <= 1.0 and math.isfinite(test["test/loss"])


def test_forest_is_grown_when_max_steps_ends_the_epoch(tmp_path: Path) -> None:
    task = _forest()
    trainer = _trainer(tmp_path, max_steps=2, max_epochs=-1)
    trainer.fit(task, datamodule=tiny_body_datamodule(H, W))
    assert trainer.global_step == 2 and task.classifier.fitted
    # the pixels of the 2 batches of 4 frames (at most 100 each) were all it was grown on
    assert task.classifier.distribution.numel() > 0 and not task._forest_features


def test_sampled_pixels_are_concatenated_in_order_while_their_parts_are_freed() -> None:
    parts = [torch.randn(count, 4) for count in (3, 0, 5, 2)]
    expected = torch.cat(parts)
    held = list(parts)
    assert torch.equal(_concatenate_emptying(held), expected) and held == []
    assert torch.equal(
        _concatenate_emptying([torch.tensor([1, 2]), torch.tensor([3])]), torch.tensor([1, 2, 3])
    )


def test_forest_refuses_to_train_under_ddp(tmp_path: Path) -> None:
    task = _forest()
    trainer = _trainer(tmp_path, devices=2, strategy="ddp_fork", limit_train_batches=1)
    with pytest.raises(
        Exception, match=r"not under DDP \(2 processes\): fit with --trainer.devices=1"
    ):
        trainer.fit(task, datamodule=tiny_body_datamodule(H, W))


def test_fixed_depth_features_are_adapted_through_the_classifiers_hidden_layer() -> None:
    """Depth comparisons with fixed offsets cannot change; the adversary must reach what
    can: the pixel classifier's hidden layer, and so its predictions."""
    torch.manual_seed(0)
    task = _small(adaptation=[DomainAdversarial(weight=1.0, schedule="constant")])
    assert not any(p.requires_grad for p in task.feature_extractor.parameters())
    assert task.adaptation[0].discriminator.layers[0].in_features == 32  # hidden width
    batch = _batch(4)
    batch[LABEL][:] = IGNORE_LABEL  # no label loss: every gradient is the adversary's
    batch[DOMAIN] = torch.tensor([RENDERED, RENDERED, REAL, REAL])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a trainer
        task.shared_step(batch, "train")["loss"].backward()
    hidden = task.classifier.layers[0].weight.grad
    assert hidden is not None and float(hidden.abs().sum()) > 0
