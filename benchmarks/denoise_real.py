"""Denoising real camera noise: classical denoisers against networks trained on synthetic noise.

Every method denoises the same real noisy photographs (PolyU-style ``<name>_real.*`` with
their ``<name>_mean.*`` references, passed by ``--real``) and is scored by PSNR and SSIM
against the references (torchmetrics, per image, then averaged; SSIM on RGB with an
11 x 11 Gaussian window):

* ``noisy``: the input itself;
* ``tv_skimage``: scikit-image's ``denoise_tv_chambolle``, at the weight of ``--tv-weights``
  best on all the pairs (an oracle choice, favouring the baseline);
* ``tv_project``: the project's ``tv_denoise`` (vectorial TV), chosen the same way;
* ``tv_luma_chroma``: the project's TV in JPEG's luma and chroma (``TVSmoothing`` with a
  ``chroma_weight``), the pair of ``--tv-weights`` (luma) and ``--tv-chroma-weights`` best on
  the validation scenes (no oracle);
* ``bm3d``: the ``bm3d`` package (``bm3d_rgb``), at the sigma of ``--bm3d-sigmas`` best on
  the validation scenes (BM3D is too slow to grid-search on every pair);
* ``gaussian``: ``configs/denoise_gaussian.yaml``, a DnCNN trained on white Gaussian noise;
* ``camera``: ``configs/denoise_camera.yaml`` without real images (``real_fraction 0``,
  no adaptation): the camera noise model alone;
* ``camera_adapt``: ``configs/denoise_camera.yaml`` as shipped: camera noise plus real
  noisy crops (references hidden) through its adaptation method;
* ``camera_selfsup``: as ``camera_adapt`` plus the Neighbor2Neighbor term on the real crops;
* ``noisier2noise``: ``configs/denoise_noisier2noise.yaml``: noise cut from flat regions
  of the real noisy photographs (``SampledNoise``, no reference used) added to those
  photographs, which are the targets (Noisier2Noise), plus real crops through adaptation;
* ``sampled``: the same noise on the clean photographs (zoomed 1-3x) instead, no correction;
* ``pseudo_clean``: ``configs/denoise_pseudo_clean.yaml``: the same noise added to the real
  noisy photographs after TV denoising (pseudo-clean targets), no correction.

The networks train through the shipped configs (``--clean`` replaces the clean photographs,
``--real`` is the real folder, so its noisy images, without references, enter training), for
``--steps`` steps each, and are scored at their final step: no real reference chooses a
checkpoint. ``--val-scenes`` are held out: the table reports all pairs and, apart, the
pairs outside those scenes (the scenes used to pick BM3D's sigma and the noise model's
settings). For the learned models it also gives the gain on synthetic Gaussian noise of
matched strength (each reference plus white Gaussian noise with the RMS of its real
noise): the gap between the two gains is the synthetic-to-real gap.

    python benchmarks/denoise_real.py --real ../shared/data/denoise/real-noise/polyu \\
        --clean ../shared/data/denoise/clean/train400 ../shared/data/denoise/clean/cbsd68 \\
        --json-out denoise_real.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
TV_WEIGHTS = (0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.06)
TV_CHROMA_WEIGHTS = (0.01, 0.02, 0.03, 0.04, 0.06, 0.12)
BM3D_SIGMAS = (4.0, 6.0, 8.0, 10.0, 12.0, 15.0, 19.0)  # in 8-bit grey levels
VAL_SCENES = (
    "Canon5D2_5_160_3200_chair",
    "Canon600D_3-5_125_1600_waterhouse",
    "NikonD800_11_160_3200_classroom",
)
LEARNED = {
    "gaussian": ("denoise_gaussian.yaml", []),
    "camera": (
        "denoise_camera.yaml",
        ["--data.init_args.real_fraction=0", "--model.init_args.adaptation=null"],
    ),
    "camera_adapt": ("denoise_camera.yaml", []),
    "camera_selfsup": (
        "denoise_camera.yaml",
        ["--model.init_args.self_supervised=neighbor2neighbor"],
    ),
    "noisier2noise": ("denoise_noisier2noise.yaml", []),
    "pseudo_clean": ("denoise_pseudo_clean.yaml", []),
    "dct": ("denoise_dct.yaml", []),
    "sampled": (
        "denoise_noisier2noise.yaml",
        [
            "--data.init_args.noisy_as_clean=0",
            "--data.init_args.zoom=[1,3]",
            "--model.init_args.correction=none",
        ],
    ),
}
METHODS = ("noisy", "tv_skimage", "tv_project", "tv_luma_chroma", "bm3d", *LEARNED)

Images = list[torch.Tensor]
Setting = TypeVar("Setting", float, tuple[float, float])


def per_image_scores(outputs: Images, references: Images) -> tuple[np.ndarray, np.ndarray]:
    """Per-image PSNR and SSIM."""
    psnr, ssim = [], []
    for output, reference in zip(outputs, references, strict=True):
        x, y = output.float().clamp(0, 1)[None], reference.float()[None]
        psnr.append(float(peak_signal_noise_ratio(x, y, data_range=1.0)))
        ssim.append(float(structural_similarity_index_measure(x, y, data_range=1.0)))
    return np.array(psnr), np.array(ssim)


def _numpy(image: torch.Tensor) -> np.ndarray:
    return image.permute(1, 2, 0).numpy().astype(np.float64)


def _torch(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float()


def _best(
    run: Callable[[Setting], Images],
    grid: Sequence[Setting],
    references: Images,
    chosen: np.ndarray,
) -> tuple[Setting, Images, dict[str, float]]:
    """The grid value (a number or a tuple of them) with the best mean PSNR on the
    ``chosen`` images, its outputs, and every grid value's mean PSNR on them."""
    best, best_value, best_outputs = -np.inf, grid[0], None
    scores: dict[str, float] = {}
    for value in grid:
        outputs = run(value)
        psnr = per_image_scores(
            [outputs[i] for i in np.flatnonzero(chosen)],
            [references[i] for i in np.flatnonzero(chosen)],
        )[0]
        label = "/".join(f"{v:g}" for v in np.atleast_1d(value))
        scores[label] = round(float(psnr.mean()), 3)
        print(f"    {label}: {psnr.mean():.2f} dB", flush=True)
        if psnr.mean() > best:
            best, best_value, best_outputs = psnr.mean(), value, outputs
    assert best_outputs is not None
    return best_value, best_outputs, scores


