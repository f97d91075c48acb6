"""Hand-drawn pen paths for the digits, in the shapes people write rather than print.

Printed and single-stroke fonts agree on one shape per digit: a closed 4, a curved 9, a
1 with a serif. Handwriting has several (allographs): the open 4, the 9 with a straight
stem, the bare 1, the 7 with a crossbar, the 2 with a loop. Each variant below is a list
of pen strokes, each stroke a few points in a unit box (``x`` right, ``y`` down) that a
Catmull-Rom spline passes through, so the paths are smooth curves; a corner is where one
stroke ends and the next begins.
"""

from __future__ import annotations

from functools import cache

import numpy as np

__all__ = ["HAND_ALLOGRAPHS", "HAND_WIDTHS", "hand_digit_strokes", "spline_segments"]

_Stroke = tuple[tuple[float, float], ...]

# The 9's head, shared by its straight- and curved-stem variants.
_NINE_LOOP: _Stroke = (
    (0.8, 0.15),
    (0.5, 0.0),
    (0.2, 0.12),
    (0.15, 0.35),
    (0.4, 0.5),
    (0.75, 0.4),
    (0.82, 0.15),
)

#: Digit -> variants -> strokes -> points the pen passes through.
HAND_ALLOGRAPHS: dict[int, tuple[tuple[_Stroke, ...], ...]] = {
    0: (
        (
            (
                (0.5, 0.0),
                (0.15, 0.2),
                (0.05, 0.5),
                (0.2, 0.85),
                (0.5, 1.0),
                (0.8, 0.85),
                (0.95, 0.5),
                (0.85, 0.15),
                (0.5, 0.0),
                (0.35, 0.06),
            ),
        ),
        (
            (
                (0.7, 0.05),
                (0.4, 0.02),
                (0.15, 0.3),
                (0.1, 0.65),
                (0.3, 0.95),
                (0.65, 0.95),
                (0.9, 0.6),
                (0.9, 0.25),
                (0.7, 0.03),
                (0.5, 0.06),
            ),
        ),
    ),
    1: (
        (((0.5, 0.0), (0.5, 1.0)),),
        (((0.25, 0.2), (0.5, 0.0)), ((0.5, 0.0), (0.5, 1.0))),
        (((0.3, 0.18), (0.5, 0.0)), ((0.5, 0.0), (0.5, 1.0)), ((0.25, 1.0), (0.75, 1.0))),
    ),
    2: (
        (
            (
                (0.1, 0.25),
                (0.3, 0.03),
                (0.65, 0.02),
                (0.85, 0.22),
                (0.75, 0.5),
                (0.4, 0.75),
                (0.05, 1.0),
            ),
            ((0.05, 1.0), (0.95, 1.0)),
        ),
        (
            (
                (0.1, 0.25),
                (0.35, 0.02),
                (0.7, 0.05),
                (0.85, 0.3),
                (0.6, 0.6),
                (0.25, 0.9),
                (0.1, 0.95),
                (0.2, 0.8),
                (0.4, 0.85),
                (0.7, 0.97),
                (0.95, 0.93),
            ),
        ),
    ),
    3: (
        (
            (
                (0.1, 0.15),
                (0.4, 0.0),
                (0.75, 0.05),
                (0.85, 0.25),
                (0.65, 0.43),
                (0.4, 0.48),
                (0.7, 0.55),
                (0.9, 0.75),
                (0.75, 0.95),
                (0.4, 1.0),
                (0.05, 0.85),
            ),
        ),
        (
            ((0.1, 0.0), (0.9, 0.0)),
            ((0.9, 0.0), (0.45, 0.4)),
            ((0.45, 0.4), (0.75, 0.5), (0.9, 0.75), (0.7, 0.95), (0.35, 1.0), (0.05, 0.85)),
        ),
    ),
    4: (
        (((0.35, 0.0), (0.05, 0.62)), ((0.05, 0.62), (0.95, 0.6)), ((0.75, 0.0), (0.72, 1.0))),
        (((0.7, 1.0), (0.7, 0.0)), ((0.7, 0.0), (0.05, 0.7)), ((0.05, 0.7), (0.95, 0.7))),
        (((0.1, 0.0), (0.12, 0.45), (0.3, 0.55), (0.85, 0.5)), ((0.8, 0.0), (0.8, 1.0))),
    ),
    5: (
        (
            ((0.85, 0.0), (0.2, 0.0)),
            ((0.2, 0.0), (0.15, 0.45)),
            (
                (0.15, 0.45),
                (0.45, 0.38),
                (0.8, 0.5),
                (0.9, 0.75),
                (0.7, 0.95),
                (0.4, 1.0),
                (0.05, 0.88),
            ),
        ),
        (
            (
                (0.25, 0.0),
                (0.15, 0.45),
                (0.5, 0.38),
                (0.85, 0.6),
                (0.75, 0.92),
                (0.4, 1.0),
                (0.1, 0.9),
            ),
            ((0.25, 0.02), (0.9, 0.0)),
        ),
    ),
    6: (
        (
            (
                (0.75, 0.0),
                (0.4, 0.2),
                (0.15, 0.55),
                (0.2, 0.9),
                (0.5, 1.0),
                (0.8, 0.85),
                (0.8, 0.6),
                (0.5, 0.5),
                (0.2, 0.65),
            ),
        ),
        (
            (
                (0.6, 0.0),
                (0.25, 0.45),
                (0.15, 0.75),
                (0.35, 1.0),
                (0.7, 0.95),
                (0.85, 0.75),
                (0.65, 0.55),
                (0.35, 0.58),
                (0.2, 0.75),
            ),
        ),
    ),
    7: (
        (((0.05, 0.0), (0.95, 0.0)), ((0.95, 0.0), (0.35, 1.0))),
        (((0.05, 0.0), (0.95, 0.0)), ((0.95, 0.0), (0.35, 1.0)), ((0.35, 0.5), (0.85, 0.5))),
        (((0.05, 0.05), (0.95, 0.0)), ((0.95, 0.0), (0.65, 0.4), (0.45, 0.75), (0.4, 1.0))),
        (((0.05, 0.15), (0.1, 0.0)), ((0.1, 0.0), (0.95, 0.02)), ((0.95, 0.02), (0.4, 1.0))),
    ),
    8: (
        (
            (
                (0.8, 0.12),
                (0.5, 0.0),
                (0.2, 0.12),
                (0.25, 0.35),
                (0.5, 0.48),
                (0.8, 0.65),
                (0.85, 0.88),
                (0.5, 1.0),
                (0.15, 0.88),
                (0.2, 0.65),
                (0.5, 0.48),
                (0.75, 0.35),
                (0.8, 0.12),
            ),
        ),
        (
            (
                (0.75, 0.1),
                (0.45, 0.0),
                (0.25, 0.15),
                (0.4, 0.35),
                (0.7, 0.55),
                (0.9, 0.8),
                (0.65, 1.0),
                (0.3, 0.95),
                (0.25, 0.7),
                (0.5, 0.45),
                (0.72, 0.3),
                (0.78, 0.05),
            ),
        ),
        (
            (
                (0.5, 0.0),
                (0.25, 0.1),
                (0.28, 0.38),
                (0.5, 0.46),
                (0.72, 0.38),
                (0.75, 0.1),
                (0.5, 0.0),
            ),
            (
                (0.5, 0.46),
                (0.15, 0.6),
                (0.2, 0.92),
                (0.5, 1.0),
                (0.8, 0.92),
                (0.85, 0.6),
                (0.5, 0.46),
            ),
        ),
    ),
    9: (
        (
            _NINE_LOOP,
            ((0.82, 0.1), (0.75, 1.0)),
        ),
        (
            _NINE_LOOP,
            ((0.82, 0.15), (0.8, 0.6), (0.6, 0.95), (0.3, 1.0)),
        ),
    ),
}


