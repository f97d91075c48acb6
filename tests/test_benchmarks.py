"""The benchmarks run end to end at tiny sizes (on data they make themselves).

They import private helpers of the renderer (the dense reference ray cast), so a change
of those helpers must not leave a benchmark broken until someone next measures.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> dict:
    out = Path(args[args.index("--json-out") + 1])
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.read_text())


def test_render_body_agrees_with_the_dense_reference(tmp_path: Path) -> None:
    result = _run(
        "render_body.py",
        *("--height", "48", "--width", "64", "--batch-size", "4", "--num-frames", "8"),
        *("--threads", "1", "--json-out", str(tmp_path / "render.json")),
    )
    assert result["foreground_mismatch_vs_reference"] == 0.0
    assert result["max_depth_diff_vs_reference_m"] < 1e-4
    assert result["render_fps"] > 0 and result["sensor_noise_fps"] > 0


def test_body_parts_speed_reports_every_rate(tmp_path: Path) -> None:
    result = _run(
        "body_parts_speed.py",
        *("--height", "48", "--width", "64", "--batch-size", "2", "--frames", "2"),
        *("--threads", "1", "--json-out", str(tmp_path / "speed.json")),
    )
    assert result["keep_freed_memory"] in (True, False)
    assert set(result["train_fps"]) == {"depth_features", "fcn"}
    assert all(v > 0 for v in result["render_to_train_ratio"].values())
    assert result["loader_fps"] > 0 and set(result["loader_to_train_ratio"]) == set(
        result["train_fps"]
    )
    assert len(result["inference_fps"]) == 3


def test_style_transfer_times_both_loops_with_the_tiny_network(tmp_path: Path) -> None:
    result = _run(
        "style_transfer.py",
        *("--network", "tiny", "--sizes", "16", "--steps", "3", "--warmup", "1"),
        *("--iterations-per-step", "2", "--json-out", str(tmp_path / "style.json")),
    )
    (row,) = result["rows"]
    assert result["network"] == "tiny" and result["iterations_per_step"] == 2
    assert row["ours"]["seconds_per_step"] > 0 and row["plain"]["seconds_per_step"] > 0
    assert row["speed_ratio"] > 0 and row["ours"]["peak_memory_bytes"] > 0


def test_tv_denoise_compares_both_solvers_on_a_bundled_photograph(tmp_path: Path) -> None:
    result = _run(
        "tv_denoise.py",
        *("--images", "camera", "--sigmas", "0.2", "--repeats", "1"),
        *("--json-out", str(tmp_path / "tv.json")),
    )
    (row,) = result["rows"]
    assert row["image"] == "camera" and row["sigma"] == 0.2
    # both denoise: each result is far above the noisy image's PSNR
    assert min(row["ours"]["psnr"], row["skimage"]["psnr"]) > row["noisy_psnr"] + 5
    assert row["time_ratio"] > 0 and result["time_ratio_geometric_mean"] > 0


def test_lightning_overhead_times_both_loops(tmp_path: Path) -> None:
    result = _run(
        "lightning_overhead.py",
        *("--steps", "5", "--warmup", "2", "--repeats", "1", "--batch-size", "8"),
        *("--json-out", str(tmp_path / "overhead.json")),
    )
    assert result["hand_images_per_s"] > 0 and result["lightning_images_per_s"] > 0
    assert len(result["ratio_per_repeat"]) == 1 and result["ratio_median"] > 0


def test_render_digits_reports_every_rate(tmp_path: Path) -> None:
    result = _run(
        "render_digits.py",
        *("--num-images", "64", "--batch-size", "16", "--json-out", str(tmp_path / "d.json")),
    )
    rates = result["images_per_s"]
    assert set(rates) >= {"single_core_warm", "dataloader_all_cores"}
    assert all(value > 0 for value in rates.values())


def _write_idx(path: Path, array: np.ndarray) -> None:
    # The IDX format of the MNIST files: magic (0, 0, type 0x08 = ubyte, ndim), sizes, data.
    header = bytes([0, 0, 8, array.ndim]) + b"".join(
        int(size).to_bytes(4, "big") for size in array.shape
    )
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_adaptation_digits_runs_every_arm_and_reports_the_gap(tmp_path: Path) -> None:
    # Made-up MNIST-format files (noise with a bright bar per class): the benchmark's
    # plumbing, not its accuracy, is under test; real data is never read by tests.
    rng = np.random.default_rng(0)
    labels = np.arange(10_000) % 10
    images = rng.integers(0, 60, size=(10_000, 28, 28))
    for digit in range(10):
        images[labels == digit, 4 + 2 * digit : 6 + 2 * digit, 6:22] = 255
    data = tmp_path / "mnist"
    data.mkdir()
    _write_idx(data / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(data / "t10k-labels-idx1-ubyte.gz", labels)
    result = _run(
        "adaptation_digits.py",
        *("--data-dir", str(data), "--runs", "1", "--jobs", "1", "--steps", "3"),
        *("--rendered-train", "200", "--pad-samples", "16", "--batch-size", "32"),
        *("--json-out", str(tmp_path / "dann.json")),
    )
    summary = result["summary"]
    arms = ("source_only", "dann", "cdan", "coral", "mmd", "mcc", "real_terms")
    arms += ("dann_plus", "mcc_plus", "train_on_real")
    assert {row["arm"] for row in result["results"]} == set(arms)
    for arm in arms[1:-1]:
        assert "gap_closed" in summary[arm] and "never_below_source_only" in summary[arm]
    assert all(0.0 <= row["test/real_acc"] <= 1.0 for row in result["results"])


def test_body_forest_grows_scores_and_times_the_forest(tmp_path: Path) -> None:
    result = _run(
        "body_forest.py",
        *("--height", "30", "--width", "40", "--train-frames", "8", "--pixels-per-image", "50"),
        *("--test-frames", "4", "--num-features", "16", "--depth", "8", "--frames", "4"),
        *("--threads", "1", "--json-out", str(tmp_path / "forest.json")),
    )
    assert 0 < result["train_pixels"] <= 8 * 50
    assert 1 <= result["levels"] <= 8 and result["nodes"] > 0
    # 31 parts: chance is ~3% of the pixels; a forest grown on 8 frames does better
    assert result["test_pixel_acc"] > 0.06 and 0.0 <= result["test_class_acc"] <= 1.0
    assert len(result["inference_fps"]) == 3 and min(result["inference_fps"].values()) > 0
    assert result["speedup_vs_sklearn"] > 0


def test_sensor_model_measures_every_effect_and_draws_the_picture(tmp_path: Path) -> None:
    picture = tmp_path / "sensor.png"
    result = _run(
        "sensor_model.py",
        *("--sizes", "30x40", "--frames", "4", "--threads", "1"),
        *("--picture", str(picture), "--json-out", str(tmp_path / "sensor.json")),
    )
    rows = result["30x40"]
    assert {"all effects (default)", "projector shadows", "earlier defaults"} <= set(rows)
    assert all(0.0 <= row["removed"] < 1.0 for row in rows.values())
    # noise and quantisation move depths but remove no pixel of a person within range
    axial = rows["axial noise + quantisation"]
    assert axial["removed"] == 0.0 and axial["mean_abs_error_mm"] > 0
    assert rows["all effects (default)"]["removed"] > 0
    from PIL import Image

    with Image.open(picture) as image:
        assert image.format == "PNG" and min(image.size) > 200


def test_body_parts_backbones_trains_each_backbone_within_its_cpu_budget(tmp_path: Path) -> None:
    result = _run(
        "body_parts_backbones.py",
        *("--budget", "0.02", "--height", "30", "--width", "40", "--batch-size", "4"),
        *("--pixels-per-image", "50", "--forest-frames", "16", "--test-frames", "4"),
        *("--speed-height", "48", "--speed-width", "64", "--speed-frames", "2"),
        *("--threads", "1", "--json-out", str(tmp_path / "backbones.json")),
    )
    runs = result["runs"]
    assert set(runs) == {"forest", "depth_features", "fcn"}
    # the forest samples its 16 frames (4 a batch), the others train until the budget ends
    assert runs["forest"][0]["train_frames"] == 16
    assert all(run[0]["train_cpu_minutes"] >= 0.02 for run in (runs["depth_features"], runs["fcn"]))
    for name in ("forest", "depth_features"):  # chance is ~3% of the pixels
        assert runs[name][0]["renders"]["pixel_acc"] > 0.06
    for (run,) in runs.values():
        for domain in ("renders", "sensor"):
            assert all(0.0 <= run[domain][k] <= 1.0 for k in ("class_acc", "joint_map"))
        assert run["fps"] > 0 and run["frames_per_cpu_second"] > 0


def _flat_noisy_pairs(folder: Path) -> None:
    """PolyU-style pairs of two scenes, two crops each: flat colours plus Gaussian noise."""
    from PIL import Image

    generator = np.random.default_rng(0)
    for scene in ("camA_4_100_800_desk", "camA_4_100_800_wall"):
        for crop in (1, 2):
            clean = generator.uniform(0.2, 0.8, (1, 1, 3)) * np.ones((72, 80, 3))
            noisy = clean + generator.normal(0, 0.05, clean.shape)
            for suffix, image in (("mean", clean), ("real", noisy)):
                pixels = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{scene}_{crop}_{suffix}.png")


def test_denoise_real_scores_classical_and_learned_denoisers(tmp_path: Path) -> None:
    _flat_noisy_pairs(tmp_path)
    result = _run(
        "denoise_real.py",
        *("--real", str(tmp_path), "--val-scenes", "camA_4_100_800_wall"),
        *("--methods", "noisy", "tv_project", "tv_luma_chroma", "pseudo_clean"),
        *("--tv-weights", "0.02", "0.05", "--tv-chroma-weights", "0.1"),
        *("--steps", "2", "--threads", "1", "--extra=--data.init_args.train_length=32"),
        "--extra=--model.init_args.network.init_args.width=8",
        *("--json-out", str(tmp_path / "denoise.json")),
    )
    rows = result["rows"]
    assert set(rows) == {"noisy", "tv_project", "tv_luma_chroma", "pseudo_clean"}
    assert rows["tv_project"]["psnr"] > rows["noisy"]["psnr"] + 3  # flat images: TV's case
    assert rows["tv_project"]["grid"].keys() == {"0.02", "0.05"}
    split = rows["tv_luma_chroma"]
    assert split["psnr"] > rows["noisy"]["psnr"] + 3
    assert split["grid_on_validation_scenes"].keys() == {"0.02/0.1", "0.05/0.1"}
    assert split["chroma_weight"] == 0.1 and split["luma_weight"] in (0.02, 0.05)
    learned = rows["pseudo_clean"]
    assert learned["steps"] == 2 and len(learned["psnr_per_image"]) == 4
    # its gain is its own PSNR over the noisy input's
    assert learned["gain_real"] == pytest.approx(learned["psnr"] - rows["noisy"]["psnr"])


def test_denoise_ceiling_trains_on_pairs_and_scores_the_held_out_scenes(tmp_path: Path) -> None:
    _flat_noisy_pairs(tmp_path)
    result = _run(
        "denoise_ceiling.py",
        *("--real", str(tmp_path), "--val-scenes", "camA_4_100_800_wall"),
        *("--steps", "2", "--losses", "l1", "l2", "--threads", "1"),
        *("--json-out", str(tmp_path / "ceiling.json")),
    )
    rows = result["rows"]
    assert result["meta"]["val_scenes"] == ["camA_4_100_800_wall"]
    # flat images: TV is close to exact, and giving it the reference's colour only helps
    assert rows["tv_0.03"] > rows["noisy"] + 3
    assert rows["tv_with_reference_chroma"] > rows["tv_0.03"]
    for loss in ("l1", "l2"):
        assert rows[f"supervised_{loss}"]["steps"] == 2
        assert np.isfinite(rows[f"supervised_{loss}"]["psnr_val"])


def test_denoise_ceiling_takes_the_network_and_loss_of_another_config(tmp_path: Path) -> None:
    _flat_noisy_pairs(tmp_path)
    result = _run(
        "denoise_ceiling.py",
        *("--real", str(tmp_path), "--val-scenes", "camA_4_100_800_wall"),
        *("--config", str(REPO / "configs" / "denoise_dct.yaml"), "--steps", "3"),
        *("--threads", "1", "--json-out", str(tmp_path / "ceiling.json")),
    )
    row = result["rows"]["supervised_denoise_dct_l2"]  # the config's loss, its stem in the name
    assert row["steps"] == 3 and np.isfinite(row["psnr_val"])
