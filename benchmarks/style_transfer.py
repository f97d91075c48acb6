"""Style transfer speed: ``StyleTransfer`` under ``Trainer.fit`` against a plain PyTorch loop.

Both do the same work per step: ``--iterations-per-step`` L-BFGS iterations (``max_iter``,
default 1; the PyTorch tutorial's loop uses 20; history 100) on the pixels, each one
forward and backward pass of the same frozen VGG19 features
(``conv1_1`` ... ``conv5_1``), with the content loss on ``conv4_2`` and Gram-matrix
style losses (the functions of ``lightning_synth.nn.style_losses``), targets computed
once. The task logs its scalars every 50 steps to TensorBoard (Lightning's default);
progress images and checkpoints are off, since they are extra work the loop does not
do. Each measurement runs in its own process (so peak memory is its own), after
``--warmup`` steps; the table shows the median seconds per step, the speed ratio
``plain seconds / ours seconds`` (1 = as fast as the loop) and peak memory (GPU:
``torch.cuda.max_memory_allocated``; CPU: the process's peak resident set size, and
``+MiB``, its growth over the resident size once libraries, network and images are
loaded, the same for both). On a
CPU it shows wall time and the process's CPU time per step: on a shared machine the
wall clock also counts other people's work, the CPU time does not.

Weights: ImageNet VGG19 when ``vgg19-dcbb9e9d.pth`` is in the torch hub cache, otherwise
random VGG19 weights (speed and memory do not depend on the values); ``--weights``
chooses explicitly. ``--network tiny`` swaps VGG19 for six 8-channel convolutions under
the same layer names: a step then costs almost nothing but Python and dispatch, which is
where the Trainer's own per-step work shows (a stand-in, on a CPU, for a GPU's
launch-bound steps).

    python benchmarks/style_transfer.py --sizes 256 512 --steps 3 --json-out style.json
    python benchmarks/style_transfer.py --device cuda --steps 20
    python benchmarks/style_transfer.py --network tiny --sizes 16 --steps 100 --warmup 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def _weights(choice: str) -> str:
    if choice != "auto":
        return choice
    from lightning_synth.nn.vgg import IMAGENET_WEIGHTS_FILE

    cached = Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_WEIGHTS_FILE
    return "imagenet" if cached.is_file() else "random"


def _tiny_network():  # noqa: ANN202 (imports stay inside the worker)
    """Six 8-channel convolutions named like the VGG19 layers the losses use."""
    from torch import nn

    from lightning_synth.nn.vgg import NamedFeatures

    layers: list[nn.Module] = []
    for index in range(6):
        layers += [nn.Conv2d(3 if index == 0 else 8, 8, 3, padding=1), nn.ReLU()]
    names = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv4_2", "conv5_1")
    return NamedFeatures(nn.Sequential(*layers), {n: str(2 * i + 1) for i, n in enumerate(names)})


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: KiB


def _resident_bytes() -> int:
    """The process's resident set size now (Linux), 0 where unknown."""
    try:
        fields = Path("/proc/self/status").read_text().split("VmRSS:")[1].split()
    except (OSError, IndexError):
        return 0
    return int(fields[0]) * 1024


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _median_step(times: list[tuple[float, float]], warmup: int, which: int) -> float:
    steps = [b[which] - a[which] for a, b in zip(times[warmup - 1 :], times[warmup:], strict=False)]
    return statistics.median(steps)


def _worker(
    method: str,
    size: int,
    steps: int,
    warmup: int,
    weights: str,
    device_name: str,
    iterations_per_step: int = 1,
    network_name: str = "vgg19",
) -> dict:
    import lightning.pytorch  # noqa: F401  (both pay for the imports: same baseline)
    import tensorboard  # noqa: F401

    import lightning_synth.tasks  # noqa: F401
    from lightning_synth.datamodules.images import StyleTransferDataModule
    from lightning_synth.nn.vgg import VGGFeatures

    device = torch.device(device_name)
    torch.manual_seed(0)
    network = VGGFeatures(weights) if network_name == "vgg19" else _tiny_network()
    data = StyleTransferDataModule(size=size, steps_per_epoch=warmup + steps)
    data.fit_batch()
    baseline = 0 if device.type == "cuda" else _resident_bytes()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if method == "plain":
        times = _plain_loop(network, data.fit_batch(), device, warmup + steps, iterations_per_step)
    else:
        times = _lightning(network, data, device, warmup + steps, iterations_per_step)
    return {
        "method": method,
        "size": size,
        "seconds_per_step": _median_step(times, warmup, 0),
        "cpu_seconds_per_step": _median_step(times, warmup, 1),
        "peak_memory_bytes": _peak_memory(device),
        "baseline_memory_bytes": baseline,
    }


def _plain_loop(
    network, batch, device: torch.device, steps: int, iterations_per_step: int = 1
) -> list[tuple[float, float]]:
    """What a user would write by hand: the same losses, L-BFGS, a for loop."""
    from lightning_synth.nn.style_losses import content_loss, gram_matrix, style_loss
    from lightning_synth.nn.vgg import CONTENT_LAYERS, STYLE_LAYERS

    network = network.to(device)
    content, style = batch["image"].to(device), batch["style"].to(device)
    with torch.no_grad():
        content_targets = network(content)
        grams = {k: gram_matrix(v).mean(0) for k, v in network(style).items()}
    pixels = content.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [pixels],
        lr=1.0,
        max_iter=iterations_per_step,
        max_eval=iterations_per_step + 1,
        history_size=100,
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        found = network(pixels)
        loss = content_loss(found, content_targets, CONTENT_LAYERS) + 100.0 * style_loss(
            found, grams, STYLE_LAYERS
        )
        loss.sum().backward()
        return loss.sum()

    times = []
    for _ in range(steps):
        optimizer.step(closure)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(_clock())
    return times