#: Width of each digit's box relative to its height (MNIST's digits average about 0.74;
#: 0s are rounder). Variants are drawn in the unit square and narrowed by this.
HAND_WIDTHS: dict[int, float] = {
    0: 0.85,
    1: 0.6,
    2: 0.8,
    3: 0.75,
    4: 0.8,
    5: 0.75,
    6: 0.75,
    7: 0.8,
    8: 0.75,
    9: 0.75,
}


def spline_segments(points: np.ndarray, pieces: int = 6) -> np.ndarray:
    """Line segments along the Catmull-Rom spline through ``points`` (``K x 2``).

    Returns ``S x 2 (ends) x 2 (x, y)``: ``pieces`` segments per span; a two-point
    stroke is one straight segment.

    Args:
        points: the points the pen passes through, in order.
        pieces: segments per span between consecutive points.
    """
    points = np.asarray(points, dtype=np.float64)
    if len(points) == 2:
        return points[None].astype(np.float32)
    # The end tangents mirror the neighbours, so the curve starts and ends at the points.
    padded = np.concatenate([2 * points[:1] - points[1:2], points, 2 * points[-1:] - points[-2:-1]])
    t = np.linspace(0.0, 1.0, pieces + 1)[:, None]
    curve = []
    for k in range(len(points) - 1):
        p0, p1, p2, p3 = padded[k : k + 4]
        span = 0.5 * (
            2 * p1
            + (p2 - p0) * t
            + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
            + (3 * p1 - p0 - 3 * p2 + p3) * t**3
        )
        curve.append(span if k == 0 else span[1:])
    curve = np.concatenate(curve)
    return np.stack([curve[:-1], curve[1:]], axis=1).astype(np.float32)


@cache
def hand_digit_strokes() -> tuple[tuple[np.ndarray, ...], ...]:
    """Per digit, its hand-drawn variants as line segments ``S x 2 x 2`` in the unit box."""
    digits = []
    for digit in range(10):
        narrow = np.array([HAND_WIDTHS[digit], 1.0], dtype=np.float32)
        digits.append(
            tuple(
                np.concatenate([spline_segments(np.array(stroke)) for stroke in variant]) * narrow
                for variant in HAND_ALLOGRAPHS[digit]
            )
        )
    return tuple(digits)
