"""Closed-form ray casting of elliptic capsules and ellipsoids (the body's primitives).

Every body primitive is an *elliptic capsule*: the set of points within unit distance
of a segment, after an anisotropic scaling of a local frame. In its local frame
(columns of ``axes``: ``x``, ``y`` = the segment direction, ``z``) a point ``q`` is
inside when ``(q_x / r_x)^2 + (dist(q_y, [-h, h]) / r_y)^2 + (q_z / r_z)^2 <= 1``, with
``h`` the half length. ``h = 0`` gives an ellipsoid, ``r_x = r_y = r_z`` a round capsule
(a cylinder with two hemispherical caps). An affine map keeps the ray parameter, so
the first hit is the smallest of one ray/cylinder and two ray/sphere quadratics in
the scaled frame. Rays leave the camera origin through pixel centres with direction
``((u - cx) / fx, (v - cy) / fy, 1)``, so the ray parameter *is* the depth ``z``.

Only pixels that can see a primitive are tested: per row of its projected 3-D bounding
box, the span of the 2-D "stadium" around the projected segment whose radius bounds the
projected radius (:func:`capsule_row_spans`; a diagonal limb covers a small part of its
box). A single ``scatter_reduce(amin)`` over keys packing (depth bits, primitive index)
resolves visibility, so the work is proportional to the area the body covers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from lightning_synth.rendering.body_render_tiles import raycast_tiles

__all__ = ["capsule_bounding_boxes", "capsule_row_spans", "raycast_capsules", "raycast_hits"]

_NEAR = 0.02  # metres; boxes of primitives closer than this to the camera plane cover all


def capsule_bounding_boxes(
    centers: torch.Tensor,
    axes: torch.Tensor,
    radii: torch.Tensor,
    half_lengths: torch.Tensor,
    intrinsics: torch.Tensor,
    height: int,
    width: int,
) -> torch.Tensor:
    """Pixel boxes ``(B, P, 4)`` long ``(u0, v0, u1, v1)``, inclusive, clipped to the image.

    The box is the projection of the primitive's axis-aligned 3-D bounding box; an empty
    box has ``u1 < u0`` or ``v1 < v0``. Arguments as in :func:`raycast_capsules`.
    """
    # Half extent along camera axis i of an ellipsoid with semi-axes r_k along axes[:, k].
    extent = ((axes * radii[..., None, :]) ** 2).sum(-1).sqrt()
    tip = axes[..., 1] * half_lengths[..., None]
    lo = centers - tip.abs() - extent
    hi = centers + tip.abs() + extent
    # Corner i takes hi on axis k where bit k of i is set: one select, not 33 small ops.
    bits = (torch.arange(8, device=lo.device)[:, None] >> torch.arange(3, device=lo.device)) & 1
    corners = torch.where(bits.bool(), hi[..., None, :], lo[..., None, :])  # (B, P, 8, 3)
    fx, fy, cx, cy = (intrinsics[:, None, None, i] for i in range(4))
    z = corners[..., 2]
    u = fx * corners[..., 0] / z.clamp_min(_NEAR) + cx
    v = fy * corners[..., 1] / z.clamp_min(_NEAR) + cy
    near = lo[..., 2] < _NEAR
    behind = hi[..., 2] <= 0
    u0 = torch.where(near, 0, u.amin(-1).floor()).clamp(0, width)
    u1 = torch.where(near, width - 1, u.amax(-1).ceil()).clamp(-1, width - 1)
    v0 = torch.where(near, 0, v.amin(-1).floor()).clamp(0, height)
    v1 = torch.where(near, height - 1, v.amax(-1).ceil()).clamp(-1, height - 1)
    u1 = torch.where(behind, -1, u1)
    return torch.stack([u0, v0, u1, v1], -1).long()


def _box_rows(boxes: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Every row of every box: its primitive, ``v``, and the box's ``u0``, ``u1``."""
    heights = (boxes[:, 3] - boxes[:, 1] + 1).clamp_min(0)
    primitive = torch.repeat_interleave(torch.arange(len(boxes), device=boxes.device), heights)
    first = torch.cumsum(heights, 0) - heights
    v = boxes[primitive, 1] + torch.arange(len(primitive), device=boxes.device) - first[primitive]
    return primitive, v, boxes[primitive, 0], boxes[primitive, 2]


