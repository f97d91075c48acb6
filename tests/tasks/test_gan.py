"""GAN task: alternating steps, schedule, conditioning, EMA, resume, precision, DDP, logging."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins import MixedPrecision
from torch import nn
from torch.utils.data import Dataset

from lightning_synth.datamodules import MixedDomainDataModule
from lightning_synth.datamodules.sources import DomainSource
from lightning_synth.nn import load_generator
from lightning_synth.tasks import GAN, ImageClassifier
from lightning_synth.tasks.gan import load_feature_network

SIZE = 16


class _Items(Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])


class Squares(DomainSource):
    """Class ``k`` of 4: a bright square in quadrant ``k`` on dim noise."""

    def __init__(self, seed: int = 0, length: int = 64) -> None:
        generator = torch.Generator().manual_seed(seed)
        labels = torch.arange(length) % 4
        images = torch.rand(length, 1, SIZE, SIZE, generator=generator) * 0.2
        for i, label in enumerate(labels.tolist()):
            row, col = divmod(label, 2)
            images[i, 0, 2 + 8 * row : 6 + 8 * row, 2 + 8 * col : 6 + 8 * col] += 0.7
        self._data = _Items(images.clamp(0, 1), labels)

    @property
    def num_classes(self) -> int:
        return 4

    def dataset(self, stage: str) -> Dataset:
        return self._data


def squares_data(**overrides) -> MixedDomainDataModule:
    options = {"image_size": SIZE, "channels": 1, "batch_size": 8, "real_fraction": 1.0}
    return MixedDomainDataModule(Squares(0), Squares(1), num_workers=0, **(options | overrides))


def tiny_gan(**overrides) -> GAN:
    options = {
        "latent_dim": 8,
        "channels": 1,
        "image_size": SIZE,
        "num_classes": 4,
        "generator_width": 8,
        "discriminator_width": 8,
        "log_images_every_n_steps": 0,
    }
    return GAN(**(options | overrides))


def trainer(tmp_path: Path, **overrides) -> Trainer:
    options = {
        "accelerator": "cpu",
        "devices": 1,
        "max_steps": 4,
        "limit_val_batches": 0,
        "num_sanity_val_steps": 0,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": tmp_path,
    }
    return Trainer(**(options | overrides))


def _params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _changed(before: list[torch.Tensor], module: nn.Module) -> bool:
    return any(not torch.equal(b, p) for b, p in zip(before, module.parameters(), strict=True))


class _StepRecorder(Callback):
    """Snapshots both networks before every optimizer step and when training ends; nothing
    but the steps changes the weights in between, so consecutive snapshots show what each
    step changed."""

    def __init__(self) -> None:
        self.snapshots: list[tuple[str, list[torch.Tensor], list[torch.Tensor]]] = []

    def _snap(self, which: str, pl_module) -> None:
        self.snapshots.append(
            (which, _params(pl_module.generator), _params(pl_module.discriminator))
        )

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self._snap("g" if optimizer is trainer.optimizers[0] else "d", pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._snap("end", pl_module)

    def changes(self) -> list[tuple[str, bool, bool]]:
        """(which step, G changed, D changed) for every step."""
        return [
            (which, any(not torch.equal(a, b) for a, b in zip(g, g2, strict=True)),
             any(not torch.equal(a, b) for a, b in zip(d, d2, strict=True)))
            for (which, g, d), (_, g2, d2) in zip(self.snapshots, self.snapshots[1:], strict=False)
        ]  # fmt: skip


def test_each_step_changes_its_own_network_only(tmp_path: Path) -> None:
    model = tiny_gan()
    recorder = _StepRecorder()
    trainer(tmp_path, max_steps=4, callbacks=[recorder]).fit(model, squares_data())
    assert recorder.changes() == [("d", False, True), ("g", True, False)] * 2


@pytest.mark.parametrize(("k", "max_steps", "d_steps", "g_steps"), [(1, 6, 3, 3), (3, 8, 6, 2)])
def test_schedule_and_global_step(
    tmp_path: Path, k: int, max_steps: int, d_steps: int, g_steps: int
) -> None:
    model = tiny_gan(d_steps_per_g_step=k)
    run = trainer(tmp_path, max_steps=max_steps)
    run.fit(model, squares_data())
    # global_step counts every optimizer step: k batches make k D steps and 1 G step
    assert run.global_step == max_steps == d_steps + g_steps
    assert (model.discriminator_steps, model.generator_steps) == (d_steps, g_steps)
    g_opt, d_opt = run.optimizers
    assert int(next(iter(d_opt.state.values()))["step"]) == d_steps
    assert int(next(iter(g_opt.state.values()))["step"]) == g_steps
    assert int(model.generator_ema.num_updates) == g_steps  # the EMA follows each G step


@pytest.mark.parametrize("loss", ["hinge", "wgan_gp"])
def test_losses_and_penalties_train_and_log(tmp_path: Path, loss: str) -> None:
    model = tiny_gan(loss=loss, r1_gamma=1.0, spectral_norm=loss == "hinge")
    run = trainer(tmp_path, max_steps=2)
    run.fit(model, squares_data())
    logged = run.callback_metrics
    for name in ("train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "train/r1"):
        assert torch.isfinite(logged[name]), name
    assert ("train/gp" in logged) == (loss == "wgan_gp")
    norms = {type(m).__name__ for m in model.discriminator.modules()}
    assert ("GroupNorm" in norms) == (loss == "wgan_gp")  # no batch norm under a per-sample GP
    assert "BatchNorm2d" not in norms


def test_auxiliary_class_loss(tmp_path: Path) -> None:
    model = tiny_gan(class_loss_weight=1.0)
    assert model.discriminator.classifier is not None
    run = trainer(tmp_path, max_steps=2)
    run.fit(model, squares_data())
    for name in ("train/d_class_loss", "train/g_class_loss"):
        # cross-entropy of 4 classes starts near log(4)
        assert 0.5 < float(run.callback_metrics[name]) < 3.0, name
    with pytest.raises(ValueError, match="only with num_classes"):
        tiny_gan(num_classes=None, class_loss_weight=1.0)
    with pytest.raises(ValueError, match="scores_and_class_logits"):
        tiny_gan(class_loss_weight=1.0, discriminator=nn.Linear(2, 1))


def test_conditional_gan_needs_labels_and_the_right_image_shape(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs a class label"):
        trainer(tmp_path, max_steps=2).fit(
            tiny_gan(), squares_data(real_fraction=0.5, hide_real_labels=True)
        )
    with pytest.raises(ValueError, match="set model.init_args.image_size: 16"):
        trainer(tmp_path).fit(tiny_gan(image_size=32), squares_data())
    with pytest.raises(ValueError, match="no rendered images"):
        trainer(tmp_path).fit(tiny_gan(train_on="rendered"), squares_data())


def test_train_on_picks_the_domain_of_the_batch(tmp_path: Path) -> None:
    seen: list[int] = []
    model = tiny_gan(num_classes=None)
    original = model.discriminator.forward
    model.discriminator.forward = lambda x: seen.append(len(x)) or original(x)  # type: ignore[method-assign]
    trainer(tmp_path, max_steps=2).fit(model, squares_data(real_fraction=0.25))
    assert seen[0] == 2  # the 2 real images of a batch of 8; the 6 rendered are not used


@pytest.mark.filterwarnings("ignore:The dirpath has changed")  # a fresh folder for the resumed run
def test_resume_restores_both_optimizers_and_the_ema(tmp_path: Path) -> None:
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    first = tiny_gan()
    trainer(tmp_path, max_steps=4, enable_checkpointing=True, callbacks=[checkpoints]).fit(
        first, squares_data()
    )
    last = tmp_path / "ckpt" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert len(saved["optimizer_states"]) == 2

    class Probe(Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            self.optimizers = [copy.deepcopy(opt.state_dict()) for opt in trainer.optimizers]
            self.ema = {k: v.clone() for k, v in pl_module.generator_ema.state_dict().items()}
            self.steps = (pl_module.generator_steps, trainer.global_step)

    probe = Probe()
    second = tiny_gan()
    resumed = ModelCheckpoint(dirpath=tmp_path / "resumed")
    trainer(tmp_path, max_steps=6, enable_checkpointing=True, callbacks=[probe, resumed]).fit(
        second, squares_data(), ckpt_path=str(last)
    )
    for restored, stored in zip(probe.optimizers, saved["optimizer_states"], strict=True):
        assert restored["state"].keys() == stored["state"].keys() and restored["state"]
        for key, state in stored["state"].items():
            for name, value in state.items():
                assert torch.equal(restored["state"][key][name], value), (key, name)
    for key, value in probe.ema.items():
        assert torch.equal(value, saved["state_dict"][f"generator_ema.{key}"]), key
    assert probe.steps == (2, 4)
    assert second.generator_steps == 3  # and training went on from there


def test_bf16_mixed_precision_trains(tmp_path: Path) -> None:
    model = tiny_gan(loss="wgan_gp")
    before_g, before_d = _params(model.generator), _params(model.discriminator)
    run = trainer(tmp_path, max_steps=4, precision="bf16-mixed")
    run.fit(model, squares_data())
    assert _changed(before_g, model.generator) and _changed(before_d, model.discriminator)
    for name in ("train/d_loss", "train/g_loss", "train/gp"):
        assert torch.isfinite(run.callback_metrics[name])
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())


def _adam_steps(optimizer: torch.optim.Optimizer) -> int:
    return max((int(s["step"]) for s in optimizer.state.values()), default=0)


def test_one_grad_scaler_serves_both_optimizers_and_skips_no_step_forever(tmp_path: Path) -> None:
    # Real float16 autocast and a real GradScaler, on the CPU: a scale of 2^30 makes the
    # first scaled backward passes overflow, so steps are skipped and the scale halves
    # until both networks step again.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**30)
    model = tiny_gan()
    run = trainer(
        tmp_path, max_steps=60, plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)]
    )
    run.fit(model, squares_data())
    g_opt, d_opt = run.optimizers
    g_taken, d_taken = _adam_steps(g_opt), _adam_steps(d_opt)
    assert scaler.get_scale() < 2.0**20  # overflows were seen and the scale came down
    assert 0 < g_taken < 30 and 0 < d_taken < 30  # some steps were skipped...
    assert g_taken >= 10 and d_taken >= 10  # ...but both networks kept stepping afterwards
    assert torch.isfinite(torch.cat([p.flatten() for p in model.parameters()])).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="16-mixed needs CUDA")
def test_16_mixed_on_cuda(tmp_path: Path) -> None:
    model = tiny_gan()
    run = trainer(tmp_path, accelerator="cuda", max_steps=40, precision="16-mixed")
    run.fit(model, squares_data())
    g_opt, d_opt = run.optimizers
    assert _adam_steps(g_opt) > 10 and _adam_steps(d_opt) > 10
    assert torch.isfinite(run.callback_metrics["train/g_loss"])


class _WeightsPerRank(Callback):
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_train_end(self, trainer, pl_module) -> None:
        torch.save(
            {name: p.detach().cpu() for name, p in pl_module.named_parameters()},
            self.folder / f"rank{trainer.global_rank}.pt",
        )


def test_ddp_spawn_two_processes_keeps_both_networks_in_sync(tmp_path: Path) -> None:
    # Lightning's registered strategy with find_unused_parameters on (what the configs
    # tell users to pass); without it the first D step would use unsynchronised gradients
    # and the second would fail.
    model = tiny_gan()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    run = trainer(
        tmp_path,
        devices=2,
        strategy="ddp_spawn_find_unused_parameters_true",
        max_steps=4,
        callbacks=[_WeightsPerRank(tmp_path)],
    )
    run.fit(model, squares_data())
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys() == before.keys()
    for name in ranks[0]:
        # each rank saw other images, so equal weights mean averaged gradients
        assert torch.equal(ranks[0][name], ranks[1][name]), name
    assert not torch.equal(ranks[0]["generator.convs.0.weight"], before["generator.convs.0.weight"])
    assert not torch.equal(
        ranks[0]["discriminator.head.weight"], before["discriminator.head.weight"]
    )


def test_plain_ddp_stops_at_the_start_and_says_what_to_pass(tmp_path: Path) -> None:
    # One in-process DDP rank is enough to see the check (the two-process run above takes
    # seconds to spawn); the process group and the variables DDP sets are cleared after.
    environ = dict(os.environ)
    model = tiny_gan()
    before = _params(model.discriminator)
    try:
        with pytest.raises(RuntimeError, match="GAN under DDP needs find_unused_parameters"):
            trainer(tmp_path, strategy="ddp", max_steps=2).fit(model, squares_data())
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        os.environ.clear()
        os.environ.update(environ)
    assert not _changed(before, model.discriminator)  # stopped before any step


def test_fixed_noise_grid_reaches_tensorboard(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(tmp_path, name="gan")
    model = tiny_gan(log_images_every_n_steps=4, grid_columns=5)
    trainer(tmp_path, max_steps=8, logger=logger, log_every_n_steps=1).fit(model, squares_data())
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0})
    events.Reload()
    grids = events.Images("train/samples")
    assert [g.step for g in grids] == [4, 8]
    # 4 class rows of 5 images of 16 px with 2 px padding
    assert (grids[0].height, grids[0].width) == (4 * 18 + 2, 5 * 18 + 2)
    scalars = set(events.Tags()["scalars"])
    assert {"train/d_loss", "train/g_loss", "train/d_real", "train/d_fake"} <= scalars
    grid = model.sample_grid()
    assert torch.equal(grid, model.sample_grid())  # fixed noise, eval mode: the same grid

    def tile(row: int, col: int) -> torch.Tensor:
        return grid[:, 2 + 18 * row : 18 + 18 * row, 2 + 18 * col : 18 + 18 * col]

    assert not torch.equal(tile(0, 0), tile(1, 0))  # rows: classes
    assert not torch.equal(tile(0, 0), tile(0, 1))  # columns: noise vectors


def test_fid_and_kid_from_a_classifier_checkpoint(tmp_path: Path) -> None:
    classifier = ImageClassifier(num_classes=4, in_channels=1, image_size=SIZE, log_images=False)
    fit = trainer(tmp_path, max_steps=2)
    fit.fit(classifier, squares_data())
    path = tmp_path / "classifier.ckpt"
    fit.save_checkpoint(path)
    features = load_feature_network(str(path))
    images = torch.rand(3, 1, SIZE, SIZE)
    classifier.eval()
    assert torch.allclose(features(images), classifier.features(images))

    model = tiny_gan(feature_checkpoint=str(path), kid_subset_size=8)
    assert model.monitor == "val/fid" and tiny_gan().monitor is None
    run = trainer(tmp_path, max_steps=-1, max_epochs=1, limit_train_batches=1, limit_val_batches=2)
    run.fit(model, squares_data())
    assert run.callback_metrics["val/fid"] >= 0 and torch.isfinite(run.callback_metrics["val/kid"])
    assert "val/d_real" in run.callback_metrics
    # the feature network stays out of the checkpoint (it may be big, and is reloaded by path)
    assert {key.split(".")[0] for key in model.state_dict()} == {
        "generator", "discriminator", "generator_ema",
        "num_d_steps", "num_g_steps", "grid_noise", "grid_labels",
    }  # fmt: skip


def test_checkpoint_gives_back_the_sampling_generator(tmp_path: Path) -> None:
    model = tiny_gan()
    run = trainer(tmp_path, max_steps=4)
    run.fit(model, squares_data())
    path = tmp_path / "gan.ckpt"
    run.save_checkpoint(path)
    loaded = load_generator(path)
    assert loaded.ema and (loaded.latent_dim, loaded.num_classes, loaded.image_size) == (8, 4, SIZE)
    z, labels = torch.randn(6, 8), torch.arange(6) % 4
    assert torch.allclose(loaded.sample(z, labels), model.sample(6, labels, z=z))
    raw = load_generator(path, use_ema=False)
    assert not torch.allclose(raw.sample(z, labels), loaded.sample(z, labels))
    reloaded = GAN.load_from_checkpoint(path)
    assert torch.equal(reloaded.grid_noise, model.grid_noise)

    injected = tiny_gan(
        generator=nn.Sequential(nn.Linear(8, 256), nn.Unflatten(1, (1, 16, 16)), nn.Tanh()),
        num_classes=None,
    )
    run = trainer(tmp_path, max_steps=2)
    run.fit(injected, squares_data())
    run.save_checkpoint(tmp_path / "injected.ckpt")
    with pytest.raises(ValueError, match="pass the same network"):
        load_generator(tmp_path / "injected.ckpt")
    network = nn.Sequential(nn.Linear(8, 256), nn.Unflatten(1, (1, 16, 16)), nn.Tanh())
    assert load_generator(tmp_path / "injected.ckpt", generator=network).sample(z).shape == (
        6,
        1,
        SIZE,
        SIZE,
    )


def test_predict_and_sample() -> None:
    model = tiny_gan()
    batch = next(iter(squares_data().predict_dataloader()))
    out = model.predict_step(batch, 0)
    assert out["image"].shape == (8, 1, SIZE, SIZE) and torch.equal(out["label"], batch["label"])
    assert 0 <= float(out["image"].min()) and float(out["image"].max()) <= 1
    model.train()
    samples = model.sample(5)
    assert samples.shape == (5, 1, SIZE, SIZE)
    assert model.generator_ema.training  # sampling in eval mode left the mode as it was
