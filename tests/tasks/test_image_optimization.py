"""TVDenoise and StyleTransfer driven by the Trainer and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CONFIGS
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.plugins import MixedPrecision
from PIL import Image
from torch import nn

from lightning_synth.batch import IMAGE, REFERENCE
from lightning_synth.datamodules.images import (
    ImageOptimizationDataModule,
    StyleTransferDataModule,
    read_image,
)
from lightning_synth.nn.total_variation import total_variation
from lightning_synth.nn.vgg import VGGFeatures
from lightning_synth.tasks import StyleTransfer, TVDenoise
from lightning_synth.tasks.image_optimization import write_image


def _trainer(tmp_path: Path, devices: int = 1, **kwargs) -> Trainer:
    return Trainer(
        accelerator="cpu",
        devices=devices,
        logger=TensorBoardLogger(str(tmp_path), name="run"),
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=1,
        **kwargs,
    )


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (a - b).square().mean()))


def _shapes(size: int = 32) -> np.ndarray:
    """A piecewise-constant picture: a bright square and a darker band on grey."""
    image = np.full((size, size), 0.4)
    image[size // 4 : size // 2, size // 4 : 3 * size // 4] = 0.9
    image[3 * size // 4 :, :] = 0.1
    return image


class _Recorder(Callback):
    def __init__(self) -> None:
        self.metrics: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.metrics.append({k: float(v) for k, v in trainer.callback_metrics.items()})


class _TinyFeatures(nn.Module):
    """A stand-in for VGG: any module that returns named activations."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 16, 3, padding=1, stride=2)
        for conv in (self.a, self.b):
            conv.weight.data = torch.randn(conv.weight.shape, generator=generator) * 0.3

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        a = torch.relu(self.a(images))
        return {"a": a, "b": torch.relu(self.b(a))}


def test_tv_denoise_fit_gray_16_bit_and_colour(tmp_path: Path) -> None:
    clean_gray = _shapes()
    gray_file = tmp_path / "gray16.png"
    Image.fromarray((clean_gray * 65535).astype(np.uint16)).save(gray_file)
    colour = np.stack([_shapes(), _shapes()[::-1], np.full((32, 32), 0.5)], axis=-1)
    colour_file = tmp_path / "colour.png"
    Image.fromarray((colour * 255).round().astype(np.uint8)).save(colour_file)
    data = ImageOptimizationDataModule(images=[str(gray_file), str(colour_file)], noise_sigma=0.1)
    model = TVDenoise(weight=0.1, log_images_every_n_steps=5)
    trainer = _trainer(tmp_path, max_steps=300)
    trainer.fit(model, data)

    assert model.converged_at is not None and trainer.global_step < 300  # certified, stopped
    assert model.tol == pytest.approx(0.1 / 16)  # unset: scaled with the weight
    assert float(trainer.callback_metrics["train/certified_rms"]) <= model.tol
    batch = data.fit_batch()
    noisy_psnr = _psnr(batch[IMAGE], batch[REFERENCE])
    metrics = trainer.callback_metrics
    assert float(metrics["train/psnr"]) > noisy_psnr + 4
    assert 0.5 < model.final_quality["ssim"] <= 1
    assert model.final_quality["noisy_psnr"] == pytest.approx(noisy_psnr, abs=0.01)
    initial = float(model.objective(batch[IMAGE], batch[IMAGE]).mean())
    # Vectorial TV (the default) of the noisy start: 0.52 of it remains at the optimum.
    assert float(metrics["train/objective"]) < 0.6 * initial
    # The results are written, one file per image, and are cleaner than the input.
    results = Path(trainer.log_dir) / "results"
    written = read_image(str(results / "gray16.png"))
    assert written.shape == (3, 32, 32)  # gray next to colour: RGB
    assert _psnr(written[:1], batch[REFERENCE][0, :1]) > noisy_psnr + 4
    assert (results / "colour.png").is_file()
    # Progress and result images reach TensorBoard.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(trainer.log_dir).Reload()
    assert {"train/noisy", "train/reference", "train/result"} <= set(events.Tags()["images"])
    assert {"train/objective", "train/psnr", "train/ssim"} <= set(events.Tags()["scalars"])

    # test: each image denoised from scratch, with PSNR/SSIM against the reference
    (result,) = trainer.test(model, data, verbose=False)
    assert result["test/psnr"] > result["test/noisy_psnr"] + 4
    assert result["test/psnr"] == pytest.approx(float(metrics["train/psnr"]), abs=0.1)


