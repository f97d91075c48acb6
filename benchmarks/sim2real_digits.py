"""Rendered -> real digits on targets nobody tuned the renderer for: the shipped recipe
(``configs/sim2real_digits.yaml``) against source-only, the paper's DANN and train-on-real.

Real targets (each split into an unlabelled *pool*, used for adaptation, validation and
train-on-real, and an *evaluation* half used for nothing but the final score):

* ``mnist``: MNIST test images 0-4999 pool, 5000-9999 evaluation (``mnist_protocol``);
* ``sklearn``: scikit-learn's 1,797 8 x 8 digits, within each class alternately pool and
  evaluation (sorted by index: deterministic);
* ``mnist_tight``: the same MNIST files, each digit cropped to its ink's bounding box and
  resized so that its longer side fills 28 x 28, aspect kept, box-centred (as USPS);
* ``mnist_tight_binary``: ``mnist_tight`` thresholded at half intensity (bilevel sets);
* ``mnist_stretched`` (not run by default): cropped and stretched to fill both sides
  (aspect not kept, as Semeion).

Arms (one network, batches, optimiser and step budget for all; only ``adaptation:``
changes): ``source_only`` (a discriminator that learns but sends nothing back),
``dann`` (:class:`DomainAdversarial` at its defaults; ``--dann-weight`` scales its
reversed gradient), ``recipe`` (the ``adaptation:`` list
of the config, read from the YAML so the benchmark measures what ships), and
``train_on_real`` (the labelled pool alone: the upper bound). The network, optimiser,
learning rate, batch size, real fraction and renderer options come from the same YAML.
Each arm runs with ``framing: none`` and ``framing: canonical``.

Checkpoints are chosen without real labels: every ``--val-every`` steps the
:class:`ModelSelection` validators are computed on the rendered validation set and the
unlabelled real validation images (the last 1,000 of the pool), and the weights each
validator scores highest are kept; each run reports the evaluation accuracy of the weights
``val/select_<--select>`` picked (default ``im``, the config's), of every other validator's
pick and of the final weights, and the validation history (validators and, for later
analysis only, the pool's real accuracy). The gap closed is
``(arm - source_only) / (train_on_real - source_only)`` on the mean accuracies.

The JSON is rewritten after every run (an interrupted benchmark keeps what it measured);
runs go seed by seed, so complete seeds come first. The full default (4 targets x 2
framings x 4 arms x 3 seeds, 3,000 steps each) takes hours on a CPU::

    python benchmarks/sim2real_digits.py --mnist-dir ../shared/data/mnist-test \\
        --json-out sim2real_digits.json
"""

from __future__ import annotations

import argparse
import copy
import gzip
import importlib
import json
import multiprocessing
import os
import platform
import statistics
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from torch.utils.data import Dataset

from lightning_synth.adaptation import DomainAdversarial
from lightning_synth.callbacks import ModelSelection
from lightning_synth.datamodules import MixedDomainDataModule
from lightning_synth.datamodules.sources import DomainSource
from lightning_synth.rendering.digits import RenderedDigits
from lightning_synth.rendering.strokes import StrokeDigits
from lightning_synth.tasks import ImageClassifier

REPO = Path(__file__).resolve().parents[1]
ARMS = ("source_only", "dann", "recipe", "train_on_real")
ADAPTED = ("dann", "recipe")
TARGETS = ("mnist", "sklearn", "mnist_tight", "mnist_tight_binary", "mnist_stretched")
DEFAULT_TARGETS = TARGETS[:4]
FRAMINGS = ("none", "canonical")
#: Where the short class names of a config are found (the CLI resolves them alike).
_MODULES = ("lightning_synth.adaptation", "lightning_synth.nn", "lightning_synth.tasks")


# -- the recipe, read from its config --------------------------------------------------


