"""Shotton's decision forest on depth-comparison features: training, quality, inference speed.

Grows a :class:`~lightning_synth.nn.DepthForest` (scikit-learn's ExtraTrees: 3 trees of
depth up to 20 by default) on pixels sampled from rendered 240 x 320 frames, scores it
on other frames, and times inference one frame at a time (as a live sensor delivers
them), measured in one run on one device and thread count:

* the whole per-frame pipeline: depth-comparison features of the person's pixels, then
  the forest as tensors (what ``BodyPartClassifier.predict_parts`` does), against the
  Kinect's 200 frames/s;
* the forest alone on those features, against scikit-learn's ``predict_proba`` on the
  same features (the reference; its ratio is the figure that survives a shared machine).

    python benchmarks/body_forest.py --threads 2 --json-out body_forest.json
    python benchmarks/body_forest.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable

import torch

from lightning_synth.nn import DepthComparisonFeatures, DepthForest
from lightning_synth.rendering.body import PART_NAMES, BodyRenderer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seconds(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """Wall-clock and CPU seconds (all threads of this process) of a call of ``fn``,
    after one warm-up call.

    On a shared machine the wall clock counts the time other processes hold the cores;
    the CPU time does not, so ``frames / CPU second`` estimates what the same cores would
    do unshared (with one thread it is exact up to cache effects).
    """
    fn()
    _sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - start, time.process_time() - cpu


def _sample_pixels(depth: torch.Tensor, per_image: int, generator: torch.Generator) -> torch.Tensor:
    """Flat indices of up to ``per_image`` random person pixels of each frame."""
    batch, height, width = depth.shape
    chosen = []
    for frame in range(batch):
        pixels = depth[frame].flatten().gt(0).nonzero()[:, 0]
        order = torch.randperm(len(pixels), generator=generator)[:per_image]
        chosen.append(pixels[order.to(pixels.device)] + frame * height * width)
    return torch.cat(chosen)


def _class_accuracy(pred: torch.Tensor, label: torch.Tensor, classes: int) -> tuple[float, float]:
    """Pixel accuracy and mean per-class accuracy (over the classes present)."""
    hits = torch.bincount(label[pred == label], minlength=classes).double()
    counts = torch.bincount(label, minlength=classes).double()
    present = counts > 0
    return float((pred == label).double().mean()), float((hits[present] / counts[present]).mean())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--train-frames", type=int, default=200, help="frames to train on")
    parser.add_argument("--pixels-per-image", type=int, default=500, help="(the paper: 2000)")
    parser.add_argument("--test-frames", type=int, default=32, help="frames to score on")
    parser.add_argument("--num-features", type=int, default=128, help="depth features")
    parser.add_argument("--trees", type=int, default=3)
    parser.add_argument("--depth", type=int, default=20, help="largest tree depth")
    parser.add_argument("--frames", type=int, default=64, help="frames per timing")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="intra-op CPU threads")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    classes = len(PART_NAMES)
    generator = torch.Generator().manual_seed(0)
    # People facing the camera, as in configs/body_parts.yaml.
    renderer = BodyRenderer(args.height, args.width, seed=0, yaw_range=(-90.0, 90.0))
    features = DepthComparisonFeatures(num_features=args.num_features).to(device)

    # -- training: features of pixels sampled per image, then scikit-learn ----------------
    start = time.perf_counter()
    train_x, train_y = [], []
    for first in range(0, args.train_frames, 16):
        frame = renderer.render(range(first, min(first + 16, args.train_frames)))
        depth = frame.depth.to(device)
        index = _sample_pixels(depth, args.pixels_per_image, generator)
        train_x.append(features.probe(depth, index).cpu())
        train_y.append(frame.parts.flatten()[index.cpu()])
    collect_seconds = time.perf_counter() - start
    forest = DepthForest(args.num_features, classes, args.trees, args.depth, seed=0)
    start = time.perf_counter()
    forest.fit_forest(torch.cat(train_x), torch.cat(train_y))
    fit_seconds = time.perf_counter() - start
    forest.to(device)

    # -- quality on other frames (clean renders) -------------------------------------------
    test = renderer.render(range(10**6, 10**6 + args.test_frames))
    test_depth = test.depth.to(device)
    test_x, test_index = features.foreground_features(test_depth[:, None])
    test_y = test.parts.flatten()[test_index.cpu()]
    with torch.inference_mode():
        pred = forest(test_x).argmax(1).cpu()
    pixel_acc, class_acc = _class_accuracy(pred, test_y, classes)

    # -- inference, one frame at a time ----------------------------------------------------
    frames = [test_depth[k : k + 1, None] for k in range(min(16, args.test_frames))]
    order = [frames[i % len(frames)] for i in range(args.frames)]
    per_frame = [features.foreground_features(f) for f in frames]
    estimator = forest.estimator().fit(torch.cat(train_x).numpy(), torch.cat(train_y).numpy())

    def pipeline() -> None:
        with torch.inference_mode():
            for depth in order:
                x, index = features.foreground_features(depth)
                parts = torch.zeros(depth.numel(), dtype=torch.long, device=device)
                parts.index_copy_(0, index, forest(x).argmax(1))

    def forest_only() -> None:
        with torch.inference_mode():
            for k in range(args.frames):
                forest(per_frame[k % len(per_frame)][0]).argmax(1)

    def sklearn_only() -> None:  # one job: threads cost more than 3 trees save
        for k in range(args.frames):
            estimator.predict_proba(per_frame[k % len(per_frame)][0].cpu().numpy()).argmax(1)

    fps, cpu_fps = {}, {}
    for name, fn in (
        ("features + forest (tensors)", pipeline),
        ("forest alone (tensors)", forest_only),
        ("forest alone (scikit-learn predict_proba, reference)", sklearn_only),
    ):
        wall, cpu = _seconds(fn, device)
        fps[name], cpu_fps[name] = args.frames / wall, args.frames / max(cpu, 1e-9)
    foreground = float(torch.cat(frames).gt(0).float().mean())
    result = {
        "height": args.height,
        "width": args.width,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "train_frames": args.train_frames,
        "train_pixels": int(sum(len(y) for y in train_y)),
        "num_features": args.num_features,
        "trees": args.trees,
        "max_depth": args.depth,
        "levels": int(forest.levels),
        "nodes": int(forest.feature.numel()),
        "collect_seconds": collect_seconds,
        "fit_seconds": fit_seconds,
        "test_pixel_acc": pixel_acc,
        "test_class_acc": class_acc,
        "foreground_fraction": foreground,
        "inference_fps": fps,
        "inference_frames_per_cpu_second": cpu_fps,
        "speedup_vs_sklearn": fps["forest alone (tensors)"]
        / fps["forest alone (scikit-learn predict_proba, reference)"],
    }
    print(
        f"| {args.height}x{args.width}, {device}, {result['threads']} threads, 1 frame at a "
        f"time, person {100 * foreground:.1f}% of the frame | frames/s | frames/CPU-s |"
    )
    print("|---|---|---|")
    for name, value in fps.items():
        print(f"| {name} | {value:.1f} | {cpu_fps[name]:.1f} |")
    print(
        f"\nforest: {args.trees} trees, {result['levels']} levels, {result['nodes']} nodes, "
        f"grown in {fit_seconds:.1f} s on {result['train_pixels']} pixels of "
        f"{args.train_frames} frames; tensors {result['speedup_vs_sklearn']:.1f}x "
        f"scikit-learn; held-out clean frames: pixel accuracy {pixel_acc:.3f}, mean "
        f"per-class accuracy {class_acc:.3f}"
    )
    if args.json_out:
        with open(args.json_out, "w") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main()
