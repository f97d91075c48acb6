"""``DepthSensorNoise``: turn clean depth renders into Kinect-v1-like frames.

A structured-light sensor (Kinect v1) measures the disparity of a projected dot pattern
between a projector and an IR camera ``b = 7.5 cm`` apart and returns ``z = f b / d``.
The model applies, in this order, to a batch of clean depth maps:

1. **axial noise**: Gaussian, with the standard deviation Nguyen, Izadi & Lovell (3DIMPVT
   2012) measured on a Kinect v1, ``sigma_z = 0.0012 + 0.0019 (z - 0.4)^2`` metres;
2. **disparity quantisation**: ``d = f b / z`` rounded to 1/8 pixel, then ``z = f b / d``
   (``f`` from the intrinsics unless given), so the depth steps grow as ``z^2``;
3. **missing depth** (``valid`` false, depth 0): near depth discontinuities (silhouettes
   and occlusion edges, with a probability decaying with the distance to the edge), at
   grazing angles (surface normals from finite differences of the back-projected
   points), at random (dropout), and outside the sensor's range.

Nguyen's ``sigma_z`` was measured on real frames, which already include quantisation;
switch ``quantize`` off to get exactly that spread, or keep both for a slightly noisier
sensor. All random numbers are drawn whatever the switches, so turning one effect off
leaves the others unchanged. Input: depth ``(B, H, W)`` metres with 0 = no reading,
intrinsics ``(B, 4)`` ``fx, fy, cx, cy``; works on any device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DepthSensorNoise", "kinect_axial_sigma"]


def kinect_axial_sigma(depth: torch.Tensor) -> torch.Tensor:
    """Nguyen et al.'s axial noise standard deviation (metres) of a Kinect v1 at ``depth``.

    Args:
        depth: distance along the optical axis, metres.
    """
    return 0.0012 + 0.0019 * (depth - 0.4) ** 2


class DepthSensorNoise(nn.Module):
    """Kinect-v1-like noise and missing data for clean depth maps (no parameters).

    Args:
        axial_noise: add Gaussian depth noise with Nguyen et al.'s ``sigma_z(z)``.
        axial_scale: multiplier of ``sigma_z``.
        quantize: quantise the disparity ``f b / z`` to ``disparity_step`` pixels.
        baseline: projector-camera baseline in metres (7.5 cm on a Kinect v1).
        disparity_step: disparity resolution in pixels (the Kinect's 1/8 pixel).
        focal_length: focal length in pixels for the disparity; ``None`` uses ``fx`` of the
            intrinsics given to ``forward``.
        edge_dropout: drop pixels near depth discontinuities.
        edge_prob: chance of dropping a pixel on a discontinuity.
        edge_width: decay length in pixels of the dropout chance away from the edge
            (``edge_prob * exp(-distance / edge_width)``, up to ``3 * edge_width`` pixels).
        edge_threshold: depth jump in metres between neighbours that makes an edge; a
            foreground pixel next to background (0) is always an edge.
        grazing_dropout: drop pixels seen at grazing angles.
        grazing_angle: angle in degrees between the surface normal and the line of sight
            from which dropout starts; the chance grows linearly to 1 at 90 degrees.
        random_dropout: drop pixels independently at random.
        dropout_prob: chance of dropping each pixel.
        range_limits: drop readings outside ``[min_depth, max_depth]``.
        min_depth: nearest depth the sensor reports, metres.
        max_depth: farthest depth the sensor reports, metres.
        seed: seed of the generator used when ``forward`` gets none.
    """

    def __init__(
        self,
        axial_noise: bool = True,
        axial_scale: float = 1.0,
        quantize: bool = True,
        baseline: float = 0.075,
        disparity_step: float = 0.125,
        focal_length: float | None = None,
        edge_dropout: bool = True,
        edge_prob: float = 0.8,
        edge_width: float = 0.5,
        edge_threshold: float = 0.1,
        grazing_dropout: bool = True,
        grazing_angle: float = 75.0,
        random_dropout: bool = True,
        dropout_prob: float = 0.005,
        range_limits: bool = True,
        min_depth: float = 0.4,
        max_depth: float = 8.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0 <= grazing_angle < 90:
            raise ValueError(f"grazing_angle must be in [0, 90) degrees, got {grazing_angle}")
        if baseline <= 0 or disparity_step <= 0:
            raise ValueError("baseline and disparity_step must be positive")
        self.axial_noise, self.axial_scale = axial_noise, float(axial_scale)
        self.quantize, self.baseline = quantize, float(baseline)
        self.disparity_step, self.focal_length = float(disparity_step), focal_length
        self.edge_dropout, self.edge_prob = edge_dropout, float(edge_prob)
        self.edge_width, self.edge_threshold = float(edge_width), float(edge_threshold)
        self.grazing_dropout, self.grazing_angle = grazing_dropout, float(grazing_angle)
        self.random_dropout, self.dropout_prob = random_dropout, float(dropout_prob)
        self.range_limits, self.min_depth, self.max_depth = range_limits, min_depth, max_depth
        self.seed = int(seed)

    def forward(
        self,
        depth: torch.Tensor,
        intrinsics: torch.Tensor,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Noisy depth ``(B, H, W)`` (0 where missing) and the ``valid`` mask ``(B, H, W)``.

        Args:
            depth: clean depth ``(B, H, W)`` in metres, 0 where there is no surface.
            intrinsics: ``(B, 4)`` ``fx, fy, cx, cy`` in pixels.
            generator: one generator for the batch, or one per frame (then each frame's
                noise depends only on its own generator and frame); ``None`` seeds one
                from ``seed``.
        """
        if depth.ndim != 3:
            raise ValueError(f"depth must be B x H x W, got {tuple(depth.shape)}")
        valid = depth > 0
        if self.range_limits:
            valid &= (depth >= self.min_depth) & (depth <= self.max_depth)
        # Everything below happens at the surface pixels only: a person covers a few
        # percent of a frame, and random draws for the empty rest would be most of the work.
        where = _Pixels.of(valid)
        frame = where.frame
        clean = depth.reshape(-1).index_select(0, where.flat)
        normal, uniform = self._draw(torch.bincount(frame, minlength=len(depth)), depth, generator)
        keep = torch.ones_like(clean, dtype=torch.bool)
        if self.edge_dropout:
            keep &= uniform[0] >= self._edge_probability(depth, valid, where)
        if self.grazing_dropout:
            keep &= uniform[1] >= self._grazing_probability(depth, valid, intrinsics, where)
        if self.random_dropout:
            keep &= uniform[2] >= self.dropout_prob
        out = clean
        if self.axial_noise:
            out = out + normal * kinect_axial_sigma(clean) * self.axial_scale
        if self.quantize:
            focal = (
                intrinsics[:, 0].index_select(0, frame)
                if self.focal_length is None
                else self.focal_length
            )
            fb = focal * self.baseline
            disparity = fb / out.clamp_min(1e-6)
            disparity = torch.round(disparity / self.disparity_step) * self.disparity_step
            keep &= disparity > 0
            out = fb / disparity.clamp_min(1e-12)
        keep &= out > 0
        noisy = torch.zeros_like(depth)
        noisy.view(-1).index_copy_(0, where.flat, torch.where(keep, out, 0.0))
        valid.view(-1).index_copy_(0, where.flat, keep)
        return noisy, valid

    def _draw(
        self,
        counts: torch.Tensor,
        like: torch.Tensor,
        generator: torch.Generator | Sequence[torch.Generator] | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaussian ``(N,)`` and uniform ``(3, N)`` draws for ``counts[f]`` pixels of frame ``f``."""
        kwargs = {"device": like.device, "dtype": like.dtype}
        if generator is None:
            generator = torch.Generator(device=like.device).manual_seed(self.seed)
        if isinstance(generator, torch.Generator):
            total = int(counts.sum())
            normal = torch.randn(total, generator=generator, **kwargs)
            return normal, torch.rand((3, total), generator=generator, **kwargs)
        if len(generator) != len(counts):
            raise ValueError(f"got {len(generator)} generators for {len(counts)} frames")
        draws = [
            (
                torch.randn(int(n), generator=g, **kwargs),
                torch.rand((3, int(n)), generator=g, **kwargs),
            )
            for g, n in zip(generator, counts.tolist(), strict=True)
        ]
        return torch.cat([n for n, _ in draws]), torch.cat([u for _, u in draws], 1)

    def _edge_probability(
        self, depth: torch.Tensor, valid: torch.Tensor, where: _Pixels
    ) -> torch.Tensor:
        """Dropout chance from the distance (in pixels, chessboard) to a discontinuity, at
        the pixels ``where`` (the valid ones)."""
        here = depth.reshape(-1).index_select(0, where.flat)
        # Largest and smallest depth of the 3x3 neighbourhood inside the frame.
        highest = where.read(depth, _NEIGHBOURS_3X3, outside=0.0).amax(0)  # depth >= 0
        lowest = where.read(depth, _NEIGHBOURS_3X3, outside=math.inf).amin(0)
        jump = (highest - here > self.edge_threshold) | (here - lowest > self.edge_threshold)
        reach = torch.zeros_like(valid)
        reach.view(-1).index_copy_(0, where.flat, jump | (lowest <= 0))
        # level = how many of the growing neighbourhoods reach the pixel: steps + 1 on an
        # edge, steps + 1 - d at distance d <= steps, 0 beyond. Counting in bytes over the
        # frame and looking the chance up at the valid pixels only keeps float work off
        # the empty background.
        steps = math.ceil(3 * self.edge_width)
        level = reach.to(torch.uint8)
        for _ in range(steps):
            reach = _filter3x3(reach, torch.logical_or, False)
            level += reach
        chances = [self.edge_prob * math.exp(-d / self.edge_width) for d in range(steps, 0, -1)]
        table = torch.tensor(
            [0.0, *chances, self.edge_prob], dtype=depth.dtype, device=depth.device
        )
        return table[level.view(-1).index_select(0, where.flat).long()]

    def _grazing_probability(
        self,
        depth: torch.Tensor,
        valid: torch.Tensor,
        intrinsics: torch.Tensor,
        where: _Pixels,
    ) -> torch.Tensor:
        """Dropout chance from the angle between the normal and the line of sight, at the
        ``valid`` pixels (in ``valid.nonzero()`` order)."""
        # Only valid pixels (a person covers a few percent of a frame) and their four
        # neighbours.
        _, frame, row, col = where
        steps = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))
        depths = where.read(depth, steps, outside=0.0)
        valids = where.read(valid, steps, outside=False)
        fx, fy, cx, cy = intrinsics.index_select(0, frame).unbind(-1)
        u, v = col.to(depth.dtype), row.to(depth.dtype)

        def point(du: int, dv: int) -> tuple[torch.Tensor, ...]:
            z = depths[steps.index((du, dv))]
            return (u + du - cx) / fx * z, (v + dv - cy) / fy * z, z

        (xr, yr, zr), (xl, yl, zl) = point(1, 0), point(-1, 0)
        (xd, yd, zd), (xu, yu, zu) = point(0, 1), point(0, -1)
        x, y, z = point(0, 0)
        # Central differences along u and v of the back-projected points (x, y, z).
        ux, uy, uz = xr - xl, yr - yl, zr - zl
        vx, vy, vz = xd - xu, yd - yu, zd - zu
        nx, ny, nz = uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx
        dot = (nx * x + ny * y + nz * z).abs()
        norms = ((nx * nx + ny * ny + nz * nz) * (x * x + y * y + z * z)).sqrt()
        cos = (dot / norms.clamp_min(1e-20)).clamp(0, 1)
        prob = (torch.rad2deg(torch.arccos(cos)) - self.grazing_angle) / (90.0 - self.grazing_angle)
        # Normals need the four neighbours (across an occlusion edge they come out steep,
        # so such pixels tend to drop too, as on the real sensor).
        near = valids[1:].all(0)
        return torch.where(near, prob.clamp(0, 1), 0.0)


_NEIGHBOURS_3X3 = tuple((du, dv) for dv in (-1, 0, 1) for du in (-1, 0, 1))


class _Pixels(NamedTuple):
    """The valid pixels of ``(B, H, W)`` frames: flat indices and their coordinates."""

    flat: torch.Tensor
    frame: torch.Tensor
    row: torch.Tensor
    col: torch.Tensor

    @staticmethod
    def of(valid: torch.Tensor) -> _Pixels:
        height, width = valid.shape[1:]
        flat = valid.reshape(-1).nonzero()[:, 0]
        frame = torch.div(flat, height * width, rounding_mode="floor")
        pixel = flat - frame * (height * width)
        row = torch.div(pixel, width, rounding_mode="floor")
        return _Pixels(flat, frame, row, pixel - row * width)

    def read(
        self, image: torch.Tensor, offsets: Sequence[tuple[int, int]], outside: float | bool
    ) -> torch.Tensor:
        """``image`` (``B x H x W``) at each pixel moved by each ``(du, dv)`` of ``offsets``
        (at most 1), ``outside`` beyond the border: ``len(offsets) x N``.

        One flat ``index_select`` into a padded copy: several times faster on CPU than
        ``image[frame, row + dv, col + du]``.
        """
        height, width = image.shape[1:]
        stride = width + 2
        centre = (self.frame * (height + 2) + self.row + 1) * stride + self.col + 1
        shifts = torch.tensor([dv * stride + du for du, dv in offsets], device=image.device)
        index = (shifts[:, None] + centre[None]).flatten()
        padded = F.pad(image, (1, 1, 1, 1), value=outside).flatten()
        return padded.index_select(0, index).view(len(offsets), -1)


def _filter3x3(
    image: torch.Tensor,
    combine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    outside: float | bool,
) -> torch.Tensor:
    """A 3x3 max/min/or filter of ``(B, H, W)`` images, ``outside`` beyond the border.

    Separable (two passes of three shifted views): several times faster on CPU than
    ``max_pool2d`` with stride 1, which computes indices it then throws away.
    """
    batch, height, width = image.shape
    padded = image.new_full((batch, height + 2, width + 2), outside)
    padded[:, 1:-1, 1:-1] = image
    rows = combine(combine(padded[:, :-2], padded[:, 1:-1]), padded[:, 2:])
    return combine(combine(rows[..., :-2], rows[..., 1:-1]), rows[..., 2:])