def _resolve(class_path: str) -> type:
    if "." in class_path:
        module, name = class_path.rsplit(".", 1)
        return getattr(importlib.import_module(module), name)
    for module in _MODULES:
        found = getattr(importlib.import_module(module), class_path, None)
        if found is not None:
            return found
    raise ValueError(f"cannot resolve {class_path!r} in {_MODULES}")


def instantiate(spec: object) -> object:
    """Objects from a config's ``class_path``/``init_args`` entries (lists and nested too)."""
    if isinstance(spec, dict) and "class_path" in spec:
        arguments = {
            key: instantiate(value) for key, value in (spec.get("init_args") or {}).items()
        }
        return _resolve(spec["class_path"])(**arguments)
    if isinstance(spec, list):
        return [instantiate(item) for item in spec]
    return spec


def read_recipe(path: Path) -> dict:
    """The parts of a config the benchmark reuses: model, optimiser, data and renderer."""
    config = yaml.safe_load(path.read_text())
    model = config["model"]["init_args"]
    data = config["data"]["init_args"]
    rendered = data["rendered"]
    options = dict(rendered.get("init_args") or {})
    for key in ("train_length", "val_length", "test_length", "seed"):
        options.pop(key, None)
    return {
        "model": model,
        "optimiser": {key: model[key] for key in ("lr", "optimizer", "scheduler", "weight_decay")},
        "batch_size": int(data.get("batch_size", 64)),
        "real_fraction": float(data.get("real_fraction", 0.5)),
        "image_size": int(data.get("image_size", 28)),
        "renderer": rendered["class_path"].rsplit(".", 1)[-1],
        "renderer_options": options,
        "train_length": int((rendered.get("init_args") or {}).get("train_length", 10_000)),
    }


def arm_methods(arm: str, recipe: dict, dann_weight: float = 1.0) -> list:
    """The adaptation components of ``arm`` (fresh modules on every call); ``dann_weight``
    scales the reversed gradient of the ``dann`` arm (1: the paper's)."""
    if arm == "source_only":
        return [DomainAdversarial(weight=0.0)]
    if arm == "dann":
        return [DomainAdversarial(weight=dann_weight)]
    if arm == "recipe":
        return instantiate(recipe["model"]["adaptation"]) or []
    if arm == "train_on_real":
        return []
    raise ValueError(f"unknown arm {arm!r}; choose from {ARMS}")


# -- data ----------------------------------------------------------------------------------


class _Tensors(Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])