@pytest.mark.parametrize("task", ["tv", "style"])
def test_lbfgs_under_mixed_precision_says_what_to_do(task: str, tmp_path: Path) -> None:
    if task == "tv":
        model = TVDenoise(optimizer="lbfgs")
        data = ImageOptimizationDataModule(images=["skimage:camera"], size=16)
    else:
        model = StyleTransfer(
            feature_network=_TinyFeatures(), content_layers=["b"], style_layers=["a"]
        )
        data = StyleTransferDataModule(size=16)
    trainer = _trainer(tmp_path, max_steps=2, precision="bf16-mixed")
    with pytest.raises(ValueError, match=r"lbfgs.*optimizer=adam.*precision=32-true"):
        trainer.fit(model, data)


def test_style_transfer_sweep_trades_content_for_style(tmp_path: Path) -> None:
    model = StyleTransfer(
        feature_network=_TinyFeatures(),
        content_layers=["b"],
        style_layers=["a", "b"],
        style_weight_sweep=[1.0, 1000.0],
        log_images_every_n_steps=0,
    )
    data = StyleTransferDataModule(size=24)
    recorder = _Recorder()
    trainer = _trainer(tmp_path, max_steps=25, callbacks=[recorder])
    trainer.fit(model, data)

    first, last = recorder.metrics[0], recorder.metrics[-1]
    assert first["train/content"] == pytest.approx(0.0, abs=1e-6)  # starts at the content
    assert last["train/style"] < 0.5 * first["train/style"]
    model.eval()
    with torch.no_grad():
        terms = model.loss_terms(data.fit_batch())
    # More style weight: closer in style, further in content.
    assert float(terms["style"][1]) < float(terms["style"][0])
    assert float(terms["content"][1]) > float(terms["content"][0])
    results = Path(trainer.log_dir) / "results"
    assert sorted(p.name for p in results.iterdir()) == [
        "astronaut_style1.png",
        "astronaut_style1000.png",
    ]


def test_style_transfer_adam_bf16_mixed_on_cpu(tmp_path: Path) -> None:
    model = StyleTransfer(
        feature_network=_TinyFeatures(),
        content_layers=["b"],
        style_layers=["a", "b"],
        optimizer="adam",
        lr=0.05,
        tv_weight=0.1,
    )
    recorder = _Recorder()
    trainer = _trainer(tmp_path, max_steps=15, precision="bf16-mixed", callbacks=[recorder])
    trainer.fit(model, StyleTransferDataModule(size=24))
    losses = [m["train/loss"] for m in recorder.metrics]
    assert all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0]
    assert "train/tv" in recorder.metrics[-1]
    assert model.pixels.dtype == torch.float32  # the image itself stays in full precision


def test_lbfgs_iterations_per_step_are_the_same_iterations(tmp_path: Path) -> None:
    def fit(steps: int, iterations_per_step: int) -> StyleTransfer:
        torch.manual_seed(0)  # the feature network's biases
        model = StyleTransfer(
            feature_network=_TinyFeatures(),
            content_layers=["b"],
            style_layers=["a", "b"],
            iterations_per_step=iterations_per_step,
            log_images_every_n_steps=0,
        )
        trainer = _trainer(tmp_path / f"{steps}x{iterations_per_step}", max_steps=steps)
        trainer.fit(model, StyleTransferDataModule(size=16))
        assert trainer.global_step == steps
        return model

    # L-BFGS keeps its history within a step as across steps: the same six iterates.
    one_at_a_time, three_per_step = fit(6, 1), fit(2, 3)
    torch.testing.assert_close(three_per_step.pixels, one_at_a_time.pixels, atol=1e-5, rtol=0)
    assert not torch.allclose(fit(2, 1).pixels, one_at_a_time.pixels, atol=1e-3)
    with pytest.raises(ValueError, match="iterations_per_step"):
        StyleTransfer(feature_network=_TinyFeatures(), iterations_per_step=0)
    with pytest.raises(ValueError, match="L-BFGS's max_iter"):
        StyleTransfer(feature_network=_TinyFeatures(), optimizer="adam", iterations_per_step=5)


