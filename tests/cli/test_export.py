"""``lightning-synth export``: the exported model gives the task's outputs outside PyTorch."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from conftest import CONFIGS, FAST_TRAINER, REPO, tiny_body_datamodule
from torch import nn

from lightning_synth.cli import main
from lightning_synth.export import example_inputs, export_model, exportable, run_exported
from lightning_synth.tasks import BodyPartClassifier, ImageClassifier

QUICK = str(CONFIGS / "quickstart.yaml")
SMALL_DIGITS = [
    "--data.init_args.rendered.init_args.train_length=64",
    "--data.init_args.rendered.init_args.val_length=16",
    "--data.init_args.rendered.init_args.test_length=16",
    "--data.init_args.batch_size=8",
    "--data.init_args.num_workers=0",
]
BODY = str(CONFIGS / "body_parts.yaml")
SMALL_BODY = [
    "--data.init_args.height=48",
    "--data.init_args.width=64",
    *[
        f"--data.init_args.{domain}.init_args.{stage}_length={count}"
        for domain in ("rendered", "real")
        for stage, count in (("train", 8), ("val", 2), ("test", 4))
    ],
    "--data.init_args.batch_size=2",
    "--data.init_args.num_workers=0",
    "--model.init_args.feature_extractor.init_args.num_features=16",
    "--model.init_args.hidden=[16]",
    "--model.init_args.joint_frames=2",
]


def _onnx(path: Path, array: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (spec,) = session.get_inputs()
    return session.run(None, {spec.name: array})[0]


def test_image_classifier_exports_to_onnx_and_pt2(run_cli) -> None:
    run_dir = run_cli("fit", f"--config={QUICK}", *FAST_TRAINER, *SMALL_DIGITS)
    last = run_dir / "checkpoints" / "last.ckpt"
    model = ImageClassifier.load_from_checkpoint(last, map_location="cpu").eval()
    images = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(images)

    common = ["export", f"--config={QUICK}", *SMALL_DIGITS, f"--ckpt_path={last}"]
    main([*common, "--format=onnx"])
    onnx_file = last.with_suffix(".onnx")
    # batch 5, where the export saw 2: the batch dimension is free
    np.testing.assert_allclose(_onnx(onnx_file, images.numpy()), expected.numpy(), atol=1e-4)

    pt2_file = run_dir / "exported" / "digits.pt2"
    main([*common, "--format=pt2", f"--output={pt2_file}"])
    program = torch.export.load(pt2_file)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(images), expected, atol=1e-4, rtol=1e-4)


def test_body_part_classifier_exports_with_its_depth_features(run_cli) -> None:
    run_dir = run_cli("fit", f"--config={BODY}", *FAST_TRAINER, *SMALL_BODY)
    last = run_dir / "checkpoints" / "last.ckpt"
    main(["export", f"--config={BODY}", *SMALL_BODY, f"--ckpt_path={last}"])
    model = BodyPartClassifier.load_from_checkpoint(last, map_location="cpu").eval()
    data = tiny_body_datamodule(
        48, 64, lengths={"train_length": 2, "val_length": 2, "test_length": 6}
    )
    data.setup("test")
    depth = torch.cat([batch["image"] for batch in data.test_dataloader()])
    assert len(depth) == 12 and (depth > 0).any()
    with torch.no_grad():
        expected = model(depth)
    actual = _onnx(last.with_suffix(".onnx"), depth.numpy())
    # Nearest-pixel probes may round the other way on a rare value; all but those agree.
    close = np.isclose(actual, expected.numpy(), atol=1e-4, rtol=1e-4)
    assert close.mean() > 0.999
    parts = actual.argmax(axis=1)
    agree = (parts == expected.argmax(dim=1).numpy())[depth[:, 0].numpy() > 0]
    assert agree.mean() > 0.99


def test_the_depth_features_export_without_their_data_dependent_gap() -> None:
    """With bilinear probes nothing rounds: the export equals the task to float precision,
    on frames whose nearest depth differs from the example's (the gap it would freeze)."""
    from lightning_synth.nn import DepthComparisonFeatures

    model = BodyPartClassifier(
        feature_extractor=DepthComparisonFeatures(16, interpolation="bilinear", learnable=True),
        hidden=[8],
        joint_frames=0,
    ).eval()
    data = tiny_body_datamodule(
        24, 32, lengths={"train_length": 2, "val_length": 2, "test_length": 4}
    )
    data.setup("test")
    depth = next(iter(data.test_dataloader()))["image"]
    near = depth * 0.4  # the same people, nearer: the original's gap would be larger
    network = exportable(copy.deepcopy(model))
    with torch.no_grad():
        for frames in (depth, near):
            torch.testing.assert_close(network(frames), model(frames), atol=1e-5, rtol=1e-5)


class _TwoInputs(nn.Module):
    """A task-like module whose forward takes two tensors, declared by ``export_example``."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0))

    def export_example(self, datamodule: object = None) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.rand(2, 3), torch.rand(2, 3)

    def forward(self, noisy: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return noisy - self.scale * sigma


@pytest.mark.parametrize("format", ["onnx", "pt2"])
def test_a_task_declares_its_inputs_with_export_example(tmp_path: Path, format: str) -> None:
    model = _TwoInputs()
    example = example_inputs(model)
    path = export_model(model, example, tmp_path / f"model.{format}", format)
    inputs = (torch.rand(4, 3), torch.rand(4, 3))
    torch.testing.assert_close(run_exported(path, inputs), model(*inputs).detach())


def test_onnx_inference_benchmark_runs_on_a_folder_of_frames(tmp_path: Path) -> None:
    out = tmp_path / "onnx.json"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "body_parts_onnx.py"),
            *("--frames", "4", "--height", "48", "--width", "64", "--json-out", str(out)),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.read_text())
    assert result["frames"] == 4 and result["onnx_fps"] > 0
    assert result["parts_agreeing_with_pytorch"] > 0.99