class TensorSource(DomainSource):
    """Train, val and test sets held in memory.

    Args:
        splits: ``{stage: (images B x 1 x H x W in [0, 1], labels B)}``.
    """

    def __init__(self, splits: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.splits = {stage: _Tensors(*pair) for stage, pair in splits.items()}

    def dataset(self, stage: str) -> Dataset:
        return self.splits[stage]


def render(recipe: dict, train_length: int, val_length: int) -> TensorSource:
    """The config's renderer, rendered once into memory (training time is measured, not
    rendering); validation and test share one set of another seed."""
    options = {"image_size": recipe["image_size"], "channels": 1, **recipe["renderer_options"]}
    options["channels"] = 1
    renderer = StrokeDigits if recipe["renderer"] == "StrokeDigitsSource" else RenderedDigits
    splits = {}
    for stage, length, seed in (("train", train_length, 0), ("val", val_length, 1_000_003)):
        dataset = renderer(length=length, seed=seed, **options)
        images = []
        for start in range(0, length, 512):
            indices = range(start, min(start + 512, length))
            if hasattr(dataset, "__getitems__"):
                images += [image for image, _ in dataset.__getitems__(indices)]
            else:
                images += [dataset[i][0] for i in indices]
        splits[stage] = (torch.stack(images), torch.arange(length) % 10)
    splits["test"] = splits["val"]
    return TensorSource(splits)


def read_idx(path: Path) -> np.ndarray:
    """An MNIST IDX file (gzip): magic ``0 0 8 ndim``, big-endian sizes, unsigned bytes."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    if data[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    sizes = [int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(sizes)


def load_mnist(mnist_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST's 10,000 test images (``N x 1 x 28 x 28`` in [0, 1]) and labels."""
    paths = [
        mnist_dir / f"t10k-{kind}-idx{n}-ubyte.gz" for kind, n in (("images", 3), ("labels", 1))
    ]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; pass --mnist-dir")
    images = torch.from_numpy(read_idx(paths[0]).astype(np.float32) / 255.0)[:, None]
    return images, torch.from_numpy(read_idx(paths[1]).astype(np.int64))


def tight_frame(
    images: torch.Tensor, size: int = 28, stretch: bool = False, threshold: float = 0.2
) -> torch.Tensor:
    """Each image cropped to its ink's bounding box (pixels above ``threshold``) and
    resized so that its longer side fills ``size`` (aspect kept, centred in the box), or
    both sides (``stretch``)."""
    framed = torch.zeros(len(images), 1, size, size)
    for k, image in enumerate(images):
        ink = image[0] > threshold
        rows, cols = ink.any(1).nonzero().flatten(), ink.any(0).nonzero().flatten()
        if len(rows) == 0:
            framed[k] = F.interpolate(image[None], size=(size, size), mode="bilinear")[0]
            continue
        crop = image[:, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        height, width = crop.shape[1:]
        if stretch:
            shape = (size, size)
        else:
            scale = size / max(height, width)
            shape = (max(1, round(height * scale)), max(1, round(width * scale)))
        resized = F.interpolate(
            crop[None], size=shape, mode="bilinear", antialias=True, align_corners=False
        )[0].clamp(0, 1)
        top, left = (size - shape[0]) // 2, (size - shape[1]) // 2
        framed[k, :, top : top + shape[0], left : left + shape[1]] = resized
    return framed


def _pool_and_evaluation(
    pool: tuple[torch.Tensor, torch.Tensor],
    evaluation: tuple[torch.Tensor, torch.Tensor],
    val_images: int,
    eval_limit: int,
) -> TensorSource:
    images, labels = pool
    val = (images[-val_images:], labels[-val_images:])
    if eval_limit > 0:
        evaluation = (evaluation[0][:eval_limit], evaluation[1][:eval_limit])
    return TensorSource({"train": pool, "val": val, "test": evaluation})


def real_target(
    name: str,
    mnist: tuple[torch.Tensor, torch.Tensor] | None,
    val_images: int = 1000,
    eval_limit: int = 0,
) -> TensorSource:
    """The real source of target ``name`` (see the module's docstring).

    Args:
        name: one of :data:`TARGETS`.
        mnist: MNIST's test images and labels (for the MNIST targets).
        val_images: real validation images, the last of the pool (unlabelled for selection).
        eval_limit: score on the first this many evaluation images only (0: all).
    """
    if name == "sklearn":
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]
        labels = torch.from_numpy(digits.target.astype(np.int64))
        pool, evaluation = [], []
        for digit in range(10):
            members = (labels == digit).nonzero().flatten()
            pool.append(members[0::2])
            evaluation.append(members[1::2])
        pool_idx, eval_idx = torch.cat(pool).sort().values, torch.cat(evaluation).sort().values
        return _pool_and_evaluation(
            (images[pool_idx], labels[pool_idx]),
            (images[eval_idx], labels[eval_idx]),
            val_images,
            eval_limit,
        )
    if mnist is None:
        raise ValueError(f"target {name!r} needs --mnist-dir")
    images, labels = mnist
    if name in ("mnist_tight", "mnist_tight_binary", "mnist_stretched"):
        images = tight_frame(images, stretch=name == "mnist_stretched")
        if name == "mnist_tight_binary":
            images = (images > 0.5).float()
    elif name != "mnist":
        raise ValueError(f"unknown target {name!r}; choose from {TARGETS}")
    return _pool_and_evaluation(
        (images[:5000], labels[:5000]), (images[5000:], labels[5000:]), val_images, eval_limit
    )


# -- one run -------------------------------------------------------------------------------


class KeepSelected(Callback):
    """After each validation: record the metrics, and keep the weights each label-free
    validator (``val/select_*``) scores highest so far (in memory: the network is small)."""

    def __init__(self) -> None:
        self.best: dict[str, tuple[float, int, dict]] = {}  # validator: score, step, weights
        self.history: list[dict] = []

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        row = {"step": trainer.global_step}
        row.update({k: float(v) for k, v in metrics.items() if k.startswith("val/")})
        self.history.append(row)
        state = None
        for name, score in row.items():
            if not name.startswith("val/select_") or score != score:  # NaN: not estimated
                continue
            if name not in self.best or score > self.best[name][0]:
                state = state or copy.deepcopy(pl_module.state_dict())
                self.best[name] = (score, trainer.global_step, state)


def run_arm(
    target: str,
    framing: str,
    arm: str,
    seed: int,
    rendered: DomainSource,
    real: DomainSource,
    recipe: dict,
    args: argparse.Namespace,
) -> dict:
    seed_everything(seed, workers=True)
    size = recipe["image_size"]
    datamodule = MixedDomainDataModule(
        rendered,
        real,
        image_size=size,
        channels=1,
        batch_size=args.batch_size or recipe["batch_size"],
        real_fraction=1.0 if arm == "train_on_real" else recipe["real_fraction"],
        hide_real_labels=arm != "train_on_real",
        num_workers=0,
        seed=seed,
        framing=framing,
    )
    model_spec = recipe["model"]
    model = ImageClassifier(
        feature_extractor=instantiate(model_spec.get("feature_extractor")),
        classifier=instantiate(model_spec.get("classifier")),
        adaptation=arm_methods(arm, recipe, args.dann_weight),
        num_classes=10,
        in_channels=1,
        image_size=size,
        pad_samples=0,
        log_images=False,
        **recipe["optimiser"],
    )
    keep = KeepSelected()
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=args.steps,
        max_epochs=-1,
        val_check_interval=min(args.val_every, args.steps),
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[ModelSelection(num_samples=args.select_samples), keep],
    )
    began = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    train_s = time.perf_counter() - began
    if not keep.history or keep.history[-1]["step"] != trainer.global_step:
        # The final weights are a candidate too (validation ran before the last steps).
        trainer.validate(model, datamodule=datamodule, verbose=False)
    final = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    # The evaluation accuracy of the weights each validator picked (each step tested once).
    tested = {trainer.global_step: float(final["test/real_acc"])}
    selected_by = {}
    for name, (score, step, state) in sorted(keep.best.items()):
        if step not in tested:
            model.load_state_dict(state)
            tested[step] = float(
                trainer.test(model, datamodule=datamodule, verbose=False)[0]["test/real_acc"]
            )
        selected_by[name.removeprefix("val/select_")] = {
            "step": step,
            "score": score,
            "real_acc": tested[step],
        }
    primary = selected_by.get(
        args.select, {"step": trainer.global_step, "real_acc": tested[trainer.global_step]}
    )
    return {
        "target": target,
        "framing": framing,
        "arm": arm,
        "seed": seed,
        "final_real_acc": float(final["test/real_acc"]),
        "selected_real_acc": primary["real_acc"],
        "final_rendered_acc": float(final.get("test/rendered_acc", float("nan"))),
        "selected_step": primary["step"],
        "selected_by": selected_by,
        "steps": trainer.global_step,
        "history": keep.history,
        "train_s": train_s,
        "wall_s": time.perf_counter() - began,
    }


