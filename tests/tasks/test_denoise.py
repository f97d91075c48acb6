"""Tests of the ``Denoiser`` task, its networks and its two configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import CONFIGS, FAST_TRAINER
from lightning.pytorch import Trainer
from PIL import Image

from lightning_synth.adaptation import CORAL
from lightning_synth.batch import DOMAIN, IMAGE, LABEL, REAL, REFERENCE, VALID
from lightning_synth.datamodules.noisy_images import NoisyImageDataModule, NoisyPhotographs
from lightning_synth.errors import InputError
from lightning_synth.image_io import dihedral
from lightning_synth.nn.dct_shrinkage import DCTShrinkage
from lightning_synth.nn.denoisers import (
    DnCNN,
    UNetDenoiser,
    neighbor2neighbor_loss,
    neighbor_indices,
    noise2self_loss,
    tiled,
)
from lightning_synth.rendering.noise import GaussianNoise
from lightning_synth.tasks import Denoiser

#: Overrides that shrink the denoising configs to a test's size.
DENOISE_SHRINK = [
    "--data.init_args.clean=[skimage:camera]",
    "--data.init_args.patch_size=16",
    "--data.init_args.train_length=24",
    "--data.init_args.batch_size=4",
]
_NETWORK = "--model.init_args.network.init_args."
#: The network's own size, per config.
NETWORK_SHRINK = {
    "denoise_gaussian.yaml": [f"{_NETWORK}width=8", f"{_NETWORK}depth=3"],
    "denoise_camera.yaml": [f"{_NETWORK}width=8", f"{_NETWORK}depth=3"],
    "denoise_noisier2noise.yaml": [f"{_NETWORK}width=8", f"{_NETWORK}levels=1"],
    "denoise_pseudo_clean.yaml": [f"{_NETWORK}width=8", f"{_NETWORK}levels=1"],
    "denoise_dct.yaml": [f"{_NETWORK}block=4", f"{_NETWORK}stages=1"],
}


def _smooth_image(path: Path, height: int, width: int, seed: int, gray: bool = False) -> None:
    rng = np.random.default_rng(seed)
    coarse = rng.random((3, 4, 1 if gray else 3))
    image = Image.fromarray((coarse * 255).astype(np.uint8).squeeze()).resize((width, height))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def _data(tmp_path: Path, **options: object) -> NoisyImageDataModule:
    for index in range(3):
        _smooth_image(tmp_path / "clean" / f"c{index}.png", 40, 48, seed=index)
    for index in range(2):  # real pairs: the reference plus some noise
        _smooth_image(tmp_path / "real" / f"s_{index}_mean.png", 30, 34, seed=10 + index)
        clean = np.asarray(Image.open(tmp_path / "real" / f"s_{index}_mean.png"), dtype=float)
        noisy = clean + np.random.default_rng(index).normal(0, 20, clean.shape)
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(
            tmp_path / "real" / f"s_{index}_real.png"
        )
    settings: dict[str, object] = {
        "clean": [str(tmp_path / "clean")],
        "noise": GaussianNoise(sigma=0.1),
        "real": NoisyPhotographs(root=str(tmp_path / "real")),
        "patch_size": 16,
        "train_length": 64,
        "batch_size": 4,
        "real_fraction": 0.5,
    }
    return NoisyImageDataModule(**{**settings, **options})  # type: ignore[arg-type]


def _trainer(tmp_path: Path, **options: object) -> Trainer:
    settings: dict[str, object] = {
        "accelerator": "cpu",
        "devices": 1,
        "max_steps": 3,
        "limit_val_batches": 5,
        "num_sanity_val_steps": 0,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": tmp_path,
    }
    return Trainer(**{**settings, **options})  # type: ignore[arg-type]


def _tiny(**options: object) -> Denoiser:
    settings: dict[str, object] = {"network": DnCNN(3, depth=3, width=8), "log_images": False}
    return Denoiser(**{**settings, **options})  # type: ignore[arg-type]


def test_fit_learns_to_denoise_and_reports_each_domain(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _tiny(lr=0.01, scheduler="none")
    trainer = _trainer(tmp_path, max_steps=40)
    trainer.fit(model, _data(tmp_path, real_fraction=0.0))
    (metrics,) = trainer.validate(model, _data(tmp_path), verbose=False)
    for name in ("psnr", "ssim", "noisy_psnr"):
        assert np.isfinite(metrics[f"val/rendered_{name}"]) and np.isfinite(
            metrics[f"val/real_{name}"]
        )
    # 40 steps of a tiny network already beat the noisy input on both sides.
    assert metrics["val/rendered_psnr"] > metrics["val/rendered_noisy_psnr"] + 1.0
    assert metrics["val/real_psnr"] > metrics["val/real_noisy_psnr"]
    (tested,) = trainer.test(model, _data(tmp_path), verbose=False)
    assert "test/real_psnr" in tested and "test/rendered_ssim" in tested


def test_adaptation_and_self_supervised_terms_train_on_real_images(tmp_path: Path) -> None:
    for mode in ("neighbor2neighbor", "noise2self"):
        model = _tiny(adaptation=CORAL(schedule="constant"), self_supervised=mode)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        trainer = _trainer(tmp_path)
        trainer.fit(model, _data(tmp_path))
        logged = trainer.callback_metrics
        assert {"train/coral_loss", "train/self_supervised_loss", "train/supervised_loss"} <= set(
            logged
        )
        assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())
    # A batch of real images alone: the self-supervised term still trains the network.
    model = _tiny(self_supervised="neighbor2neighbor")
    noisy = torch.rand(2, 3, 16, 16)
    batch = {
        IMAGE: noisy,
        REFERENCE: torch.zeros_like(noisy),
        VALID: torch.zeros(2, 16, 16, dtype=torch.bool),
        LABEL: torch.full((2,), -1),
        DOMAIN: torch.full((2,), REAL),
    }
    loss = model._training_step(batch)["loss"]  # noqa: SLF001 - the step without a Trainer
    loss.backward()
    assert loss > 0 and model.network.head.weight.grad.abs().sum() > 0


def test_real_pairs_train_the_network_only_with_train_references(tmp_path: Path) -> None:
    def held_out(**options: object) -> NoisyPhotographs:
        root = str(tmp_path / "real")
        return NoisyPhotographs(root=root, val_scenes=["s_0"], test_scenes=["s_0"], **options)

    _data(tmp_path)  # writes the photographs
    for taught in (True, False):
        model = _tiny()
        before = {k: v.clone() for k, v in model.named_parameters()}
        trainer = _trainer(tmp_path)
        trainer.fit(
            model, _data(tmp_path, real=held_out(train_references=taught), real_fraction=1.0)
        )
        changed = any(not torch.equal(v, before[k]) for k, v in model.named_parameters())
        # Batches of real crops alone: only the taught references give a loss to learn from.
        assert ("train/supervised_loss" in trainer.callback_metrics) == taught
        assert changed == taught


def test_adaptation_needs_a_network_with_features() -> None:
    with pytest.raises(ValueError, match="forward_with_features"):
        Denoiser(network=torch.nn.Conv2d(3, 3, 3, padding=1), adaptation=CORAL())


def test_bf16_mixed_precision(tmp_path: Path) -> None:
    model = _tiny(adaptation=CORAL(), self_supervised="neighbor2neighbor")
    trainer = _trainer(tmp_path, precision="bf16-mixed", max_steps=2)
    trainer.fit(model, _data(tmp_path))
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    (metrics,) = trainer.validate(model, _data(tmp_path), verbose=False)
    assert np.isfinite(metrics["val/real_psnr"]) and metrics["val/real_psnr"] > 5


def test_ddp_two_processes(tmp_path: Path) -> None:
    model = _tiny(adaptation=CORAL())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = _trainer(
        tmp_path, devices=2, strategy="ddp_spawn", max_steps=2, limit_val_batches=None
    )
    trainer.fit(model, _data(tmp_path))
    assert trainer.world_size == 2
    changed = [
        k
        for k, v in model.state_dict().items()
        if v.is_floating_point() and not torch.equal(v, before[k])
    ]
    assert changed, "no weight changed after 2 DDP steps"


def test_predict_writes_each_image_of_a_folder_at_its_size(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    sizes = {"wide": (37, 53), "tall": (45, 19), "tiny": (9, 7)}
    for seed, (name, (height, width)) in enumerate(sizes.items()):
        _smooth_image(folder / f"{name}.jpg", height, width, seed, gray=name == "tall")
    data = _data(tmp_path, real=NoisyPhotographs(root=str(folder)))
    # Tiles smaller than the images, and a U-Net that needs sides divisible by 4.
    model = Denoiser(network=UNetDenoiser(3, width=4, levels=2), tile_size=16, tile_overlap=4)
    trainer = _trainer(tmp_path, logger=False)
    predictions = trainer.predict(model, data)
    written = {p.stem: Image.open(p).size for p in (tmp_path / "denoised").glob("*.png")}
    assert written == {name: (width, height) for name, (height, width) in sizes.items()}
    assert len(predictions) == 3
    assert all(torch.isnan(p["psnr"]).all() and (p["removed_std"] >= 0).all() for p in predictions)


def test_tiles_blend_back_into_the_whole_image() -> None:
    images = torch.rand(2, 3, 37, 50, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(tiled(lambda x: 2 * x, images, tile_size=16, overlap=6), 2 * images)
    blur = torch.nn.Conv2d(3, 3, 3, padding=1, bias=False)
    torch.nn.init.constant_(blur.weight, 1 / 27)  # a box blur: its output keeps the mean
    with torch.no_grad():
        whole = blur(images)
        tiles = tiled(blur, images, tile_size=24, overlap=8)
        abutting = tiled(blur, images, tile_size=24, overlap=0)

    def error(result: torch.Tensor) -> float:
        return float((result - whole).abs().mean() / whole.abs().mean())

    # Only pixels next to a tile's border see its padding, and there the ramp weighs little
    # (0.005 of the mean over seeds 0-19; tiles that abut without blending: 0.029).
    assert error(tiles) < 0.01 and error(tiles) < error(abutting) / 3
    net = UNetDenoiser(3, width=4, levels=2)
    assert net(images).shape == images.shape


def test_neighbor_sub_sampler_picks_adjacent_pixels_of_each_cell() -> None:
    rows = torch.arange(8.0).view(1, 1, 8, 1).expand(2, 1, 8, 10)
    cols = torch.arange(10.0).view(1, 1, 1, 10).expand(2, 1, 8, 10)
    coords = torch.cat([rows, cols], dim=1)
    first, second = neighbor_indices(coords)
    from lightning_synth.nn.denoisers import _take

    a, b = _take(coords, first), _take(coords, second)
    distance = (a - b).abs().sum(dim=1)
    assert torch.equal(distance, torch.ones_like(distance))  # direct neighbours
    assert torch.equal((a // 2), (b // 2))  # within one 2 x 2 cell
    # The losses are differentiable and zero for a perfect, noise-free identity case.
    flat = torch.full((1, 3, 8, 8), 0.5)
    identity = torch.nn.Identity()
    assert neighbor2neighbor_loss(identity, flat, flat) == 0
    assert noise2self_loss(identity, flat) == 0


@pytest.mark.parametrize(
    "name",
    [
        "denoise_gaussian.yaml",
        "denoise_camera.yaml",
        "denoise_noisier2noise.yaml",
        "denoise_pseudo_clean.yaml",
        "denoise_dct.yaml",
    ],
)
def test_config_runs_through_the_cli(name: str, run_cli) -> None:
    config = str(CONFIGS / name)
    shrink = [*DENOISE_SHRINK, *NETWORK_SHRINK[name]]
    run_dir = run_cli("fit", f"--config={config}", *FAST_TRAINER, *shrink)
    last = run_dir / "checkpoints" / "last.ckpt"
    assert last.is_file()
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["model"]["class_path"].endswith("Denoiser")
    model = Denoiser.load_from_checkpoint(last, map_location="cpu")
    state = torch.load(last, map_location="cpu", weights_only=False)["state_dict"]
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())
    run_cli("test", f"--config={config}", *FAST_TRAINER, *shrink, f"--ckpt_path={last}")
    predict_dir = run_cli(
        "predict", f"--config={config}", *FAST_TRAINER, *shrink, f"--ckpt_path={last}"
    )
    predictions = torch.load(predict_dir / "predictions-rank0.pt")
    assert len(predictions["psnr"]) == len(predictions["removed_std"]) == 2
    assert len(list((predict_dir / "denoised").glob("*.png"))) == 2


@pytest.mark.parametrize("network", ["dncnn", "unet", "dct"])
def test_export_denoises_tiles_like_the_task(tmp_path: Path, network: str) -> None:
    from lightning_synth.export import (
        compare,
        example_inputs,
        export_model,
        exportable,
        run_exported,
    )

    if network == "dct":
        net: torch.nn.Module = DCTShrinkage(3, block=4, stages=2, threshold=0.05)
    else:
        net = DnCNN(3, depth=3, width=8) if network == "dncnn" else UNetDenoiser(3, 4, 2)
        torch.nn.init.normal_(net.head.weight, std=0.1)  # not the identity it starts as
    model = Denoiser(network=net, tile_size=32, tile_overlap=8).eval()
    example = example_inputs(model)
    assert example[0].shape == (2, 3, 32, 32)
    path = export_model(exportable(model), example, tmp_path / "denoiser.onnx")
    tiles = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        expected = model(tiles)
    largest, share = compare(expected, run_exported(path, [tiles]))
    assert share == 1.0, largest


def test_noisy_as_clean_takes_that_share_of_rendered_crops_from_the_real_photographs(
    tmp_path: Path,
) -> None:
    from lightning_synth.batch import RENDERED

    def references(share: float) -> torch.Tensor:
        data = _data(tmp_path, noisy_as_clean=share, train_length=40)
        data.setup("fit")
        rendered = data.source_dataset("train", RENDERED)
        return torch.stack([rendered[i][REFERENCE] for i in range(len(rendered))])

    clean_only, half, all_real = references(0.0), references(0.5), references(1.0)
    assert len(clean_only) == len(half) == len(all_real) == 40

    def rough(crops: torch.Tensor) -> torch.Tensor:
        # The real photographs carry their noise (sigma 20/255) into the targets.
        curvature = crops[..., 2:, :] - 2 * crops[..., 1:-1, :] + crops[..., :-2, :]
        return curvature.abs().flatten(1).mean(1) > 0.05

    assert not rough(clean_only).any() and rough(all_real).all()
    assert 15 <= int(rough(half).sum()) <= 25
    with pytest.raises(InputError, match="noisy_as_clean"):
        _data(tmp_path, noisy_as_clean=1.5)


def test_noisy_as_clean_crops_get_the_noise_of_their_own_photograph(tmp_path: Path) -> None:
    from lightning_synth.batch import RENDERED
    from lightning_synth.rendering.sampled_noise import SampledNoise

    sigmas = (0.02, 0.04)
    for index, sigma in enumerate(sigmas):  # flat photographs, a quiet and a loud camera
        values = 64 + np.random.default_rng(index).normal(0, sigma * 255, (64, 64, 3))
        Image.fromarray(values.round().clip(0, 255).astype(np.uint8)).save(
            tmp_path / f"cam{index}_{index}_real.png"
        )
    noise = SampledNoise(patch_size=16, levels=2, flat_fraction=1.0, per_photograph=True)
    data = NoisyImageDataModule(
        clean=[str(tmp_path)],
        noise=noise,
        real=NoisyPhotographs(root=str(tmp_path)),
        patch_size=16,
        noisy_as_clean=1.0,
        train_length=20,
        real_fraction=0.5,
    )
    data.setup("fit")
    rendered = data.source_dataset("train", RENDERED)
    for index in range(len(rendered)):  # crop i comes from photograph i mod 2
        sample = rendered[index]
        added = (sample[IMAGE] - sample[REFERENCE]).std()
        assert added == pytest.approx(sigmas[index % 2], rel=0.3)


def test_pseudo_clean_targets_are_the_denoised_photographs(tmp_path: Path) -> None:
    from lightning_synth.batch import RENDERED
    from lightning_synth.nn.total_variation import TVSmoothing

    smoothing = TVSmoothing(weight=0.1)
    data = _data(tmp_path, noisy_as_clean=1.0, train_length=8, pseudo_clean=smoothing)
    data.setup("fit")
    rendered = data.source_dataset("train", RENDERED)
    photographs = data.real.dataset("train")
    smoothed = [smoothing(photographs[i][IMAGE][None])[0] for i in range(2)]
    for index in range(len(rendered)):
        target = rendered[index][REFERENCE]
        # Crop i is a crop (flipped or turned) of photograph i mod 2, denoised.
        source = smoothed[index % 2]
        assert any(
            torch.allclose(target, dihedral(window, code), atol=1e-6)
            for code in range(8)
            for window in _windows(source, target.shape[-1])
        )
    with pytest.raises(InputError, match="noisy_as_clean"):
        _data(tmp_path, pseudo_clean=smoothing)


def test_gray_photographs_reach_a_colour_pseudo_clean_denoiser_as_colour(tmp_path: Path) -> None:
    from lightning_synth.batch import RENDERED
    from lightning_synth.nn.total_variation import TVSmoothing

    for index in range(2):  # gray photographs, for colour training (channels=3)
        _smooth_image(tmp_path / "gray" / f"g{index}.png", 30, 34, seed=20 + index, gray=True)
    luma_chroma = TVSmoothing(weight=0.05, chroma_weight=0.1)
    data = _data(
        tmp_path,
        real=NoisyPhotographs(root=str(tmp_path / "gray")),
        noisy_as_clean=1.0,
        train_length=4,
        pseudo_clean=luma_chroma,
    )
    data.setup("fit")
    target = data.source_dataset("train", RENDERED)[0][REFERENCE]
    assert target.shape[0] == 3
    assert torch.allclose(target[0], target[1], atol=1e-5)  # still gray


def _windows(image: torch.Tensor, size: int) -> list[torch.Tensor]:
    height, width = image.shape[-2:]
    return [
        image[:, top : top + size, left : left + size]
        for top in range(height - size + 1)
        for left in range(width - size + 1)
    ]


def test_noisier2noise_correction_estimates_twice_the_output_minus_the_input() -> None:
    class Halfway(torch.nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return 0.5 * images + 0.25

    noisy = torch.rand(2, 3, 16, 16)
    plain = Denoiser(network=Halfway(), log_images=False)
    corrected = Denoiser(network=Halfway(), correction="noisier2noise", log_images=False)
    assert torch.allclose(plain(noisy), 0.5 * noisy + 0.25)
    assert torch.allclose(corrected(noisy), torch.full_like(noisy, 0.5))
    assert torch.allclose(corrected.denoise(noisy), torch.full_like(noisy, 0.5))
    # Clean photographs do not choose its checkpoint: it keeps the last.
    assert plain.monitor == "val/rendered_psnr" and not corrected.monitor
    with pytest.raises(InputError, match="correction"):
        Denoiser(correction="twice")  # type: ignore[arg-type]


def test_self_ensemble_averages_the_eight_flips_and_turns() -> None:
    torch.manual_seed(0)
    network = DnCNN(3, depth=3, width=8)
    single = Denoiser(network=network, log_images=False).eval()
    ensemble = Denoiser(network=network, self_ensemble=True, log_images=False).eval()
    noisy = torch.rand(1, 3, 20, 28)  # not square: turned images change shape
    expected = torch.zeros_like(noisy)
    with torch.no_grad():
        for mirrored in (False, True):
            start = noisy.flip(-1) if mirrored else noisy
            for turns in range(4):
                out = torch.rot90(network(torch.rot90(start, turns, (-2, -1))), -turns, (-2, -1))
                expected += (out.flip(-1) if mirrored else out) / 8
    assert torch.allclose(ensemble.denoise(noisy), expected.clamp(0, 1), atol=1e-5)
    assert not torch.allclose(ensemble.denoise(noisy), single.denoise(noisy), atol=1e-4)


def test_a_classical_denoiser_in_place_of_the_network_denoises_a_folder(tmp_path: Path) -> None:
    # README: TV in luma and chroma through `predict`, no training and no checkpoint.
    from lightning_synth.nn.total_variation import TVSmoothing

    data = _data(tmp_path)
    smoothing = TVSmoothing(weight=0.05, chroma_weight=0.1)
    model = Denoiser(network=smoothing, adaptation=None, tile_size=64)
    predictions = _trainer(tmp_path).predict(model, data)
    psnr = torch.cat([p["psnr"] for p in predictions])
    noisy_psnr = []
    for index in range(2):
        noisy = torch.from_numpy(np.array(Image.open(tmp_path / "real" / f"s_{index}_real.png")))
        reference = np.asarray(Image.open(tmp_path / "real" / f"s_{index}_mean.png"))
        noisy = noisy.permute(2, 0, 1)[None].float() / 255
        written = np.asarray(Image.open(tmp_path / "denoised" / f"s_{index}.png"))
        expected = (smoothing(noisy)[0].permute(1, 2, 0).numpy() * 255).round()
        assert np.abs(written - expected).max() <= 1  # the whole image, one tile
        error = (noisy[0].permute(1, 2, 0).numpy() * 255 - reference) ** 2
        noisy_psnr.append(10 * np.log10(255**2 / error.mean()))
    assert (psnr.numpy() > np.array(noisy_psnr) + 2).all()
    with pytest.raises(InputError, match="nothing to train.*instead of fit"):
        _trainer(tmp_path).fit(model, data)
