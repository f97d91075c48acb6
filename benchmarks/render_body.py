"""Frames per second of the body depth renderer and the depth-sensor model.

The reference, timed in the same run, is the same closed-form ray cast done densely:
every primitive against every pixel, with no bounding-box culling (what a hand-written
vectorised PyTorch ray caster does). The renderer's speed is given as a ratio to it,
which drifts less than absolute times on a shared machine, and its depth maps are
checked against the reference's.

    python benchmarks/render_body.py --height 240 --width 320 --batch-size 32 \
        --num-frames 512 --device cpu --json-out body_speed.json [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from lightning_synth.rendering.body import BodyRenderer
from lightning_synth.rendering.body_parts import build_primitives
from lightning_synth.rendering.body_render import _first_hit
from lightning_synth.rendering.body_skeleton import forward_kinematics
from lightning_synth.rendering.sensor import DepthSensorNoise


def dense_depth(renderer: BodyRenderer, indices: list[int]) -> torch.Tensor:
    """Reference: depth by testing every primitive against every pixel."""
    params = renderer.sample(indices)
    rot, pos = forward_kinematics(params.pose, params.shape, params.yaw)
    centers, axes, radii, half = build_primitives(rot, pos, params.shape)
    world_to_cam, eye = renderer._camera(params.camera, pos)
    centers = (world_to_cam[:, None] @ (centers - eye[:, None])[..., None])[..., 0]
    axes = world_to_cam[:, None] @ axes
    focal = (renderer.width / 2) / torch.tan(params.camera[:, 5] / 2)
    dev = centers.device
    v, u = torch.meshgrid(
        torch.arange(renderer.height, device=dev, dtype=torch.float32),
        torch.arange(renderer.width, device=dev, dtype=torch.float32),
        indexing="ij",
    )
    rays = torch.stack(
        [
            (u[None] - (renderer.width - 1) / 2) / focal[:, None, None],
            (v[None] - (renderer.height - 1) / 2) / focal[:, None, None],
            torch.ones_like(u).expand(len(indices), -1, -1),
        ],
        -1,
    )  # (B, H, W, 3)
    inv = (axes / radii[..., None, :]).transpose(-1, -2)  # (B, P, 3, 3)
    best = torch.full(rays.shape[:3], float("inf"), device=dev)
    for p in range(centers.shape[1]):
        t0 = centers[:, p, 2, None, None]
        rel = rays * t0[..., None] - centers[:, p, None, None]
        origin = torch.einsum("bij,bhwj->bhwi", inv[:, p], rel)
        direction = torch.einsum("bij,bhwj->bhwi", inv[:, p], rays)
        half_scaled = (half[:, p] / radii[:, p, 1])[:, None, None].expand(rays.shape[:3])
        t = _first_hit(origin.unbind(-1), direction.unbind(-1), half_scaled, -t0) + t0
        best = torch.minimum(best, t)
    depth = torch.where(torch.isfinite(best), best, 0.0)
    mirrored = params.mirrored[:, None, None]
    return torch.where(mirrored, depth.flip(-1), depth)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeats


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-frames", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--culling",
        choices=("spans", "tiles"),
        default="spans",
        help="the renderer's ray cast: spans (default) or tiles (fused Triton kernel, CUDA)",
    )
    parser.add_argument("--json-out", default=None)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="intra-op CPU threads (default: torch's); 1 is what a DataLoader worker gets",
    )
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    renderer = BodyRenderer(args.height, args.width, device=device, culling=args.culling)
    batches = [
        list(range(start, min(start + args.batch_size, args.num_frames)))
        for start in range(0, args.num_frames, args.batch_size)
    ]

    def render_all() -> None:
        for batch in batches:
            renderer.render(batch)

    seconds = _time(render_all, device, 1)
    fps = args.num_frames / seconds
    ref_batches = batches[: max(1, len(batches) // 8)]
    ref_frames = sum(len(b) for b in ref_batches)

    def reference_all() -> None:
        for batch in ref_batches:
            dense_depth(renderer, batch)

    ref_fps = ref_frames / _time(reference_all, device, 1)
    fast = renderer.render(ref_batches[0]).depth
    dense = dense_depth(renderer, ref_batches[0])
    both = (fast > 0) & (dense > 0)
    max_diff = (fast - dense)[both].abs().max().item()
    mask_mismatch = ((fast > 0) != (dense > 0)).float().mean().item()
    noise = DepthSensorNoise()
    frame = renderer.render(batches[0])
    noise_seconds = _time(lambda: noise(frame.depth, frame.intrinsics), device, 3)
    noise_fps = len(batches[0]) / noise_seconds
    result = {
        "height": args.height,
        "width": args.width,
        "batch_size": args.batch_size,
        "num_frames": args.num_frames,
        "device": str(device),
        "culling": args.culling,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "render_fps": fps,
        "reference_dense_fps": ref_fps,
        "speedup_vs_reference": fps / ref_fps,
        "max_depth_diff_vs_reference_m": max_diff,
        "foreground_mismatch_vs_reference": mask_mismatch,
        "sensor_noise_fps": noise_fps,
        "foreground_fraction": frame.valid.float().mean().item(),
    }
    print(f"| {args.height}x{args.width}, batch {args.batch_size}, {device} | frames/s |")
    print("|---|---|")
    print(f"| BodyRenderer.render (culled ray cast) | {fps:.1f} |")
    print(f"| reference: dense ray cast, every pixel x primitive | {ref_fps:.1f} |")
    print(f"| speed-up vs reference | {fps / ref_fps:.1f}x |")
    print(f"| DepthSensorNoise | {noise_fps:.1f} |")
    print(
        f"\nagainst the reference: max |depth difference| {max_diff:.2e} m, "
        f"foreground masks differ on {mask_mismatch:.2e} of the pixels"
    )
    if args.json_out:
        with open(args.json_out, "w") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main()