_SHARED: dict = {}


def _run_task(task: tuple[str, str, str, int]) -> dict:
    torch.set_num_threads(_SHARED["args"].threads)
    target, framing, arm, seed = task
    return run_arm(
        target,
        framing,
        arm,
        seed,
        _SHARED["rendered"],
        _SHARED["real"][target],
        _SHARED["recipe"],
        _SHARED["args"],
    )


# -- summary -------------------------------------------------------------------------------


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(results: list[dict]) -> dict:
    """Per target and framing: each arm's mean and std (final and selected weights), the
    gap each adapted arm closes, and whether it ever fell below source-only."""
    summary: dict = {}
    for result in results:
        key = f"{result['target']}/{result['framing']}"
        summary.setdefault(key, {}).setdefault(result["arm"], []).append(result)
    out: dict = {}
    for key, arms in summary.items():
        out[key] = {}
        for arm, rows in arms.items():
            entry = {"runs": len(rows)}
            for which in ("final", "selected"):
                mean, std = _mean_std([r[f"{which}_real_acc"] for r in rows])
                entry[f"{which}_mean"], entry[f"{which}_std"] = mean, std
            validators = set.intersection(*(set(r.get("selected_by", {})) for r in rows))
            entry["selected_by_mean"] = {
                name: statistics.mean(r["selected_by"][name]["real_acc"] for r in rows)
                for name in sorted(validators)
            }
            out[key][arm] = entry
        if "source_only" not in arms or "train_on_real" not in arms:
            continue
        by_seed = {}
        for arm, rows in arms.items():
            for r in rows:
                by_seed.setdefault(r["seed"], {})[arm] = r
        for arm in ADAPTED:
            if arm not in arms:
                continue
            for which in ("final", "selected"):
                low = out[key]["source_only"][f"{which}_mean"]
                high = out[key]["train_on_real"][f"{which}_mean"]
                adapted = out[key][arm][f"{which}_mean"]
                gap = (adapted - low) / (high - low) if high != low else float("nan")
                out[key][arm][f"{which}_gap_closed"] = gap
                out[key][arm][f"{which}_never_below_source_only"] = all(
                    runs[arm][f"{which}_real_acc"] >= runs["source_only"][f"{which}_real_acc"]
                    for runs in by_seed.values()
                    if arm in runs and "source_only" in runs
                )
    return out


