"""Conditional GAN on MNIST: can its samples replace real training data?

The MNIST-test protocol of ``shared/data/README.md``: images 0-4999 of the official test
split are the training data, 5000-9999 the evaluation set, used for nothing else.

1. ``GAN`` (conditional DCGAN) trained on images 0-4999 with their labels;
   generator steps/s against a hand-written PyTorch loop of the same updates (same
   networks, batches in memory) measured in the same run.
2. ``GeneratedSource`` samples the checkpoint: ``--generated`` labelled images.
3. Two ``ImageClassifier``s, same backbone, initial weights, batches and step budget:
   *real-train* on images 0-4999 and *GAN-train* on generated images only, both tested
   on 5000-9999 (``test/real_acc``). Target: GAN-train >= 95% of real-train.
4. FID and KID between 5000 generated and the 5000 evaluation images, in the feature
   space of the real-train classifier (the domain feature network), beside the same
   scores of real training images against the evaluation images (the floor).

    python benchmarks/gan_digits.py --data-dir ../shared/data/mnist-test

Writes ``benchmarks/results/gan_digits.json``, the sample grid
``benchmarks/results/gan_digits_samples.png`` (one row per class) and the checkpoints.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, Trainer, seed_everything
from mnist_protocol import mnist_source  # benchmarks/, next to this script
from torch.utils.data import DataLoader, Dataset
from torchvision.utils import save_image

from lightning_synth.batch import IMAGE, LABEL, REAL, make_sample
from lightning_synth.datamodules import GeneratedSource, MixedDomainDataModule
from lightning_synth.datamodules.sources import as_sample
from lightning_synth.metrics.generative import DomainFeatures, GenerativeScores
from lightning_synth.nn import GaninDigitNet
from lightning_synth.nn.gan_losses import discriminator_loss, generator_loss
from lightning_synth.tasks import GAN, ImageClassifier

RESULTS = Path(__file__).resolve().parent / "results"


def tensors(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    items = [as_sample(dataset[i]) for i in range(len(dataset))]  # type: ignore[arg-type]
    images = torch.stack([item[IMAGE] for item in items])
    return images, torch.tensor([int(item[LABEL]) for item in items])


class _Batches(Dataset):
    """Real images as samples of the batch contract."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return make_sample(self.images[index], int(self.labels[index]), REAL)


class _Progress(Callback):
    def __init__(self, every: int) -> None:
        self.every = every
        self.began = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        steps = getattr(pl_module, "generator_steps", trainer.global_step)
        if (
            steps
            and steps % self.every == 0
            and (not hasattr(pl_module, "generator_steps") or trainer.global_step % 2 == 0)
        ):
            metrics = trainer.callback_metrics
            shown = ", ".join(
                f"{name.split('/')[1]} {float(value):.3f}"
                for name, value in sorted(metrics.items())
                if name.startswith("train/")
            )
            elapsed = time.perf_counter() - self.began
            print(f"  step {steps}: {elapsed / steps * 1000:.0f} ms/step; {shown}", flush=True)


def make_gan(args: argparse.Namespace) -> GAN:
    return GAN(
        latent_dim=args.latent_dim,
        channels=1,
        image_size=28,
        num_classes=10,
        generator_width=args.width,
        discriminator_width=args.width,
        loss=args.loss,
        spectral_norm=args.spectral_norm,
        r1_gamma=args.r1_gamma,
        class_loss_weight=args.class_loss_weight,
        lr_g=args.lr,
        lr_d=args.lr,
        ema_decay=args.ema_decay,
        log_images_every_n_steps=0,
    )


def reference_steps_per_second(
    args: argparse.Namespace, images: torch.Tensor, labels: torch.Tensor, steps: int
) -> float:
    """Generator steps/s of a hand-written loop doing the task's updates (1 D + 1 G step,
    one fake batch for both, AC-GAN terms, EMA update), same networks and optimizers."""
    seed_everything(0, verbose=False)
    task = make_gan(args)
    g_opt, d_opt = task.configure_optimizers()
    kind = "wgan" if args.loss == "wgan_gp" else args.loss
    generator = torch.Generator().manual_seed(0)
    began = 0.0
    for step in range(steps + 3):
        if step == 3:
            began = time.perf_counter()  # after warm-up
        index = torch.randint(len(labels), (args.batch_size,), generator=generator)
        real, y = images[index] * 2 - 1, labels[index]
        fake = task.generator(torch.randn(args.batch_size, args.latent_dim), y)
        task.generator.requires_grad_(False)
        real_scores, real_logits = task.discriminator.scores_and_class_logits(real, y)
        d_loss = discriminator_loss(real_scores, task.discriminator(fake.detach(), y), kind)
        if real_logits is not None:
            d_loss = d_loss + args.class_loss_weight * F.cross_entropy(real_logits, y)
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.step()
        task.generator.requires_grad_(True)
        task.discriminator.requires_grad_(False)
        fake_scores, fake_logits = task.discriminator.scores_and_class_logits(fake, y)
        g_loss = generator_loss(fake_scores, kind)
        if fake_logits is not None:
            g_loss = g_loss + args.class_loss_weight * F.cross_entropy(fake_logits, y)
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        g_opt.step()
        task.discriminator.requires_grad_(True)
        if task.generator_ema is not None:
            task.generator_ema.update(task.generator)
    return steps / (time.perf_counter() - began)


