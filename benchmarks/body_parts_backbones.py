"""Body-part backbones at a CPU budget: Shotton's forest, the depth-feature MLP and the FCN.

Trains each backbone of :class:`~lightning_synth.tasks.BodyPartClassifier` through a
Lightning ``Trainer`` (as ``lightning-synth fit`` does) on the data of
``configs/body_parts.yaml`` (clean renders of people facing the camera, 120 x 160,
rendered on the fly in this process), stopping when this process has used ``--budget``
CPU minutes (``time.process_time``: all its threads, rendering included; a loaded machine
stretches the wall clock, not the budget). Then, per backbone and seed:

* mean per-class accuracy (the paper's metric) on held-out clean renders and on
  sensor-model frames (other renders through ``DepthSensorNoise``), over the person's
  pixels with a depth reading;
* joint mAP (mean-shift proposals, 0.1 m) on both, and the left/right confusion rate;
* inference frames/s at 240 x 320, one sensor-model frame at a time
  (``predict_parts``), and frames per CPU-second (what the cores would do unshared).

The gradient backbones anneal their learning rate along a cosine of the budget spent.
The forest samples ``--pixels-per-image`` pixels per frame for ``--forest-share`` of the
budget (or ``--forest-frames`` frames, whichever ends first: memory is 4 B per pixel and
each of its ``--forest-features`` features, twice that while the parts are joined), then
grows its 3 trees of depth 20; the CPU time that takes is reported, not capped.

    python benchmarks/body_parts_backbones.py --budget 60 --threads 2 --json-out backbones.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from torch.utils.data import default_collate
from torchmetrics.classification import MulticlassAccuracy

from lightning_synth.batch import IGNORE_LABEL, IMAGE, INTRINSICS, JOINTS, LABEL
from lightning_synth.datamodules import BodyDepthDataModule, RenderedBodySource
from lightning_synth.memory import keep_freed_memory
from lightning_synth.metrics import JointAveragePrecision, LeftRightConfusion
from lightning_synth.metrics.joints import joint_visibility
from lightning_synth.nn import DepthComparisonFeatures, DepthFCN, DepthForest
from lightning_synth.rendering.body import PART_NAMES, BodyRenderer
from lightning_synth.rendering.sensor import DepthSensorNoise
from lightning_synth.tasks import BodyPartClassifier
from lightning_synth.tasks.body_parts import depth_readings

BACKBONES = ("forest", "depth_features", "fcn")
#: Shotton et al. (CVPR 2011): mean per-class accuracy on synthetic test frames with 900k
#: training images (their Fig. 6) and joint mAP on real frames (their Sec. 4.1).
PAPER = {"class_acc_renders": 0.6, "joint_map_real": 0.73}
YAW = (-90.0, 90.0)


class CPUBudget(Callback):
    """Stops the fit once the process has used ``seconds`` of CPU time; optionally anneals
    every learning rate along a cosine of the budget spent."""

    def __init__(self, seconds: float, anneal: bool) -> None:
        self.seconds, self.anneal = seconds, anneal
        self.start, self.base_lrs = 0.0, []

    def used(self) -> float:
        return time.process_time() - self.start

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.start = time.process_time()
        self.base_lrs = [g["lr"] for o in trainer.optimizers for g in o.param_groups]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        if not self.anneal:
            return
        factor = 0.5 * (1 + math.cos(math.pi * min(1.0, self.used() / self.seconds)))
        groups = [g for o in trainer.optimizers for g in o.param_groups]
        for group, base in zip(groups, self.base_lrs, strict=True):
            group["lr"] = base * factor

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if self.used() >= self.seconds:
            trainer.should_stop = True


def _max_features(text: str) -> int | float | str:
    """``sqrt``, a count (``64``) or a share of the features (``0.5``, ``1.0``: all)."""
    if text == "sqrt":
        return text
    return float(text) if "." in text else int(text)


def _task(backbone: str, args: argparse.Namespace) -> BodyPartClassifier:
    """The networks of configs/body_parts.yaml (and body_parts_forest.yaml)."""
    forest = backbone == "forest"
    width = args.forest_features if forest else 128
    features = DepthComparisonFeatures(num_features=width, max_offset=200.0)
    common = {"joint_frames": 0, "log_images": False}
    if forest:
        classifier = DepthForest(
            width,
            len(PART_NAMES),
            num_trees=3,
            max_depth=20,
            max_features=_max_features(args.forest_max_features),
            n_jobs=args.threads,
        )
        return BodyPartClassifier(
            feature_extractor=features,
            classifier=classifier,
            backbone="forest",
            pixels_per_image=args.pixels_per_image,
            **common,
        )
    extractor = DepthFCN() if backbone == "fcn" else features
    return BodyPartClassifier(
        feature_extractor=extractor, backbone=backbone, hidden=(128,), lr=args.lr, **common
    )


def _train(backbone: str, seed: int, args: argparse.Namespace) -> tuple[BodyPartClassifier, dict]:
    seed_everything(seed, verbose=False)
    task = _task(backbone, args)
    forest = backbone == "forest"
    seconds = 60 * args.budget * (args.forest_share if forest else 1.0)
    # Frames are rendered on demand: a long epoch never repeats one; the budget ends it.
    frames = args.forest_frames if forest else 10**7
    source = RenderedBodySource(
        train_length=frames, val_length=0, test_length=0, seed=0, yaw_range=YAW
    )
    data = BodyDepthDataModule(
        rendered=source,
        real=RenderedBodySource(
            train_length=frames, seed=1, noise=DepthSensorNoise(), yaw_range=YAW
        ),
        height=args.height,
        width=args.width,
        batch_size=args.batch_size,
        real_fraction=0.0,
        num_workers=0,  # rendering counts against the budget
        seed=seed,
    )
    budget = CPUBudget(seconds, anneal=not forest)
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[budget],
    )
    start = time.process_time()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*(does not have many workers|val_dataloader).*")
        trainer.fit(task, datamodule=data)
    return task, {
        "train_cpu_minutes": (time.process_time() - start) / 60,
        "train_frames": trainer.global_step * args.batch_size,
    }


def _frames(
    seed: int, noise: bool, count: int, height: int, width: int, stage: str = "test"
) -> list[dict]:
    """Batches of 16 frames of RenderedBodySource's ``stage`` (``val`` or ``test``)."""
    source = RenderedBodySource(
        val_length=count,
        test_length=count,
        seed=seed,
        noise=DepthSensorNoise() if noise else None,
        yaw_range=YAW,
    )
    dataset = source.dataset(stage, height, width)
    return [
        default_collate(dataset.__getitems__(range(first, min(first + 16, count))))
        for first in range(0, count, 16)
    ]


