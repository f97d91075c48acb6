"""Training throughput of ``ImageClassifier`` under Lightning, as a ratio to a hand-written
PyTorch loop on the same model, the same batches and the same work per step, in one run.

Both loops train a fresh copy of the same initial network on the same pre-rendered mixed
batches (rendered digits + scikit-learn's real digits, from ``MixedDomainDataModule``),
with the same optimizer, and both update per-domain torchmetrics accuracy each step. The
Lightning run uses the project's defaults that cost time in a real run (TensorBoard
logger, per-step logging), without the progress bar and checkpoints. Runs alternate
(hand, Lightning, hand, ...) and the ratio is the median over repeats, because absolute
times on shared machines drift.

    python benchmarks/lightning_overhead.py --steps 200 --repeats 3 --json-out overhead.json
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import tempfile
import time

import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, Dataset
from torchmetrics.classification import MulticlassAccuracy

from lightning_synth.batch import DOMAIN, DOMAIN_NAMES, IGNORE_LABEL, IMAGE, LABEL, Batch
from lightning_synth.datamodules import MixedDomainDataModule, RenderedDigitsSource, SklearnDigits
from lightning_synth.tasks import ImageClassifier
from lightning_synth.tasks.classification import masked_cross_entropy


class _Batches(Dataset):
    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> Batch:
        return self.batches[index]


class _Clock(Callback):
    """Time from the start of batch ``warmup`` to the end of training."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start = self.end = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self.end = time.perf_counter()


def _hand_loop(model: ImageClassifier, batches: list[Batch], warmup: int, lr: float) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    metrics = {
        name: MulticlassAccuracy(10, ignore_index=IGNORE_LABEL) for name in DOMAIN_NAMES.values()
    }
    model.train()
    start = 0.0
    for index, batch in enumerate(batches):
        if index == warmup:
            start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        logits = model(batch[IMAGE])
        loss = masked_cross_entropy(logits, batch[LABEL])
        loss.backward()
        optimizer.step()
        for code, name in DOMAIN_NAMES.items():
            chosen = batch[DOMAIN] == code
            if bool((batch[LABEL][chosen] != IGNORE_LABEL).any()):
                metrics[name](logits.detach()[chosen], batch[LABEL][chosen])
        float(loss.detach())  # what logging the loss costs: one device sync per step
    return time.perf_counter() - start


def _lightning_loop(model: ImageClassifier, batches: list[Batch], warmup: int) -> float:
    clock = _Clock(warmup)
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(
            accelerator="cpu",
            devices=1,
            max_epochs=1,
            limit_val_batches=0,
            logger=TensorBoardLogger(folder, name="overhead"),
            log_every_n_steps=1,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[clock],
        )
        loader = DataLoader(_Batches(batches), batch_size=None, shuffle=False)
        trainer.fit(model, train_dataloaders=loader)
    return clock.end - clock.start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=10, help="untimed first steps per run")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--repeats", type=int, default=3, help="alternating pairs of runs")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    total = args.steps + args.warmup

    datamodule = MixedDomainDataModule(
        RenderedDigitsSource(
            train_length=total * args.batch_size, image_size=args.image_size, channels=1
        ),
        SklearnDigits(),
        image_size=args.image_size,
        channels=1,
        batch_size=args.batch_size,
        real_fraction=0.25,
        num_workers=0,
    )
    loader = datamodule.train_dataloader()
    batches = [batch for batch, _ in zip(loader, range(total), strict=False)]
    torch.manual_seed(0)
    initial = ImageClassifier(in_channels=1, image_size=args.image_size, log_images=False)

    hand_times, lightning_times = [], []
    for _ in range(args.repeats):
        hand_times.append(_hand_loop(copy.deepcopy(initial), batches, args.warmup, lr=1e-3))
        lightning_times.append(_lightning_loop(copy.deepcopy(initial), batches, args.warmup))
    images = args.steps * args.batch_size
    ratios = [hand / light for hand, light in zip(hand_times, lightning_times, strict=True)]
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "steps": args.steps,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "hand_images_per_s": images / statistics.median(hand_times),
        "lightning_images_per_s": images / statistics.median(lightning_times),
        "ratio_per_repeat": ratios,
        "ratio_median": statistics.median(ratios),
    }
    print("| loop | images/s (median) |")
    print("|---|---:|")
    print(f"| hand-written PyTorch | {result['hand_images_per_s']:.0f} |")
    print(f"| Lightning (`ImageClassifier`) | {result['lightning_images_per_s']:.0f} |")
    print(f"\nratio Lightning / hand-written: {result['ratio_median']:.3f} (per repeat: "
          + ", ".join(f"{r:.3f}" for r in ratios) + "); target >= 0.95")  # fmt: skip
    if args.json_out:
        with open(args.json_out, "w") as file:
            json.dump(result, file, indent=2)


if __name__ == "__main__":
    main()
