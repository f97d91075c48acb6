"""The capsule ray cast as one fused GPU kernel (Triton): ``culling="tiles"``.

The default ray cast (:func:`~lightning_synth.rendering.body_render.raycast_hits` with
``culling="spans"``) gathers the pixels near each primitive into flat arrays: little
arithmetic, which suits a CPU, but about a hundred tensor operations and several
host synchronisations per batch, which on a GPU cost more than the pixels. Here one
program per image tile of ``TILE_H x TILE_W`` pixels loops over the image's primitives,
skips those whose pixel box misses the tile, and keeps the nearest hit in registers:
one kernel, no intermediate arrays. The arithmetic is that of ``_first_hit`` (same
quadratics, same conditioning), so depths agree with the default to float rounding.

Needs Triton (it comes with CUDA builds of torch) and a CUDA device; with
``TRITON_INTERPRET=1`` in the environment before import, Triton's interpreter runs the
same kernel on CPU tensors (slowly), which is how the tests check it.
"""

from __future__ import annotations

import importlib.util
import os

import torch

__all__ = ["tiles_available", "raycast_tiles"]

TILE_H = 16
TILE_W = 32


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def tiles_available(device: torch.device) -> bool:
    """Whether ``culling="tiles"`` can run on ``device`` (Triton there, and CUDA or the
    interpreter)."""
    if importlib.util.find_spec("triton") is None:
        return False
    return device.type == "cuda" or (device.type == "cpu" and _interpreting())


_kernel = None


