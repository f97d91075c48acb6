"""How far the shipped denoising network gets when it is given the real references.

The question behind it: is the 30-minute CPU budget, not the synthetic noise, what keeps
the learned recipes below the classical denoisers on real camera noise? The network of
``--config`` (default ``configs/denoise_pseudo_clean.yaml``: its architecture, learning
rate, cosine schedule, crop and batch size, and by default its loss and number of steps)
trains for ``--steps`` steps directly on real noisy /
reference pairs: crops of the pairs *outside* ``--val-scenes``, with random flips and
quarter turns. It is then scored on the pairs *of* the validation scenes, beside the
noisy input and the project's TV at ``--tv-weight``. This is the best case for any
recipe with that network and budget: its training noise is the real noise, of the same
cameras, with exact targets. Every loss in ``--losses`` trains a network of its own;
``--device cuda`` trains it on a GPU (where the same minutes buy more steps).

It also splits TV's remaining error on the validation scenes into brightness and colour
(YCbCr, BT.601): the PSNR of TV's output with its luma, or its chroma, replaced by the
reference's.

    python benchmarks/denoise_ceiling.py --real ../shared/data/denoise/real-noise/polyu \\
        --json-out denoise_ceiling.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from denoise_real import VAL_SCENES, per_image_scores, write_json

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "denoise_pseudo_clean.yaml"
LOSSES = {"l1": F.l1_loss, "l2": F.mse_loss}


def _mean_psnr(outputs: torch.Tensor, references: torch.Tensor) -> float:
    """PSNR per image, averaged: benchmarks/denoise_real.py's score."""
    return float(per_image_scores(list(outputs.cpu()), list(references))[0].mean())