def test_style_checkpoints_leave_out_rebuildable_vgg_weights(tmp_path: Path) -> None:
    layers = ["conv1_1", "conv2_1"]
    weights_file = tmp_path / "vgg_part.pth"
    source = VGGFeatures(weights="random", layers=layers)
    torch.save({f"features.{k}": v for k, v in source.features.state_dict().items()}, weights_file)

    def task(weights: str) -> StyleTransfer:
        return StyleTransfer(
            feature_network=VGGFeatures(weights=weights, layers=layers),
            content_layers=["conv2_1"],
            style_layers=layers,
            optimizer="adam",
        )

    for weights, stored in ((str(weights_file), False), ("random", True)):
        model = task(weights)
        trainer = _trainer(tmp_path, max_steps=2)
        trainer.fit(model, StyleTransferDataModule(size=16))
        path = tmp_path / f"{stored}.ckpt"
        trainer.save_checkpoint(path)
        saved = torch.load(path, weights_only=False)
        has_features = any(key.startswith("feature_network.") for key in saved["state_dict"])
        assert has_features == stored  # random weights cannot be rebuilt: they stay
        loaded = StyleTransfer.load_from_checkpoint(
            path, feature_network=VGGFeatures(weights="random", layers=layers)
        ) if stored else StyleTransfer.load_from_checkpoint(
            path, feature_network=VGGFeatures(weights=weights, layers=layers)
        )  # fmt: skip
        assert torch.equal(loaded.pixels, model.pixels)
        for key, value in model.feature_network.state_dict().items():
            assert torch.equal(loaded.feature_network.state_dict()[key], value), key
    with pytest.raises(ValueError, match="VGGFeatures"):
        StyleTransfer.load_from_checkpoint(
            tmp_path / "False.ckpt", feature_network=_TinyFeatures(), content_layers=["b"],
            style_layers=["a", "b"],
        )  # fmt: skip


def test_feature_network_must_name_its_features(tmp_path: Path) -> None:
    model = StyleTransfer(feature_network=nn.Conv2d(3, 4, 3), optimizer="adam")
    with pytest.raises(TypeError, match="dict of named activations"):
        _trainer(tmp_path, max_steps=1).fit(model, StyleTransferDataModule(size=16))


def test_predict_denoises_a_folder(tmp_path: Path, run_cli) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    generator = np.random.default_rng(0)
    for name, size in (("a", (24, 32)), ("b", (20, 20)), ("c", (16, 28))):
        noisy = np.clip(_shapes(32)[: size[0], : size[1]] + generator.normal(0, 0.1, size), 0, 1)
        Image.fromarray((noisy * 255).astype(np.uint8)).save(folder / f"{name}.png")
    run_dir = run_cli(
        "predict",
        f"--config={CONFIGS / 'tv_denoise.yaml'}",
        f"--data.init_args.images=[{folder}]",
        "--data.init_args.noise_sigma=0",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
    )
    for name in ("a", "b", "c"):
        noisy = read_image(str(folder / f"{name}.png"))
        denoised = read_image(str(run_dir / "denoised" / f"{name}.png"))
        assert denoised.shape[-2:] == noisy.shape[-2:]
        assert float(total_variation(denoised[None])) < 0.5 * float(total_variation(noisy[None]))
    predictions = torch.load(run_dir / "predictions-rank0.pt")
    assert predictions["objective"].shape == (3,)


def test_16_bit_results_round_trip(tmp_path: Path) -> None:
    image = torch.rand(3, 5, 7)
    write_image(tmp_path / "colour.png", image, bit_depth=16)
    torch.testing.assert_close(read_image(str(tmp_path / "colour.png")), image, atol=1e-5, rtol=0)
    write_image(tmp_path / "gray.png", image[:1], bit_depth=16)
    assert Image.open(tmp_path / "gray.png").mode.startswith("I;16")
    torch.testing.assert_close(read_image(str(tmp_path / "gray.png")), image[:1], atol=1e-5, rtol=0)


