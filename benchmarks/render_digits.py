"""How fast ``RenderedDigits`` makes images, against the training step it must keep fed.

Measures images/s on one core (one process, one thread) with a cold glyph cache (a fresh
process's first images, as in a DataLoader worker's first epoch) and a warm one, then
with a DataLoader using every core. The reference, measured in the same run on the same
single core, is a training step (forward, backward, SGD) of a small SVHN-style ConvNet:
``render / train`` above 1 means one core renders faster than one core trains on the
images, so rendering is not the bottleneck.

    python benchmarks/render_digits.py --num-images 5000 --json-out render_digits.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch
from torch import nn
from torch.utils.data import DataLoader

from lightning_synth.rendering import fonts as fonts_module
from lightning_synth.rendering.digits import RenderedDigits


def _clear_caches() -> None:
    for cached in (fonts_module.glyph_mask, fonts_module._truetype, fonts_module._digit_box):
        cached.cache_clear()


def _render_rate(dataset: RenderedDigits, start: int, count: int) -> float:
    began = time.perf_counter()
    for index in range(start, start + count):
        dataset[index]
    return count / (time.perf_counter() - began)


def _loader_rate(dataset: RenderedDigits, workers: int, batch_size: int) -> float:
    began = time.perf_counter()  # worker start-up is part of every epoch: count it
    total = sum(len(labels) for _, labels in DataLoader(dataset, batch_size, num_workers=workers))
    return total / (time.perf_counter() - began)


def _train_rate(image_size: int, batch_size: int, steps: int) -> float:
    """Images/s of a small ConvNet's training step (Ganin & Lempitsky's SVHN size)."""
    model = nn.Sequential(
        nn.Conv2d(3, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 5, padding=2), nn.ReLU(), nn.Flatten(),
        nn.LazyLinear(128), nn.ReLU(), nn.Linear(128, 10),
    )  # fmt: skip
    images = torch.rand(batch_size, 3, image_size, image_size)
    labels = torch.randint(0, 10, (batch_size,))
    model(images)  # materialise the lazy layer before the optimiser sees the parameters
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    def step() -> None:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()

    step()
    began = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-images", type=int, default=5000, help="images per measurement")
    parser.add_argument("--image-size", type=int, default=32, help="image height and width")
    parser.add_argument("--batch-size", type=int, default=128, help="DataLoader/train batch")
    parser.add_argument("--json-out", default=None, help="write the results here as JSON")
    args = parser.parse_args()

    torch.set_num_threads(1)
    cores = os.cpu_count() or 1
    dataset = RenderedDigits(length=10 * args.num_images, image_size=args.image_size)
    _clear_caches()
    cold = _render_rate(dataset, 0, args.num_images)
    warm = _render_rate(dataset, args.num_images, args.num_images)
    train = _train_rate(args.image_size, args.batch_size, steps=max(3, args.num_images // 2000))
    _clear_caches()  # forked workers start as cold as in a real first epoch
    loader_set = RenderedDigits(length=args.num_images, image_size=args.image_size, seed=1)
    loader = _loader_rate(loader_set, cores, args.batch_size)

    rows = [
        ("1 core, cold glyph cache", cold, cold / train),
        ("1 core, warm glyph cache", warm, warm / train),
        (f"DataLoader, {cores} workers", loader, loader / train),
        ("reference: ConvNet train step, 1 core", train, 1.0),
    ]
    print(f"RenderedDigits {args.image_size}x{args.image_size}, {args.num_images} images")
    print("| setting | images/s | render / train |")
    print("|---|---:|---:|")
    for name, rate, ratio in rows:
        print(f"| {name} | {rate:,.0f} | {ratio:.1f} |")
    if args.json_out:
        result = {
            "benchmark": "render_digits",
            "image_size": args.image_size,
            "num_images": args.num_images,
            "batch_size": args.batch_size,
            "cpu_count": cores,
            "machine": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "images_per_s": {
                "single_core_cold": cold,
                "single_core_warm": warm,
                "dataloader_all_cores": loader,
                "reference_train_step_single_core": train,
            },
            "ratio_vs_train_step": {
                "single_core_cold": cold / train,
                "single_core_warm": warm / train,
                "dataloader_all_cores": loader / train,
            },
        }
        with open(args.json_out, "w") as handle:
            json.dump(result, handle, indent=2)
        print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