def _lightning(
    network, data, device: torch.device, steps: int, iterations_per_step: int = 1
) -> list[tuple[float, float]]:
    from lightning.pytorch import Callback, Trainer
    from lightning.pytorch.loggers import TensorBoardLogger

    from lightning_synth.tasks import StyleTransfer

    class Clock(Callback):
        def __init__(self) -> None:
            self.times: list[tuple[float, float]] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            self.times.append(_clock())

    clock = Clock()
    model = StyleTransfer(
        feature_network=network,
        log_images_every_n_steps=0,
        iterations_per_step=iterations_per_step,
    )
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(
            accelerator="gpu" if device.type == "cuda" else "cpu",
            devices=1,
            max_steps=steps,
            logger=TensorBoardLogger(folder, name="bench"),
            callbacks=[clock],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(model, data)
    return clock.times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 512])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=1, help="alternations (best kept)")
    parser.add_argument("--weights", default="auto", help="auto, imagenet, random or a path")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json-out", default=None, help="write the results here as JSON")
    parser.add_argument(
        "--iterations-per-step", type=int, default=1, help="L-BFGS iterations per step (both)"
    )
    parser.add_argument(
        "--network", choices=("vgg19", "tiny"), default="vgg19", help="feature network (both)"
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    weights = _weights(args.weights)
    torch.set_num_threads(args.threads)
    if args.worker:
        result = _worker(
            args.worker,
            args.size,
            args.steps,
            args.warmup,
            weights,
            args.device,
            args.iterations_per_step,
            args.network,
        )
        print("RESULT " + json.dumps(result))
        return

    described = f"VGG19 weights: {weights}" if args.network == "vgg19" else "tiny network"
    print(f"{described}; device {args.device}; torch threads {torch.get_num_threads()}")
    best: dict[tuple[str, int], dict] = {}
    for _ in range(args.rounds):
        for size in args.sizes:
            for method in ("ours", "plain"):  # alternate, so both see the same machine load
                command = [
                    sys.executable, __file__, "--worker", method, "--size", str(size),
                    "--steps", str(args.steps), "--warmup", str(args.warmup),
                    "--weights", weights, "--device", args.device, "--threads", str(args.threads),
                    "--iterations-per-step", str(args.iterations_per_step),
                    "--network", args.network,
                ]  # fmt: skip
                output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                line = next(x for x in output.splitlines() if x.startswith("RESULT "))
                result = json.loads(line[len("RESULT ") :])
                key = (method, size)
                if key not in best or result["seconds_per_step"] < best[key]["seconds_per_step"]:
                    best[key] = result

    rows = []
    cpu = torch.device(args.device).type == "cpu"
    header = f"{'size':>5} | {'ours s/step':>11} {'plain s/step':>12} {'ratio':>6} | "
    if cpu:
        header += f"{'ours CPU s':>10} {'plain CPU s':>11} {'ratio':>6} | "
    header += f"{'ours peak MiB':>13} {'plain peak MiB':>14}"
    if cpu:
        header += f" | {'ours +MiB':>9} {'plain +MiB':>10}"
    print(header)
    for size in args.sizes:
        ours, plain = best[("ours", size)], best[("plain", size)]
        ratio = plain["seconds_per_step"] / ours["seconds_per_step"]
        cpu_ratio = plain["cpu_seconds_per_step"] / ours["cpu_seconds_per_step"]
        rows.append(
            {"size": size, "ours": ours, "plain": plain, "speed_ratio": ratio,
             "cpu_speed_ratio": cpu_ratio}
        )  # fmt: skip
        line = (
            f"{size:>5} | {ours['seconds_per_step']:>11.4f} {plain['seconds_per_step']:>12.4f} "
            f"{ratio:>6.3f} | "
        )
        if cpu:
            line += (
                f"{ours['cpu_seconds_per_step']:>10.4f} {plain['cpu_seconds_per_step']:>11.4f} "
                f"{cpu_ratio:>6.3f} | "
            )
        line += (
            f"{ours['peak_memory_bytes'] / 2**20:>13.0f} "
            f"{plain['peak_memory_bytes'] / 2**20:>14.0f}"
        )
        if cpu:
            grown = [r["peak_memory_bytes"] - r["baseline_memory_bytes"] for r in (ours, plain)]
            line += f" | {grown[0] / 2**20:>9.0f} {grown[1] / 2**20:>10.0f}"
        print(line, flush=True)
    if args.json_out:
        device = torch.device(args.device)
        result = {
            "benchmark": "style_transfer",
            "network": args.network,
            "weights": weights if args.network == "vgg19" else None,
            "steps": args.steps,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "iterations_per_step": args.iterations_per_step,
            "machine": {
                "platform": platform.platform(),
                "processor": platform.processor(),
                "cpu_count": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "device": str(device),
                "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
                "torch": torch.__version__,
            },
            "memory": "torch.cuda.max_memory_allocated"
            if device.type == "cuda"
            else "peak resident set size of the measuring process",
            "rows": rows,
        }
        with open(args.json_out, "w") as handle:
            json.dump(result, handle, indent=2)
        print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
