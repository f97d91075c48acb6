"""Rendered digits -> MNIST: every adaptation method of ``lightning_synth.adaptation``, one table.

The same network (the paper's MNIST ConvNet and DANN's two-layer classifier), batches (half
rendered with labels, half real without) and step budget for every arm, ``--runs`` seeds
each; only ``ImageClassifier``'s ``adaptation:`` changes:

* ``source_only``: a domain discriminator that learns but sends nothing back (weight 0):
  the baseline, which still reports how separable its features are;
* ``dann``: :class:`DomainAdversarial` (Ganin & Lempitsky 2015);
* ``cdan``: :class:`CDAN` with entropy conditioning (CDAN+E, Long et al. 2018);
* ``coral``: :class:`CORAL` (Sun & Saenko 2016);
* ``mmd``: :class:`MMD`, multi-kernel (DAN, Long et al. 2015);
* ``mcc``: :class:`MinimumClassConfusion` (Jin et al. 2020);
* ``real_terms``: :class:`RealSampleTerms` (entropy 0.3, diversity 0.3, consistency 1.0);
* ``dann_plus``: ``dann`` + ``real_terms`` (``configs/dann_plus_handwriting.yaml``);
* ``mcc_plus``: ``mcc`` + ``real_terms``;
* ``train_on_real``: labelled real images only -- the upper bound.

Every method runs at its published default weight (1; the real-sample terms at the
weights above) with the paper's ramp; nothing is tuned here. Real images follow the
protocol of ``shared/data/README.md``: MNIST test images 0-4999 are the unlabelled
adaptation pool (and the labelled pool of ``train_on_real``), 5000-9999 the evaluation
set, used for nothing else. No model selection: each run is scored once, at its last
step. The gap closed is ``(adapted - source_only) / (train_on_real - source_only)`` on
the mean real accuracies.

Rendered digits are made once per invocation (20,000 training images, 28 x 28 gray): by
default handwriting-like pen strokes (:class:`StrokeDigits`, already MNIST-framed); with
``--renderer fonts``, printed glyphs restyled like MNIST (:func:`mnist_style`). The
optimisation is the paper's (SGD, momentum 0.9, ``mu0 = 0.01`` annealed, ramp with gamma
10), 3,000 steps of 128; ``--jobs 2`` runs two single-thread runs at a time.

    python benchmarks/adaptation_digits.py --data-dir ../shared/data/mnist-test --runs 3 \\
        --json-out adaptation_digits.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from mnist_protocol import mnist_source  # benchmarks/, next to this script
from torch.utils.data import Dataset

from lightning_synth.adaptation import (
    CDAN,
    CORAL,
    MMD,
    AdaptationMethod,
    DomainAdversarial,
    MinimumClassConfusion,
    RealSampleTerms,
)
from lightning_synth.datamodules import MixedDomainDataModule
from lightning_synth.datamodules.sources import DomainSource
from lightning_synth.nn import GaninDigitNet, MLPHead
from lightning_synth.rendering.digits import RenderedDigits
from lightning_synth.rendering.strokes import StrokeDigits
from lightning_synth.tasks import ImageClassifier

ARMS = (
    "source_only",
    "dann",
    "cdan",
    "coral",
    "mmd",
    "mcc",
    "real_terms",
    "dann_plus",
    "mcc_plus",
    "train_on_real",
)
ADAPTED = ARMS[1:-1]


def arm_methods(arm: str, args: argparse.Namespace) -> list[AdaptationMethod]:
    """The adaptation methods of ``arm`` (see the module's docstring)."""
    hidden = tuple(int(w) for w in args.domain_hidden.split(",") if w)
    real_terms = RealSampleTerms(
        entropy_weight=args.entropy_weight,
        diversity_weight=args.diversity_weight,
        consistency_weight=args.consistency_weight,
        threshold=args.pseudo_label_threshold,
    )
    return {
        "source_only": [DomainAdversarial(hidden=hidden, weight=0.0)],
        "dann": [DomainAdversarial(hidden=hidden, gamma=args.grl_gamma)],
        "cdan": [CDAN(hidden=hidden, entropy_conditioning=True, gamma=args.grl_gamma)],
        "coral": [CORAL()],
        "mmd": [MMD()],
        "mcc": [MinimumClassConfusion()],
        "real_terms": [real_terms],
        "dann_plus": [DomainAdversarial(hidden=hidden, gamma=args.grl_gamma), real_terms],
        "mcc_plus": [MinimumClassConfusion(), real_terms],
        "train_on_real": [],
    }[arm]


def mnist_style(images: torch.Tensor) -> torch.Tensor:
    """Light strokes on a black background, as in MNIST: invert dark-on-light images (the
    border is brighter than the middle) and stretch each image from its background level
    (border median) to its brightest pixel."""
    border = torch.cat(
        [images[..., 0, :], images[..., -1, :], images[..., :, 0], images[..., :, -1]], dim=-1
    ).flatten(1)
    middle = images[..., 8:-8, 8:-8].flatten(1)
    dark_on_light = border.median(1).values > middle.mean(1)
    images = torch.where(dark_on_light[:, None, None, None], 1 - images, images)
    background = torch.cat(
        [images[..., 0, :], images[..., -1, :], images[..., :, 0], images[..., :, -1]], dim=-1
    ).flatten(1)
    low = background.median(1).values[:, None, None, None]
    high = images.flatten(1).amax(1)[:, None, None, None]
    return ((images - low) / (high - low).clamp(min=0.05)).clamp(0, 1)


def elastic(images: torch.Tensor, alpha: float, sigma: float, seed: int) -> torch.Tensor:
    """Simard et al.'s (2003) elastic distortion: a smooth random displacement field
    (uniform noise blurred by a Gaussian of ``sigma`` px, scaled to ``alpha`` px)."""
    from torchvision.transforms.functional import gaussian_blur

    n, _, h, w = images.shape
    generator = torch.Generator().manual_seed(seed)
    field = torch.rand(n, 2, h, w, generator=generator) * 2 - 1
    size = 2 * round(3 * sigma) + 1
    field = gaussian_blur(field, [size, size], [sigma, sigma])
    field = field / field.abs().amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-6)
    identity = torch.eye(2, 3).expand(n, 2, 3)
    grid = torch.nn.functional.affine_grid(identity, list(images.shape), align_corners=False)
    grid = grid + field.permute(0, 2, 3, 1) * (2 * alpha / torch.tensor([w, h]))
    return torch.nn.functional.grid_sample(images, grid, align_corners=False).clamp(0, 1)