def test_tv_denoise_under_ddp_writes_its_results_once(tmp_path: Path) -> None:
    data = ImageOptimizationDataModule(images=["skimage:camera"], noise_sigma=0.1, size=24)
    model = TVDenoise(weight=0.1, log_images_every_n_steps=0)
    trainer = _trainer(tmp_path, max_steps=5, devices=2, strategy="ddp_spawn")
    trainer.fit(model, data)
    results = list((tmp_path / "run").glob("version_*/results/*.png"))
    assert [p.name for p in results] == ["camera.png"]
    assert float(trainer.callback_metrics["train/objective"]) > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="16-mixed needs CUDA")
@pytest.mark.parametrize("optimizer", ["chambolle_pock", "adam"])
def test_tv_denoise_16_mixed_on_gpu(optimizer: str, tmp_path: Path) -> None:
    # The Chambolle-Pock step uses no gradients; it must still pass Lightning's GradScaler.
    data = ImageOptimizationDataModule(images=["skimage:camera"], noise_sigma=0.1, size=64)
    model = TVDenoise(weight=0.1, optimizer=optimizer, log_images_every_n_steps=0)
    trainer = Trainer(
        accelerator="gpu",
        devices=1,
        precision="16-mixed",
        max_steps=30,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    trainer.fit(model, data)
    noisy = data.fit_batch()[IMAGE]
    initial = float(model.objective(noisy, noisy).mean())
    assert float(trainer.callback_metrics["train/objective"]) < 0.7 * initial


@pytest.mark.parametrize("optimizer", ["chambolle_pock", "adam"])
def test_tv_denoise_runs_under_a_real_grad_scaler_on_cpu(optimizer: str, tmp_path: Path) -> None:
    # The GradScaler of 16-mixed, on the CPU: the gradient-free Chambolle-Pock step must pass
    # its unscale and inf checks although no loss was ever scaled (this failed on a GPU).
    data = ImageOptimizationDataModule(images=["skimage:camera"], noise_sigma=0.1, size=32)
    model = TVDenoise(weight=0.1, optimizer=optimizer, log_images_every_n_steps=0)
    scaler = torch.amp.GradScaler("cpu")
    trainer = _trainer(
        tmp_path, max_steps=20, plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)]
    )
    trainer.fit(model, data)
    noisy = data.fit_batch()[IMAGE]
    initial = float(model.objective(noisy, noisy).mean())
    assert float(trainer.callback_metrics["train/objective"]) < 0.8 * initial


class _WrittenMetrics(Logger):
    """Records what Lightning hands the logger, and when."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[tuple[int, set[str]]] = []

    @property
    def name(self) -> str:
        return "written"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.written.append((step, set(metrics)))


def test_the_parts_are_logged_whenever_the_logger_writes(tmp_path: Path) -> None:
    # 4 batches per epoch, logs every 3rd batch, 10 steps in all.
    data = ImageOptimizationDataModule(
        images=["skimage:camera"], noise_sigma=0.1, size=16, steps_per_epoch=4
    )
    model = TVDenoise(weight=0.1, optimizer="adam", log_images_every_n_steps=0)
    logger = _WrittenMetrics()

    class Asked(Callback):
        def __init__(self) -> None:
            self.steps: list[int] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if pl_module.writes_logs_now():
                self.steps.append(trainer.global_step)

    asked = Asked()
    trainer = Trainer(
        accelerator="cpu",
        logger=logger,
        log_every_n_steps=3,
        max_steps=10,
        callbacks=[asked],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, data)
    # Lightning's rule (every 3rd batch), the epochs' last batches (4, 8) and the last step
    assert asked.steps == [3, 4, 6, 8, 9, 10]
    written = [(step, names) for step, names in logger.written if "train/objective" in names]
    assert [step + 1 for step, _ in written] == [3, 6, 9]  # Lightning's steps count from 0
    assert all("train/psnr" in names for _, names in written)
    final = model._quality(
        model.current_images(), data.fit_batch()[IMAGE], data.fit_batch()[REFERENCE]
    )
    assert float(trainer.callback_metrics["train/psnr"]) == pytest.approx(final["psnr"], abs=1e-3)


def test_the_images_come_from_a_datamodule(tmp_path: Path) -> None:
    data = ImageOptimizationDataModule(images=["skimage:camera"], size=16)
    with pytest.raises(RuntimeError, match="pass the data as a LightningDataModule"):
        _trainer(tmp_path, max_steps=1).fit(TVDenoise(), train_dataloaders=data.train_dataloader())
