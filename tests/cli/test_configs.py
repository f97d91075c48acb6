"""Every YAML in configs/ runs through the real CLI for a few steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from conftest import CONFIGS, FAST_TRAINER

#: The two handwriting DANN configs differ in the model's options only.
_HANDWRITING = [
    "--data.init_args.rendered.init_args.train_length=96",
    "--data.init_args.rendered.init_args.val_length=64",
    "--data.init_args.rendered.init_args.test_length=64",
    "--data.init_args.batch_size=16",
    "--data.init_args.num_workers=0",
    "--model.init_args.pad_samples=16",
]

#: The denoising configs: small crops, a tiny network, validation once per epoch.
_DENOISE = [
    "--data.init_args.patch_size=32",
    "--data.init_args.train_length=48",
    "--data.init_args.batch_size=4",
    "--model.init_args.network.init_args.depth=3",
    "--model.init_args.network.init_args.width=8",
    "--trainer.val_check_interval=1.0",
]

#: Per-config overrides that shrink data to test size, and the subcommands to run.
#: A config missing here fails ``test_every_config_is_covered``.
SHRINK: dict[str, list[str]] = {
    "body_parts.yaml": [
        "--data.init_args.height=48",
        "--data.init_args.width=64",
        "--data.init_args.rendered.init_args.train_length=16",
        "--data.init_args.rendered.init_args.val_length=4",
        "--data.init_args.rendered.init_args.test_length=4",
        "--data.init_args.real.init_args.train_length=16",
        "--data.init_args.real.init_args.val_length=4",
        "--data.init_args.real.init_args.test_length=4",
        "--data.init_args.batch_size=2",
        "--data.init_args.num_workers=0",
        "--model.init_args.feature_extractor.init_args.num_features=16",
        "--model.init_args.hidden=[16]",
        "--model.init_args.joint_frames=4",
    ],
    "body_parts_dann.yaml": [
        "--data.init_args.height=48",
        "--data.init_args.width=64",
        "--data.init_args.rendered.init_args.train_length=16",
        "--data.init_args.rendered.init_args.val_length=4",
        "--data.init_args.rendered.init_args.test_length=4",
        "--data.init_args.real.init_args.train_length=16",
        "--data.init_args.real.init_args.val_length=4",
        "--data.init_args.real.init_args.test_length=4",
        "--data.init_args.batch_size=2",
        "--data.init_args.num_workers=0",
        "--model.init_args.feature_extractor.init_args.num_features=16",
        "--model.init_args.hidden=[16]",
        "--model.init_args.joint_frames=4",
    ],
    "body_parts_forest.yaml": [
        "--data.init_args.height=48",
        "--data.init_args.width=64",
        "--data.init_args.rendered.init_args.train_length=16",
        "--data.init_args.rendered.init_args.val_length=4",
        "--data.init_args.rendered.init_args.test_length=4",
        "--data.init_args.real.init_args.train_length=16",
        "--data.init_args.real.init_args.val_length=4",
        "--data.init_args.real.init_args.test_length=4",
        "--data.init_args.batch_size=2",
        "--data.init_args.num_workers=0",
        "--model.init_args.feature_extractor.init_args.num_features=16",
        "--model.init_args.pixels_per_image=100",
        "--model.init_args.forest_depth=10",
        "--model.init_args.joint_frames=4",
    ],
    "tv_denoise.yaml": ["--data.init_args.size=48"],
    "denoise_gaussian.yaml": _DENOISE,
    "denoise_camera.yaml": _DENOISE,
    "denoise_noisier2noise.yaml": [
        *(option for option in _DENOISE if "depth" not in option),
        "--model.init_args.network.init_args.levels=1",
    ],
    "denoise_pseudo_clean.yaml": [
        *(option for option in _DENOISE if "depth" not in option),
        "--model.init_args.network.init_args.levels=1",
    ],
    "denoise_dct.yaml": [
        *(option for option in _DENOISE if "network" not in option),
        "--model.init_args.network.init_args.block=4",
        "--model.init_args.network.init_args.stages=1",
    ],
    "style_transfer.yaml": [
        "--model.init_args.feature_network.init_args.weights=random",
        "--model.init_args.feature_network.init_args.layers=[conv1_1,conv2_1]",
        "--model.init_args.content_layers=[conv2_1]",
        "--model.init_args.style_layers=[conv1_1,conv2_1]",
        "--data.init_args.size=32",
    ],
    "gan_digits.yaml": [
        "--data.init_args.rendered.init_args.train_length=32",
        "--data.init_args.rendered.init_args.val_length=16",
        "--data.init_args.rendered.init_args.test_length=16",
        "--data.init_args.batch_size=16",
        "--data.init_args.num_workers=0",
        "--model.init_args.generator_width=8",
        "--model.init_args.discriminator_width=8",
    ],
    "cgan_digits.yaml": [
        "--data.init_args.rendered.init_args.train_length=32",
        "--data.init_args.rendered.init_args.val_length=16",
        "--data.init_args.rendered.init_args.test_length=16",
        "--data.init_args.batch_size=16",
        "--data.init_args.num_workers=0",
        "--model.init_args.generator_width=8",
        "--model.init_args.discriminator_width=8",
    ],
    "quickstart.yaml": [
        "--data.init_args.rendered.init_args.train_length=96",
        "--data.init_args.rendered.init_args.val_length=32",
        "--data.init_args.rendered.init_args.test_length=32",
        "--data.init_args.batch_size=16",
        "--data.init_args.num_workers=0",
    ],
    "dann_digits.yaml": [
        "--data.init_args.rendered.init_args.train_length=96",
        "--data.init_args.rendered.init_args.val_length=256",
        "--data.init_args.rendered.init_args.test_length=256",
        "--data.init_args.batch_size=16",
        "--data.init_args.num_workers=0",
        "--model.init_args.pad_samples=16",
    ],
    "dann_handwriting.yaml": _HANDWRITING,
    "dann_plus_handwriting.yaml": _HANDWRITING,
    "sim2real_digits.yaml": _HANDWRITING,
    "source_only_digits.yaml": [
        "--data.init_args.rendered.init_args.train_length=96",
        "--data.init_args.rendered.init_args.val_length=256",
        "--data.init_args.rendered.init_args.test_length=256",
        "--data.init_args.batch_size=16",
        "--data.init_args.num_workers=0",
        "--model.init_args.pad_samples=16",
    ],
}


def test_every_config_is_covered() -> None:
    names = {path.name for path in CONFIGS.glob("*.yaml")}
    assert names == set(SHRINK), f"configs without a test entry: {names - set(SHRINK)}"


@pytest.mark.parametrize("name", sorted(SHRINK))
def test_config_fits_tests_and_reloads(name: str, run_cli) -> None:
    config = str(CONFIGS / name)
    run_dir = run_cli("fit", f"--config={config}", *FAST_TRAINER, *SHRINK[name])
    assert (run_dir / "config.yaml").is_file()
    last = run_dir / "checkpoints" / "last.ckpt"
    assert last.is_file()
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["model"]["class_path"].endswith(
        yaml.safe_load(Path(config).read_text())["model"]["class_path"]
    )
    # The checkpoint rebuilds its task class from the hyper-parameters the CLI saved.
    from lightning_synth import tasks

    task_class = getattr(tasks, saved["model"]["class_path"].rsplit(".", 1)[-1])
    model = task_class.load_from_checkpoint(last, map_location="cpu")
    state = torch.load(last, map_location="cpu", weights_only=False)["state_dict"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    # test and predict from the same checkpoint through the CLI
    run_cli("test", f"--config={config}", *FAST_TRAINER, *SHRINK[name], f"--ckpt_path={last}")
    predict_dir = run_cli(
        "predict", f"--config={config}", *FAST_TRAINER, *SHRINK[name], f"--ckpt_path={last}"
    )
    predictions = torch.load(predict_dir / "predictions-rank0.pt")
    assert predictions and all(
        len(v) == len(next(iter(predictions.values()))) for v in predictions.values()
    )
