"""``DepthSensorNoise``: turn clean depth renders into Kinect-v1-like frames.

A structured-light sensor (Kinect v1) projects a dot pattern from an IR projector that
sits ``b = 7.5 cm`` beside its IR camera, matches the pattern in the camera image and
returns ``z = f b / d`` from the disparity ``d`` (Khoshelham & Elberink, "Accuracy and
resolution of Kinect depth data for indoor mapping applications", Sensors 12(2), 2012).
The model applies, to a batch of clean depth maps:

1. **projector shadows** (missing depth): a surface point the projector's light cannot
   reach carries no pattern. Rays from each pixel's point to the projector are traced
   against the rendered depth; since the projector sits on the camera's ``x`` axis they
   run along image rows, and a point at disparity ``D(u)`` is shadowed when a pixel
   ``k`` columns towards the projector holds a surface with ``D(u + k) > D(u) + k``.
   This leaves a band of missing depth beside each depth step, on the side away from
   the projector only, ``f b (1/z_near - 1/z_far)`` pixels wide (2-4 pixels at QVGA for
   a person 1 m in front of a wall; a pixel or two beside an arm held before the body);
2. **out of range** (missing depth): readings outside ``[min_depth, max_depth]``, the
   Kinect's 0.8-4 m working range by default (Microsoft's specification; Khoshelham &
   Elberink measured 0.5-5 m);
3. **lateral noise, edge noise and flying pixels**: pattern matching places a depth up
   to a pixel off (Nguyen, Izadi & Lovell, "Modeling Kinect sensor noise for improved 3D
   reconstruction and tracking", 3DIMPVT 2012: ``sigma_L = 0.8 + 0.035 theta / (pi/2 -
   theta)`` pixels at 640 x 480, ``theta`` the angle between the normal and the line of
   sight). Each pixel reads the depth of a neighbour ``round(N(0, sigma_L))`` columns
   and rows away: nothing happens on smooth surfaces, but silhouettes become ragged
   (a pixel that reads the background loses its depth) and pixels across a depth step
   take the other side's depth, or, as *flying pixels*, a depth in between;
4. **grazing angles** (missing depth): surfaces seen nearly edge-on reflect too little of
   the pattern; the dropout chance grows linearly from ``grazing_angle`` (75 degrees)
   to 1 at 90 degrees (surface normals from finite differences of the back-projected
   points; Nguyen et al. report the noise exploding beyond about 70 degrees);
5. **axial noise**: Gaussian, with Khoshelham & Elberink's ``sigma_z = 1.425e-3 z^2``
   metres (their random error from the disparity's spread, 4 cm at 5 m), or Nguyen et
   al.'s ``0.0012 + 0.0019 (z - 0.4)^2``;
6. **disparity quantisation**: ``d`` rounded to 1/8 pixel at the sensor's native 640-pixel
   width (Khoshelham & Elberink; the steps grow as ``z^2``, 1.2 cm at 2 m), then ``z = f
   b / d``. Both published spreads were measured on real frames, which are quantised:
   the Gaussian part is reduced so that noise and quantisation together have the
   published spread (``sqrt(sigma_z^2 - step^2 / 12)``);
7. optionally, scattered **random dropout** (off by default: a Kinect v1 frame of a
   person is a solid silhouette) and a **dropout band at depth edges** (a small chance
   on both sides of every depth step, decaying away from it).

The projector is on the image's right of the camera by default (a Kinect v1 seen from
the front has its projector at the far left end of the bar, the IR camera right of
centre, so in the camera's own, unmirrored image the light comes from the right and
shadows fall left of objects); ``projector_side="left"`` for mirrored output.

All random numbers are drawn whatever the switches, so turning one effect off leaves
the others unchanged. Input: depth ``(B, H, W)`` metres with 0 = no reading (no
surface), intrinsics ``(B, 4)`` ``fx, fy, cx, cy``; works on any device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from lightning_synth.errors import InputError

__all__ = ["DepthSensorNoise", "kinect_axial_sigma", "khoshelham_axial_sigma"]

#: Width in pixels of the Kinect v1's native IR image, where disparities are measured.
NATIVE_WIDTH = 640
_LATERAL_REACH = 2  # largest lateral displacement, pixels


def kinect_axial_sigma(depth: torch.Tensor) -> torch.Tensor:
    """Nguyen et al.'s axial noise standard deviation (metres) of a Kinect v1 at ``depth``.

    Args:
        depth: distance along the optical axis, metres.
    """
    return 0.0012 + 0.0019 * (depth - 0.4) ** 2


def khoshelham_axial_sigma(depth: torch.Tensor) -> torch.Tensor:
    """Khoshelham & Elberink's random depth error (metres) of a Kinect v1 at ``depth``.

    Args:
        depth: distance along the optical axis, metres.
    """
    return 1.425e-3 * depth**2


class DepthSensorNoise(nn.Module):
    """Kinect-v1-like noise and missing data for clean depth maps (no parameters).

    Args:
        axial_noise: add Gaussian depth noise with the ``axial_model``'s ``sigma_z(z)``.
        axial_scale: multiplier of ``sigma_z``.
        quantize: quantise the disparity ``f b / z`` to ``disparity_step`` pixels.
        baseline: projector-camera baseline in metres (7.5 cm on a Kinect v1).
        disparity_step: disparity resolution in pixels (the Kinect's 1/8 pixel).
        focal_length: focal length in pixels at which the disparity is measured
            (quantisation and lateral noise); ``None`` takes ``fx`` of the intrinsics,
            scaled to ``native_width``.
        edge_dropout: drop pixels near depth discontinuities, on both sides.
        edge_prob: chance of dropping a pixel on a discontinuity.
        edge_width: decay length in pixels of the dropout chance away from the edge
            (``edge_prob * exp(-distance / edge_width)``, up to ``3 * edge_width`` pixels).
        edge_threshold: depth jump in metres between neighbours that makes an edge (for
            the dropout band and flying pixels); a pixel next to background (0) is
            always on an edge.
        grazing_dropout: drop pixels seen at grazing angles.
        grazing_angle: angle in degrees between the surface normal and the line of sight
            from which dropout starts; the chance grows linearly to 1 at 90 degrees.
        random_dropout: drop pixels independently at random.
        dropout_prob: chance of dropping each pixel.
        range_limits: drop readings outside ``[min_depth, max_depth]``.
        min_depth: nearest depth the sensor reports, metres.
        max_depth: farthest depth the sensor reports, metres.
        seed: seed of the generator used when ``forward`` gets none.
        axial_model: ``khoshelham`` (``1.425e-3 z^2``) or ``nguyen``
            (``0.0012 + 0.0019 (z - 0.4)^2``).
        native_width: image width in pixels at which the sensor measures disparities
            (640 for a Kinect v1): with ``focal_length`` unset, ``fx`` is scaled by
            ``native_width / W``, so a 160-pixel-wide frame keeps the real sensor's depth
            steps; ``None`` measures at the image's own resolution.
        projector_shadows: remove the surface points the projector's light cannot reach.
        projector_side: side of the camera, in the image, the projector sits on.
        lateral_noise: displace each reading by Nguyen et al.'s lateral noise.
        lateral_scale: multiplier of the lateral noise's standard deviation.
        flying_prob: chance that a reading displaced across a depth step takes a depth
            in between the two sides (a flying pixel) instead of the other side's.
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
        edge_prob: float = 0.1,
        edge_width: float = 0.5,
        edge_threshold: float = 0.1,
        grazing_dropout: bool = True,
        grazing_angle: float = 75.0,
        random_dropout: bool = False,
        dropout_prob: float = 0.005,
        range_limits: bool = True,
        min_depth: float = 0.8,
        max_depth: float = 4.0,
        seed: int = 0,
        axial_model: Literal["khoshelham", "nguyen"] = "khoshelham",
        native_width: int | None = NATIVE_WIDTH,
        projector_shadows: bool = True,
        projector_side: Literal["right", "left"] = "right",
        lateral_noise: bool = True,
        lateral_scale: float = 1.0,
        flying_prob: float = 0.5,
    ) -> None:
        super().__init__()
        if not 0 <= grazing_angle < 90:
            raise InputError(f"grazing_angle must be in [0, 90) degrees, got {grazing_angle}")
        if baseline <= 0 or disparity_step <= 0:
            raise InputError("baseline and disparity_step must be positive")
        if axial_model not in ("khoshelham", "nguyen"):
            raise InputError(f"axial_model must be 'khoshelham' or 'nguyen', got {axial_model!r}")
        if projector_side not in ("right", "left"):
            raise InputError(f"projector_side must be 'right' or 'left', got {projector_side!r}")
        if native_width is not None and native_width < 1:
            raise InputError(f"native_width must be positive or None, got {native_width}")
        self.axial_noise, self.axial_scale = axial_noise, float(axial_scale)
        self.quantize, self.baseline = quantize, float(baseline)
        self.disparity_step, self.focal_length = float(disparity_step), focal_length
        self.edge_dropout, self.edge_prob = edge_dropout, float(edge_prob)
        self.edge_width, self.edge_threshold = float(edge_width), float(edge_threshold)
        self.grazing_dropout, self.grazing_angle = grazing_dropout, float(grazing_angle)
        self.random_dropout, self.dropout_prob = random_dropout, float(dropout_prob)
        self.range_limits, self.min_depth, self.max_depth = range_limits, min_depth, max_depth
        self.seed = int(seed)
        self.axial_model, self.native_width = axial_model, native_width
        self.projector_shadows, self.projector_side = projector_shadows, projector_side
        self.lateral_noise, self.lateral_scale = lateral_noise, float(lateral_scale)
        self.flying_prob = float(flying_prob)

    def axial_sigma(self, depth: torch.Tensor) -> torch.Tensor:
        """Published axial standard deviation (metres) at ``depth``, times ``axial_scale``.

        Args:
            depth: distance along the optical axis, metres.
        """
        model = khoshelham_axial_sigma if self.axial_model == "khoshelham" else kinect_axial_sigma
        return model(depth) * self.axial_scale

    def forward(
        self,
        depth: torch.Tensor,
        intrinsics: torch.Tensor,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Noisy depth ``(B, H, W)`` (0 where missing) and the ``valid`` mask ``(B, H, W)``.

        Args:
            depth: clean depth ``(B, H, W)`` in metres, 0 where there is no surface (NaN,
                infinite and negative values count as no surface).
            intrinsics: ``(B, 4)`` ``fx, fy, cx, cy`` in pixels.
            generator: one generator for the batch, or one per frame (then each frame's
                noise depends only on its own generator and frame); ``None`` seeds one
                from ``seed``.
        """
        if depth.ndim != 3:
            raise ValueError(f"depth must be B x H x W, got {tuple(depth.shape)}")
        depth = depth.nan_to_num(0.0, 0.0, 0.0).clamp_min(0.0)
        surface = depth > 0
        valid = surface.clone()
        if self.range_limits:
            valid &= (depth >= self.min_depth) & (depth <= self.max_depth)
        # Everything below happens at the surface pixels only: a person covers a few
        # percent of a frame, and random draws for the empty rest would be most of the work.
        where = _Pixels.of(valid)
        frame = where.frame
        clean = depth.reshape(-1).index_select(0, where.flat)
        normal, uniform = self._draw(torch.bincount(frame, minlength=len(depth)), depth, generator)
        keep = torch.ones_like(clean, dtype=torch.bool)
        if self.projector_shadows:
            shadow = self.shadow_mask(depth, intrinsics)
            keep &= ~shadow.reshape(-1).index_select(0, where.flat)
        focal = self._measuring_focal(intrinsics, depth.shape[-1]).index_select(0, frame)
        angle = None
        if self.grazing_dropout or self.lateral_noise:
            angle = self._view_angle(depth, valid, intrinsics, where)
        out = clean
        if self.lateral_noise:
            # What the sensor measured: no reading out of range or in the shadow.
            measured = torch.zeros_like(depth)
            measured.view(-1).index_copy_(0, where.flat, torch.where(keep, clean, 0.0))
            out = self._lateral(measured, where, clean, angle, normal[1:], uniform[3:])
        if self.edge_dropout:
            keep &= uniform[0] >= self._edge_probability(depth, valid, where)
        if self.grazing_dropout:
            keep &= uniform[1] >= self._grazing_probability(angle)
        if self.random_dropout:
            keep &= uniform[2] >= self.dropout_prob
        keep &= out > 0
        fb = focal * self.baseline
        if self.axial_noise:
            sigma = self.axial_sigma(out)
            if self.quantize:
                # The published spreads include the quantisation's (step^2 / 12).
                step = out.square() * self.disparity_step / fb
                sigma = (sigma.square() - step.square() / 12).clamp_min(0).sqrt()
            out = out + normal[0] * sigma
        if self.quantize:
            disparity = fb / out.clamp_min(1e-6)
            disparity = torch.round(disparity / self.disparity_step) * self.disparity_step
            keep &= disparity > 0
            out = fb / disparity.clamp_min(1e-12)
        keep &= out > 0
        noisy = torch.zeros_like(depth)
        noisy.view(-1).index_copy_(0, where.flat, torch.where(keep, out, 0.0))
        valid.view(-1).index_copy_(0, where.flat, keep)
        return noisy, valid

    def _measuring_focal(self, intrinsics: torch.Tensor, width: int) -> torch.Tensor:
        """``(B,)`` focal length in the pixels the sensor measures disparities in."""
        if self.focal_length is not None:
            return intrinsics.new_full((len(intrinsics),), float(self.focal_length))
        scale = 1.0 if self.native_width is None else self.native_width / width
        return intrinsics[:, 0] * scale

    @torch.no_grad()
    def shadow_mask(self, depth: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
        """``(B, H, W)`` bool: surface pixels the projector's light does not reach.

        The projector sits ``baseline`` metres along the camera's ``x`` axis, so the ray
        from a pixel's point to it stays on the pixel's row: ``k`` columns towards the
        projector it is at disparity ``D(u) + k`` (``D = fx b / z``, image pixels), and it
        is blocked where the rendered surface there is nearer, ``D(u + k) > D(u) + k``.
        ``max_k D(u + k) - k`` is found in ``log2(max D)`` doubling steps.

        Args:
            depth: clean depth ``(B, H, W)``, metres, 0 where there is no surface.
            intrinsics: ``(B, 4)`` ``fx, fy, cx, cy`` in pixels.
        """
        surface = depth > 0
        shadow = torch.zeros_like(surface)
        # Only rows with a surface, and the columns between the first and last surface
        # pixel of any of them, can hold a shadow or cast one (a person spans a fraction
        # of a frame): the dense passes below run on that window only.
        batch, height, width = depth.shape
        rows = surface.view(-1, width).any(-1).nonzero()[:, 0]
        columns = surface.flatten(0, 1).any(0).nonzero()[:, 0]
        if not len(rows):
            return shadow
        first, last = int(columns[0]), int(columns[-1]) + 1
        window = depth.view(-1, width).index_select(0, rows)[:, first:last]
        fx = intrinsics[:, 0].repeat_interleave(height).index_select(0, rows)[:, None]
        disparity = torch.where(window > 0, fx * self.baseline / window.clamp_min(1e-6), 0.0)
        if self.projector_side == "left":
            disparity = disparity.flip(-1)
        # blocker[u] = max over k in [1, reach] of D(u + k) - k; nothing beyond the window.
        blocker = F.pad(disparity[:, 1:] - 1, (0, 1), value=-math.inf)
        reach, largest = 1, float(disparity.max())
        while reach < min(largest, last - first):
            shifted = F.pad(blocker[:, reach:] - reach, (0, reach), value=-math.inf)
            blocker = torch.maximum(blocker, shifted)
            reach *= 2
        blocked = blocker > disparity
        if self.projector_side == "left":
            blocked = blocked.flip(-1)
        shadow.view(-1, width)[rows, first:last] = (window > 0) & blocked
        return shadow

    def _draw(
        self,
        counts: torch.Tensor,
        like: torch.Tensor,
        generator: torch.Generator | Sequence[torch.Generator] | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaussian ``(3, N)`` and uniform ``(5, N)`` draws for ``counts[f]`` pixels of frame ``f``.

        Rows: normal = axial, lateral column, lateral row; uniform = edge, grazing and
        random dropout, flying pixel, flying pixel's depth.
        """
        kwargs = {"device": like.device, "dtype": like.dtype}
        if generator is None:
            generator = torch.Generator(device=like.device).manual_seed(self.seed)
        if isinstance(generator, torch.Generator):
            total = int(counts.sum())
            normal = torch.randn((3, total), generator=generator, **kwargs)
            return normal, torch.rand((5, total), generator=generator, **kwargs)
        if len(generator) != len(counts):
            raise ValueError(f"got {len(generator)} generators for {len(counts)} frames")
        draws = [
            (
                torch.randn((3, int(n)), generator=g, **kwargs),
                torch.rand((5, int(n)), generator=g, **kwargs),
            )
            for g, n in zip(generator, counts.tolist(), strict=True)
        ]
        return torch.cat([n for n, _ in draws], 1), torch.cat([u for _, u in draws], 1)

    def _lateral(
        self,
        measured: torch.Tensor,
        where: _Pixels,
        clean: torch.Tensor,
        angle: torch.Tensor | None,
        normal: torch.Tensor,
        uniform: torch.Tensor,
    ) -> torch.Tensor:
        """Depth read ``round(N(0, sigma_L))`` pixels away (0: no reading), at ``where``;
        across a depth step, with ``flying_prob``, a depth between both sides."""
        theta = torch.zeros_like(clean) if angle is None else angle.clamp(max=math.radians(85))
        # Nguyen et al.'s sigma_L in native pixels, converted to this image's pixels.
        native = 0.8 + 0.035 * theta / (math.pi / 2 - theta)
        width = measured.shape[-1]
        scale = width / self.native_width if self.native_width else 1.0
        sigma = native * (self.lateral_scale * scale)
        reach = _LATERAL_REACH
        du = (normal[0] * sigma).round().clamp(-reach, reach).long()
        dv = (normal[1] * sigma).round().clamp(-reach, reach).long()
        read = where.read_shifted(measured, du, dv, reach)
        across = (read > 0) & ((read - clean).abs() > self.edge_threshold)
        flying = across & (uniform[0] < self.flying_prob)
        return torch.where(flying, torch.lerp(clean, read, uniform[1]), read)

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

    def _view_angle(
        self,
        depth: torch.Tensor,
        valid: torch.Tensor,
        intrinsics: torch.Tensor,
        where: _Pixels,
    ) -> torch.Tensor:
        """Angle (radians) between the normal and the line of sight at the ``valid``
        pixels (in ``valid.nonzero()`` order); 0 where the pixel has no neighbour on its
        own surface along a direction."""
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

        centre = point(0, 0)
        x, y, z = centre
        # Differences along u and v of the back-projected points that stay on one surface:
        # central where the depth changes alike on both sides (a plane, even a steep one),
        # else one-sided towards the smaller change (the other neighbour lies across a
        # depth step: central differences there make every occlusion edge look edge-on
        # and lose both of its sides).
        tangents, known = [], torch.ones_like(valids[0])
        for ahead, behind in (((1, 0), (-1, 0)), ((0, 1), (0, -1))):
            has_ahead, has_behind = valids[steps.index(ahead)], valids[steps.index(behind)]
            rise_ahead = depths[steps.index(ahead)] - z
            rise_behind = z - depths[steps.index(behind)]
            alike = (rise_ahead - rise_behind).abs() <= self.edge_threshold
            nearer = rise_ahead.abs() <= rise_behind.abs()
            use_ahead = has_ahead & (~has_behind | alike | nearer)
            use_behind = has_behind & (~has_ahead | alike | ~nearer)
            front, back = point(*ahead), point(*behind)
            start = [torch.where(use_behind, b, c) for b, c in zip(back, centre, strict=True)]
            end = [torch.where(use_ahead, f, c) for f, c in zip(front, centre, strict=True)]
            tangents.append([e - b for e, b in zip(end, start, strict=True)])
            known &= has_ahead | has_behind
        (ux, uy, uz), (vx, vy, vz) = tangents
        nx, ny, nz = uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx
        dot = (nx * x + ny * y + nz * z).abs()
        norms = ((nx * nx + ny * ny + nz * nz) * (x * x + y * y + z * z)).sqrt()
        cos = (dot / norms.clamp_min(1e-20)).clamp(0, 1)
        # A pixel with no neighbour on its own surface along an axis: no normal, no angle.
        return torch.where(known, torch.arccos(cos), 0.0)

    def _grazing_probability(self, angle: torch.Tensor) -> torch.Tensor:
        """Dropout chance from the angle between the normal and the line of sight."""
        degrees = torch.rad2deg(angle)
        return ((degrees - self.grazing_angle) / (90.0 - self.grazing_angle)).clamp(0, 1)


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

    def read_shifted(
        self, image: torch.Tensor, du: torch.Tensor, dv: torch.Tensor, reach: int
    ) -> torch.Tensor:
        """``image`` (``B x H x W``) at each pixel moved by its own ``(du, dv)`` (``N``
        each, at most ``reach``), 0 beyond the border: ``N``."""
        height, width = image.shape[1:]
        stride = width + 2 * reach
        index = (self.frame * (height + 2 * reach) + self.row + reach + dv) * stride
        index = index + self.col + reach + du
        padded = F.pad(image, (reach, reach, reach, reach)).flatten()
        return padded.index_select(0, index)


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