def print_table(summary: dict, args: argparse.Namespace) -> None:
    print(
        f"\nRendered digits -> real targets, {args.steps} steps, checkpoint chosen by "
        f"val/select_{args.select} (no real labels), {os.cpu_count()}-core CPU"
        + (f", first {args.eval_limit} evaluation images only" if args.eval_limit else "")
    )
    print(
        "| target | framing | arm | real acc, selected (mean ± std) | real acc, final | "
        "gap closed (selected / final) |"
    )
    print("|---|---|---|---:|---:|---:|")
    for key in sorted(summary):
        target, framing = key.split("/")
        for arm in ARMS:
            entry = summary[key].get(arm)
            if entry is None:
                continue
            gap = ""
            if "selected_gap_closed" in entry:
                gap = (
                    f"{100 * entry['selected_gap_closed']:.0f} % / "
                    f"{100 * entry['final_gap_closed']:.0f} %"
                )
                if not entry["selected_never_below_source_only"]:
                    gap += " (below source-only in a seed)"
            print(
                f"| {target} | {framing} | {arm} | "
                f"{100 * entry['selected_mean']:.1f} ± {100 * entry['selected_std']:.1f} % | "
                f"{100 * entry['final_mean']:.1f} ± {100 * entry['final_std']:.1f} % | {gap} |"
            )
    plain, tight = summary.get("mnist/canonical", {}), summary.get("mnist_tight/canonical", {})
    if "recipe" in plain and "recipe" in tight:
        difference = 100 * (tight["recipe"]["selected_mean"] - plain["recipe"]["selected_mean"])
        print(f"recipe, canonical framing: tight-framed MNIST - MNIST = {difference:+.1f} points")


