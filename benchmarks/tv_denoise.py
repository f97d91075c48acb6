"""TV denoising: our Chambolle-Pock solver against scikit-image's ``denoise_tv_chambolle``.

"ours, per channel" minimises scikit-image's objective, ``1/2 ||x - y||^2 + weight * TV(x)``
(isotropic TV, each colour channel on its own, the same differences and boundary);
"ours" is the project's default, vectorial TV on colour images (the channels share one
gradient length; identical on gray images). All run on the same noisy
photographs (scikit-image's bundled samples, Gaussian noise of sigma 0.1 and 0.2,
clipped to [0, 1], float32). For each image, noise level and method the weight is the
PSNR-best of the same grid; the table shows the PSNR of each at its best weight and
the wall time of ours over scikit-image's, both measured in this run (best of
``--repeats``, the two interleaved), at each method's best weight.

Stopping rules, each method's own default:

* scikit-image: its energy criterion, ``|E_n-1 - E_n| < 2e-4 E_0``, at most 200
  iterations (each colour channel separately);
* ours (``tv_denoise``): stop when the duality gap certifies every image within
  ``tol`` root mean square of the exact minimiser (default ``weight / 16``: 0.005 at
  weight 0.08, two 8-bit grey levels at 0.125), checked every 10 iterations at most, at
  most 500 iterations.

``dist`` is each per-channel result's RMS distance to the exact minimiser of the shared
objective (our solver run to ``tol`` = 1e-5) at the weight used: how far each stopping
rule leaves the answer. "Same accuracy" runs scikit-image at our per-channel weight with
``eps`` lowered (2e-4, 1e-4, 5e-5, ... 1e-6; up to 20000 iterations) until its distance
is at most ours, and compares the times: the like-for-like speed of the two algorithms.

    python benchmarks/tv_denoise.py --json-out tv_denoise.json
    python benchmarks/tv_denoise.py --device cuda   # ours on the GPU, scikit-image on CPU
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections.abc import Callable

import numpy as np
import torch

from lightning_synth.nn.total_variation import tv_denoise

IMAGES = ("camera", "astronaut", "coffee", "chelsea")
SIGMAS = (0.1, 0.2)
WEIGHTS = (0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.1, 0.12, 0.14, 0.16, 0.19, 0.22, 0.26, 0.3)
#: scikit-image tolerances tried for the same-accuracy comparison (its default first).
EPS_LADDER = (2e-4, 1e-4, 5e-5, 2e-5, 1e-5, 5e-6, 2e-6, 1e-6)


def _psnr(result: np.ndarray, clean: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((result.astype(np.float64) - clean) ** 2)))


def _best_time(run: Callable[[], object], repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - began)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", nargs="+", default=list(IMAGES), help="skimage.data names")
    parser.add_argument("--sigmas", nargs="+", type=float, default=list(SIGMAS))
    parser.add_argument("--repeats", type=int, default=5, help="timings per method (best kept)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (numpy: 1)")
    parser.add_argument("--device", default="cpu", help="device of our solver")
    parser.add_argument(
        "--tol", type=float, default=None, help="our certified RMS tolerance (default weight/16)"
    )
    parser.add_argument("--json-out", default=None, help="write the results here as JSON")
    args = parser.parse_args()

    import skimage.data
    from skimage.restoration import denoise_tv_chambolle
    from skimage.util import img_as_float32

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    rows = []
    header = (
        f"{'image':<10} {'sigma':>5} {'noisy':>6} | {'w sk':>5} {'PSNR sk':>7} {'dist sk':>7} | "
        f"{'w pc':>5} {'PSNR pc':>7} {'dist pc':>7} | {'w ours':>6} {'PSNR ours':>9} | "
        f"{'t sk ms':>7} {'t pc ms':>7} {'t ours ms':>9} {'ratio':>5} | {'eps sk':>6} "
        f"{'t sk ms':>7} {'ratio':>5}"
    )
    print("defaults: each method at its PSNR-best weight, its own stopping rule")
    print("pc: ours per channel (scikit-image's objective); ours: vectorial TV (the default)")
    print("ratio: t ours / t sk; same accuracy: scikit-image at the pc weight, eps lowered")
    print("until dist sk <= dist pc, ratio t pc / t sk")
    print(header)
    print("-" * len(header))
    for name in args.images:
        clean = img_as_float32(getattr(skimage.data, name)())
        channel_axis = -1 if clean.ndim == 3 else None
        for sigma in args.sigmas:
            generator = np.random.default_rng(0)
            noise = generator.normal(0.0, sigma, clean.shape).astype(np.float32)
            noisy = np.clip(clean + noise, 0, 1)
            chw = noisy[None] if noisy.ndim == 2 else noisy.transpose(2, 0, 1)
            y = torch.from_numpy(np.ascontiguousarray(chw))[None].to(device)

            def ours(weight: float, y: torch.Tensor = y, **kwargs: float) -> np.ndarray:
                kwargs.setdefault("tol", args.tol)
                kwargs.setdefault("coupled_channels", False)
                x = tv_denoise(y, weight=weight, **kwargs)
                sync()
                array = x[0].cpu().numpy()
                return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)

            def theirs(
                weight: float, eps: float = 2e-4, noisy: np.ndarray = noisy, axis=channel_axis
            ) -> np.ndarray:
                return denoise_tv_chambolle(
                    noisy, weight=weight, eps=eps, max_num_iter=200 if eps >= 2e-4 else 20000,
                    channel_axis=axis,
                )  # fmt: skip

            def distance(result: np.ndarray, exact: np.ndarray) -> float:
                return float(np.sqrt(np.mean((result - exact) ** 2)))

            ours(WEIGHTS[0])  # warm-up (first call, CUDA context)
            psnr_sk = {w: _psnr(theirs(w), clean) for w in WEIGHTS}
            psnr_ours = {w: _psnr(ours(w), clean) for w in WEIGHTS}
            psnr_vec = {w: _psnr(ours(w, coupled_channels=True), clean) for w in WEIGHTS}
            w_sk = max(psnr_sk, key=psnr_sk.get)
            w_ours = max(psnr_ours, key=psnr_ours.get)
            w_vec = max(psnr_vec, key=psnr_vec.get)
            exact = {w: ours(w, tol=1e-5, max_iter=5000) for w in {w_sk, w_ours}}
            dist_sk = distance(theirs(w_sk), exact[w_sk])
            dist_ours = distance(ours(w_ours), exact[w_ours])
            # Same accuracy: the largest eps at which scikit-image gets as close as we do.
            eps_same = next(
                (e for e in EPS_LADDER if distance(theirs(w_ours, e), exact[w_ours]) <= dist_ours),
                EPS_LADDER[-1],
            )
            t_sk, t_ours, t_vec, t_same = math.inf, math.inf, math.inf, math.inf
            for _ in range(args.repeats):  # interleaved, so all see the same machine load
                t_sk = min(t_sk, _best_time(lambda w=w_sk: theirs(w), 1))
                t_ours = min(t_ours, _best_time(lambda w=w_ours: ours(w), 1))
                t_vec = min(t_vec, _best_time(lambda w=w_vec: ours(w, coupled_channels=True), 1))
                t_same = min(t_same, _best_time(lambda w=w_ours, e=eps_same: theirs(w, e), 1))
            row = {
                "image": name,
                "shape": list(clean.shape),
                "sigma": sigma,
                "noisy_psnr": _psnr(noisy, clean),
                "skimage": {
                    "weight": w_sk,
                    "psnr": psnr_sk[w_sk],
                    "distance_to_exact": dist_sk,
                    "seconds": t_sk,
                },
                "ours_per_channel": {
                    "weight": w_ours,
                    "psnr": psnr_ours[w_ours],
                    "distance_to_exact": dist_ours,
                    "seconds": t_ours,
                },
                "ours": {"weight": w_vec, "psnr": psnr_vec[w_vec], "seconds": t_vec},
                "time_ratio": t_vec / t_sk,
                "time_ratio_per_channel": t_ours / t_sk,
                "same_accuracy": {"skimage_eps": eps_same, "skimage_seconds": t_same},
                "time_ratio_same_accuracy": t_ours / t_same,
            }
            rows.append(row)
            print(
                f"{name:<10} {sigma:>5.2f} {row['noisy_psnr']:>6.2f} | {w_sk:>5.2f} "
                f"{psnr_sk[w_sk]:>7.3f} {dist_sk:>7.4f} | {w_ours:>5.2f} {psnr_ours[w_ours]:>7.3f} "
                f"{dist_ours:>7.4f} | {w_vec:>6.2f} {psnr_vec[w_vec]:>9.3f} | {1e3 * t_sk:>7.1f} "
                f"{1e3 * t_ours:>7.1f} {1e3 * t_vec:>9.1f} {t_vec / t_sk:>5.2f} | "
                f"{eps_same:>6.0e} {1e3 * t_same:>7.1f} {t_ours / t_same:>5.2f}",
                flush=True,
            )
    ratios = [row["time_ratio"] for row in rows]
    same = [row["time_ratio_same_accuracy"] for row in rows]
    gains = [row["ours"]["psnr"] - row["skimage"]["psnr"] for row in rows]
    gains_pc = [row["ours_per_channel"]["psnr"] - row["skimage"]["psnr"] for row in rows]
    geometric = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    geometric_same = math.exp(sum(math.log(r) for r in same) / len(same))
    print(
        f"\ntime ours / scikit-image, defaults: geometric mean {geometric:.2f} (min "
        f"{min(ratios):.2f}, max {max(ratios):.2f}); at the same accuracy: {geometric_same:.2f} "
        f"(min {min(same):.2f}, max {max(same):.2f}); PSNR ours - scikit-image, defaults: "
        f"{min(gains):+.3f} to {max(gains):+.3f} dB (per channel: {min(gains_pc):+.3f} to "
        f"{max(gains_pc):+.3f} dB)"
    )
    if args.json_out:
        result = {
            "benchmark": "tv_denoise",
            "machine": {
                "platform": platform.platform(),
                "processor": platform.processor(),
                "cpu_count": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "device": str(device),
                "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
                "torch": torch.__version__,
            },
            "weights": list(WEIGHTS),
            "tol": "weight / 16" if args.tol is None else args.tol,
            "rows": rows,
            "time_ratio_geometric_mean": geometric,
            "time_ratio_same_accuracy_geometric_mean": geometric_same,
        }
        with open(args.json_out, "w") as handle:
            json.dump(result, handle, indent=2)
        print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
