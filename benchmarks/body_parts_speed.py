"""Speed of the body-part pipeline at the Kinect's 240 x 320: rendering vs training, and inference.

Measured in one run, on one device and thread count:

* how many frames per second the renderer makes (clean, and through the sensor model),
  and how many a training step of ``BodyPartClassifier`` consumes: their ratio says
  whether rendering on the fly can keep up (target: rendering at least 5x faster); on a
  CPU also how many one DataLoader worker delivers (rendered, collated into shared
  memory and received), which is what training sees;
* inference frames per second (one frame at a time, as a live sensor delivers them) of
  both backbones, against the Kinect's 200 frames/s, and of the depth-feature backbone
  evaluated densely on every pixel (the reference: what foreground-only evaluation saves).

    python benchmarks/body_parts_speed.py --threads 2 --json-out body_parts_speed.json
    python benchmarks/body_parts_speed.py --device cuda

Like ``lightning-synth``, it keeps freed memory for reuse (``lightning_synth.memory``);
``--malloc default`` measures with glibc's defaults.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, default_collate

from lightning_synth.batch import IMAGE
from lightning_synth.memory import keep_freed_memory
from lightning_synth.rendering.body import BodyRenderer, RenderedBodies
from lightning_synth.rendering.sensor import DepthSensorNoise
from lightning_synth.tasks import BodyPartClassifier


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seconds(fn: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, float]:
    """Mean wall-clock and CPU seconds (all threads of this process) per call of ``fn``.

    On a shared machine the wall clock counts the time other processes hold the cores;
    the CPU time does not, so ``frames / CPU second`` estimates what the same cores would
    do unshared (with one thread it is exact up to cache effects).
    """
    fn()
    _sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeats, (time.process_time() - cpu) / repeats


def _task(backbone: str, foreground_only: bool, device: torch.device) -> BodyPartClassifier:
    return BodyPartClassifier(backbone=backbone, foreground_only=foreground_only).to(device)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--batch-size", type=int, default=16, help="training batch size")
    parser.add_argument("--frames", type=int, default=64, help="frames per timing")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--culling",
        choices=("spans", "tiles"),
        default="spans",
        help="the renderer's ray cast: spans (default) or tiles (fused Triton kernel, CUDA)",
    )
    parser.add_argument("--threads", type=int, default=2, help="intra-op CPU threads")
    parser.add_argument(
        "--malloc",
        choices=("keep", "default"),
        default="keep",
        help="keep freed memory for reuse as lightning-synth does, or glibc's defaults",
    )
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args(argv)
    kept = keep_freed_memory() if args.malloc == "keep" else False
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    size = (args.height, args.width)
    batches = max(1, args.frames // args.batch_size)

    # -- rendering (what a DataLoader worker does per batch) -------------------------------
    renderer = BodyRenderer(*size, device=str(device), culling=args.culling)
    clean = RenderedBodies(10**6, renderer)
    noisy = RenderedBodies(10**6, renderer, noise=DepthSensorNoise())
    step = iter(range(0, 10**6, args.batch_size))

    def render(dataset: RenderedBodies) -> Callable[[], object]:
        def call() -> object:
            start = next(step)  # new frames each call
            return dataset.__getitems__(list(range(start, start + args.batch_size)))

        return call

    rates: dict[str, tuple[float, float]] = {}  # frames per wall-clock and per CPU second

    def rate(name: str, fn: Callable[[], object], frames: int, repeats: int) -> float:
        wall, cpu = _seconds(fn, device, repeats)
        rates[name] = (frames / wall, frames / max(cpu, 1e-9))
        return rates[name][0]

    render_fps = rate("render (clean)", render(clean), args.batch_size, batches)
    sensor_fps = rate("render + sensor model", render(noisy), args.batch_size, batches)
    loader_fps = None
    if device.type == "cpu":
        # What training actually receives: one worker renders and collates the batch into
        # shared memory, and this process takes it from there.
        loader = DataLoader(
            clean,
            batch_size=args.batch_size,
            sampler=range(10**6 // 2, 10**6),
            num_workers=1,
            persistent_workers=True,
        )
        batches_in = iter(loader)
        next(batches_in)
        wall = time.perf_counter()
        for _ in range(batches):
            next(batches_in)
        wall = time.perf_counter() - wall
        loader_fps = batches * args.batch_size / wall
        del batches_in, loader

    # -- training (frames consumed per second) ---------------------------------------------
    batch = {
        key: value.to(device)
        for key, value in default_collate(clean.__getitems__(range(args.batch_size))).items()
    }
    train_fps = {}
    for backbone in ("depth_features", "fcn"):
        task = _task(backbone, True, device).train()
        task.log = task.log_dict = lambda *a, **k: None  # no trainer: logging is a no-op
        optimizer = task.configure_optimizers()

        def train_step(task: BodyPartClassifier = task, optimizer=optimizer) -> None:
            optimizer.zero_grad(set_to_none=True)
            task.shared_step(batch, "train")["loss"].backward()
            optimizer.step()

        name = f"training consumes ({backbone})"
        train_fps[backbone] = rate(name, train_step, args.batch_size, batches)

    # -- inference, one frame at a time ------------------------------------------------------
    frames = [f[IMAGE][None].to(device) for f in clean.__getitems__(range(16))]
    inference_fps = {}
    for name, backbone, foreground_only in (
        ("depth_features", "depth_features", True),
        ("depth_features, every pixel (reference)", "depth_features", False),
        ("fcn", "fcn", True),
    ):
        task = _task(backbone, foreground_only, device).eval()
        count = max(len(frames), args.frames // (4 if not foreground_only else 1))
        order = [frames[i % len(frames)] for i in range(count)]

        def infer(task: BodyPartClassifier = task, order: list = order) -> None:
            with torch.inference_mode():
                for frame in order:
                    task.predict_parts(frame)

        inference_fps[name] = rate(f"inference: {name}", infer, count, 1)

    foreground = torch.cat(frames).gt(0).float().mean().item()
    result = {
        "height": args.height,
        "width": args.width,
        "batch_size": args.batch_size,
        "device": str(device),
        "culling": args.culling,
        "threads": torch.get_num_threads(),
        "keep_freed_memory": kept,
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "foreground_fraction": foreground,
        "render_fps": render_fps,
        "render_sensor_fps": sensor_fps,
        "train_fps": train_fps,
        "render_to_train_ratio": {k: render_fps / v for k, v in train_fps.items()},
        "render_sensor_to_train_ratio": {k: sensor_fps / v for k, v in train_fps.items()},
        "loader_fps": loader_fps,
        "loader_to_train_ratio": None
        if loader_fps is None
        else {k: loader_fps / v for k, v in train_fps.items()},
        "inference_fps": inference_fps,
        "foreground_speedup": inference_fps["depth_features"]
        / inference_fps["depth_features, every pixel (reference)"],
    }
    result["frames_per_cpu_second"] = {name: cpu for name, (_, cpu) in rates.items()}
    print(
        f"| {args.height}x{args.width}, {device}, {result['threads']} threads, batch "
        f"{args.batch_size} (inference: 1 frame at a time), malloc {args.malloc} "
        "| frames/s | frames/CPU-s |"
    )
    print("|---|---|---|")
    for name, (wall, cpu) in rates.items():
        print(f"| {name} | {wall:.1f} | {cpu:.1f} |")
    if loader_fps is not None:
        print(f"| render (clean), delivered by 1 DataLoader worker | {loader_fps:.1f} | - |")
    for backbone, fps in train_fps.items():
        delivered = (
            "" if loader_fps is None else f" | delivered by a worker {loader_fps / fps:.2f}x"
        )
        print(
            f"| render / training ({backbone}) | {render_fps / fps:.2f}x "
            f"| with sensor model {sensor_fps / fps:.2f}x{delivered} |"
        )
    print(
        f"\nforeground-only evaluation is {result['foreground_speedup']:.1f}x faster than every "
        f"pixel; the person covers {100 * foreground:.1f}% of the frame"
    )
    if args.json_out:
        with open(args.json_out, "w") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main()