def _portable(value: object) -> str:
    """An argument as text, paths inside the repository relative to it (so that a results
    file names no machine's folders)."""
    if isinstance(value, Path) and value.is_absolute() and value.is_relative_to(REPO):
        return str(value.relative_to(REPO))
    return str(value)


def write_json(path: str, args: argparse.Namespace, results: list[dict], extra: dict) -> None:
    """Write the results so far and their summary (rewritten after every run)."""
    with open(path, "w") as handle:
        json.dump(
            {
                "benchmark": "sim2real_digits",
                "args": {k: _portable(v) for k, v in vars(args).items()},
                "machine": platform.platform(),
                "processor": platform.processor(),
                "cpu_count": os.cpu_count(),
                "torch": torch.__version__,
                **extra,
                "results": results,
                "summary": summarise(results),
            },
            handle,
            indent=2,
        )


def _announce(result: dict) -> dict:
    print(
        f"{result['target']} / {result['framing']} / {result['arm']} / seed {result['seed']}: "
        f"real acc selected {100 * result['selected_real_acc']:.2f} % "
        f"(step {result['selected_step']}), final {100 * result['final_real_acc']:.2f} %, "
        f"{result['wall_s']:.0f} s",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mnist-dir", type=Path, default=None, help="MNIST t10k IDX files")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "sim2real_digits.yaml")
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS), help=f"of {TARGETS}")
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms")
    parser.add_argument("--framings", default=",".join(FRAMINGS), help="none,canonical")
    parser.add_argument("--runs", type=int, default=3, help="seeds per arm")
    parser.add_argument("--steps", type=int, default=3000, help="optimizer steps per run")
    parser.add_argument("--val-every", type=int, default=250, help="steps between validations")
    parser.add_argument("--batch-size", type=int, default=0, help="0: the config's")
    parser.add_argument("--rendered-train", type=int, default=0, help="0: the config's")
    parser.add_argument("--rendered-val", type=int, default=1000)
    parser.add_argument(
        "--dann-weight", type=float, default=1.0, help="the dann arm's weight (paper: 1)"
    )
    parser.add_argument("--select", default="im", help="validator choosing the checkpoint")
    parser.add_argument("--select-samples", type=int, default=500, help="per domain")
    parser.add_argument("--val-images", type=int, default=1000, help="real, end of the pool")
    parser.add_argument("--eval-limit", type=int, default=0, help="evaluation images; 0: all")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (processes)")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()

    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*sync_dist.*")
    torch.set_num_threads(args.threads)
    recipe = read_recipe(args.config)
    targets = [t for t in args.targets.split(",") if t]
    began = time.perf_counter()
    rendered = render(recipe, args.rendered_train or recipe["train_length"], args.rendered_val)
    render_s = time.perf_counter() - began
    print(f"rendered {len(rendered.dataset('train'))} training images in {render_s:.0f} s")
    mnist = load_mnist(args.mnist_dir) if args.mnist_dir else None
    real = {
        target: real_target(target, mnist, args.val_images, args.eval_limit) for target in targets
    }
    _SHARED.update(rendered=rendered, real=real, recipe=recipe, args=args)
    tasks = [
        (target, framing, arm, seed)
        for seed in range(args.runs)
        for target in targets
        for framing in args.framings.split(",")
        for arm in args.arms.split(",")
    ]
    extra = {"render_s": render_s, "recipe_adaptation": recipe["model"].get("adaptation")}
    results: list[dict] = []
    if args.jobs > 1:  # forked workers share the rendered and real images
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            for result in pool.map(_run_task, tasks):
                results.append(_announce(result))
                if args.json_out:
                    write_json(args.json_out, args, results, extra)
    else:
        for task in tasks:
            results.append(_announce(_run_task(task)))
            if args.json_out:
                write_json(args.json_out, args, results, extra)
    print_table(summarise(results), args)
    if args.json_out:
        print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
