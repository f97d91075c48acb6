"""benchmarks/sim2real_digits.py end to end at a tiny size, on made-up MNIST files."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from conftest import benchmark_module

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "sim2real_digits.py"


def _write_idx(path: Path, array: np.ndarray) -> None:
    # The IDX format of the MNIST files: magic (0, 0, type 0x08 = ubyte, ndim), sizes, data.
    header = bytes([0, 0, 8, array.ndim]) + b"".join(
        int(size).to_bytes(4, "big") for size in array.shape
    )
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def _fake_mnist(folder: Path) -> None:
    """10,000 made-up digits: faint noise with a bright bar whose row tells the class, in
    a 20-pixel box like MNIST's; the plumbing is under test, not the accuracy."""
    rng = np.random.default_rng(0)
    labels = np.arange(10_000) % 10
    images = rng.integers(0, 40, size=(10_000, 28, 28))
    for digit in range(10):
        images[labels == digit, 4 + 2 * digit : 6 + 2 * digit, 6:22] = 255
    folder.mkdir()
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels)


def test_every_target_arm_and_framing_runs_and_the_json_says_so(tmp_path: Path) -> None:
    _fake_mnist(tmp_path / "mnist")
    out = tmp_path / "sim2real.json"
    completed = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *("--mnist-dir", str(tmp_path / "mnist"), "--runs", "1", "--steps", "3"),
            *("--val-every", "2", "--batch-size", "16", "--rendered-train", "64"),
            *("--rendered-val", "32", "--val-images", "32", "--eval-limit", "48"),
            *("--select-samples", "8", "--targets", "mnist_tight_binary,sklearn"),
            *("--json-out", str(out)),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.read_text())
    runs = result["results"]
    combos = {(r["target"], r["framing"], r["arm"]) for r in runs}
    assert len(runs) == len(combos) == 2 * 2 * 4
    for run in runs:
        assert 0.0 <= run["selected_real_acc"] <= 1.0 and 0.0 <= run["final_real_acc"] <= 1.0
        assert run["steps"] == 3 and run["selected_step"] in (2, 3)
        # the validators were logged at each validation, and the selection read one of them
        assert [row["step"] for row in run["history"]] == [2, 3]
        assert all("val/select_snd" in row for row in run["history"])
        # each validator's pick was tested; the primary one (--select im) is reported
        assert set(run["selected_by"]) >= {"snd", "im", "dev", "rendered_acc"}
        assert run["selected_by"]["im"]["real_acc"] == run["selected_real_acc"]
        assert all(0.0 <= pick["real_acc"] <= 1.0 for pick in run["selected_by"].values())
    summary = result["summary"]
    assert set(summary) == {
        f"{target}/{framing}"
        for target in ("sklearn", "mnist_tight_binary")
        for framing in ("none", "canonical")
    }
    for arms in summary.values():
        for arm in ("dann", "recipe"):
            assert "selected_gap_closed" in arms[arm] and "final_gap_closed" in arms[arm]
            assert set(arms[arm]["selected_by_mean"]) >= {"snd", "im"}
    # The recipe arm is the config's adaptation list, as shipped.
    config = yaml.safe_load((REPO / "configs" / "sim2real_digits.yaml").read_text())
    assert result["recipe_adaptation"] == config["model"]["init_args"]["adaptation"]
    assert "| mnist_tight_binary | canonical | recipe |" in completed.stdout


def test_tight_framing_fills_the_frame_and_the_recipe_is_the_configs() -> None:
    benchmark = benchmark_module("sim2real_digits")
    images = torch.zeros(3, 1, 28, 28)
    images[0, 0, 8:20, 12:16] = 1.0  # a tall bar: its height fills, aspect kept
    images[1, 0, 10:14, 4:24] = 0.6  # a wide bar
    images[2, 0, 5:12, 5:12] = 0.9
    tight = benchmark.tight_frame(images)
    for image in tight:
        ink = image[0] > 0.2
        rows, cols = ink.any(1).nonzero().flatten(), ink.any(0).nonzero().flatten()
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 == 28
    ink = tight[0, 0] > 0.2
    assert 6 <= int(ink.any(0).sum()) <= 12  # 4 of 12 wide -> about 9 of 28: aspect kept
    stretched = benchmark.tight_frame(images, stretch=True)
    assert bool((stretched[:, 0] > 0.2).all())  # the boxes fill both sides
    recipe = benchmark.read_recipe(REPO / "configs" / "sim2real_digits.yaml")
    methods = benchmark.arm_methods("recipe", recipe)
    shipped = yaml.safe_load((REPO / "configs" / "sim2real_digits.yaml").read_text())
    listed = [m["class_path"] for m in shipped["model"]["init_args"]["adaptation"]]
    assert [type(m).__name__ for m in methods] == listed
    assert listed == ["MinimumClassConfusion", "RealSampleTerms"]
    assert [type(m).__name__ for m in benchmark.arm_methods("dann", recipe)] == [
        "DomainAdversarial"
    ]
    assert benchmark.arm_methods("dann", recipe)[0].weight == 1.0
    assert benchmark.arm_methods("dann", recipe, dann_weight=0.1)[0].weight == 0.1
    assert benchmark.arm_methods("source_only", recipe)[0].weight == 0.0
    assert recipe["renderer"] == "StrokeDigitsSource"
    assert recipe["renderer_options"]["style"] == "varied"