def capsule_row_spans(
    centers: torch.Tensor,
    axes: torch.Tensor,
    radii: torch.Tensor,
    half_lengths: torch.Tensor,
    intrinsics: torch.Tensor,
    boxes: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row of each box, the pixel columns whose rays can hit the primitive.

    A point of the primitive is the segment point ``s`` plus an offset ``w`` with
    ``|w| <= max(radii)``; perspective moves its image at most
    ``f |w| |s| / (s_z (s_z - |w|))`` pixels from the image of ``s``, and the segment's
    image is the segment between its projected ends. So every hit lies in the 2-D stadium
    of that radius around the projected segment; a row meets it in one interval, bounded
    by the end disks and the two long sides. Primitives within one radius of the camera
    plane keep their whole box rows.

    Args:
        centers, axes, radii, half_lengths, intrinsics: as in :func:`raycast_capsules`.
        boxes: ``(B * P, 4)`` from :func:`capsule_bounding_boxes`, flattened.

    Returns:
        ``primitive``, ``v``, ``u0``, ``u1`` per row (``u1 < u0``: nothing to test), long.
    """
    dtype = centers.dtype
    prims = centers.shape[1]
    tip = (axes[..., 1] * half_lengths[..., None]).flatten(0, 1)
    ends = torch.stack([centers.flatten(0, 1) + tip, centers.flatten(0, 1) - tip], 1)  # N,2,3
    k = intrinsics.repeat_interleave(prims, 0)  # N x 4
    radius = radii.amax(-1).flatten()
    z = ends[..., 2]
    z_min = z.amin(1)
    usable = z_min - radius > _NEAR
    safe_z = z.clamp_min(_NEAR)
    px = k[:, None, 0] * ends[..., 0] / safe_z + k[:, None, 2]  # N x 2 (the two ends)
    py = k[:, None, 1] * ends[..., 1] / safe_z + k[:, None, 3]
    reach = ends.norm(dim=-1).amax(1) / (z_min * (z_min - radius).clamp_min(_NEAR))
    # One pixel of slack for rounding in float32.
    r_px = k[:, :2].amax(1) * radius * reach + 1.0

    primitive, v, u0, u1 = _box_rows(boxes)
    row_y = v.to(dtype)
    ax, bx, ay, by = px[primitive, 0], px[primitive, 1], py[primitive, 0], py[primitive, 1]
    r = r_px[primitive]
    inf = torch.full_like(row_y, float("inf"))
    lo, hi = inf, -inf
    for cx, cy in ((ax, ay), (bx, by)):  # the end disks
        dy = row_y - cy
        half = (r * r - dy * dy).clamp_min(0).sqrt()
        inside = dy.abs() <= r
        lo = torch.where(inside, torch.minimum(lo, cx - half), lo)
        hi = torch.where(inside, torch.maximum(hi, cx + half), hi)
    length = torch.hypot(bx - ax, by - ay).clamp_min(1e-6)
    nx, ny = -(by - ay) / length * r, (bx - ax) / length * r
    for sign in (1.0, -1.0):  # the long sides, A + s n -> B + s n
        p_x, p_y, q_x, q_y = ax + sign * nx, ay + sign * ny, bx + sign * nx, by + sign * ny
        crosses = ((p_y - row_y) * (q_y - row_y) <= 0) & (p_y != q_y)
        t = ((row_y - p_y) / torch.where(p_y != q_y, q_y - p_y, 1.0)).clamp(0, 1)
        u = p_x + t * (q_x - p_x)
        lo = torch.where(crosses, torch.minimum(lo, u), lo)
        hi = torch.where(crosses, torch.maximum(hi, u), hi)
    span_u0 = torch.maximum(u0, lo.clamp(-1, 1 << 20).ceil().long())
    span_u1 = torch.minimum(u1, hi.clamp(-(1 << 20), 1 << 20).floor().long())
    whole = ~usable[primitive]
    span_u0 = torch.where(whole, u0, span_u0)
    span_u1 = torch.where(whole, u1, span_u1)
    return primitive, v, span_u0, span_u1


def _first_hit(
    origin: Sequence[torch.Tensor],
    direction: Sequence[torch.Tensor],
    half: torch.Tensor,
    t_min: torch.Tensor,
) -> torch.Tensor:
    """Ray parameter of the first hit beyond ``t_min`` of a unit capsule along ``y``.

    ``inf`` where the ray misses. Rays start near the primitive (``t_min < 0``) so that
    the quadratics are well conditioned in float32. ``origin`` and ``direction`` are the
    ``x, y, z`` components, each ``(N,)``.
    """
    ox, oy, oz = origin
    dx, dy, dz = direction
    inf = torch.full_like(ox, float("inf"))
    # Lateral surface of the cylinder x^2 + z^2 = 1, |y| <= half.
    a = dx * dx + dz * dz
    b = ox * dx + oz * dz
    c = ox * ox + oz * oz - 1
    disc = b * b - a * c
    t = (-b - disc.clamp_min(0).sqrt()) / a.clamp_min(1e-12)
    ok = (disc > 0) & (a > 1e-12) & ((oy + t * dy).abs() <= half) & (t > t_min)
    best = torch.where(ok, t, inf)
    # The two spheres of radius 1 at y = +-half.
    aa = a + dy * dy
    for end in (half, -half):
        oy_end = oy - end
        b = ox * dx + oz * dz + oy_end * dy
        disc = b * b - aa * (ox * ox + oz * oz + oy_end * oy_end - 1)
        t = (-b - disc.clamp_min(0).sqrt()) / aa
        best = torch.where((disc > 0) & (t > t_min) & (t < best), t, best)
    return best


def raycast_capsules(
    centers: torch.Tensor,
    axes: torch.Tensor,
    radii: torch.Tensor,
    half_lengths: torch.Tensor,
    intrinsics: torch.Tensor,
    height: int,
    width: int,
    culling: Literal["spans", "boxes", "tiles"] = "spans",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth and index of the visible primitive at every pixel.

    Arguments as in :func:`raycast_hits`, which gives the same for the covered pixels
    only.

    Returns:
        ``depth`` ``(B, H, W)`` float, the ``z`` of the first hit in metres and 0 where
        the ray hits nothing, and ``index`` ``(B, H, W)`` long, the primitive hit there
        and -1 where nothing is hit.
    """
    batch = centers.shape[0]
    pixel, z, primitive = raycast_hits(
        centers, axes, radii, half_lengths, intrinsics, height, width, culling
    )
    size = batch * height * width
    depth = torch.zeros(size, dtype=centers.dtype, device=centers.device)
    depth[pixel] = z
    index = torch.full((size,), -1, dtype=torch.long, device=centers.device)
    index[pixel] = primitive
    return depth.view(batch, height, width), index.view(batch, height, width)


def raycast_hits(
    centers: torch.Tensor,
    axes: torch.Tensor,
    radii: torch.Tensor,
    half_lengths: torch.Tensor,
    intrinsics: torch.Tensor,
    height: int,
    width: int,
    culling: Literal["spans", "boxes", "tiles"] = "spans",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pixels some primitive covers, with the depth and index of the visible one.

    The person covers a small part of the frame, so later stages (part labels,
    mirroring) work on these pixels and write full images once.

    Args:
        centers: ``(B, P, 3)`` primitive centres in the camera frame (``x`` right, ``y``
            down, ``z`` forward), metres.
        axes: ``(B, P, 3, 3)`` rotation whose columns are the primitive's local ``x``,
            ``y`` (segment direction) and ``z`` axes in the camera frame.
        radii: ``(B, P, 3)`` semi-axes along local ``x``, ``y`` (of the caps) and ``z``.
        half_lengths: ``(B, P)`` half length of the segment, metres (0: ellipsoid).
        intrinsics: ``(B, 4)`` pinhole ``fx, fy, cx, cy`` in pixels.
        height: image height in pixels.
        width: image width in pixels.
        culling: ``spans`` tests only the pixels near each primitive's projected segment
            (:func:`capsule_row_spans`); ``boxes`` every pixel of its projected bounding
            box (slower, the same image: the reference the spans are tested against);
            ``tiles`` runs one fused Triton kernel over tiles of pixels, skipping the
            primitives whose box misses a tile (CUDA only; the same image to float
            rounding; see :mod:`~lightning_synth.rendering.body_render_tiles`).

    Returns:
        ``pixel`` ``(N,)`` long, increasing flat indices into ``(B, H, W)`` of the
        covered pixels; ``depth`` ``(N,)``, the ``z`` of the first hit there in metres;
        ``primitive`` ``(N,)`` long, the primitive hit.
    """
    batch, prims = centers.shape[:2]
    device = centers.device
    boxes = capsule_bounding_boxes(
        centers, axes, radii, half_lengths, intrinsics, height, width
    ).flatten(0, 1)
    # One row per primitive: the affine map A = diag(1 / r) axes^T into its scaled local
    # frame, the centre (cx, cy, t0), the intrinsics and the scaled half length. Rays
    # start at the centre's depth t0, a few radii from the primitive, so that the
    # quadratics are well conditioned in float32: the ray is A (t0 d - c) + s A d, and
    # t0 d - c has no z component.
    inv = (axes / radii[..., None, :]).transpose(-1, -2)  # (B, P, 3, 3)
    table = torch.cat(
        [
            inv.flatten(-2),
            centers,
            intrinsics[:, None].expand(-1, prims, -1),
            (half_lengths / radii[..., 1])[..., None],
        ],
        -1,
    ).flatten(0, 1)

    if culling == "tiles":
        depth_all, index_all = raycast_tiles(table, boxes, batch, prims, height, width)
        covered = (index_all >= 0).nonzero()[:, 0]
        depth = depth_all.index_select(0, covered).to(centers.dtype)
        return covered, depth, index_all.index_select(0, covered).long()
    if culling == "spans":
        owner, v_row, u0_row, u1_row = capsule_row_spans(
            centers, axes, radii, half_lengths, intrinsics, boxes
        )
    elif culling == "boxes":
        owner, v_row, u0_row, u1_row = _box_rows(boxes)
    else:
        raise ValueError(f"culling must be 'spans', 'boxes' or 'tiles', got {culling!r}")
    counts = (u1_row - u0_row + 1).clamp_min(0)
    pixel_row = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)
    start = torch.cumsum(counts, 0) - counts
    # Gathered as rows (one contiguous vector per quantity), which keeps every later
    # elementwise op on contiguous memory.
    u0, v, begin, row = torch.stack([u0_row, v_row, start, owner]).index_select(1, pixel_row)
    u = u0 + torch.arange(pixel_row.numel(), device=device) - begin
    par = table.t().contiguous().index_select(1, row)
    t0 = par[11]
    dx = (u.to(par.dtype) - par[14]) / par[12]
    dy = (v.to(par.dtype) - par[15]) / par[13]
    ox, oy = dx * t0 - par[9], dy * t0 - par[10]
    origin = [par[3 * k] * ox + par[3 * k + 1] * oy for k in range(3)]
    direction = [
        (par[3 * k] * dx).addcmul_(par[3 * k + 1], dy).add_(par[3 * k + 2]) for k in range(3)
    ]
    t = _first_hit(origin, direction, par[16], -t0) + t0

    hit = torch.isfinite(t).nonzero()[:, 0]
    t = t.index_select(0, hit).float()
    row, u, v = torch.stack([row, u, v]).index_select(1, hit)
    image = torch.div(row, prims, rounding_mode="floor")
    pixel = (image * height + v) * width + u
    key = (t.contiguous().view(torch.int32).long() << 8) | (row % prims)
    empty = torch.iinfo(torch.int64).max
    keys = torch.full((batch * height * width,), empty, dtype=torch.int64, device=device)
    keys.scatter_reduce_(0, pixel, key, reduce="amin")
    # Decode only the pixels something hit: full-image int64 passes cost more than the
    # whole ray cast.
    covered = (keys != empty).nonzero()[:, 0]
    won = keys.index_select(0, covered)
    depth = (won >> 8).to(torch.int32).view(torch.float32).to(centers.dtype)
    return covered, depth, won & 255