def _best_on_all(
    run: Callable[[Setting, np.ndarray], Images],
    grid: Sequence[Setting],
    references: Images,
    chosen: np.ndarray,
) -> tuple[Setting, Images, dict[str, float]]:
    """:func:`_best` on the ``chosen`` images, then its value on the others as well;
    ``run(value, only)`` denoises the images where ``only`` is set (the chosen ones are
    not denoised twice)."""
    value, outputs, scores = _best(lambda v: run(v, chosen), grid, references, chosen)
    rest = run(value, ~chosen)
    return value, [o if c else r for o, r, c in zip(outputs, rest, chosen, strict=True)], scores


def _learned(
    name: str, args: argparse.Namespace, workdir: Path
) -> tuple[torch.nn.Module, float, int]:
    """Train one config; the task, the training wall time and the steps taken."""
    from lightning_synth.cli import LightningSynthCLI

    config, overrides = LEARNED[name]
    cli_args = [f"--config={CONFIGS / config}", *overrides]
    if args.clean:  # otherwise the config's (scikit-image's bundled photographs)
        clean = ",".join(str(Path(c).resolve()) for c in args.clean)
        cli_args.append(f"--data.init_args.clean=[{clean}]")
    cli_args += [
        f"--data.init_args.real.init_args.root={Path(args.real).resolve()}",
        f"--data.init_args.real.init_args.val_scenes=[{','.join(args.val_scenes)}]",
        f"--data.init_args.num_workers={args.workers}",
        "--trainer.accelerator=" + ("gpu" if args.device == "cuda" else "cpu"),
        "--trainer.devices=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        # Validation is for the curves only (nothing is chosen by it): keep it short.
        "--trainer.val_check_interval=0.5",
        "--trainer.limit_val_batches=8",
        f"--trainer.logger.init_args.save_dir={workdir / 'runs'}",
        f"--seed_everything={args.seed}",
        f"--data.init_args.seed={args.seed}",
    ]
    if args.steps:
        cli_args.append(f"--trainer.max_steps={args.steps}")
    cli_args += args.extra
    cli = LightningSynthCLI(args=cli_args, run=False)
    began = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    seconds = time.perf_counter() - began
    if args.save_models:
        Path(args.save_models).mkdir(parents=True, exist_ok=True)
        cli.trainer.save_checkpoint(Path(args.save_models) / f"{name}.ckpt")
    return cli.model.eval(), seconds, int(cli.trainer.global_step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--real", required=True, help="folder of <name>_real/<name>_mean pairs")
    parser.add_argument(
        "--clean",
        nargs="+",
        default=None,
        help="clean photographs to train on (default: the configs' own)",
    )
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--val-scenes", nargs="*", default=list(VAL_SCENES))
    parser.add_argument("--steps", type=int, default=0, help="training steps (0: the config's)")
    parser.add_argument("--tv-weights", nargs="+", type=float, default=list(TV_WEIGHTS))
    parser.add_argument(
        "--tv-chroma-weights", nargs="+", type=float, default=list(TV_CHROMA_WEIGHTS)
    )
    parser.add_argument("--bm3d-sigmas", nargs="+", type=float, default=list(BM3D_SIGMAS))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the networks)")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the networks' initialisation and of the DataModules' crops, noise and "
        "batches",
    )
    parser.add_argument(
        "--only-val-scenes",
        action="store_true",
        help="score on the validation scenes only (to choose settings without the rest)",
    )
    parser.add_argument(
        "--extra",
        action="append",
        default=[],
        help="a further CLI override for every learned method (repeat it), e.g. "
        "--extra=--data.init_args.patch_size=48",
    )
    parser.add_argument(
        "--self-ensemble",
        action="store_true",
        help="also score each learned method with 8-fold self-ensembling (same network)",
    )
    parser.add_argument(
        "--save-models",
        default=None,
        metavar="DIR",
        help="keep each trained network as DIR/<method>.ckpt (a task checkpoint)",
    )
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    from lightning_synth.datamodules.noisy_images import NoisyPhotographs, scene_of
    from lightning_synth.nn.total_variation import TVSmoothing, tv_denoise

    source = NoisyPhotographs(root=args.real)
    pairs = [p for p in source.pairs() if p.reference is not None]
    if args.only_val_scenes:
        pairs = [p for p in pairs if scene_of(p.name) in args.val_scenes]
    loaded = [source.load(p) for p in pairs]
    noisy = [n for n, _ in loaded]
    references = [r for _, r in loaded]
    held = np.array([scene_of(p.name) in args.val_scenes for p in pairs])
    print(f"{len(pairs)} pairs, {int(held.sum())} in the validation scenes", flush=True)

    rows: dict[str, dict[str, object]] = {}
    noisy_psnr = float(per_image_scores(noisy, references)[0].mean())

    def record(name: str, outputs: Images, gain: bool = False, **extra: object) -> None:
        """Score ``outputs``; with ``gain``, also their mean PSNR gain over the noisy input."""
        psnr, ssim = per_image_scores(outputs, references)
        if gain:
            extra = {"gain_real": float(psnr.mean()) - noisy_psnr, **extra}
        rest = ~held
        rows[name] = {
            "psnr": float(psnr.mean()),
            "ssim": float(ssim.mean()),
            "psnr_val": float(psnr[held].mean()) if held.any() else float("nan"),
            "psnr_rest": float(psnr[rest].mean()) if rest.any() else float("nan"),
            "ssim_rest": float(ssim[rest].mean()) if rest.any() else float("nan"),
            "psnr_per_image": psnr.round(3).tolist(),
            **extra,
        }
        write_json(args, rows)  # after every method: a long run keeps what it measured
        print(
            f"  {name}: {psnr.mean():.2f} dB (validation scenes {rows[name]['psnr_val']:.2f}), "
            f"SSIM {ssim.mean():.4f} {extra}",
            flush=True,
        )

    everything = np.ones(len(pairs), dtype=bool)
    validation = held if held.any() else everything  # where settings are chosen
    for method in args.methods:
        print(f"{method}:", flush=True)
        if method == "noisy":
            record(method, noisy)
        elif method == "tv_skimage":
            from skimage.restoration import denoise_tv_chambolle

            def skimage_tv(weight: float) -> Images:
                return [
                    _torch(denoise_tv_chambolle(_numpy(n), weight=weight, channel_axis=-1))
                    for n in noisy
                ]

            began = time.perf_counter()
            weight, outputs, grid = _best(
                skimage_tv, tuple(args.tv_weights), references, everything
            )
            record(
                method, outputs, weight=weight, grid=grid, grid_seconds=time.perf_counter() - began
            )
        elif method == "tv_project":

            def project_tv(weight: float) -> Images:
                return [tv_denoise(n[None], weight)[0] for n in noisy]

            began = time.perf_counter()
            weight, outputs, grid = _best(
                project_tv, tuple(args.tv_weights), references, everything
            )
            record(
                method, outputs, weight=weight, grid=grid, grid_seconds=time.perf_counter() - began
            )
        elif method == "tv_luma_chroma":

            def luma_chroma_tv(weights: tuple[float, float], only: np.ndarray) -> Images:
                smoothing = TVSmoothing(weights[0], chroma_weight=weights[1])
                return [smoothing(n[None])[0] if only[i] else n for i, n in enumerate(noisy)]

            began = time.perf_counter()
            weights, outputs, grid = _best_on_all(
                luma_chroma_tv,
                [(luma, chroma) for luma in args.tv_weights for chroma in args.tv_chroma_weights],
                references,
                validation,
            )
            record(
                method,
                outputs,
                luma_weight=weights[0],
                chroma_weight=weights[1],
                grid_on_validation_scenes=grid,
                grid_seconds=time.perf_counter() - began,
            )
        elif method == "bm3d":
            try:
                import bm3d
            except ImportError:
                print("  skipped: pip install bm3d", flush=True)
                continue

            bm3d_seconds: dict[float, list[float]] = {}  # per image, by sigma

            def run_bm3d(sigma: float, only: np.ndarray, times: dict = bm3d_seconds) -> Images:
                outputs = []
                for image, denoise in zip(noisy, only, strict=True):
                    if denoise:
                        began = time.perf_counter()
                        image = _torch(bm3d.bm3d_rgb(_numpy(image), sigma / 255.0))
                        times.setdefault(sigma, []).append(time.perf_counter() - began)
                    outputs.append(image)
                return outputs

            sigma, outputs, grid = _best_on_all(
                run_bm3d, tuple(args.bm3d_sigmas), references, validation
            )
            record(
                method,
                outputs,
                sigma=sigma,
                grid_on_validation_scenes=grid,
                seconds_per_image=float(np.mean(bm3d_seconds[sigma])),
            )
        else:
            with tempfile.TemporaryDirectory() as workdir:
                model, seconds, steps = _learned(method, args, Path(workdir))
            device = torch.device(args.device)
            model = model.to(device)
            began = time.perf_counter()
            outputs = [model.denoise(n[None].to(device))[0].cpu() for n in noisy]
            per_image = (time.perf_counter() - began) / len(noisy)
            # The talk's claim: the gain on Gaussian noise of the same strength, same images.
            generator = torch.Generator().manual_seed(args.seed)
            synthetic = [
                (
                    r + (n - r).square().mean().sqrt() * torch.randn(r.shape, generator=generator)
                ).clamp(0, 1)
                for n, r in zip(noisy, references, strict=True)
            ]
            matched = [model.denoise(s[None].to(device))[0].cpu() for s in synthetic]
            gain_synthetic = float(
                per_image_scores(matched, references)[0].mean()
                - per_image_scores(synthetic, references)[0].mean()
            )
            record(
                method,
                outputs,
                gain=True,
                train_seconds=seconds,
                steps=steps,
                seconds_per_image=per_image,
                gain_matched_gaussian=gain_synthetic,
            )
            if args.self_ensemble:  # the same network, each image in its 8 flips and turns
                model.hparams.self_ensemble = True
                began = time.perf_counter()
                outputs = [model.denoise(n[None].to(device))[0].cpu() for n in noisy]
                per_image = (time.perf_counter() - began) / len(noisy)
                record(
                    f"{method}+ensemble",
                    outputs,
                    train_seconds=seconds,
                    steps=steps,
                    seconds_per_image=per_image,
                    gain=True,
                    gain_matched_gaussian=float("nan"),
                )

    print()
    print(
        f"| method | PSNR (all {len(pairs)}) | SSIM | PSNR ({int((~held).sum())} outside val scenes) | SSIM | notes |"
    )
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        notes = []
        if "weight" in row:
            notes.append(f"weight {row['weight']:g}")
        if "sigma" in row:
            notes.append(f"sigma {row['sigma']:g}/255, {row['seconds_per_image']:.1f} s/image")
        if "train_seconds" in row:
            notes.append(
                f"trained {row['train_seconds'] / 60:.1f} min ({row['steps']} steps); gain "
                f"{row['gain_real']:+.2f} dB real vs {row['gain_matched_gaussian']:+.2f} dB "
                f"on matched Gaussian"
            )
        print(
            f"| {name} | {row['psnr']:.2f} | {row['ssim']:.4f} | {row['psnr_rest']:.2f} | "
            f"{row['ssim_rest']:.4f} | {'; '.join(notes)} |"
        )


def write_json(args: argparse.Namespace, rows: dict[str, object]) -> None:
    """The rows measured so far, with the command and machine that made them (to
    ``args.json_out``, if given)."""
    if not args.json_out:
        return
    meta = {
        "command": " ".join(sys.argv),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "threads": args.threads,
        "torch": torch.__version__,
        "device": args.device,
        "val_scenes": args.val_scenes,
    }
    Path(args.json_out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