class _Tensors(Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])


class PrerenderedDigits(DomainSource):
    """``RenderedDigits`` rendered once into memory (the benchmark times training, not
    rendering), optionally restyled like MNIST.

    Args:
        train_length: rendered training images.
        test_length: rendered validation/test images.
        style: ``raw`` (the renderer's gray images) or ``mnist`` (see :func:`mnist_style`).
        neighbor_prob: chance of cut-off neighbouring digits at each side.
        max_noise: largest pixel-noise standard deviation.
        elastic_alpha: elastic distortion of the training images, pixels (0: none).
        renderer: ``fonts`` (:class:`RenderedDigits`) or ``strokes`` (:class:`StrokeDigits`,
            handwriting-like and already MNIST-framed: ``style`` and the font options
            do not apply).
    """

    def __init__(
        self,
        train_length: int,
        test_length: int,
        style: str,
        neighbor_prob: float,
        max_noise: float,
        elastic_alpha: float = 0.0,
        renderer: str = "fonts",
    ) -> None:
        self._data = {}
        for stage, length, seed in (("train", train_length, 0), ("test", test_length, 7)):
            if renderer == "strokes":
                # MNIST-framed strokes, as in the published tables (the default is "varied").
                strokes = StrokeDigits(length=length, image_size=28, seed=seed, style="mnist")
                chunks = [
                    strokes.__getitems__(range(start, min(start + 512, length)))
                    for start in range(0, length, 512)
                ]
                images = torch.stack([image for chunk in chunks for image, _ in chunk])
                self._data[stage] = _Tensors(images, torch.arange(length) % 10)
                continue
            renderer_ = RenderedDigits(
                length=length,
                image_size=28,
                channels=1,
                seed=seed,
                neighbor_prob=neighbor_prob,
                max_noise=max_noise,
            )
            images = torch.stack([renderer_[i][0] for i in range(length)])
            labels = torch.arange(length) % 10
            if style == "mnist":
                images = mnist_style(images)
            if elastic_alpha > 0 and stage == "train":
                images = elastic(images, elastic_alpha, 3.0, seed=seed)
            self._data[stage] = _Tensors(images, labels)
        self._data["val"] = self._data["test"]

    def dataset(self, stage: str) -> Dataset:
        return self._data[stage]