def _crops(
    noisy: torch.Tensor, clean: torch.Tensor, batch: int, size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` random aligned crops of random pairs, each flipped and turned at random."""
    count, _, height, width = noisy.shape
    inputs, targets = [], []
    for _ in range(batch):
        index = int(torch.randint(count, (1,), generator=generator))
        top = int(torch.randint(height - size + 1, (1,), generator=generator))
        left = int(torch.randint(width - size + 1, (1,), generator=generator))
        turns = int(torch.randint(4, (1,), generator=generator))
        flip = bool(torch.randint(2, (1,), generator=generator))
        window = (slice(None), slice(top, top + size), slice(left, left + size))
        pair = torch.stack([noisy[index][window], clean[index][window]])
        pair = torch.rot90(pair, turns, (2, 3))
        pair = pair.flip(3) if flip else pair
        inputs.append(pair[0])
        targets.append(pair[1])
    return torch.stack(inputs), torch.stack(targets)


def train_supervised(
    noisy: torch.Tensor,
    clean: torch.Tensor,
    loss_name: str,
    steps: int,
    config: dict,
    seed: int,
    device: torch.device,
) -> tuple[torch.nn.Module, float]:
    """The config's network trained on real pairs; returns it and the training seconds."""
    model_args = config["model"]["init_args"]
    data_args = config["data"]["init_args"]
    module_name, class_name = model_args["network"]["class_path"].rsplit(".", 1)
    network_class = getattr(importlib.import_module(module_name), class_name)
    torch.manual_seed(seed)
    network = network_class(**model_args["network"].get("init_args", {})).to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=float(model_args["lr"]))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    loss_of = LOSSES[loss_name]
    began = time.perf_counter()
    for step in range(steps):
        inputs, targets = _crops(
            noisy, clean, int(data_args["batch_size"]), int(data_args["patch_size"]), generator
        )
        inputs, targets = inputs.to(device), targets.to(device)
        loss = loss_of(network(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 500 == 0:
            print(f"  step {step}: {loss_name} {loss.item():.5f}", flush=True)
    return network.eval(), time.perf_counter() - began


def colour_split(noisy: torch.Tensor, clean: torch.Tensor, tv: torch.Tensor) -> dict[str, float]:
    """PSNR of TV's output, and of the noisy input, with the luma or the chroma taken
    from the reference instead (JPEG's YCbCr)."""
    from lightning_synth.nn.total_variation import rgb_to_ycbcr, ycbcr_to_rgb

    denoised, reference, raw = (rgb_to_ycbcr(x) for x in (tv, clean, noisy))
    luma, chroma = slice(0, 1), slice(1, 3)

    def mixed(luma_from: torch.Tensor, chroma_from: torch.Tensor) -> float:
        mixed_ycbcr = torch.cat([luma_from[:, luma], chroma_from[:, chroma]], 1)
        return _mean_psnr(ycbcr_to_rgb(mixed_ycbcr), clean)

    return {
        "tv_with_reference_chroma": mixed(denoised, reference),
        "tv_with_reference_luma": mixed(reference, denoised),
        "noisy_with_reference_chroma": mixed(raw, reference),
        "noisy_with_reference_luma": mixed(reference, raw),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--real", required=True, help="folder of <name>_real/<name>_mean pairs")
    parser.add_argument("--val-scenes", nargs="+", default=list(VAL_SCENES))
    parser.add_argument("--config", default=str(CONFIG), help="whose network and budget")
    parser.add_argument("--steps", type=int, default=0, help="0: the config's batches")
    parser.add_argument("--losses", nargs="+", default=None, choices=sorted(LOSSES))
    parser.add_argument("--tv-weight", type=float, default=0.03)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the network)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    from lightning_synth.datamodules.noisy_images import NoisyPair, NoisyPhotographs
    from lightning_synth.nn.denoisers import tiled
    from lightning_synth.nn.total_variation import tv_denoise

    config = yaml.safe_load(Path(args.config).read_text())
    data_args = config["data"]["init_args"]
    rendered_per_batch = data_args["batch_size"] * (1 - data_args.get("real_fraction", 0.0))
    steps = args.steps or round(data_args["train_length"] / rendered_per_batch)
    losses = args.losses or [config["model"]["init_args"].get("loss", "l1")]
    # The default config's rows keep their names; another config's carry its stem.
    label = "" if Path(args.config).resolve() == CONFIG else f"{Path(args.config).stem}_"
    device = torch.device(args.device)
    # The split a Denoiser run with these references would use: the pairs outside the
    # held-out scenes are taught, those of the scenes are scored.
    source = NoisyPhotographs(
        root=args.real,
        val_scenes=args.val_scenes,
        test_scenes=args.val_scenes,
        train_references=True,
    )
    held, taught = source.stage_pairs("val"), source.taught_pairs()
    if not held or not taught:
        sys.exit("denoise_ceiling: --val-scenes must hold out some scenes and leave others")

    def stacked(pairs: list[NoisyPair]) -> tuple[torch.Tensor, torch.Tensor]:
        loaded = [source.load(pair) for pair in pairs]
        return torch.stack([n for n, _ in loaded]), torch.stack([r for _, r in loaded])

    val_noisy, val_clean = stacked(held)
    train_noisy, train_clean = stacked(taught)
    print(f"{len(train_noisy)} training pairs, {len(val_noisy)} validation-scene pairs", flush=True)

    tv = tv_denoise(val_noisy, args.tv_weight)
    rows: dict[str, object] = {
        "noisy": _mean_psnr(val_noisy, val_clean),
        f"tv_{args.tv_weight:g}": _mean_psnr(tv, val_clean),
        "train_pairs_noisy": _mean_psnr(train_noisy, train_clean),
        f"train_pairs_tv_{args.tv_weight:g}": _mean_psnr(
            tv_denoise(train_noisy, args.tv_weight), train_clean
        ),
        **colour_split(val_noisy, val_clean, tv),
    }
    print(json.dumps(rows, indent=1), flush=True)
    for loss_name in losses:
        print(f"supervised, {label}{loss_name}:", flush=True)
        network, seconds = train_supervised(
            train_noisy, train_clean, loss_name, steps, config, args.seed, device
        )

        @torch.no_grad()
        def denoise(images: torch.Tensor, network: torch.nn.Module = network) -> torch.Tensor:
            return torch.cat([tiled(network, image[None].to(device)) for image in images])

        row = rows[f"supervised_{label}{loss_name}"] = {
            "psnr_val": _mean_psnr(denoise(val_noisy), val_clean),
            "psnr_train_pairs": _mean_psnr(denoise(train_noisy), train_clean),
            "train_seconds": seconds,
            "steps": steps,
        }
        print(json.dumps(row), flush=True)
        write_json(args, rows)  # after every network: a long run keeps what it measured


if __name__ == "__main__":
    main()