def lightning_steps_per_second(
    args: argparse.Namespace, images: torch.Tensor, labels: torch.Tensor, steps: int
) -> float:
    """Generator steps/s of the ``GAN`` task under ``Trainer.fit`` (after 3 warm-up steps)."""
    seed_everything(0, verbose=False)
    marks: list[float] = []

    class Clock(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            marks.append(time.perf_counter())

    loader = DataLoader(_Batches(images, labels), batch_size=args.batch_size, shuffle=True)
    Trainer(
        accelerator="cpu", max_steps=2 * (steps + 3), logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[Clock()],
    ).fit(make_gan(args), train_dataloaders=loader)  # fmt: skip
    return steps / (marks[-1] - marks[2])


def speed(args: argparse.Namespace, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Both loops in turn, twice each; the faster of each (the machine is shared)."""
    reference, lightning = [], []
    for _ in range(2):
        reference.append(reference_steps_per_second(args, images, labels, args.speed_steps))
        lightning.append(lightning_steps_per_second(args, images, labels, args.speed_steps))
    return {"reference": max(reference), "lightning": max(lightning)}


def train_gan(
    args: argparse.Namespace, images: torch.Tensor, labels: torch.Tensor
) -> tuple[Path, dict]:
    seed_everything(0, verbose=False)
    gan = make_gan(args)
    loader = DataLoader(
        _Batches(images, labels), batch_size=args.batch_size, shuffle=True, drop_last=True
    )
    trainer = Trainer(
        accelerator="cpu",
        max_steps=2 * args.g_steps,  # one D and one G step per batch: 2 global steps
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[_Progress(args.print_every)],
    )
    began = time.perf_counter()
    trainer.fit(gan, train_dataloaders=loader)
    seconds = time.perf_counter() - began
    path = RESULTS / f"gan_digits{args.tag}_cgan.ckpt"
    trainer.save_checkpoint(path)
    # one row per class, 10 fixed codes
    grid_noise = torch.randn(
        10, args.latent_dim, generator=torch.Generator().manual_seed(1)
    ).repeat(10, 1)
    grid_labels = torch.arange(10).repeat_interleave(10)
    save_image(
        gan.sample(100, grid_labels, z=grid_noise),
        RESULTS / f"gan_digits{args.tag}_samples.png",
        nrow=10,
        padding=2,
        pad_value=1.0,
    )
    return path, {
        "g_steps": gan.generator_steps,
        "seconds": seconds,
        "global_step": trainer.global_step,
    }


def train_classifier(
    args: argparse.Namespace, datamodule: MixedDomainDataModule, tag: str
) -> tuple[ImageClassifier, float]:
    seed_everything(0, verbose=False)
    model = ImageClassifier(
        feature_extractor=GaninDigitNet(1, batch_norm=True),
        in_channels=1,
        image_size=28,
        lr=args.clf_lr,
        scheduler="cosine",
        log_images=False,
    )
    trainer = Trainer(
        accelerator="cpu",
        max_steps=args.clf_steps,
        max_epochs=-1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    began = time.perf_counter()
    trainer.fit(model, datamodule)
    print(f"  {tag}: {args.clf_steps} steps in {time.perf_counter() - began:.0f} s", flush=True)
    metrics = trainer.test(model, datamodule, verbose=False)[0]
    return model, float(metrics["test/real_acc"])


@torch.no_grad()
def scores(
    features: DomainFeatures, real: torch.Tensor, other: torch.Tensor, subset: int
) -> dict[str, float]:
    metric = GenerativeScores(features, kid_subset_size=subset)
    for start in range(0, len(real), 500):
        metric.update(real[start : start + 500], real=True)
    for start in range(0, len(other), 500):
        metric.update(other[start : start + 500], real=False)
    return {key: float(value) for key, value in metric.compute().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data-dir", type=Path, required=True, help="folder with the MNIST t10k files"
    )
    parser.add_argument("--g-steps", type=int, default=16000, help="generator steps")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=32, help="G's last / D's first width")
    parser.add_argument("--latent-dim", type=int, default=64)
    parser.add_argument("--loss", default="hinge", choices=("non_saturating", "hinge", "wgan_gp"))
    parser.add_argument("--spectral-norm", action="store_true")
    parser.add_argument("--r1-gamma", type=float, default=0.0)
    parser.add_argument("--class-loss-weight", type=float, default=1.0, help="AC-GAN term")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--ema-decay", type=float, default=0.999)
    parser.add_argument("--generated", type=int, default=60000, help="generated training images")
    parser.add_argument("--clf-steps", type=int, default=1500, help="classifier steps (both arms)")
    parser.add_argument("--clf-lr", type=float, default=2e-3)
    parser.add_argument("--speed-steps", type=int, default=30, help="steps per speed timing")
    parser.add_argument("--print-every", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--skip-gan", action="store_true", help="reuse the checkpoint of an earlier run"
    )
    parser.add_argument("--tag", default="", help="suffix of the result files")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    RESULTS.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()

    import tempfile

    with tempfile.TemporaryDirectory() as root:
        mnist = mnist_source(args.data_dir, Path(root))
        train_images, train_labels = tensors(mnist.dataset("train"))
        test_images, test_labels = tensors(mnist.dataset("test"))
        print(
            f"MNIST: {len(train_labels)} training, {len(test_labels)} evaluation images", flush=True
        )

        rates = speed(args, train_images, train_labels)
        print(
            f"generator steps/s: GAN task {rates['lightning']:.2f}, "
            f"hand-written loop {rates['reference']:.2f}",
            flush=True,
        )
        if args.skip_gan:
            checkpoint, gan_info = (
                RESULTS / f"gan_digits{args.tag}_cgan.ckpt",
                json.loads((RESULTS / f"gan_digits{args.tag}.json").read_text())["gan"],
            )
        else:
            checkpoint, gan_info = train_gan(args, train_images, train_labels)
        lightning_rate = gan_info["g_steps"] / gan_info["seconds"]
        print(
            f"GAN: {gan_info['g_steps']} generator steps, {lightning_rate:.2f} steps/s", flush=True
        )

        generated = GeneratedSource(
            str(checkpoint), train_length=args.generated, val_length=0, test_length=1000
        )
        data = {
            fraction: MixedDomainDataModule(
                generated,
                mnist,
                image_size=28,
                channels=1,
                batch_size=128,
                real_fraction=fraction,
                num_workers=0,
            )
            for fraction in (1.0, 0.0)
        }
        real_model, real_acc = train_classifier(args, data[1.0], "real-train classifier")
        gan_model, gan_acc = train_classifier(args, data[0.0], "GAN-train classifier")

        features = DomainFeatures(real_model, image_size=28, channels=1)
        fake_images, _ = tensors(
            GeneratedSource(
                str(checkpoint), train_length=5000, val_length=0, test_length=0, seed=1
            ).dataset("train")
        )
        gen_scores = scores(features, test_images, fake_images, 1000)
        floor = scores(features, test_images, train_images, 1000)

    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared), torch {torch.__version__}, {args.threads} thread(s)",
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "gan": gan_info,
        "generator_steps_per_s_whole_run": lightning_rate,
        "generator_steps_per_s": rates["lightning"],
        "reference_steps_per_s": rates["reference"],
        "speed_ratio": rates["lightning"] / rates["reference"],
        "fid": gen_scores["fid"],
        "kid": gen_scores["kid"],
        "kid_std": gen_scores["kid_std"],
        "fid_real_train_vs_test": floor["fid"],
        "kid_real_train_vs_test": floor["kid"],
        "gan_train_acc": gan_acc,
        "real_train_acc": real_acc,
        "ratio": gan_acc / real_acc,
        "total_seconds": time.perf_counter() - began,
    }
    (RESULTS / f"gan_digits{args.tag}.json").write_text(json.dumps(result, indent=2))
    print()
    print(
        "| FID | KID | GAN-train acc | real-train acc | ratio | G steps/s (vs plain loop) | budget |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {result['fid']:.2f} (real: {floor['fid']:.2f}) | {result['kid']:.4f} (real: {floor['kid']:.4f}) "
        f"| {100 * gan_acc:.2f}% | {100 * real_acc:.2f}% | {result['ratio']:.3f} "
        f"| {rates['lightning']:.2f} ({result['speed_ratio']:.2f}x) | {gan_info['g_steps']} G steps x {args.batch_size}, "
        f"{args.clf_steps} classifier steps x 128 |"
    )
    print(
        f"samples: {RESULTS / f'gan_digits{args.tag}_samples.png'}; total {result['total_seconds'] / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