class _Progress(Callback):
    """Prints the step and the seconds per step now and then (runs share a busy machine)."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.began = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.every == 0:
            elapsed = time.perf_counter() - self.began
            metrics = trainer.callback_metrics
            shown = ", ".join(
                f"{name.split('/')[1]} {float(metrics[name]):.3f}"
                for name in ("train/label_loss", "train/adaptation_loss", "train/domain_acc")
                if name in metrics
            )
            print(f"  step {step}: {1000 * elapsed / step:.0f} ms/step; {shown}", flush=True)


def run_arm(
    arm: str, seed: int, rendered: DomainSource, real: DomainSource, args: argparse.Namespace
) -> dict:
    seed_everything(seed, workers=True)
    datamodule = MixedDomainDataModule(
        rendered,
        real,
        image_size=28,
        channels=1,
        batch_size=args.batch_size,
        real_fraction=1.0 if arm == "train_on_real" else args.real_fraction,
        hide_real_labels=arm != "train_on_real",
        num_workers=0,
        seed=seed,
    )
    extractor = GaninDigitNet(1)
    model = ImageClassifier(
        feature_extractor=extractor,
        classifier=MLPHead(768, 10, hidden=(100, 100)),
        adaptation=arm_methods(arm, args),
        num_classes=10,
        in_channels=1,
        image_size=28,
        lr=args.lr,
        optimizer=args.optimizer,
        scheduler=args.scheduler,
        weight_decay=args.weight_decay,
        pad_samples=args.pad_samples,
        log_images=False,
    )
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=args.steps,
        max_epochs=-1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=False,
        callbacks=[_Progress(max(1, args.steps // 5))],
    )
    began = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    train_s = time.perf_counter() - began
    metrics = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    wall_s = time.perf_counter() - began
    result = {"arm": arm, "seed": seed, "train_s": train_s, "wall_s": wall_s}
    result.update({key: float(value) for key, value in metrics.items()})
    return result


_SHARED: dict = {}


def _run_task(task: tuple[str, int]) -> dict:
    torch.set_num_threads(_SHARED["args"].threads)
    return run_arm(*task, _SHARED["rendered"], _SHARED["real"], _SHARED["args"])


def _announce(result: dict) -> dict:
    print(
        f"{result['arm']} seed {result['seed']}: real acc {100 * result['test/real_acc']:.2f} %, "
        f"rendered acc {100 * result.get('test/rendered_acc', float('nan')):.2f} %, "
        f"pad {result.get('test/pad', float('nan')):.2f}, {result['wall_s']:.0f} s",
        flush=True,
    )
    return result


def summarise(results: list[dict]) -> dict:
    summary = {}
    for arm in ARMS:
        rows = [r for r in results if r["arm"] == arm]
        if not rows:
            continue
        acc = [r["test/real_acc"] for r in rows]
        summary[arm] = {
            "real_acc_mean": statistics.mean(acc),
            "real_acc_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
            "real_acc": acc,
            "wall_s_mean": statistics.mean(r["wall_s"] for r in rows),
            **{
                key: statistics.mean(r[key] for r in rows)
                for key in ("test/rendered_acc", "test/pad", "test/pad_pixels", "test/bound")
                if all(key in r for r in rows)
            },
        }
    if "source_only" not in summary or "train_on_real" not in summary:
        return summary
    so, tr = summary["source_only"]["real_acc_mean"], summary["train_on_real"]["real_acc_mean"]
    per_seed: dict[int, dict[str, float]] = {}
    for r in results:
        per_seed.setdefault(r["seed"], {})[r["arm"]] = r["test/real_acc"]
    for arm in ADAPTED:
        if arm not in summary:
            continue
        adapted = summary[arm]["real_acc_mean"]
        summary[arm]["gap_closed"] = (adapted - so) / (tr - so) if tr != so else float("nan")
        summary[arm]["never_below_source_only"] = all(
            v[arm] >= v["source_only"] for v in per_seed.values() if arm in v and "source_only" in v
        )
    return summary


def print_table(summary: dict, args: argparse.Namespace) -> None:
    print(
        f"\nRendered digits -> MNIST (test 5000-9999), {args.steps} steps of {args.batch_size}, "
        f"{args.runs} runs, {os.cpu_count()}-core CPU, {torch.get_num_threads()} threads"
    )
    print("| arm | real accuracy (mean ± std) | rendered acc | PAD features | wall time / run |")
    print("|---|---:|---:|---:|---:|")
    for arm in ARMS:
        if arm not in summary:
            continue
        s = summary[arm]
        print(
            f"| {arm} | {100 * s['real_acc_mean']:.1f} ± {100 * s['real_acc_std']:.1f} % | "
            f"{100 * s.get('test/rendered_acc', float('nan')):.1f} % | "
            f"{s.get('test/pad', float('nan')):.2f} | {s['wall_s_mean']:.0f} s |"
        )
    for arm in ADAPTED:
        if "gap_closed" not in summary.get(arm, {}):
            continue
        print(
            f"{arm}: gap closed {100 * summary[arm]['gap_closed']:.0f} %, never below "
            f"source-only: {summary[arm]['never_below_source_only']}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="folder with MNIST t10k files")
    parser.add_argument("--runs", type=int, default=3, help="seeds per arm")
    parser.add_argument("--steps", type=int, default=3000, help="optimizer steps per run")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms to run")
    parser.add_argument("--style", choices=("raw", "mnist"), default="mnist")
    parser.add_argument(
        "--renderer", choices=("fonts", "strokes"), default="strokes", help="rendered digits"
    )
    parser.add_argument("--neighbor-prob", type=float, default=0.0)
    parser.add_argument("--max-noise", type=float, default=0.05)
    parser.add_argument("--elastic", type=float, default=0.0, help="elastic distortion, px")
    parser.add_argument("--rendered-train", type=int, default=20000)
    parser.add_argument("--real-fraction", type=float, default=0.5)
    parser.add_argument("--grl-gamma", type=float, default=10.0)
    parser.add_argument(
        "--entropy-weight", type=float, default=0.3, help="real_terms, dann_plus, mcc_plus"
    )
    parser.add_argument(
        "--diversity-weight", type=float, default=0.3, help="real_terms, dann_plus, mcc_plus"
    )
    parser.add_argument(
        "--consistency-weight", type=float, default=1.0, help="real_terms, dann_plus, mcc_plus"
    )
    parser.add_argument("--pseudo-label-threshold", type=float, default=0.95)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--optimizer", default="sgd")
    parser.add_argument("--scheduler", default="dann")
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--pad-samples", type=int, default=500)
    parser.add_argument("--domain-hidden", default="100", help="domain classifier widths")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (processes)")
    parser.add_argument("--json-out", default=None)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the runs already in --json-out and run only the missing (arm, seed) pairs",
    )
    args = parser.parse_args()
    if args.resume and not args.json_out:
        parser.error("--resume needs --json-out: the file whose finished runs are kept")

    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*sync_dist.*")
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    rendered = PrerenderedDigits(
        args.rendered_train,
        1000,
        args.style,
        args.neighbor_prob,
        args.max_noise,
        args.elastic,
        args.renderer,
    )
    render_s = time.perf_counter() - began
    print(f"rendered {args.rendered_train + 1000} images in {render_s:.0f} s", flush=True)
    results = previous_results(args) if args.resume else []
    with tempfile.TemporaryDirectory() as tmp:
        real = mnist_source(args.data_dir, Path(tmp))
        _SHARED.update(rendered=rendered, real=real, args=args)
        done = {(r["arm"], r["seed"]) for r in results}
        tasks = [
            (arm, seed)
            for seed in range(args.runs)
            for arm in args.arms.split(",")
            if (arm, seed) not in done
        ]
        if args.jobs > 1:  # forked workers share the rendered images with this process
            context = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
                outcomes = pool.map(_run_task, tasks)
                for result in outcomes:
                    results.append(_announce(result))
                    if args.json_out:
                        write_json(args.json_out, args, results, render_s)
        else:
            for task in tasks:
                results.append(_announce(_run_task(task)))
                if args.json_out:
                    write_json(args.json_out, args, results, render_s)
    summary = summarise(results)
    print_table(summary, args)
    if args.json_out:
        print(f"wrote {args.json_out}")


def previous_results(args: argparse.Namespace) -> list[dict]:
    """The finished runs of an earlier invocation with the same settings (``--resume``)."""
    path = Path(args.json_out)
    if not path.exists():
        return []
    previous = json.loads(path.read_text())
    ignored = {"runs", "arms", "jobs", "json_out", "resume", "data_dir"}
    ours = {k: str(v) for k, v in vars(args).items() if k not in ignored}
    differing = sorted(k for k, v in ours.items() if previous["args"].get(k, v) != v)
    if differing:
        raise SystemExit(
            f"--resume: {path} was made with other settings ({', '.join(differing)}); "
            "use the same settings or a new --json-out"
        )
    print(f"resuming: {len(previous['results'])} finished runs kept from {path}", flush=True)
    return list(previous["results"])


def write_json(path: str, args: argparse.Namespace, results: list[dict], render_s: float) -> None:
    """Write the results so far and their summary (rewritten after every run, so a long
    benchmark interrupted half-way keeps what it measured)."""
    with open(path, "w") as handle:
        json.dump(
            {
                "benchmark": "adaptation_digits",
                "args": {k: str(v) for k, v in vars(args).items()},
                "machine": platform.platform(),
                "processor": platform.processor(),
                "cpu_count": os.cpu_count(),
                "torch": torch.__version__,
                "render_s": render_s,
                "results": results,
                "summary": summarise(results),
            },
            handle,
            indent=2,
        )


if __name__ == "__main__":
    main()