def _compiled_kernel():  # noqa: ANN202 (a Triton JIT function)
    """The kernel, defined on first use so that importing this module needs no Triton."""
    global _kernel
    if _kernel is not None:
        return _kernel
    import triton
    import triton.language as tl

    @triton.jit
    def raycast_tile(
        table_ptr,  # (B * P, 17) float32: inverse frame (9), centre x, y, z, fx, fy, cx, cy, half
        boxes_ptr,  # (B * P, 4) int32: u0, v0, u1, v1 (inclusive; empty: u1 < u0)
        depth_ptr,  # (B * H * W) float32 out: depth of the first hit, inf where none
        index_ptr,  # (B * H * W) int32 out: primitive hit, -1 where none
        prims,
        height,
        width,
        TILE_H: tl.constexpr,
        TILE_W: tl.constexpr,
    ):
        image = tl.program_id(0)
        tile = tl.program_id(1)
        tiles_across = tl.cdiv(width, TILE_W)
        tile_v0 = (tile // tiles_across) * TILE_H
        tile_u0 = (tile % tiles_across) * TILE_W
        v = tile_v0 + tl.arange(0, TILE_H)[:, None]
        u = tile_u0 + tl.arange(0, TILE_W)[None, :]
        inside = (v < height) & (u < width)
        best = tl.full((TILE_H, TILE_W), float("inf"), tl.float32)
        best_index = tl.full((TILE_H, TILE_W), -1, tl.int32)
        u_f = u.to(tl.float32)
        v_f = v.to(tl.float32)
        for p in range(0, prims):
            row = image * prims + p
            box_u0 = tl.load(boxes_ptr + row * 4)
            box_v0 = tl.load(boxes_ptr + row * 4 + 1)
            box_u1 = tl.load(boxes_ptr + row * 4 + 2)
            box_v1 = tl.load(boxes_ptr + row * 4 + 3)
            overlaps = (box_u0 <= tile_u0 + TILE_W - 1) & (box_u1 >= tile_u0)
            overlaps = overlaps & (box_v0 <= tile_v0 + TILE_H - 1) & (box_v1 >= tile_v0)
            overlaps = overlaps & (box_u1 >= box_u0) & (box_v1 >= box_v0)
            if overlaps:
                par = table_ptr + row * 17
                a00 = tl.load(par)
                a01 = tl.load(par + 1)
                a02 = tl.load(par + 2)
                a10 = tl.load(par + 3)
                a11 = tl.load(par + 4)
                a12 = tl.load(par + 5)
                a20 = tl.load(par + 6)
                a21 = tl.load(par + 7)
                a22 = tl.load(par + 8)
                centre_x = tl.load(par + 9)
                centre_y = tl.load(par + 10)
                t0 = tl.load(par + 11)
                fx = tl.load(par + 12)
                fy = tl.load(par + 13)
                cx = tl.load(par + 14)
                cy = tl.load(par + 15)
                half = tl.load(par + 16)
                # The ray from the camera through the pixel, started at depth t0 (the
                # primitive's centre) and mapped into the primitive's scaled frame.
                ray_x = (u_f - cx) / fx
                ray_y = (v_f - cy) / fy
                rel_x = ray_x * t0 - centre_x
                rel_y = ray_y * t0 - centre_y
                ox = a00 * rel_x + a01 * rel_y
                oy = a10 * rel_x + a11 * rel_y
                oz = a20 * rel_x + a21 * rel_y
                dx = a00 * ray_x + a01 * ray_y + a02
                dy = a10 * ray_x + a11 * ray_y + a12
                dz = a20 * ray_x + a21 * ray_y + a22
                t_min = -t0
                # Lateral surface of the unit cylinder along y, |y| <= half.
                qa = dx * dx + dz * dz
                qb = ox * dx + oz * dz
                qc = ox * ox + oz * oz - 1.0
                disc = qb * qb - qa * qc
                t = (-qb - tl.sqrt(tl.maximum(disc, 0.0))) / tl.maximum(qa, 1e-12)
                ok = (disc > 0) & (qa > 1e-12) & (tl.abs(oy + t * dy) <= half) & (t > t_min)
                hit = tl.where(ok, t, float("inf"))
                # The two unit spheres at y = +half and y = -half.
                qaa = qa + dy * dy
                oy_end = oy - half
                qb = ox * dx + oz * dz + oy_end * dy
                disc = qb * qb - qaa * (ox * ox + oz * oz + oy_end * oy_end - 1.0)
                t = (-qb - tl.sqrt(tl.maximum(disc, 0.0))) / qaa
                hit = tl.where((disc > 0) & (t > t_min) & (t < hit), t, hit)
                oy_end = oy + half
                qb = ox * dx + oz * dz + oy_end * dy
                disc = qb * qb - qaa * (ox * ox + oz * oz + oy_end * oy_end - 1.0)
                t = (-qb - tl.sqrt(tl.maximum(disc, 0.0))) / qaa
                hit = tl.where((disc > 0) & (t > t_min) & (t < hit), t, hit)
                depth = hit + t0
                # Strictly nearer: on a tie the lower primitive index stays, as in the
                # default's (depth, index) minimum.
                nearer = depth < best
                best = tl.where(nearer, depth, best)
                best_index = tl.where(nearer, p, best_index)
        offsets = (image * height + v) * width + u
        tl.store(depth_ptr + offsets, best, mask=inside)
        tl.store(index_ptr + offsets, best_index, mask=inside)

    _kernel = raycast_tile
    return _kernel


def raycast_tiles(
    table: torch.Tensor, boxes: torch.Tensor, batch: int, prims: int, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth and primitive of the first hit at every pixel, one kernel launch.

    Args:
        table: ``(B * P, 17)`` per primitive: the map into its scaled frame (row-major
            3 x 3), its centre, the image's ``fx, fy, cx, cy`` and its scaled half length
            (as :func:`~lightning_synth.rendering.body_render.raycast_hits` builds it).
        boxes: ``(B * P, 4)`` pixel boxes ``u0, v0, u1, v1`` (inclusive).
        batch: number of images ``B``.
        prims: primitives per image ``P``.
        height: image height in pixels.
        width: image width in pixels.

    Returns:
        ``depth`` ``(B * H * W,)`` float32 (``inf`` where nothing is hit) and ``index``
        ``(B * H * W,)`` int32 (``-1`` there).
    """
    if not tiles_available(table.device):
        raise RuntimeError(
            "culling='tiles' needs Triton and a CUDA device (torch's CUDA builds include "
            "Triton); use culling='spans' on this device"
        )
    table = table.float().contiguous()
    boxes = boxes.to(torch.int32).contiguous()
    depth = torch.empty(batch * height * width, dtype=torch.float32, device=table.device)
    index = torch.empty(batch * height * width, dtype=torch.int32, device=table.device)
    tiles = -(-height // TILE_H) * -(-width // TILE_W)
    # Fused multiply-adds (Triton's default until 3.10, said explicitly): fewer
    # instructions; depths stay within float rounding of the default path.
    _compiled_kernel()[(batch, tiles)](
        table, boxes, depth, index, prims, height, width, TILE_H=TILE_H, TILE_W=TILE_W,
        enable_fp_fusion=True,
    )  # fmt: skip
    return depth, index