@torch.no_grad()
def _score(task: BodyPartClassifier, batches: list[dict]) -> dict[str, float]:
    classes = len(PART_NAMES)
    class_acc = MulticlassAccuracy(classes, average="macro", ignore_index=IGNORE_LABEL)
    pixel_acc = MulticlassAccuracy(classes, average="micro", ignore_index=IGNORE_LABEL)
    confusion, joint_ap = LeftRightConfusion(), JointAveragePrecision(0.1)
    task.eval()
    for batch in batches:
        depth = depth_readings(batch[IMAGE])
        labels = batch[LABEL].masked_fill(depth[:, 0] == 0, IGNORE_LABEL)
        logits = task(depth)
        preds = logits.argmax(dim=1)
        for metric in (class_acc, pixel_acc, confusion):
            metric.update(preds, labels)
        positions, confidence = task.propose_joints(logits, depth, batch[INTRINSICS])
        joint_ap.update(positions, confidence, batch[JOINTS], joint_visibility(labels))
    return {
        "class_acc": float(class_acc.compute()),
        "pixel_acc": float(pixel_acc.compute()),
        "lr_confusion": float(confusion.compute()),
        "joint_map": float(joint_ap.compute()),
    }


def _speed(task: BodyPartClassifier, frames: list[torch.Tensor], count: int) -> tuple[float, float]:
    """Frames per wall second and per CPU second of ``predict_parts``, one frame at a time."""

    def run() -> None:
        for k in range(count):
            task.predict_parts(frames[k % len(frames)])

    run()  # warm-up
    start, cpu = time.perf_counter(), time.process_time()
    run()
    return count / (time.perf_counter() - start), count / max(time.process_time() - cpu, 1e-9)


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=60.0, help="CPU minutes per backbone")
    parser.add_argument("--backbones", default=",".join(BACKBONES), help="comma-separated")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
    parser.add_argument("--height", type=int, default=120, help="training frame height")
    parser.add_argument("--width", type=int, default=160, help="training frame width")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.002, help="MLP and FCN (Adam)")
    parser.add_argument("--pixels-per-image", type=int, default=500, help="forest (paper: 2000)")
    parser.add_argument("--forest-share", type=float, default=0.5, help="of the budget, sampling")
    parser.add_argument("--forest-frames", type=int, default=8000, help="forest: most frames")
    parser.add_argument(
        "--forest-features", type=int, default=128, help="forest: depth features per pixel"
    )
    parser.add_argument(
        "--forest-max-features",
        default="1.0",
        help="forest: candidate features per split (a share like 1.0: all; a count; sqrt)",
    )
    parser.add_argument("--test-frames", type=int, default=256, help="per domain")
    parser.add_argument(
        "--split",
        choices=("test", "val"),
        default="test",
        help="frames to score on: test, or val to choose settings without the test frames",
    )
    parser.add_argument("--speed-height", type=int, default=240)
    parser.add_argument("--speed-width", type=int, default=320)
    parser.add_argument("--speed-frames", type=int, default=64, help="frames per timing")
    parser.add_argument("--threads", type=int, default=2, help="intra-op CPU threads")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as lightning-synth does
    backbones = [name for name in args.backbones.split(",") if name]
    unknown = set(backbones) - set(BACKBONES)
    if unknown:
        parser.error(f"unknown backbones {sorted(unknown)}; choose from {BACKBONES}")
    seeds = [int(seed) for seed in args.seeds.split(",")]
    tests = {
        "renders": _frames(0, False, args.test_frames, args.height, args.width, args.split),
        "sensor": _frames(1, True, args.test_frames, args.height, args.width, args.split),
    }
    live = BodyRenderer(args.speed_height, args.speed_width, seed=2, yaw_range=YAW)
    clean = live.render(range(min(16, args.speed_frames)))
    noisy, _ = DepthSensorNoise()(clean.depth, clean.intrinsics)
    speed_frames = [noisy[k : k + 1, None] for k in range(len(noisy))]

    runs: dict[str, list[dict]] = {}
    for backbone in backbones:
        for seed in seeds:
            task, run = _train(backbone, seed, args)
            run["seed"] = seed
            for domain, batches in tests.items():
                run[domain] = _score(task, batches)
            run["fps"], run["frames_per_cpu_second"] = _speed(task, speed_frames, args.speed_frames)
            runs.setdefault(backbone, []).append(run)
            print(f"{backbone} seed {seed}: {json.dumps(run)}", flush=True)
            _write(args, runs)

    columns: list[tuple[str, Callable[[dict], float]]] = [
        ("train CPU-min", lambda r: r["train_cpu_minutes"]),
        ("frames", lambda r: r["train_frames"]),
        ("class acc, renders", lambda r: r["renders"]["class_acc"]),
        ("class acc, sensor", lambda r: r["sensor"]["class_acc"]),
        ("joint mAP, sensor", lambda r: r["sensor"]["joint_map"]),
        ("joint mAP, renders", lambda r: r["renders"]["joint_map"]),
        ("L/R confusion, sensor", lambda r: r["sensor"]["lr_confusion"]),
        (f"frames/s {args.speed_height}x{args.speed_width}", lambda r: r["fps"]),
        ("frames/CPU-s", lambda r: r["frames_per_cpu_second"]),
    ]
    print(
        f"\nbudget {args.budget:g} CPU-min per backbone, {args.threads} threads, "
        f"trained at {args.height}x{args.width}, {len(seeds)} seed(s); "
        f"{args.test_frames} test frames per domain"
    )
    print("| backbone | " + " | ".join(name for name, _ in columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for backbone, results in runs.items():
        cells = []
        for name, value in columns:
            values = [float(value(r)) for r in results]
            whole = name in ("frames",) or name.startswith("frames/")
            cells.append(f"{statistics.mean(values):.0f}" if whole else _mean_std(values))
        print(f"| {backbone} | " + " | ".join(cells) + " |")
    print(
        f"| Shotton et al. 2011 (900k frames) | | | {PAPER['class_acc_renders']} | | "
        f"{PAPER['joint_map_real']} (real frames) | | | | |"
    )
    return _write(args, runs)


def _write(args: argparse.Namespace, runs: dict[str, list[dict]]) -> dict:
    result = {
        # The output path is left out: it names a folder of the machine it ran on.
        "settings": {key: value for key, value in vars(args).items() if key != "json_out"},
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "paper": PAPER,
        "runs": runs,
    }
    if args.json_out:
        with open(args.json_out, "w") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main()
